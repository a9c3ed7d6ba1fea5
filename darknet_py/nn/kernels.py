"""CuPy kernels for the layers whose xp form is slow on the GPU (compiled on first use): the
conv/connected epilogue and its backward, the SGD update, the half casts and layouts, the MNIST
batch; a layer's own kernels live with the layer (maxpool.py, convkernel.py, yolokernel.py).
"""

import numpy as np

_CACHE = {}

def _kernel(name, source):
    if name not in _CACHE:
        import cupy
        _CACHE[name] = cupy.RawKernel(source, name)
    return _CACHE[name]


def _grid(n, block=256):
    return ((n + block - 1) // block,), (block,)


def _plane_grid(planes, per_plane):
    """(grid, block) of a kernel with a block per (plane, chunk of ``per_plane`` values): the
    planes along x (up to 2^31 - 1 blocks, where y stops at 65,535), a thread a value (the
    kernels loop where a plane has more than 65,535 blocks' worth)."""
    block = min(256, (per_plane + 31) // 32 * 32)
    return (planes, min((per_plane + block - 1) // block, 65535)), (block,)


# -- the conv/connected epilogue and the SGD update, fused ---------------------------------------
# Each activation as CUDA C: ACT(v) gives y from the pre-activation v; GRAD(y, x) gives dy/dx from
# the output y (and the input x for the NEEDS_INPUT ones), the same formulas as activations.py
# (pj:src/activation_kernels.cu, AlexeyAB's for relu6/swish/mish/hard_mish/gelu).
_SIG = "(0.5f * (1.f + tanhf(0.5f * ({0}))))"
_SOFTPLUS = "(fmaxf({0}, 0.f) + log1pf(expf(-fabsf({0}))))"
_ACT = {
    "linear": ("v", "1.f"),
    "logistic": (_SIG.format("v"), "y * (1.f - y)"),
    "loggy": ("2.f * " + _SIG.format("v") + " - 1.f",
              "2.f * ((y + 1.f) * 0.5f) * (1.f - (y + 1.f) * 0.5f)"),
    "relu": ("fmaxf(v, 0.f)", "(y > 0.f ? 1.f : 0.f)"),
    "relu6": ("fminf(fmaxf(v, 0.f), 6.f)", "(y > 0.f && y < 6.f ? 1.f : 0.f)"),
    "leaky": ("(v > 0.f ? v : 0.1f * v)", "(y > 0.f ? 1.f : 0.1f)"),
    "revleaky": ("(v > 0.f ? v : 0.1f * v)", "(y > 0.f ? 1.f : 10.f)"),
    "relie": ("(v > 0.f ? v : 0.01f * v)", "(y > 0.f ? 1.f : 0.01f)"),
    "ramp": ("(v > 0.f ? v : 0.f) + 0.1f * v", "(y > 0.f ? 1.f : 0.f) + 0.1f"),
    "elu": ("(v >= 0.f ? v : expm1f(fminf(v, 0.f)))", "(y >= 0.f ? 1.f : y + 1.f)"),
    "selu": ("(v >= 0.f ? 1.0507f * v : (float)(1.0507 * 1.6732) * expm1f(fminf(v, 0.f)))",
             "(y >= 0.f ? 1.0507f : y + (float)(1.0507 * 1.6732))"),
    "tanh": ("tanhf(v)", "1.f - y * y"),
    "plse": ("(v < -4.f ? 0.01f * (v + 4.f) : (v > 4.f ? 0.01f * (v - 4.f) + 1.f "
             ": 0.125f * v + 0.5f))", "((y < 0.f || y > 1.f) ? 0.01f : 0.125f)"),
    "stair": ("(fmodf(floorf(v), 2.f) == 0.f ? floorf(v / 2.f) "
              ": (v - floorf(v)) + floorf(v / 2.f))", "(floorf(y) != y ? 1.f : 0.f)"),
    "hardtan": ("fminf(fmaxf(v, -1.f), 1.f)", "(y > -1.f && y < 1.f ? 1.f : 0.f)"),
    "lhtan": ("(v < 0.f ? 0.001f * v : (v > 1.f ? 0.001f * (v - 1.f) + 1.f : v))",
              "((y > 0.f && y < 1.f) ? 1.f : 0.001f)"),
    "swish": ("v * " + _SIG.format("v"), "y + " + _SIG.format("x") + " * (1.f - y)"),
    "mish": ("v * tanhf(" + _SOFTPLUS.format("v") + ")",
             "x * (1.f - tanhf({sp}) * tanhf({sp})) * {sig} + tanhf({sp})".format(
                 sp=_SOFTPLUS.format("x"), sig=_SIG.format("x"))),
    "hard_mish": ("(v > 0.f ? v : (v > -2.f ? 0.5f * v * v + v : 0.f))",
                  "(x > 0.f ? 1.f : (x > -2.f ? x + 1.f : 0.f))"),
    "gelu": ("0.5f * v * (1.f + tanhf(0.797885f * v + 0.035677f * v * v * v))",
             "0.5f * (1.f + tanhf(0.797885f * x + 0.035677f * x * x * x)) + 0.5f * x * "
             "(1.f - tanhf(0.797885f * x + 0.035677f * x * x * x) * tanhf(0.797885f * x + "
             "0.035677f * x * x * x)) * (0.797885f + 3.f * 0.035677f * x * x)"),
}


def _elementwise(name, params, outs, body):
    if name not in _CACHE:
        import cupy
        _CACHE[name] = cupy.ElementwiseKernel(params, outs, body, name)
    return _CACHE[name]


# float32 <-> the half tensors of nn/precision.py, each one pass: the product with the scale in
# float32, then one rounding to nearest even (CuPy's float16 conversion; for bfloat16 the bit
# arithmetic of precision.round_bf16, NaN kept a quiet NaN).
#: float32 bits ``u`` -> bfloat16 bits (round_bf16's arithmetic)
_BF16_OF_U = ("(u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u)"
              " : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)")
_HALF_IN = {
    "fp16": ("float16 y", "y = (float16)(x * s)"),
    "bf16": ("uint16 y",
             f"float v = x * s; unsigned int u = __float_as_uint(v); y = {_BF16_OF_U};"),
}
#: a half tensor's dtype -> its precision (CuPy has no bfloat16: its bits in uint16)
HALF_KINDS = {np.dtype(np.float16): "fp16", np.dtype(np.uint16): "bf16"}
#: the kernels' name of each dtype a convolution gives (tf32's: float32), and back
_TILED = {**HALF_KINDS, np.dtype(np.float32): "fp32"}
_NHWC_DTYPE = {kind: dtype for dtype, kind in _TILED.items()}
_HALF_OUT = {
    "fp16": ("float16 h", "y = (float)h * r"),
    "bf16": ("uint16 h", "y = __uint_as_float(((unsigned int)h) << 16) * r"),
}


def to_half(x, kind, scale=1.0):
    """float32 CuPy ``x`` times ``scale`` as ``kind`` (fp16: float16, bf16: its bits in uint16)."""
    out, body = _HALF_IN[kind]
    return _elementwise(f"dp_to_{kind}", "float32 x, float32 s", out, body)(x, scale)


def from_half(h, kind, scale=1.0):
    """A ``kind`` half CuPy array as float32, divided by ``scale``; an (N, C, H, W) view of
    NHWC memory comes back C-contiguous (from_nhwc)."""
    if is_nhwc(h):
        return from_nhwc(h, kind, scale)
    src, body = _HALF_OUT[kind]
    return _elementwise(f"dp_from_{kind}", src + ", float32 r", "float32 y", body)(h, 1.0 / scale)


# -- NCHW float32 <-> NHWC half, one pass (nn/precision.py: half convolutions run NHWC) -----
# One image's (C, HW) plane is the (HW, C) one transposed: 32x32 tiles go through shared memory
# so that both the reads and the writes are coalesced (a strided elementwise pass reads or
# writes 2-4 bytes per 32-byte sector).  The value is x * s rounded once, or the half value
# times s: what to_half / from_half compute, bit for bit.  ``post`` may change v on its way out:
# the epilogue's bias and activation (bias_activate_nhwc), ``c`` being the channel there.
_TRANSPOSE = r"""
extern "C" __global__
void {name}(const {src}* __restrict__ x, {dst}* __restrict__ y, int rows, int cols, float s,
            const float* __restrict__ b, float* __restrict__ a)
{{
    __shared__ float tile[32][33];
    int tiles = (cols + 31) / 32;             // a 1-D grid of tiles: no 65,535-block limit
    int r0 = (blockIdx.x / tiles) * 32, c0 = (blockIdx.x % tiles) * 32;
    long long plane = (long long)blockIdx.y * rows * cols;
    for (int k = threadIdx.y; k < 32; k += 8) {{
        int r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) {{
            {src} v = x[plane + (long long)r * cols + c];
            float f;
            {load}
            tile[k][threadIdx.x] = f * s;
        }}
    }}
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += 8) {{
        int c = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && c < cols) {{
            float v = tile[threadIdx.x][k];
            long long at = plane + (long long)c * rows + r;
            {post}
            {dst} out;
            {store}
            y[at] = out;
        }}
    }}
}}
"""
# half values as their 16 bits; fp16 converted by PTX's cvt (round to nearest even, inf
# beyond the range: round_fp16), bf16 as kernels.to_half's body
_T_TYPE = {"fp32": "float", "fp16": "unsigned short", "bf16": "unsigned short"}
_T_LOAD = {"fp32": "f = v;",
           "fp16": 'asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));',
           "bf16": "f = __uint_as_float(((unsigned int)v) << 16);"}
_T_STORE = {
    "fp32": "out = v;",
    "fp16": 'asm("cvt.rn.f16.f32 %0, %1;" : "=h"(out) : "f"(v));',
    "bf16": f"unsigned int u = __float_as_uint(v); out = {_BF16_OF_U};",
}


def _transpose_cast(x, out, src, dst, rows, cols, s, name=None, post="", b=None, a=None):
    name = name or f"dp_transpose_{src}_{dst}"
    kernel = _kernel(name, _TRANSPOSE.format(name=name, src=_T_TYPE[src], dst=_T_TYPE[dst],
                                             load=_T_LOAD[src], store=_T_STORE[dst], post=post))
    grid = (((cols + 31) // 32) * ((rows + 31) // 32), x.shape[0])
    kernel(grid, (32, 8), (x, out, np.int32(rows), np.int32(cols), np.float32(s),
                           np.uint64(0) if b is None else b, np.uint64(0) if a is None else a))
    return out


# A plane of few channels (a network's input: 1 or 3) fills 3 of a tile's 32 rows: there a
# thread per pixel reads its C values (coalesced across the threads) and writes them side by
# side.  H200, yolov3-tiny's input (64, 3, 416, 416) to bf16: 0.10 ms against the tiles' 0.82.
_PIXEL_CAST = r"""
extern "C" __global__
void {name}(const float* __restrict__ x, {dst}* __restrict__ y, long long pixels, int c, float s)
{{
    long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (p >= pixels) return;
    const float* src = x + (long long)blockIdx.y * c * pixels + p;
    {dst}* row = y + ((long long)blockIdx.y * pixels + p) * c;
    for (int k = 0; k < c; ++k) {{
        float v = src[(long long)k * pixels] * s;
        {dst} out;
        {store}
        row[k] = out;
    }}
}}
"""
#: below this many channels a cast to NHWC goes a pixel a thread (_PIXEL_CAST), else by tiles
PIXEL_CAST_CHANNELS = 8


def to_nhwc(x, kind="fp32", scale=1.0):
    """A float32 (N, C, H, W) CuPy array times ``scale`` as ``kind`` (fp32, fp16, bf16) laid out
    NHWC: an (N, C, H, W) view of (N, H, W, C) memory (tf32's convolutions take fp32; the half
    ones cast and lay out in one pass)."""
    import cupy
    n, c, h, w = x.shape
    out = cupy.empty((n, h, w, c), dtype=_NHWC_DTYPE[kind])
    x = cupy.ascontiguousarray(x, dtype=cupy.float32)
    if c < PIXEL_CAST_CHANNELS:
        name = f"dp_pixel_cast_{kind}"
        kernel = _kernel(name, _PIXEL_CAST.format(name=name, dst=_T_TYPE[kind],
                                                  store=_T_STORE[kind]))
        kernel(((h * w + 255) // 256, n), (256,), (x, out, np.int64(h * w), np.int32(c),
                                                   np.float32(scale)))
    else:
        _transpose_cast(x, out, "fp32", kind, c, h * w, scale)
    return out.transpose(0, 3, 1, 2)


def from_nhwc(h, kind="fp32", scale=1.0):
    """An (N, C, H, W) view of NHWC ``kind`` memory as a C-contiguous float32 array, divided by
    ``scale``."""
    import cupy
    n, c, hh, w = h.shape
    out = cupy.empty((n, c, hh, w), dtype=cupy.float32)
    _transpose_cast(h.transpose(0, 2, 3, 1), out, kind, "fp32", hh * w, c, 1.0 / scale)
    return out


def bias_activate_nhwc(h, kind, activation, shift, keep_input=False):
    """normalize_activate(h, activation, shift=shift) of an (N, C, H, W) view of NHWC ``kind``
    memory (fp16, bf16 or fp32), tiled: act(h + b[c]) as C-contiguous float32 (and the
    pre-activation with ``keep_input``, else None) -- the same operations on the same values,
    so the same result; the elementwise kernel would read the NHWC memory with a stride of C
    values."""
    import cupy
    n, c, hh, w = h.shape
    out = cupy.empty((n, c, hh, w), dtype=cupy.float32)
    a = cupy.empty_like(out) if keep_input else None
    post = "v = v + b[c];" + (" a[at] = v;" if keep_input else "") + \
        f" v = {_ACT[activation][0]};"
    _transpose_cast(h.transpose(0, 2, 3, 1), out, kind, "fp32", hh * w, c, 1.0,
                    name=f"dp_nhwc_bias_{activation}_{int(keep_input)}_{kind}", post=post,
                    b=cupy.ascontiguousarray(shift, dtype=cupy.float32), a=a)
    return out, a


def is_nhwc(a):
    """Whether a CuPy array is an (N, C, H, W) view of NHWC memory (and not also NCHW)."""
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def _per_channel(a):
    """The (N, C, H, W) array's channel count and H*W, for the per-channel indexing."""
    return a.shape[1], a.shape[2] * a.shape[3] if a.ndim == 4 else 1


# The NCHW epilogue, a block per (plane, chunk) as maxpool: a plane (one image's channel) reads
# its channel's numbers once and divides no index.  As an elementwise kernel, each value's
# channel took two 64-bit divisions, and the pass ran at about half the memory's speed
# (yolov3-tiny's first layer at b64 on an H200: 0.84 ms for 1.4 GB read and written).
_PLANES = r"""
extern "C" __global__
void {name}(const {src}* __restrict__ x, const float* __restrict__ m,
            const float* __restrict__ s, const float* __restrict__ b, float* __restrict__ y,
            float* __restrict__ a, int c, int hw)
{{
    long long at = (long long)blockIdx.x * hw;
    int ch = (int)(blockIdx.x % c);
    for (int k = blockIdx.y * blockDim.x + threadIdx.x; k < hw; k += gridDim.y * blockDim.x) {{
        float f;
        {{ {src} v = x[at + k]; {load} }}
        float v = {pre};
        {keep}
        y[at + k] = {act};
    }}
}}
"""
# The same for float32 planes of a multiple of 4 values, 16-byte aligned: four values a thread,
# read and written as one float4 each (one value a thread ran at ~2.2 TB/s on an H200).
_PLANES4 = r"""
extern "C" __global__
void {name}(const float4* __restrict__ x, const float* __restrict__ m,
            const float* __restrict__ s, const float* __restrict__ b, float4* __restrict__ y,
            float* __restrict__ a, int c, int hw4)
{{
    long long at = (long long)blockIdx.x * hw4;
    int ch = (int)(blockIdx.x % c);
    for (int k = blockIdx.y * blockDim.x + threadIdx.x; k < hw4; k += gridDim.y * blockDim.x) {{
        float4 q = x[at + k], r;
        float f, v;
        {body}
        y[at + k] = r;
    }}
}}
"""
#: the least H*W for _PLANES (below it most of a block's threads would idle)
PLANE_MIN = 32


def _normalized(v, ch, mean, scale, shift):
    """(CUDA C of (v - m[ch]) * s[ch] + b[ch] with the parts given, a key of the parts)."""
    if mean is not None:
        v = f"({v} - m[{ch}])"
    if scale is not None:
        v = f"{v} * s[{ch}]"
    if shift is not None:
        v = f"{v} + b[{ch}]"
    return v, "".join("1" if p is not None else "0" for p in (mean, scale, shift))


def _normalize_activate_planes(x, activation, mean, scale, shift, keep_input):
    import cupy
    n, c, h, w = x.shape
    kind = _TILED[x.dtype]
    pre, parts = _normalized("f", "ch", mean, scale, shift)
    hw, width = h * w, 1
    if kind == "fp32" and hw % 4 == 0 and x.data.ptr % 16 == 0:
        width = 4
        name = f"dp_planes4_{activation}_{parts}_{int(keep_input)}"
        body = "".join(f"f = q.{e}; v = {pre}; "
                       + (f"a[4 * (at + k) + {i}] = v; " if keep_input else "")
                       + f"r.{e} = {_ACT[activation][0]};" for i, e in enumerate("xyzw"))
        kernel = _kernel(name, _PLANES4.format(name=name, body=body))
    else:
        name = f"dp_planes_{activation}_{parts}_{int(keep_input)}_{kind}"
        kernel = _kernel(name, _PLANES.format(name=name, src=_T_TYPE[kind], load=_T_LOAD[kind],
                                              pre=pre, act=_ACT[activation][0],
                                              keep="a[at + k] = v;" if keep_input else ""))
    y = cupy.empty((n, c, h, w), dtype=cupy.float32)
    a = cupy.empty_like(y) if keep_input else None
    grid, block = _plane_grid(n * c, hw // width)
    numbers = (np.uint64(0) if p is None else cupy.ascontiguousarray(p, dtype=cupy.float32)
               for p in (mean, scale, shift))
    kernel(grid, block, (x, *numbers, y, np.uint64(0) if a is None else a, np.int32(c),
                         np.int32(hw // width)))
    return y, a


#: reading a value of an (N, C, H, W) input of each dtype as float32
_LOAD = {"float32": ("float32 x", "x"), "float16": ("float16 x", "(float)x"),
         "uint16": ("uint16 x", "__uint_as_float(((unsigned int)x) << 16)")}     # bf16 bits


def normalize_activate(x, activation, mean=None, scale=None, shift=None, keep_input=False):
    """act((x - mean[c]) * scale[c] + shift[c]) in one pass over a float32 (N, C, H, W) CuPy
    array, each part optional (the same operations, in the same order, as batchnorm.py's
    inference and the epilogue's bias); with ``keep_input`` also the pre-activation.  ``x``
    may be a half convolution's output (float16, or bfloat16 bits in uint16): read as float32,
    what from_half would give."""
    if mean is None and scale is None and shift is not None and x.dtype in _TILED \
            and is_nhwc(x):
        return bias_activate_nhwc(x, _TILED[x.dtype], activation, shift, keep_input)
    if x.ndim == 4 and x.flags.c_contiguous and x.shape[2] * x.shape[3] >= PLANE_MIN \
            and x.size < 2 ** 31:
        return _normalize_activate_planes(x, activation, mean, scale, shift, keep_input)
    c, hw = _per_channel(x)
    param, v = _LOAD[x.dtype.name]
    v, parts = _normalized(v, "(i / hw) % c", mean, scale, shift)
    kernel = _elementwise(
        f"dp_normalize_activate_{activation}_{parts}_{int(keep_input)}_{x.dtype.name}",
        f"{param}, raw float32 m, raw float32 s, raw float32 b, int64 hw, int64 c",
        "float32 y, float32 a" if keep_input else "float32 y",
        f"float v = {v}; y = {_ACT[activation][0]};" + (" a = v;" if keep_input else ""))
    # a part left out is not read by the kernel: a float32 array of the call stands in (no
    # allocation per call; a half x always comes with its shift)
    stand_in = next((p for p in (mean, scale, shift) if p is not None), x)
    args = [x] + [stand_in if p is None else p for p in (mean, scale, shift)] + [hw, c]
    if keep_input:
        return kernel(*args)
    return kernel(*args), None


_ACT_BACKWARD = r"""
extern "C" __global__
void {name}(const float* delta, const float* yy, const float* xx, float* out, float* partial,
            long long images, int c, long long hw, int with_sums)
{{
    // block (chunk, channel): the chunk's part of one channel's images * hw values
    int ch = blockIdx.y;
    float sum = 0.f;
    long long per_channel = images * hw;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < per_channel;
         k += (long long)gridDim.x * blockDim.x) {{
        long long at = ((k / hw) * c + ch) * hw + k % hw;
        float y = yy[at];
        float x = xx[at];       // the pre-activation (the output itself when unused)
        float d = delta[at] * ({grad});
        out[at] = d;
        sum += d;
    }}
    if (!with_sums) return;
    __shared__ float s[256];
    s[threadIdx.x] = sum;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step >>= 1) {{
        if (threadIdx.x < step) s[threadIdx.x] += s[threadIdx.x + step];
        __syncthreads();
    }}
    if (threadIdx.x == 0) partial[ch * gridDim.x + blockIdx.x] = s[0];
}}
"""


def activation_backward(delta, y, x, activation, sums=None):
    """delta * act'(y, x) of float32 (N, C, H, W) CuPy arrays in one pass; with ``sums`` (C,)
    also adds the per-channel sums of the result into it (the bias gradient), deterministically:
    each block writes its partial sum, then one small sum over the blocks."""
    import cupy
    name = f"dp_act_backward_{activation}"
    kernel = _kernel(name, _ACT_BACKWARD.format(name=name, grad=_ACT[activation][1]))
    delta, y = cupy.ascontiguousarray(delta), cupy.ascontiguousarray(y)
    x = cupy.ascontiguousarray(x) if x is not None else y
    c, hw = _per_channel(delta)
    images = delta.shape[0]
    per_channel = images * hw
    chunks = int(min(max(1, (per_channel + 255) // 256), max(1, 4096 // c)))
    out = cupy.empty_like(delta)
    partial = cupy.empty((c, chunks), cupy.float32)
    kernel((chunks, c), (256,), (delta, y, x, out, partial,
                                 cupy.int64(images), cupy.int32(c), cupy.int64(hw),
                                 cupy.int32(sums is not None)))
    if sums is not None:
        sums += partial.sum(axis=1)
    return out


def sgd_update(w, u, rate, lr_scale, decay_times_batch, momentum):
    """Darknet's SGD step of one array in one pass, in place (pj update_convolutional_layer):
    u += -decay*B*w (decay_times_batch = 0: none); w += lr/B * u; u *= momentum.

    ``rate`` is a one-element device array holding learning_rate / B, times the layer's
    ``lr_scale`` here: read on the device, so that a captured update (nn/graphs.py) follows
    the learning-rate policy when replayed."""
    kernel = _elementwise(
        "dp_sgd_update", "raw float32 rate, float32 scale, float32 dec, float32 mom",
        "float32 w, float32 u",
        "float uu = u + (-dec) * w; w = w + (rate[0] * scale) * uu; u = uu * mom;")
    kernel(rate, lr_scale, decay_times_batch, momentum, w, u)


# fp16's loss scale (nn/precision.py LossScale) visits every update buffer at each iteration:
# one launch for all of them (blockIdx.y: the array; x: a grid-stride over its values) copies
# them into their saved twins or back, or sets a flag where a value is not finite -- instead of
# 3-4 CuPy calls an array (~1 ms an iteration for a small network).
_BUFFERS = r"""
extern "C" __global__ void dp_copy_arrays(const unsigned long long* src,
        const unsigned long long* dst, const long long* n) {
    const float* s = (const float*)src[blockIdx.y];
    float* d = (float*)dst[blockIdx.y];
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n[blockIdx.y];
         i += (long long)gridDim.x * blockDim.x)
        d[i] = s[i];
}

extern "C" __global__ void dp_any_nonfinite(const unsigned long long* src, const long long* n,
        int* flag) {
    const float* s = (const float*)src[blockIdx.y];
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n[blockIdx.y];
         i += (long long)gridDim.x * blockDim.x)
        if (!isfinite(s[i]))
            flag[0] = 1;
}
"""


class SavedArrays:
    """Float32 device arrays (fixed: their addresses are the key) and a saved twin of each,
    for :meth:`save`, :meth:`restore` and :meth:`nonfinite` in one launch each."""

    @staticmethod
    def fit(arrays):
        """True when every array is a C-contiguous float32 CuPy array (the kernels' kind)."""
        import cupy
        return bool(arrays) and all(isinstance(a, cupy.ndarray) and a.dtype == np.float32
                                    and a.flags.c_contiguous for a in arrays)

    @staticmethod
    def key_of(arrays):
        """The device addresses of ``arrays``: equal to ``key`` while they are the saved ones."""
        return tuple(a.data.ptr for a in arrays)

    def __init__(self, arrays):
        import cupy
        self.key = self.key_of(arrays)
        self.twins = [cupy.empty_like(a) for a in arrays]
        self._live = cupy.asarray(np.array(self.key, np.uint64))
        self._saved = cupy.asarray(np.array([t.data.ptr for t in self.twins], np.uint64))
        self._sizes = cupy.asarray(np.array([a.size for a in arrays], np.int64))
        largest = max(a.size for a in arrays)
        self._grid = (min((largest + 255) // 256, 256), len(arrays))
        self._flag = cupy.zeros(1, np.int32)

    def save(self):
        _kernel("dp_copy_arrays", _BUFFERS)(self._grid, (256,),
                                            (self._live, self._saved, self._sizes))

    def restore(self):
        _kernel("dp_copy_arrays", _BUFFERS)(self._grid, (256,),
                                            (self._saved, self._live, self._sizes))

    def nonfinite(self):
        """Whether any value of the arrays is NaN or infinite (reads one flag: waits)."""
        self._flag.data.memset_async(0, 4)
        _kernel("dp_any_nonfinite", _BUFFERS)(self._grid, (256,),
                                              (self._live, self._sizes, self._flag))
        return bool(int(self._flag[0]))


# A mini-batch of an in-memory set on the device (data.datasets.ResidentBatches), one launch:
# threads [0, b*c*h*w) write the float32 NCHW images (uint8 NHWC rows idx[n] / 255, IEEE float32
# division as NumPy's), the next b*classes threads the one-hot truth of labels[idx[n]].
_IDX_BATCH = r"""
extern "C" __global__ void dp_idx_batch(const unsigned char* img, const int* labels,
        const long long* idx, float* x, float* truth, long long b, int c, long long hw,
        int classes) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long chw = c * hw;
    if (i < b * chw) {
        long long r = i % chw;
        x[i] = (float)img[(idx[i / chw] * hw + r % hw) * c + r / hw] / 255.0f;
        return;
    }
    i -= b * chw;
    if (i < b * classes)
        truth[i] = labels[idx[i / classes]] == i % classes ? 1.f : 0.f;
}
"""


def idx_batch(images, labels, classes, indexes):
    """Images ``indexes`` (int64, on the device) of an in-memory set on the device and their
    truth, as data.datasets.host_batch gives them: the uint8 (n, h, w[, c]) images as float32
    (len(indexes), c, h, w) divided by 255 (IEEE float32 division: bit-equal to NumPy's), and
    float32 (len(indexes), classes) one-hot rows of the int32 ``labels``."""
    import cupy
    b, (h, w) = indexes.shape[0], images.shape[1:3]
    c = 1 if images.ndim == 3 else images.shape[3]
    x = cupy.empty((b, c, h, w), np.float32)
    truth = cupy.empty((b, classes), np.float32)
    grid, block = _grid(x.size + truth.size)
    _kernel("dp_idx_batch", _IDX_BATCH)(grid, block, (
        cupy.ascontiguousarray(images, cupy.uint8), cupy.ascontiguousarray(labels, cupy.int32),
        cupy.ascontiguousarray(indexes, cupy.int64), x, truth, cupy.int64(b),
        cupy.int32(c), cupy.int64(h * w), cupy.int32(classes)))
    return x, truth


# The [yolo]/[region] ignore mask (nn/layers/yololoss.py _ignore): per anchor slot and cell, the
# best IoU of its box with a live truth of its image, and the first truth with it, in one pass
# instead of a (slots x truths) matrix of ~30 array operations.  The same float64 arithmetic as
# box.score(..., "iou") (pj box_intersection's ternary min/max, 0 where the union is not > 0) and
# numpy's max/argmax (a NaN wins and stops the scan; -inf and truth 0 without a live truth).
_BOX_IOU = r"""
__device__ double pred_iou(const double* o, long long plane, double gx, double gy, int w, int h,
                           double aw, double ah, double uw, double uh, const double* t,
                           int new_coords)
{
    double px = (gx + o[0]) / w, py = (gy + o[plane]) / h;
    double ow_ = o[2 * plane], oh_ = o[3 * plane];
    // AlexeyAB's new_coords: w = 4 o^2 anchor / U (yololoss._pred), else exp(o) anchor / U
    double pw = new_coords ? ow_ * ow_ * 4 * aw / uw : exp(ow_) * aw / uw;
    double ph = new_coords ? oh_ * oh_ * 4 * ah / uh : exp(oh_) * ah / uh;
    double al = px - pw / 2, ar = px + pw / 2, at = py - ph / 2, ab = py + ph / 2;
    double bl = t[0] - t[2] / 2, br = t[0] + t[2] / 2, bt = t[1] - t[3] / 2, bb = t[1] + t[3] / 2;
    double ow = (ar < br ? ar : br) - (al > bl ? al : bl);
    double oh = (ab < bb ? ab : bb) - (at > bt ? at : bt);
    double inter = (ow < 0 || oh < 0) ? 0.0 : ow * oh;
    double uni = pw * ph + t[2] * t[3] - inter;
    return uni > 0 ? inter / uni : 0.0;
}

extern "C" __global__
void box_ignore(const double* o, const double* truth, const long long* nlive,
                const double* anchors, double* best, long long* first, long long cells,
                int n, int planes, int h, int w, int k, double uw, double uh, int new_coords)
{
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;      // (b, a, j, i)
    if (id >= cells) return;
    int i = id % w, j = (id / w) % h, a = (id / ((long long)w * h)) % n;
    long long b = id / ((long long)w * h * n);
    long long plane = (long long)h * w;
    const double* ob = o + (b * n + a) * planes * plane + (long long)j * w + i;
    double v_best = __longlong_as_double(0xfff0000000000000LL);    // -inf
    long long at = 0;
    for (long long q = 0; q < nlive[b]; ++q) {
        double v = pred_iou(ob, plane, i, j, w, h, anchors[2 * a], anchors[2 * a + 1], uw, uh,
                            truth + (b * k + q) * 5, new_coords);
        if (v != v) { v_best = v; at = q; break; }
        if (v > v_best) { v_best = v; at = q; }
    }
    best[id] = v_best;
    first[id] = at;
}

extern "C" __global__
void box_iou_at(const double* o, const double* truth, const long long* pos, double* out,
                long long ops, int n, int planes, int h, int w, int k, double uw, double uh,
                int new_coords, const double* anchors)
{
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (id >= ops) return;
    long long p = pos[id], q = p % k, r = p / k;            // pos: ((b, a, j, i), truth)
    int i = r % w, j = (r / w) % h, a = (r / ((long long)w * h)) % n;
    long long b = r / ((long long)w * h * n);
    long long plane = (long long)h * w;
    const double* ob = o + (b * n + a) * planes * plane + (long long)j * w + i;
    out[id] = pred_iou(ob, plane, i, j, w, h, anchors[2 * a], anchors[2 * a + 1], uw, uh,
                       truth + (b * k + q) * 5, new_coords);
}
"""


def box_ignore(o, truth, nlive, anchors, units, pos, want_first, new_coords=False):
    """yololoss._ignore on the GPU: ``o`` (B, n, planes, H, W) float64, ``truth`` (B, K, 5),
    ``nlive`` (B,) int64 live truths per image, ``anchors`` (n, 2), ``units`` the box units;
    returns best (B, n, H, W), first truth (or None) and the IoUs at ``pos`` (see _ignore)."""
    import cupy
    batch, n, planes, h, w = o.shape
    o, truth = cupy.ascontiguousarray(o), cupy.ascontiguousarray(truth)
    anchors = cupy.ascontiguousarray(anchors, cupy.float64)
    best = cupy.empty((batch, n, h, w), cupy.float64)
    first = cupy.empty(best.shape, cupy.int64)
    i32, f64 = cupy.int32, cupy.float64
    dims = (i32(n), i32(planes), i32(h), i32(w), i32(truth.shape[1]), f64(units[0]),
            f64(units[1]), i32(bool(new_coords)))
    _kernel("box_ignore", _BOX_IOU)(_grid(best.size)[0], (256,),
                                    (o, truth, nlive, anchors, best, first,
                                     cupy.int64(best.size)) + dims)
    iou = cupy.empty(pos.shape, cupy.float64)
    if pos.size:
        _kernel("box_iou_at", _BOX_IOU)(_grid(pos.size)[0], (256,),
                                        (o, truth, pos, iou, cupy.int64(pos.size)) + dims +
                                        (anchors,))
    return best, first if want_first else None, iou
