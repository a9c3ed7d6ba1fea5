"""``[upsample]`` (pj:src/upsample_layer.c).

stride s > 0: nearest neighbour, out[b,k,y,x] = scale * in[b,k,y//s,x//s]; backward sums each
s x s block.  stride s < 0: a "downsample", out = scale * (sum over each |s| x |s| block) -- a
sum, not an average, as in Darknet; backward spreads scale * delta over the block.

On the GPU (float32 CuPy arrays, s > 0) a kernel each way, a block per (plane, chunk) as
maxpool's: a thread an output value forward, a thread an input value backward (its block's sum
of deltas, then times scale, added to the input's delta) -- CuPy's strided 6-d copy and sum ran
at a tenth of the memory's speed.
"""

from fractions import Fraction

import numpy as np

from ..backend import on_gpu
from ..kernels import _kernel, _plane_grid
from ...errors import CfgError
from .base import Layer, Shape

_SOURCE = r"""
extern "C" __global__
void upsample_forward(const float* x, float* y, int h, int w, int s, float scale)
{
    long long plane = blockIdx.x;
    int ow = w * s, per = h * s * ow;
    const float* xp = x + plane * h * w;
    for (int p = blockIdx.y * blockDim.x + threadIdx.x; p < per; p += gridDim.y * blockDim.x) {
        int i = p / ow, j = p - (p / ow) * ow;
        y[plane * per + p] = scale * xp[(i / s) * w + j / s];
    }
}

extern "C" __global__
void upsample_backward(const float* dy, float* dx, int h, int w, int s, float scale)
{
    long long plane = blockIdx.x;
    int ow = w * s;
    const float* d = dy + plane * h * s * ow;
    for (int p = blockIdx.y * blockDim.x + threadIdx.x; p < h * w; p += gridDim.y * blockDim.x) {
        int i = p / w, j = p - (p / w) * w;
        float sum = 0.f;
        for (int a = 0; a < s; ++a)
            for (int b = 0; b < s; ++b)
                sum += d[(i * s + a) * ow + j * s + b];
        dx[plane * h * w + p] += scale * sum;
    }
}
"""


def _gpu_ready(*arrays):
    return all(on_gpu(a) and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


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
        n = x.shape[0]
        if _gpu_ready(x) and x.size * s * s < 2 ** 31:
            self.output = net.xp.empty((n, self.out_c, self.out_h, self.out_w), np.float32)
            grid, block = _plane_grid(n * self.c, self.out_h * self.out_w)
            _kernel("upsample_forward", _SOURCE)(
                grid, block, (x, self.output, np.int32(self.h), np.int32(self.w), np.int32(s),
                              np.float32(self.scale)))
            return
        # each value to its s x s block in one pass (x * 1.0 is x: no product then)
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
        if not self.reverse and _gpu_ready(self.delta, dx):
            grid, block = _plane_grid(n * self.c, self.h * self.w)
            _kernel("upsample_backward", _SOURCE)(
                grid, block, (self.delta, dx, np.int32(self.h), np.int32(self.w),
                              np.int32(abs(self.stride)), np.float32(self.scale)))
            return
        if self.reverse:
            blocks = self._blocks(dx, self.out_h, self.out_w)
            blocks += self.scale * self.delta[:, :, :, None, :, None]
        else:
            dx += self.scale * self._blocks(self.delta, self.h, self.w).sum(axis=(3, 5))

    def describe(self):
        word = "downsample" if self.reverse else "upsample"
        return (f"{word:<18s} {abs(self.stride):2d}x  {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
