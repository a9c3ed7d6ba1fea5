"""``[cost]`` (pj:src/cost_layer.c).  ``output`` holds the per-element error, not the input.

With d = truth - input:  sse/seg/masked: err = d^2, delta = d;  L1: err = |d|, delta = sign(d);
smooth: |d| < 1 -> err = d^2, delta = d, else err = 2|d| - 1, delta = sign(d) (the sign Darknet's
GPU uses; its CPU sign is inverted).  ``masked`` ignores elements whose truth is -1234.
cost = sum(err) (no 1/2, as in Darknet); backward adds scale * delta.
"""

from .base import Layer, Shape

SECRET_NUM = -1234.0
COST_TYPES = ("sse", "seg", "masked", "smooth", "L1", "wgan")


class CostLayer(Layer):
    capturable = True
    type = "cost"
    cfg_keys = frozenset("type scale ratio noobj thresh".split())

    unsupported = {"type": (frozenset(COST_TYPES) - {"wgan"}, "")}

    @classmethod
    def output_shape(cls, sec, inp, refs):
        sec.choice("type", "sse", COST_TYPES)
        return Shape(inp.size, 1, 1, True)

    @classmethod
    def window(cls, sec):
        return None

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.cost_type = section.choice("type", "sse", COST_TYPES)
        layer.scale = section.float("scale", 1.0)
        layer.ratio = section.float("ratio", 0.0)
        layer.noobject_scale = section.float("noobj", 1.0)
        layer.thresh = section.float("thresh", 0.0)
        layer.cost = 0.0
        return layer

    def forward(self, net):
        xp = net.xp
        n = net.input.shape[0]
        y = net.input.reshape(n, self.inputs, 1, 1)
        if net.truth is None:
            self.output = xp.zeros_like(y)
            self.cost = 0.0
            return
        t = self.truth_for(net, y.shape)
        if self.cost_type == "masked":
            y = xp.where(t == SECRET_NUM, SECRET_NUM, y)
        d = t - y
        if self.cost_type == "L1":
            err, delta = xp.abs(d), xp.sign(d)
        elif self.cost_type == "smooth":
            small = xp.abs(d) < 1
            err = xp.where(small, d * d, 2 * xp.abs(d) - 1)
            delta = xp.where(small, d, xp.sign(d))
        else:
            err, delta = d * d, d
        self.output = err
        self.delta = delta
        self.cost = err.sum()           # read when asked (Layer.cost)

    def backward(self, net):
        if net.delta is not None:
            net.delta += self.scale * self.delta.reshape(net.delta.shape)

    def describe(self):
        return f"cost                                           {self.inputs:4d}"
