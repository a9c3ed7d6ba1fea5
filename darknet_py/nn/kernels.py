"""CuPy kernels for the layers whose xp form is slow on the GPU (compiled on first use).

maxpool: one thread per output, Darknet's window (start = i*stride - padding//2, padded taps
never win, first maximum kept), the input index of the maximum saved for the backward, which
adds delta there (atomicAdd: overlapping windows may share a maximum).
"""

_CACHE = {}

_MAXPOOL_FWD = r"""
extern "C" __global__
void maxpool_forward(const float* x, float* y, int* idx, long long n_out,
                     int c, int h, int w, int oh, int ow, int size, int stride, int off)
{
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (id >= n_out) return;
    int j = id % ow;
    int i = (id / ow) % oh;
    long long plane = id / ((long long)ow * oh);          // b * c + channel
    const float* xp = x + plane * h * w;
    float best = __int_as_float(0xff800000);   // -inf (NVRTC has no math.h)
    int best_at = -1;
    for (int ky = 0; ky < size; ++ky) {
        int yy = i * stride - off + ky;
        for (int kx = 0; kx < size; ++kx) {
            int xx = j * stride - off + kx;
            if (yy >= 0 && yy < h && xx >= 0 && xx < w) {
                float v = xp[yy * w + xx];
                if (best_at < 0 || v > best) { best = v; best_at = yy * w + xx; }
            }
        }
    }
    y[id] = best;
    idx[id] = best_at < 0 ? -1 : (int)(plane * h * w + best_at);
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


def _kernel(name, source):
    if name not in _CACHE:
        import cupy
        _CACHE[name] = cupy.RawKernel(source, name)
    return _CACHE[name]


def _grid(n, block=256):
    return ((n + block - 1) // block,), (block,)


def maxpool_forward(x, layer):
    """(output, argmax indexes) for a float32 CuPy input (N, C, H, W)."""
    import cupy
    x = cupy.ascontiguousarray(x, dtype=cupy.float32)
    n = x.shape[0]
    y = cupy.empty((n, layer.c, layer.out_h, layer.out_w), dtype=cupy.float32)
    idx = cupy.empty(y.shape, dtype=cupy.int32)
    grid, block = _grid(y.size)
    _kernel("maxpool_forward", _MAXPOOL_FWD)(
        grid, block, (x, y, idx, cupy.int64(y.size), cupy.int32(layer.c), cupy.int32(layer.h),
                      cupy.int32(layer.w), cupy.int32(layer.out_h), cupy.int32(layer.out_w),
                      cupy.int32(layer.size), cupy.int32(layer.stride),
                      cupy.int32(layer.padding // 2)))
    return y, idx


def maxpool_backward(delta, idx, dx):
    """dx[argmax] += delta, in place (dx is the previous layer's delta, contiguous)."""
    import cupy
    delta = cupy.ascontiguousarray(delta, dtype=cupy.float32)
    grid, block = _grid(delta.size)
    _kernel("maxpool_backward", _MAXPOOL_BWD)(grid, block,
                                               (delta, idx, dx, cupy.int64(delta.size)))
