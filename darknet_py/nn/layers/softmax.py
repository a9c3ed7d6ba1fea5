"""``[softmax]`` (pj:src/softmax_layer.c) with Darknet's fused cross-entropy loss.

Each of ``groups`` contiguous chunks: p = exp(x/T - max/T) / sum.  ``spatial=1``: softmax over
channels at each pixel.  With a truth t: cost = sum over t != 0 of -log p, delta = t - p (the
softmax Jacobian is folded in, as in Darknet).
"""

from ..backend import xp_of
from ...errors import CfgError, NotSupportedError
from .base import Layer


class SoftmaxLayer(Layer):
    type = "softmax"
    cfg_keys = frozenset("groups temperature spatial noloss tree".split())

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        layer.groups = section.int("groups", 1, minimum=1)
        layer.temperature = section.float("temperature", 1.0)
        layer.spatial = section.bool("spatial")
        layer.noloss = section.bool("noloss")
        if section.str("tree") is not None:
            raise NotSupportedError(f"[{section.name}] tree= (hierarchical softmax) is not "
                                    "supported by darknet_py", section.path, section.line_of("tree"))
        if layer.inputs % layer.groups:
            raise CfgError(f"[{section.name}] groups={layer.groups} must divide the "
                           f"{layer.inputs} inputs", section.path, section.line_of("groups"))
        if layer.temperature <= 0:
            raise CfgError(f"[{section.name}] temperature must be > 0", section.path,
                           section.line_of("temperature"))
        if layer.spatial:
            layer.out_c, layer.out_h, layer.out_w = layer.c, layer.h, layer.w
        else:
            layer.out_c, layer.out_h, layer.out_w = layer.inputs, 1, 1
            layer.flat = True
        layer.cost = 0.0
        return layer

    def forward(self, net):
        xp = xp_of(net.input)
        n = net.input.shape[0]
        if self.spatial:
            z = net.input.reshape(n, self.c, self.h, self.w) / self.temperature
            axis = 1
        else:
            z = net.input.reshape(n, self.groups, self.inputs // self.groups) / self.temperature
            axis = 2
        e = xp.exp(z - z.max(axis=axis, keepdims=True))
        p = e / e.sum(axis=axis, keepdims=True)
        self.output = p.reshape(n, self.out_c, self.out_h, self.out_w)
        self.cost = 0.0
        if net.truth is not None and not self.noloss:
            t = self.truth_for(net, self.output.shape)
            hit = t != 0
            self.cost = float(-(xp.log(xp.where(hit, self.output, 1))).sum())
            self.delta = t - self.output

    def backward(self, net):
        if net.delta is not None:
            net.delta += self.delta.reshape(net.delta.shape)

    def describe(self):
        return f"softmax                                        {self.inputs:4d}"
