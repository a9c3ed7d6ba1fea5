"""``[connected]`` (pj:src/connected_layer.c): a dense layer on the flattened NCHW input.

forward:  out = x . W^T ; batch_normalize ? BN over (N, C, 1, 1) : out + biases ; act(out)
backward: delta *= act'(y) ; BN backward or bias_updates += sum(delta) ;
          weight_updates += delta^T . x ; prev.delta += delta . W
The weights record puts the BN arrays *after* the weights (unlike conv).
"""

import math

import numpy as np

from .. import gemm
from ..backend import on_gpu
from .base import Layer, Shape
from .batchnorm import init_batchnorm
from .convolutional import ConvolutionalLayer, read_activation
from .epilogue import backward_epilogue, forward_epilogue


class ConnectedLayer(Layer):
    capturable = True
    type = "connected"
    cfg_keys = frozenset("output activation batch_normalize".split())
    params = ("weights", "biases", "scales")

    needs_input = False

    @classmethod
    def output_shape(cls, sec, inp, refs):
        """Darknet's 1x1xN image (darknet_py keeps it flat: see from_cfg)."""
        return Shape(sec.int("output", 1, minimum=1), 1, 1)

    @classmethod
    def window(cls, sec):
        return None

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.init(ctx, read_activation(section, "logistic"), section.bool("batch_normalize"))
        return layer

    @classmethod
    def part(cls, ctx, inputs, outputs, activation, batch_normalize):
        """A connected layer inside another (pj make_connected_layer called by the recurrent
        layers): ``inputs`` -> ``outputs`` values, no section of its own."""
        layer = cls()
        layer.c, layer.h, layer.w = inputs, 1, 1
        layer.set_output(Shape(outputs, 1, 1))
        layer.init(ctx, activation, batch_normalize)
        return layer

    def init(self, ctx, activation, batch_normalize):
        self.flat = True            # an image layer after it is refused (set_input)
        self.activation = activation
        self.batch_normalize = batch_normalize
        xp = ctx.xp
        # pj: scale = sqrt(2/inputs), weights ~ scale * U(-1, 1)
        w = math.sqrt(2.0 / self.inputs) * ctx.rng.uniform(-1, 1, (self.out_c, self.inputs))
        self.weights = xp.asarray(w.astype(np.float32))
        self.weight_updates = xp.zeros_like(self.weights)
        self.biases = xp.zeros(self.out_c, dtype="float32")
        self.bias_updates = xp.zeros(self.out_c, dtype="float32")
        if batch_normalize:
            init_batchnorm(self, self.out_c, xp)

    def forward(self, net):
        x = net.input.reshape(net.input.shape[0], self.inputs)
        out = _product(net, x, self.weights.T).reshape(-1, self.out_c, 1, 1)
        self.output = forward_epilogue(self, out, net.train)

    def backward(self, net):
        x = net.input.reshape(net.input.shape[0], self.inputs)
        delta = backward_epilogue(self)
        d = delta.reshape(-1, self.out_c)
        _product(net, d.T, x, into=self.weight_updates)
        if net.delta is not None:
            if net.delta.flags.c_contiguous:    # then the reshape is a view: add in place
                _product(net, d, self.weights, into=net.delta.reshape(d.shape[0], -1))
            else:
                net.delta += _product(net, d, self.weights).reshape(net.delta.shape)

    # biases and BN scales without decay, weights with it: the same rule as conv
    update = ConvolutionalLayer.update

    def weight_record(self):
        if self.batch_normalize:
            return ("biases", "weights", "scales", "rolling_mean", "rolling_variance")
        return ("biases", "weights")

    def bflops(self):
        return 2.0 * self.inputs * self.out_c / 1e9

    def describe(self):
        return f"connected                            {self.inputs:4d}  ->  {self.out_c:4d}"


def _product(net, a, b, into=None):
    """``a @ b``, or ``into += a @ b``.  On the GPU in float32 through nn/gemm.py (cuBLAS
    called so that a CUDA graph can capture it); elsewhere NumPy's / CuPy's matmul."""
    if on_gpu(a) and a.dtype == np.float32 and b.dtype == np.float32:
        precision = getattr(net, "precision", None)     # a recurrent part's step has none
        return gemm.matmul(a, b, out=into, accumulate=into is not None,
                           tf32=precision is not None and precision.tf32)
    if into is None:
        return a @ b
    into += a @ b
    return into
