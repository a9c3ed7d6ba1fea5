"""``[l2norm]`` (pj:src/l2norm_layer.c): per pixel, y = x / sqrt(sum over channels of x^2).

Backward is the exact gradient, dx = (delta - y * sum_c(delta * y)) / norm (Darknet's CPU passes
delta through unchanged).  A zero vector keeps norm 1 (Darknet's GPU), not a division by zero.
"""

from .base import Layer


class L2normLayer(Layer):
    capturable = True
    type = "l2norm"
    cfg_keys = frozenset()                # no keys of its own

    @classmethod
    def from_cfg(cls, section, ctx):
        return cls.build_shape(section, ctx, cls())

    def forward(self, net):
        xp = net.xp
        x = net.input.reshape(net.input.shape[0], *self.out_shape)
        norm = xp.sqrt((x * x).sum(axis=1, keepdims=True))
        self.norm = xp.where(norm == 0, 1, norm).astype(x.dtype)
        self.output = x / self.norm

    def backward(self, net):
        if net.delta is not None:
            y = self.output
            dx = (self.delta - y * (self.delta * y).sum(axis=1, keepdims=True)) / self.norm
            net.delta += dx.reshape(net.delta.shape)

    def describe(self):
        return f"l2norm                                         {self.inputs:4d}"
