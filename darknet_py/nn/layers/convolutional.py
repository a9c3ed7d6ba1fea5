"""``[convolutional]`` (pj:src/convolutional_layer.c).

forward:  out = conv(x, W) ; batch_normalize ? BN(out) (biases = beta) : out + biases ; act(out)
backward: delta *= act'(y) ; BN backward or bias_updates += sum(delta) ;
          weight_updates += delta . im2col(x)^T ; prev.delta += col2im(W^T . delta)
"""

import math

import numpy as np

from ..activations import ACTIVATIONS, NEEDS_INPUT, activate, gradient
from ..backend import cudnn_ops
from ...errors import CfgError, NotSupportedError
from ..im2col import conv_backward_data, conv_backward_filter, conv_forward, out_size
from .base import Layer
from .batchnorm import batchnorm_backward, batchnorm_forward, init_batchnorm


def read_activation(section, default):
    return section.choice("activation", default, ACTIVATIONS)


class ConvolutionalLayer(Layer):
    type = "convolutional"
    cfg_keys = frozenset((
        "filters size stride padding pad groups activation batch_normalize "
        "binary xnor flipped dot"
    ).split())
    params = ("weights", "biases", "scales")
    needs_image = True

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        layer.n = section.int("filters", 1, minimum=1)
        layer.size = section.int("size", 1, minimum=1)
        layer.stride = section.int("stride", 1, minimum=1)
        layer.padding = section.int("padding", 0, minimum=0)
        if section.bool("pad"):
            layer.padding = layer.size // 2      # pad=1 overrides padding=
        layer.groups = section.int("groups", 1, minimum=1)
        layer.activation = read_activation(section, "logistic")
        layer.batch_normalize = section.bool("batch_normalize")
        for key in ("binary", "xnor"):
            if section.bool(key):
                raise NotSupportedError(f"[{section.name}] {key}=1 is not supported by darknet_py",
                                        section.path, section.line_of(key))
        layer.flipped = section.bool("flipped")
        section.int("dot", 0)
        if layer.c % layer.groups or layer.n % layer.groups:
            raise CfgError(f"[{section.name}] groups={layer.groups} must divide both the input "
                           f"channels ({layer.c}) and filters ({layer.n})",
                           section.path, section.line_of("groups"))
        layer.out_c = layer.n
        layer.out_h = out_size(layer.h, layer.size, layer.stride, layer.padding)
        layer.out_w = out_size(layer.w, layer.size, layer.stride, layer.padding)
        if layer.out_h < 1 or layer.out_w < 1:
            raise CfgError(f"[{section.name}] size={layer.size} does not fit the "
                           f"{layer.w}x{layer.h} input (output would be empty)",
                           section.path, section.line_of("size"))
        layer.init_params(ctx)
        return layer

    def init_params(self, ctx):
        xp = ctx.xp
        fan_in = self.size * self.size * self.c // self.groups
        shape = (self.n, self.c // self.groups, self.size, self.size)
        # pj: scale = sqrt(2/(size*size*c/groups)), weights ~ scale * N(0,1)
        w = math.sqrt(2.0 / fan_in) * ctx.rng.standard_normal(shape)
        self.weights = xp.asarray(w.astype(np.float32))
        self.weight_updates = xp.zeros(shape, dtype="float32")
        self.biases = xp.zeros(self.n, dtype="float32")
        self.bias_updates = xp.zeros(self.n, dtype="float32")
        if self.batch_normalize:
            init_batchnorm(self, self.n, xp)

    def forward(self, net):
        x = self.input_image(net.input)
        ops = cudnn_ops(x)
        out = ops and ops.conv_forward(x, self.weights, self.stride, self.padding, self.groups,
                                       what=f"layer {self.index} conv forward")
        if out is None:
            out = conv_forward(x, self.weights, self.stride, self.padding, self.groups)
        if self.batch_normalize:
            out = batchnorm_forward(self, out, net.train)
        else:
            out = out + self.biases.reshape(1, -1, 1, 1)
        self.activation_input = out if self.activation in NEEDS_INPUT else None
        self.output = activate(out, self.activation)

    def backward(self, net):
        x = self.input_image(net.input)
        delta = self.delta * gradient(self.output, self.activation_input, self.activation)
        if self.batch_normalize:
            delta = batchnorm_backward(self, delta)
        else:
            self.bias_updates += delta.sum(axis=(0, 2, 3))
        ops = cudnn_ops(x)
        dw = ops and ops.conv_backward_filter(x, delta, self.weights.shape, self.stride,
                                              self.padding, self.groups,
                                              what=f"layer {self.index} conv wgrad")
        if dw is None:
            dw = conv_backward_filter(x, delta, self.size, self.stride, self.padding, self.groups)
        self.weight_updates += dw
        if net.delta is not None:
            dx = ops and ops.conv_backward_data(delta, self.weights, x.shape, self.stride,
                                                self.padding, self.groups,
                                                what=f"layer {self.index} conv dgrad")
            if dx is None:
                dx = conv_backward_data(delta, self.weights, x.shape, self.stride, self.padding,
                                        self.groups)
            net.delta += dx.reshape(net.delta.shape)

    def update(self, args):
        self.apply_update("biases", args, decay=False)
        if self.batch_normalize:
            self.apply_update("scales", args, decay=False)
        self.apply_update("weights", args, decay=True)

    def weight_record(self):
        if self.batch_normalize:
            return ("biases", "scales", "rolling_mean", "rolling_variance", "weights")
        return ("biases", "weights")

    def bflops(self):
        return (2.0 * self.n * self.size * self.size * (self.c // self.groups)
                * self.out_h * self.out_w) / 1e9

    def describe(self):
        return (f"conv  {self.n:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}  {self.bflops():5.3f} BFLOPs")
