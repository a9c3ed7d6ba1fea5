"""``[maxpool]`` (pj:src/maxpool_layer.c).

``padding`` (default size-1) is the *total* padding; the window of output (i, j) starts at
input (i*stride - padding//2, j*stride - padding//2); padded taps never win (-inf).
out = (w + padding - size) // stride + 1.  Backward routes delta to each window's argmax.
"""

from .. import kernels
from ..backend import on_gpu, xp_of
from ...errors import CfgError
from .base import Layer, Shape


class MaxpoolLayer(Layer):
    type = "maxpool"
    cfg_keys = frozenset("stride size padding".split())
    needs_image = True

    unsupported = {
        "stride_x": (None, "AlexeyAB"), "stride_y": (None, "AlexeyAB"),
        "antialiasing": (0, "AlexeyAB"), "maxpool_depth": (0, "AlexeyAB"),
        "out_channels": (None, "AlexeyAB"),
    }

    @classmethod
    def output_shape(cls, sec, inp, refs):
        size, sx, sy = cls.window(sec)
        padding = sec.int("padding", size - 1, minimum=0)
        if sec.bool("maxpool_depth"):         # ab: the max over groups of channels
            return Shape(sec.int("out_channels", 1, minimum=1), inp.h, inp.w)
        # pj make_maxpool_layer: (h + padding - size) / stride + 1
        shape = Shape(inp.c, (inp.h + padding - size) // sy + 1, (inp.w + padding - size) // sx + 1)
        if shape.h < 1 or shape.w < 1:
            raise CfgError(f"size={size} in [{sec.name}] does not fit the {inp.w}x{inp.h} input: "
                           "the output would be empty", sec.path, sec.line_of("size"))
        return shape

    @classmethod
    def window(cls, sec):
        stride = sec.int("stride", 1, minimum=1)
        sx = sec.int("stride_x", stride, minimum=1)
        sy = sec.int("stride_y", stride, minimum=1)
        if sec.bool("maxpool_depth"):
            return (1, 1, 1)
        return (sec.int("size", stride, minimum=1), sx, sy)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.stride = section.int("stride", 1)
        layer.size = section.int("size", layer.stride)
        layer.padding = section.int("padding", layer.size - 1)
        return layer

    def _windows(self, x):
        """(N, C, size*size, OH, OW) view of the -inf padded input."""
        xp = xp_of(x)
        s, k, off = self.stride, self.size, self.padding // 2
        need_h = (self.out_h - 1) * s + k
        need_w = (self.out_w - 1) * s + k
        padded = xp.full((x.shape[0], self.c, need_h + off, need_w + off), -xp.inf,
                         dtype=x.dtype)
        hh, ww = min(self.h, need_h - off), min(self.w, need_w - off)
        padded[:, :, off:off + hh, off:off + ww] = x[:, :, :hh, :ww]
        taps = [padded[:, :, ky:ky + s * self.out_h:s, kx:kx + s * self.out_w:s]
                for ky in range(k) for kx in range(k)]
        return xp.stack(taps, axis=2)

    def forward(self, net):
        x = self.input_image(net.input)
        if on_gpu(x) and x.dtype == "float32":
            self.output, self.gpu_indexes = kernels.maxpool_forward(x, self)
            return
        self.gpu_indexes = None
        win = self._windows(x)
        self.indexes = win.argmax(axis=2)
        self.output = win.max(axis=2)

    def backward(self, net):
        if net.delta is None:
            return
        if self.gpu_indexes is not None and net.delta.flags.c_contiguous:
            kernels.maxpool_backward(self.delta, self.gpu_indexes, net.delta)
            return
        xp = xp_of(self.delta)
        s, k, off = self.stride, self.size, self.padding // 2
        n = self.delta.shape[0]
        grad = xp.zeros((n, self.c, (self.out_h - 1) * s + k + off,
                         (self.out_w - 1) * s + k + off), dtype=self.delta.dtype)
        for ky in range(k):
            for kx in range(k):
                hit = self.indexes == ky * k + kx
                grad[:, :, ky:ky + s * self.out_h:s, kx:kx + s * self.out_w:s] += self.delta * hit
        hh, ww = min(self.h, grad.shape[2] - off), min(self.w, grad.shape[3] - off)
        dx = net.delta.reshape(n, self.c, self.h, self.w)
        dx[:, :, :hh, :ww] += grad[:, :, off:off + hh, off:off + ww]

    def describe(self):
        return (f"max          {self.size} x {self.size} / {self.stride}  "
                f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
