"""``[upsample]`` (pj:src/upsample_layer.c).

stride s > 0: nearest neighbour, out[b,k,y,x] = scale * in[b,k,y//s,x//s]; backward sums each
s x s block.  stride s < 0: a "downsample", out = scale * (sum over each |s| x |s| block) -- a
sum, not an average, as in Darknet; backward spreads scale * delta over the block.
"""

from fractions import Fraction

from ...errors import CfgError
from .base import Layer, Shape


class UpsampleLayer(Layer):
    capturable = True
    type = "upsample"
    cfg_keys = frozenset("stride scale".split())
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        stride = sec.int("stride", 2)
        if stride == 0:
            raise CfgError(f"stride=0 in [{sec.name}]: use stride=2 (or a negative stride to "
                           "downsample)", sec.path, sec.line_of("stride"))
        s = abs(stride)
        if stride > 0:
            return Shape(inp.c, inp.h * s, inp.w * s)
        if inp.h < s or inp.w < s:
            raise CfgError(f"stride={stride} in [{sec.name}] is larger than the {inp.w}x{inp.h} "
                           "input", sec.path, sec.line_of("stride"))
        return Shape(inp.c, inp.h // s, inp.w // s)

    @classmethod
    def window(cls, sec):
        stride = sec.int("stride", 2)
        s = abs(stride) or 1
        return (s, s, s) if stride < 0 else (1, Fraction(1, s), Fraction(1, s))

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.stride = section.int("stride", 2)
        layer.scale = section.float("scale", 1.0)
        layer.reverse = layer.stride < 0
        return layer

    def _blocks(self, a, h, w):
        s = abs(self.stride)
        return a[:, :, :h * s, :w * s].reshape(a.shape[0], self.c, h, s, w, s)

    def forward(self, net):
        x = self.input_image(net.input)
        s = abs(self.stride)
        if self.reverse:
            self.output = self.scale * self._blocks(x, self.out_h, self.out_w).sum(axis=(3, 5))
            return
        # each value to its s x s block in one pass (x * 1.0 is x: no product then)
        n = x.shape[0]
        out = net.xp.empty((n, self.c, self.h, s, self.w, s), dtype=x.dtype)
        blocks = x[:, :, :, None, :, None]
        if self.scale == 1:
            out[...] = blocks
        else:
            net.xp.multiply(blocks, self.scale, out=out)
        self.output = out.reshape(n, self.out_c, self.out_h, self.out_w)

    def backward(self, net):
        if net.delta is None:
            return
        n = self.delta.shape[0]
        dx = net.delta.reshape(n, self.c, self.h, self.w)
        if self.reverse:
            blocks = self._blocks(dx, self.out_h, self.out_w)
            blocks += self.scale * self.delta[:, :, :, None, :, None]
        else:
            dx += self.scale * self._blocks(self.delta, self.h, self.w).sum(axis=(3, 5))

    def describe(self):
        word = "downsample" if self.reverse else "upsample"
        return (f"{word:<18s} {abs(self.stride):2d}x  {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
