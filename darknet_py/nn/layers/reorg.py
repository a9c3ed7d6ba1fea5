"""``[reorg]`` (pj:src/reorg_layer.c, blas.c reorg_cpu) and AlexeyAB's ``[reorg3d]``.

pj's reorg is NOT a plain space-to-depth.  For stride s the flat input is reinterpreted as
(B, C/s^2, H*s, W*s) and scattered so that the output, read as (B, C*s^2, H/s, W/s), is::

    x.reshape(B, C//s**2, H, s, W, s).transpose(0, 3, 5, 1, 2, 4)

(YOLOv2 weights were trained with this mapping).  ``reverse=1`` is the inverse mapping.
``[reorg3d]`` is the clean space-to-depth: out[b, (dy*s+dx)*C + c, j, i] = in[b, c, j*s+dy, i*s+dx].
Backward is the exact inverse permutation, added into the previous delta.
"""

from ...errors import CfgError, NotSupportedError
from .base import Layer


class ReorgLayer(Layer):
    type = "reorg"
    cfg_keys = frozenset("stride reverse flatten extra".split())
    needs_image = True

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        s = layer.stride = section.int("stride", 1, minimum=1)
        layer.reverse = section.bool("reverse")
        for key in ("flatten", "extra"):
            if section.int(key, 0):
                raise NotSupportedError(f"[{section.name}] {key}= is not supported by darknet_py",
                                        section.path, section.line_of(key))
        c, h, w = ctx.shape
        if layer.reverse:
            if c % (s * s):
                raise CfgError(f"[{section.name}] reverse reorg needs channels ({c}) divisible "
                               f"by stride^2={s * s}", section.path, section.line_of("stride"))
            layer.out_c, layer.out_h, layer.out_w = c // (s * s), h * s, w * s
        else:
            if h % s or w % s:
                raise CfgError(f"[{section.name}] stride={s} must divide the {w}x{h} input",
                               section.path, section.line_of("stride"))
            if cls.type == "reorg" and c % (s * s):
                raise CfgError(f"[{section.name}] Darknet's reorg reads the input as "
                               f"channels/stride^2 planes: channels ({c}) must be divisible by "
                               f"{s * s} (use [reorg3d] for a plain space-to-depth)",
                               section.path, section.line_of("stride"))
            layer.out_c, layer.out_h, layer.out_w = c * s * s, h // s, w // s
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

    def _forward_map(self, x, n, inverse):
        s = self.stride
        if self.type == "reorg3d":
            big = (self.c, self.h, self.w) if not self.reverse else self.out_shape
        else:
            # pj reinterprets the input as (C/s^2, H*s, W*s)
            big = (self.c // (s * s), self.h * s, self.w * s) if not self.reverse else \
                self.out_shape
        deep = self.reverse == inverse      # does this call go small -> deep ?
        return (self._to_deep if deep else self._to_shallow)(x, n, *big)

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
