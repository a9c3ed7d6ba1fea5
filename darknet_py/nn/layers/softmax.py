"""``[softmax]`` (pj:src/softmax_layer.c) with Darknet's fused cross-entropy loss.

Each of ``groups`` contiguous chunks: p = exp(x/T - max/T) / sum.  ``spatial=1``: softmax over
channels at each pixel.  With a truth t: cost = sum over t != 0 of -log p, delta = t - p (the
softmax Jacobian is folded in, as in Darknet).
"""

from ..backend import xp_of
from ...errors import CfgError
from .base import Layer, Shape


class SoftmaxLayer(Layer):
    capturable = True
    type = "softmax"
    cfg_keys = frozenset("groups temperature spatial noloss tree".split())

    unsupported = {"tree": (None, "hierarchical softmax")}

    @classmethod
    def output_shape(cls, sec, inp, refs):
        groups = sec.int("groups", 1, minimum=1)
        temperature = sec.float("temperature", 1.0)
        if temperature <= 0:
            raise CfgError(f"temperature={sec.str('temperature')} in [{sec.name}] must be > 0",
                           sec.path, sec.line_of("temperature"))
        if inp.size % groups:
            raise CfgError(f"groups={groups} in [{sec.name}] must divide its {inp.size} inputs",
                           sec.path, sec.line_of("groups"))
        if sec.bool("spatial"):
            return inp
        return Shape(inp.size, 1, 1, True)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.groups = section.int("groups", 1)
        layer.temperature = section.float("temperature", 1.0)
        layer.spatial = section.bool("spatial")
        layer.noloss = section.bool("noloss")
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
            self.cost = -(xp.log(xp.where(hit, self.output, 1))).sum()    # read when asked
            self.delta = t - self.output

    def backward(self, net):
        if net.delta is not None:
            net.delta += self.delta.reshape(net.delta.shape)

    def describe(self):
        return f"softmax                                        {self.inputs:4d}"
