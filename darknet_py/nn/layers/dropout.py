"""``[dropout]`` (pj:src/dropout_layer.c).

Training: each value is zeroed with probability p, the rest scaled by 1/(1-p); the same mask
scales the gradient.  Inference: identity.  (Darknet works in place on the previous layer's
buffers; here the previous layer's output is left untouched, which changes nothing for the math.)
"""

from ...errors import CfgError
from .base import Layer


class DropoutLayer(Layer):
    type = "dropout"
    cfg_keys = frozenset("probability".split())

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        layer.probability = section.float("probability", 0.5, minimum=0.0)
        if layer.probability >= 1:
            raise CfgError(f"[{section.name}] probability must be below 1", section.path,
                           section.line_of("probability"))
        layer.scale = 1.0 / (1.0 - layer.probability)
        layer.out_c, layer.out_h, layer.out_w = ctx.shape
        layer.flat = ctx.flat
        layer.rng = ctx.rng
        return layer

    def forward(self, net):
        x = net.input.reshape(net.input.shape[0], self.out_c, self.out_h, self.out_w)
        if not net.train:
            self.output = x
            self.mask = None
            return
        r = net.xp.asarray(self.rng.random(x.shape, dtype="float32"))
        self.mask = (r >= self.probability).astype(x.dtype) * self.scale
        self.output = x * self.mask

    def backward(self, net):
        if net.delta is not None:
            net.delta += (self.delta * self.mask).reshape(net.delta.shape)

    def describe(self):
        return (f"dropout       p = {self.probability:.2f}               "
                f"{self.inputs:4d}  ->  {self.outputs:4d}")

