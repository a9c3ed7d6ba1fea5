"""AlexeyAB's ``[local_avgpool]`` (ab:src/maxpool_layer.c forward_local_avgpool_layer, parsed by
ab:src/parser.c parse_local_avgpool): ``[maxpool]``'s window, padding and shape rule
(maxpool.py), averaging instead of taking the maximum.

Each output is the mean of the window's taps that fall inside the input (padded taps are not
counted: AB's ``counter``, cuDNN's AVERAGE_COUNT_EXCLUDE_PADDING in its cudnn setup).  The
backward is that mean's exact gradient: each valid tap gets delta / (the window's count).
AlexeyAB's own backwards are not: its CPU one divides by size*size, its GPU kernel averages the
deltas of the neighbouring outputs (docs/notes.md).
"""

from ..backend import xp_of
from ...errors import CfgError
from .base import Shape
from .maxpool import MaxpoolLayer


class LocalAvgpoolLayer(MaxpoolLayer):
    type = "local_avgpool"
    cfg_keys = frozenset("stride size padding stride_x stride_y".split())
    unsupported = {}

    @classmethod
    def output_shape(cls, sec, inp, refs):
        size, sx, sy = cls.window(sec)
        padding = sec.int("padding", size - 1, minimum=0)
        shape = Shape(inp.c, (inp.h + padding - size) // sy + 1, (inp.w + padding - size) // sx + 1)
        if shape.h < 1 or shape.w < 1:
            raise CfgError(f"size={size} in [{sec.name}] does not fit the {inp.w}x{inp.h} input: "
                           "the output would be empty", sec.path, sec.line_of("size"))
        # a window with no tap inside the input has nothing to average (AB divides by 0)
        off = padding // 2
        if off >= size or (shape.w - 1) * sx - off >= inp.w or (shape.h - 1) * sy - off >= inp.h:
            raise CfgError(f"padding={padding} in [{sec.name}] puts whole {size}x{size} windows "
                           f"outside the {inp.w}x{inp.h} input (nothing to average): use a "
                           f"padding below {size}", sec.path, sec.line_of("padding"))
        return shape

    @classmethod
    def window(cls, sec):
        stride = sec.int("stride", 1, minimum=1)
        return (sec.int("size", stride, minimum=1), sec.int("stride_x", stride, minimum=1),
                sec.int("stride_y", stride, minimum=1))

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.size, layer.stride_x, layer.stride_y = cls.window(section)
        layer.stride = section.int("stride", 1)
        layer.padding = section.int("padding", layer.size - 1)
        layer.depth = False
        return layer

    def _counts(self, x):
        """(OH, OW): how many taps of each window fall inside the input."""
        xp = xp_of(x)
        ones = xp.ones((1, 1, self.h, self.w), dtype=x.dtype)
        return self._windows(ones, 0).sum(axis=2)[0, 0]

    def forward(self, net):
        x = self.input_image(net.input)
        self.counts = self._counts(x)
        self.output = self._windows(x, 0).sum(axis=2) / self.counts

    def backward(self, net):
        if net.delta is None:
            return
        n = self.delta.shape[0]
        share = self.delta / self.counts
        self._scatter(net.delta.reshape(n, self.c, self.h, self.w), lambda tap: share)

    def describe(self):
        stride = f"{self.stride_x}" if self.stride_x == self.stride_y else \
            f"{self.stride_x}x{self.stride_y}"
        return (f"avg          {self.size} x {self.size} / {stride}  "
                f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")

