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
    def check_options(cls, sec):
        p = sec.float("probability", 0.5)
        if not 0 <= p < 1:
            raise CfgError(f"probability={sec.str('probability')} in [{sec.name}] must be in "
                           "[0, 1) (the fraction of values dropped; 1 would drop everything)",
                           sec.path, sec.line_of("probability"))

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.probability = section.float("probability", 0.5)
        layer.scale = 1.0 / (1.0 - layer.probability)
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

