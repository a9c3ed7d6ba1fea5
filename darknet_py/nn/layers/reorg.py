"""``[reorg]`` (pj:src/reorg_layer.c, blas.c reorg_cpu) and AlexeyAB's ``[reorg3d]``.

pj's reorg is NOT a plain space-to-depth.  For stride s the flat input is reinterpreted as
(B, C/s^2, H*s, W*s) and scattered so that the output, read as (B, C*s^2, H/s, W/s), is::

    x.reshape(B, C//s**2, H, s, W, s).transpose(0, 3, 5, 1, 2, 4)

(YOLOv2 weights were trained with this mapping).  ``reverse=1`` is the inverse mapping.
``[reorg3d]`` is the clean space-to-depth: out[b, (dy*s+dx)*C + c, j, i] = in[b, c, j*s+dy, i*s+dx].
Backward is the exact inverse permutation, added into the previous delta.
"""

from fractions import Fraction

from ...errors import CfgError
from .base import Layer, Shape


class ReorgLayer(Layer):
    capturable = True
    type = "reorg"
    cfg_keys = frozenset("stride reverse flatten extra".split())
    needs_image = True

    unsupported = {"flatten": (0, ""), "extra": (0, "")}

    @classmethod
    def output_shape(cls, sec, inp, refs):
        s = sec.int("stride", 1, minimum=1)
        c, h, w = inp.c, inp.h, inp.w
        if cls.type == "reorg" and sec.int("extra", 0):    # pj: a flat output with extra values
            return Shape(inp.size + sec.int("extra", 0), 1, 1, True)
        if sec.bool("reverse"):
            if c % (s * s):
                raise CfgError(f"reverse [{sec.name}] with stride={s} needs channels ({c}) "
                               f"divisible by stride*stride={s * s}", sec.path,
                               sec.line_of("stride"))
            return Shape(c // (s * s), h * s, w * s)
        if h % s or w % s:
            raise CfgError(f"stride={s} in [{sec.name}] must divide the {w}x{h} input (a net "
                           "width/height that is a multiple of the total stride avoids this)",
                           sec.path, sec.line_of("stride"))
        if cls.type == "reorg" and c % (s * s):
            raise CfgError(f"[{sec.name}] with stride={s}: Darknet's reorg reads the input as "
                           f"channels/{s * s} planes, so channels ({c}) must be divisible by "
                           f"{s * s} (use [reorg3d] for a plain space-to-depth)", sec.path,
                           sec.line_of("stride"))
        return Shape(c * s * s, h // s, w // s)

    @classmethod
    def window(cls, sec):
        s = sec.int("stride", 1, minimum=1)
        return (1, Fraction(1, s), Fraction(1, s)) if sec.bool("reverse") else (s, s, s)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.stride = section.int("stride", 1)
        layer.reverse = section.bool("reverse")
        return layer

    # pj mapping on the small side (C', H, W) = the side with fewer channels
    def _to_deep(self, x, n, c_small, h_big, w_big):
        s = self.stride
        return (x.reshape(n, c_small, h_big // s, s, w_big // s, s)
                .transpose(0, 3, 5, 1, 2, 4).reshape(n, -1))

    def _to_shallow(self, y, n, c_small, h_big, w_big):
        s = self.stride
        return (y.reshape(n, s, s, c_small, h_big // s, w_big // s)
                .transpose(0, 3, 4, 1, 5, 2).reshape(n, -1))

    def big_shape(self):
        """The (C', H, W) that the mapping reads on its side of fewer channels."""
        s = self.stride
        if self.reverse:
            return self.out_shape
        if self.type == "reorg3d":
            return (self.c, self.h, self.w)
        return (self.c // (s * s), self.h * s, self.w * s)  # pj reinterprets the input so

    def _forward_map(self, x, n, inverse):
        deep = self.reverse == inverse      # does this call go small -> deep ?
        return (self._to_deep if deep else self._to_shallow)(x, n, *self.big_shape())

    def forward(self, net):
        n = net.input.shape[0]
        out = self._forward_map(net.input.reshape(n, -1), n, inverse=False)
        self.output = out.reshape(n, self.out_c, self.out_h, self.out_w)

    def backward(self, net):
        if net.delta is None:
            return
        n = self.delta.shape[0]
        back = self._forward_map(self.delta.reshape(n, -1), n, inverse=True)
        net.delta += back.reshape(net.delta.shape)

    def describe(self):
        return (f"reorg              / {self.stride:2d}  {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")


class Reorg3dLayer(ReorgLayer):
    type = "reorg3d"
