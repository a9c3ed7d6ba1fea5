"""``[maxpool]`` (pj:src/maxpool_layer.c, ab:src/maxpool_layer.c).

``padding`` (default size-1) is the *total* padding; the window of output (i, j) starts at
input (i*stride_y - padding//2, j*stride_x - padding//2); padded taps never win (-inf).
out = (w + padding - size) // stride_x + 1 (h with stride_y); AlexeyAB's ``stride_x`` and
``stride_y`` default to ``stride``.  Backward routes delta to each window's argmax (the first
maximum).

AlexeyAB's ``maxpool_depth=1``: a max over channels instead, out_channels maps of the input's
size, map g the max of input channels g, g + out_channels, g + 2 out_channels, ... (ab
forward_maxpool_layer; the first maximum wins).

On the GPU (float32 CuPy arrays) a kernel: a block per (plane, chunk) -- a plane is one image's
channel, indexed within in 32 bits -- a thread per output, the window as above, the input index
of the maximum saved for the backward, which adds delta there (atomicAdd: overlapping windows
may share a maximum).
"""

import numpy as np

from ..backend import on_gpu, xp_of
from ..kernels import _grid, _kernel, _plane_grid
from ...errors import CfgError
from .base import Layer, Shape

_MAXPOOL_FWD = r"""
extern "C" __global__
void maxpool_forward(const float* x, float* y, int* idx, int c, int h, int w, int oh, int ow,
                     int size, int stride, int off, int stride_y)
{
    // block (plane, chunk): a plane is one image's channel (b * c + channel), indexed within
    // in 32 bits (no 64-bit division per output)
    long long plane = blockIdx.x;
    const float* xp = x + plane * h * w;
    for (int p = blockIdx.y * blockDim.x + threadIdx.x; p < oh * ow;
         p += gridDim.y * blockDim.x) {
        int i = p / ow, j = p - (p / ow) * ow;
        float best = __int_as_float(0xff800000);   // -inf (NVRTC has no math.h)
        int best_at = -1;
        for (int ky = 0; ky < size; ++ky) {
            int yy = i * stride_y - off + ky;
            for (int kx = 0; kx < size; ++kx) {
                int xx = j * stride - off + kx;
                if (yy >= 0 && yy < h && xx >= 0 && xx < w) {
                    float v = xp[yy * w + xx];
                    if (best_at < 0 || v > best) { best = v; best_at = yy * w + xx; }
                }
            }
        }
        long long id = plane * oh * ow + p;
        y[id] = best;
        if (idx) idx[id] = best_at < 0 ? -1 : (int)(plane * h * w + best_at);
    }
}
"""

_MAXPOOL_BWD = r"""
extern "C" __global__
void maxpool_backward(const float* dy, const int* idx, float* dx, long long n_out)
{
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (id >= n_out) return;
    int at = idx[id];
    if (at >= 0) atomicAdd(dx + at, dy[id]);
}
"""


def maxpool_forward(x, layer, keep_indexes=True):
    """(output, argmax indexes) for a float32 CuPy input (N, C, H, W); the indexes are for the
    backward only: None without ``keep_indexes`` (inference; as many bytes again as the output
    not written)."""
    import cupy
    x = cupy.ascontiguousarray(x, dtype=cupy.float32)
    n = x.shape[0]
    y = cupy.empty((n, layer.c, layer.out_h, layer.out_w), dtype=cupy.float32)
    idx = cupy.empty(y.shape, dtype=cupy.int32) if keep_indexes else None
    grid, block = _plane_grid(n * layer.c, layer.out_h * layer.out_w)
    _kernel("maxpool_forward", _MAXPOOL_FWD)(
        grid, block, (x, y, np.uint64(0) if idx is None else idx,
                      cupy.int32(layer.c), cupy.int32(layer.h), cupy.int32(layer.w),
                      cupy.int32(layer.out_h), cupy.int32(layer.out_w),
                      cupy.int32(layer.size), cupy.int32(layer.stride_x),
                      cupy.int32(layer.padding // 2), cupy.int32(layer.stride_y)))
    return y, idx


def maxpool_backward(delta, idx, dx):
    """dx[argmax] += delta, in place (dx is the previous layer's delta, contiguous)."""
    import cupy
    delta = cupy.ascontiguousarray(delta, dtype=cupy.float32)
    grid, block = _grid(delta.size)
    _kernel("maxpool_backward", _MAXPOOL_BWD)(grid, block,
                                               (delta, idx, dx, cupy.int64(delta.size)))


class MaxpoolLayer(Layer):
    capturable = True
    type = "maxpool"
    needs_image = True

    cfg_keys = frozenset("stride size padding stride_x stride_y maxpool_depth "
                         "out_channels".split())
    unsupported = {"antialiasing": (0, "AlexeyAB"), "maxpool_zero_nonmax": (0, "AlexeyAB")}

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
        layer.stride_x = section.int("stride_x", layer.stride)
        layer.stride_y = section.int("stride_y", layer.stride)
        layer.size = section.int("size", layer.stride)
        layer.padding = section.int("padding", layer.size - 1)
        layer.depth = section.bool("maxpool_depth")
        section.int("out_channels", 1)
        return layer

    def _windows(self, x, fill=float("-inf")):
        """(N, C, size*size, OH, OW) view of the input padded with ``fill``."""
        xp = xp_of(x)
        sx, sy, k, off = self.stride_x, self.stride_y, self.size, self.padding // 2
        need_h = (self.out_h - 1) * sy + k
        need_w = (self.out_w - 1) * sx + k
        padded = xp.full((*x.shape[:2], need_h + off, need_w + off), fill,
                         dtype=x.dtype)
        hh, ww = min(self.h, need_h - off), min(self.w, need_w - off)
        padded[:, :, off:off + hh, off:off + ww] = x[:, :, :hh, :ww]
        taps = [padded[:, :, ky:ky + sy * self.out_h:sy, kx:kx + sx * self.out_w:sx]
                for ky in range(k) for kx in range(k)]
        return xp.stack(taps, axis=2)

    def _depth_groups(self, x):
        """(N, T, out_c, H, W): channel g + t*out_c at [:, t, g], -inf past the last one."""
        xp = xp_of(x)
        t = -(-self.c // self.out_c)
        padded = xp.full((x.shape[0], t * self.out_c, self.h, self.w), -xp.inf, dtype=x.dtype)
        padded[:, :self.c] = x
        return padded.reshape(x.shape[0], t, self.out_c, self.h, self.w)

    def forward(self, net):
        x = self.input_image(net.input)
        self.gpu_indexes = None
        if self.depth:
            groups = self._depth_groups(x)
            self.indexes = groups.argmax(axis=1)
            self.output = groups.max(axis=1)
            return
        if on_gpu(x) and x.dtype == "float32":
            self.output, self.gpu_indexes = maxpool_forward(x, self, net.train)
            return
        win = self._windows(x)
        self.indexes = win.argmax(axis=2)
        self.output = win.max(axis=2)

    def backward(self, net):
        if net.delta is None:
            return
        if self.gpu_indexes is not None and net.delta.flags.c_contiguous:
            maxpool_backward(self.delta, self.gpu_indexes, net.delta)
            return
        xp = xp_of(self.delta)
        n = self.delta.shape[0]
        dx = net.delta.reshape(n, self.c, self.h, self.w)
        if self.depth:
            t = -(-self.c // self.out_c)
            grad = (xp.arange(t).reshape(1, t, 1, 1, 1) == self.indexes[:, None]) \
                * self.delta[:, None]
            dx += grad.reshape(n, t * self.out_c, self.h, self.w)[:, :self.c]
            return
        self._scatter(dx, lambda tap: self.delta * (self.indexes == tap))

    def _scatter(self, dx, tap_delta):
        """Add ``tap_delta(t)`` (N, C, OH, OW), the delta of window tap t = ky*size + kx, into
        ``dx`` (N, C, H, W) at the input pixels the taps read (padded taps are dropped)."""
        xp = xp_of(dx)
        n = dx.shape[0]
        sx, sy, k, off = self.stride_x, self.stride_y, self.size, self.padding // 2
        grad = xp.zeros((n, self.c, (self.out_h - 1) * sy + k + off,
                         (self.out_w - 1) * sx + k + off), dtype=dx.dtype)
        for ky in range(k):
            for kx in range(k):
                grad[:, :, ky:ky + sy * self.out_h:sy, kx:kx + sx * self.out_w:sx] += \
                    tap_delta(ky * k + kx)
        hh, ww = min(self.h, grad.shape[2] - off), min(self.w, grad.shape[3] - off)
        dx[:, :, :hh, :ww] += grad[:, :, off:off + hh, off:off + ww]

    def describe(self):
        if self.depth:
            return (f"max-depth    1 x 1 / 1  {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                    f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
        stride = f"{self.stride_x}" if self.stride_x == self.stride_y else \
            f"{self.stride_x}x{self.stride_y}"
        return (f"max          {self.size} x {self.size} / {stride}  "
                f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
