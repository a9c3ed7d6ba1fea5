"""Batch normalization: the functions conv/connected call, and the standalone ``[batchnorm]``.

ONE formula on every backend, cuDNN's SPATIAL mode (pj forward_batchnorm_layer_gpu with cuDNN,
what real Darknet training used):

* statistics per channel over (N, H, W); a connected layer is (N, C, 1, 1), where SPATIAL and
  PER_ACTIVATION reduce over the same N values, so they coincide;
* training:  mu = mean(x),  var = biased mean((x - mu)^2),  x_hat = (x - mu) / sqrt(var + 1e-5),
  rolling_mean = 0.99 rolling_mean + 0.01 mu,
  rolling_variance = 0.99 rolling_variance + 0.01 var * N/(N-1)   (unbiased, as cuDNN);
* inference: x_hat = (x - rolling_mean) / sqrt(rolling_variance + 1e-5);
* y = scales * x_hat + biases  (``biases`` is BN's beta; there is no separate conv bias).

Darknet's CPU path differs slightly (unbiased variance and sqrt(var) + 1e-6): see docs/notes.md.
The backward only *computes* ``scale_updates += sum(delta * x_hat)`` and
``bias_updates += sum(delta)`` (negative gradients, Darknet's sign); the layer's ``update`` is
what changes ``scales`` and ``biases``.
"""

from ..backend import cudnn_ops, xp_of
from .base import Layer

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.01      # cuDNN's exponentialAverageFactor as Darknet passes it

_AXES = (0, 2, 3)


def _c(v):
    """A per-channel vector as (1, C, 1, 1) for broadcasting over NCHW."""
    return v.reshape(1, -1, 1, 1)


def batchnorm_forward(layer, x, train):
    """Normalise x (N, C, H, W) with ``layer``'s statistics; returns scales*x_hat + biases.

    On CuPy arrays this is cuDNN's batch norm (through ``darknet_py.nn.cudnn``); elsewhere, or when
    cuDNN has no engine for the shape, the same formula in xp.
    """
    xp = xp_of(x)
    ops = cudnn_ops(x)
    layer.bn_train = train
    layer.bn_input = x
    if train:
        got = ops and ops.batchnorm_train(x, layer.scales, layer.biases, layer.rolling_mean,
                                          layer.rolling_variance, BN_EPSILON, BN_MOMENTUM,
                                          what=f"layer {layer.index} batchnorm forward")
        if got is not None:
            y, layer.mean, layer.inv_std = got
            return y
        n = x.size // x.shape[1]
        mean = x.mean(axis=_AXES)
        centered = x - _c(mean)
        var = (centered * centered).mean(axis=_AXES)
        inv_std = 1 / xp.sqrt(var + BN_EPSILON)
        layer.rolling_mean *= 1 - BN_MOMENTUM
        layer.rolling_mean += BN_MOMENTUM * mean
        layer.rolling_variance *= 1 - BN_MOMENTUM
        layer.rolling_variance += BN_MOMENTUM * var * (n / max(n - 1, 1))
        layer.mean, layer.inv_std = mean, inv_std   # cuDNN's resultSaveMean / SaveInvVariance
        return centered * _c(inv_std * layer.scales) + _c(layer.biases)
    mean, scale, shift = inference_terms(layer, x)
    y = ops and ops.batchnorm_inference(x, layer.rolling_mean, layer.inv_std, layer.scales,
                                        layer.biases,
                                        what=f"layer {layer.index} batchnorm inference")
    if y is None:
        y = (x - _c(mean)) * _c(scale) + _c(shift)
    return y


def inference_terms(layer, x):
    """Inference BN as y = (x - mean) * scale + shift per channel: (rolling_mean,
    scales / sqrt(rolling_variance + eps), biases); records what a backward would need."""
    xp = xp_of(x)
    layer.bn_train = False
    layer.bn_input = x
    layer.mean = layer.rolling_mean
    layer.inv_std = 1 / xp.sqrt(layer.rolling_variance + BN_EPSILON)
    return layer.mean, layer.inv_std * layer.scales, layer.biases


def normalized_input(layer):
    """x_hat = (x - mean) * inv_std, from what the forward pass kept."""
    return (layer.bn_input - _c(layer.mean)) * _c(layer.inv_std)


def batchnorm_backward(layer, delta):
    """Given delta wrt the BN output, accumulate scale/bias updates and return delta wrt x.

    With g = scales * delta and N values per channel (training statistics)::

        dx = inv_std / N * (N g - sum(g) - x_hat * sum(g * x_hat))

    In inference mode the statistics are constants: dx = g * inv_std.
    cuDNN's backward computes the same three results; its dscale/dbias are *added* here.
    """
    ops = cudnn_ops(delta)
    if layer.bn_train:
        got = ops and ops.batchnorm_backward(delta, layer.bn_input, layer.scales, layer.mean,
                                             layer.inv_std,
                                             what=f"layer {layer.index} batchnorm backward")
        if got is not None:
            dx, dscale, dbias = got
            layer.scale_updates += dscale
            layer.bias_updates += dbias
            return dx
    x_norm = normalized_input(layer)
    layer.bias_updates += delta.sum(axis=_AXES)
    layer.scale_updates += (delta * x_norm).sum(axis=_AXES)
    g = delta * _c(layer.scales)
    if not layer.bn_train:
        return g * _c(layer.inv_std)
    n = delta.size // delta.shape[1]
    sum_g = g.sum(axis=_AXES)
    sum_gx = (g * x_norm).sum(axis=_AXES)
    return _c(layer.inv_std / n) * (n * g - _c(sum_g) - x_norm * _c(sum_gx))


def init_batchnorm(layer, n, xp):
    """Darknet's initial BN arrays: scales 1, biases 0, rolling mean 0, rolling variance 0."""
    layer.scales = xp.ones(n, dtype="float32")
    layer.scale_updates = xp.zeros(n, dtype="float32")
    layer.rolling_mean = xp.zeros(n, dtype="float32")
    layer.rolling_variance = xp.zeros(n, dtype="float32")


class BatchnormLayer(Layer):
    """``[batchnorm]``: BN anywhere in the net, e.g. after an activation.

    Darknet's pj version segfaults on the CPU and never trains; this is AlexeyAB's working one:
    biases and scales are updated with momentum and no decay, and the weights record is
    ``biases, scales, rolling_mean, rolling_variance`` (ab's format, not pj's 3-array one).
    """
    capturable = True

    type = "batchnorm"
    cfg_keys = frozenset()                # no keys of its own
    params = ("scales", "biases")

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        xp = ctx.xp
        layer.biases = xp.zeros(layer.out_c, dtype="float32")
        layer.bias_updates = xp.zeros(layer.out_c, dtype="float32")
        init_batchnorm(layer, layer.out_c, xp)
        return layer

    def forward(self, net):
        x = net.input.reshape(net.input.shape[0], self.out_c, self.out_h, self.out_w)
        self.output = batchnorm_forward(self, x, net.train)

    def backward(self, net):
        dx = batchnorm_backward(self, self.delta)
        if net.delta is not None:
            net.delta += dx.reshape(net.delta.shape)

    def update(self, args):
        self.apply_update("biases", args, decay=False)
        self.apply_update("scales", args, decay=False)

    def weight_record(self):
        return ("biases", "scales", "rolling_mean", "rolling_variance")

    def describe(self):
        return (f"batchnorm                {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
