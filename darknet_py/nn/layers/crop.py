"""``[crop]`` (pj:src/crop_layer.c, CPU semantics).

Training: one random offset (and, with ``flip=1``, one random horizontal flip) for the whole batch;
inference: the centred crop, no flip.  Values become ``2x - 1`` unless ``noadjust=1``.
No gradient flows through it (Darknet gives it no delta).
"""

from ...errors import CfgError
from .base import Layer, Shape


class CropLayer(Layer):
    type = "crop"
    cfg_keys = frozenset("crop_height crop_width flip angle saturation exposure shift noadjust".split())
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        ch = sec.int("crop_height", 1, minimum=1)
        cw = sec.int("crop_width", 1, minimum=1)
        if ch > inp.h or cw > inp.w:
            raise CfgError(f"[{sec.name}] crop {cw}x{ch} is larger than its {inp.w}x{inp.h} "
                           "input", sec.path, sec.line)
        return Shape(inp.c, ch, cw)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.flip = section.bool("flip")
        # The GPU-only jitter options are read so they are not reported as unused.
        layer.angle = section.float("angle", 0.0)
        layer.saturation = section.float("saturation", 1.0)
        layer.exposure = section.float("exposure", 1.0)
        layer.shift = section.float("shift", 0.0)
        layer.noadjust = section.bool("noadjust")
        layer.rng = ctx.rng
        return layer

    def forward(self, net):
        x = self.input_image(net.input)
        if net.train:
            dh = int(self.rng.integers(0, self.h - self.out_h + 1))
            dw = int(self.rng.integers(0, self.w - self.out_w + 1))
            flip = self.flip and bool(self.rng.integers(0, 2))
        else:
            dh, dw, flip = (self.h - self.out_h) // 2, (self.w - self.out_w) // 2, False
        out = x[:, :, dh:dh + self.out_h, dw:dw + self.out_w]
        if flip:
            out = out[:, :, :, ::-1]
        scale, trans = (1.0, 0.0) if self.noadjust else (2.0, -1.0)
        self.output = out * scale + trans

    def describe(self):
        return (f"crop                     {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
