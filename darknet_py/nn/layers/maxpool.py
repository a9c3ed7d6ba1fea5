"""``[maxpool]`` (pj:src/maxpool_layer.c).

``padding`` (default size-1) is the *total* padding; the window of output (i, j) starts at
input (i*stride - padding//2, j*stride - padding//2); padded taps never win (-inf).
out = (w + padding - size) // stride + 1.  Backward routes delta to each window's argmax.
"""

from .. import kernels
from ..backend import on_gpu, xp_of
from ...errors import CfgError
from .base import Layer


class MaxpoolLayer(Layer):
    type = "maxpool"
    cfg_keys = frozenset("stride size padding".split())
    needs_image = True

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        layer.stride = section.int("stride", 1, minimum=1)
        layer.size = section.int("size", layer.stride, minimum=1)
        layer.padding = section.int("padding", layer.size - 1, minimum=0)
        layer.out_c = layer.c
        layer.out_h = (layer.h + layer.padding - layer.size) // layer.stride + 1
        layer.out_w = (layer.w + layer.padding - layer.size) // layer.stride + 1
        if layer.out_h < 1 or layer.out_w < 1:
            raise CfgError(f"[{section.name}] size={layer.size} does not fit the "
                           f"{layer.w}x{layer.h} input", section.path, section.line)
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
