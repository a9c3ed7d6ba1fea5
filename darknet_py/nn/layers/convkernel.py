"""A ``[convolutional]`` layer with few input channels (a network's image layer) as one GPU kernel:
the convolution, the bias and the activation, the output written once.

cuDNN runs such a convolution far below the memory's speed: yolov3-tiny's first layer (3 -> 16
channels, 3x3, 416x416, b64, float32) took 1.5 ms on an H200 in its fastest exact plan for
841 MB read and written (~0.56 TB/s), and the epilogue then read and wrote the 708 MB output
again (0.63 ms).  With C*size*size taps (27 there) the arithmetic is small; what costs is the
output.  So a thread computes one output position of one image for all F filters in registers
(the weights in shared memory, the taps read through the cache, neighbouring threads sharing
them) and writes each filter's activated value once, F coalesced stores.

The function is convolutional.py's forward without batch norm (folded for inference, or a layer
without it): y[n, f] = act(sum over c, ky, kx of x[n, c, oy*sy - pad + ky, ox*sx - pad + kx]
W[f, c, ky, kx] + biases[f]), taps outside the image 0 (pj:src/im2col.c); in float32, summed
in the order c, ky, kx (cuDNN and the BLAS of the NumPy path sum in orders of their own: the
results agree to float rounding, which the GPU tests bound).
"""

import numpy as np

from ..activations import CHANNEL_ACTIVATIONS, NEEDS_INPUT
from ..backend import on_gpu
from ..kernels import _ACT, _kernel

#: the most taps (input channels x size x size) and filters the kernel takes: an image layer's
#: (3x3 or 5x5 over 1-3 channels; 16 or 32 filters in Darknet's and AlexeyAB's cfgs).  Larger
#: layers are arithmetic, what cuDNN's GEMMs are built for, and a thread keeps its F sums in
#: registers.  Timed on the H200 in inference for the first layers of yolov3-tiny,
#: shapes-tiny (27 taps) and mnist.cfg (9 taps), 16 filters each: their inference passes got
#: faster at b1, b32, b64 and b128.
MAX_TAPS = 75
MAX_FILTERS = 32
#: threads a block: output positions of one image
_BLOCK = 128

_SOURCE = r"""
extern "C" __global__
void {name}(const float* __restrict__ x, const float* __restrict__ wt,
            const float* __restrict__ b, float* __restrict__ y, float* __restrict__ a,
            int h, int w, int oh, int ow)
{{
    __shared__ __align__(16) float ws[{taps} * {filters}];      // ws[tap * F + f]
    for (int i = threadIdx.x; i < {taps} * {filters}; i += blockDim.x)
        ws[i] = wt[(i % {filters}) * {taps} + i / {filters}];
    __syncthreads();
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= oh * ow) return;
    int oy = p / ow, ox = p - (p / ow) * ow;
    const float* xn = x + (long long)blockIdx.y * {channels} * h * w;
    float acc[{filters}];
    #pragma unroll
    for (int f = 0; f < {filters}; ++f) acc[f] = 0.f;
    #pragma unroll
    for (int c = 0; c < {channels}; ++c) {{
        #pragma unroll
        for (int ky = 0; ky < {size}; ++ky) {{
            int yy = oy * {stride_y} - {pad} + ky;
            #pragma unroll
            for (int kx = 0; kx < {size}; ++kx) {{
                int xx = ox * {stride_x} - {pad} + kx;
                float v = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? xn[(c * h + yy) * w + xx]
                                                                   : 0.f;
                const float* wr = ws + ((c * {size} + ky) * {size} + kx) * {filters};
                #pragma unroll
                for (int f = 0; f < {filters}; ++f) acc[f] = fmaf(v, wr[f], acc[f]);
            }}
        }}
    }}
    long long plane = (long long)oh * ow;
    long long at = (long long)blockIdx.y * {filters} * plane + p;
    #pragma unroll
    for (int f = 0; f < {filters}; ++f) {{
        float v = acc[f] + b[f];
        {keep}
        y[at + f * plane] = {act};
    }}
}}
"""


def fits(layer, x, precision):
    """Whether ``layer``'s forward on ``x`` runs as this kernel: a float32 NCHW CuPy input,
    float32 or tf32 arithmetic (the kernel's float32 is tf32's and more), no batch norm (its
    training statistics need the convolution's output; inference folds it), an activation per
    value, one group, no dilation, at most MAX_TAPS taps and MAX_FILTERS filters."""
    return (on_gpu(x) and x.dtype == np.float32 and x.ndim == 4 and x.flags.c_contiguous
            and not precision.half and not layer.batch_normalize
            and layer.activation not in CHANNEL_ACTIVATIONS and layer.groups == 1
            and layer._geometry[2] == 1 and layer.n <= MAX_FILTERS
            and layer.c * layer.size * layer.size <= MAX_TAPS and x.shape[0] <= 65535
            and x.size < 2 ** 31 and x.shape[0] * layer.outputs < 2 ** 31)


def forward(layer, x):
    """(output, pre-activation or None) of ``layer`` on ``x`` (``fits``); the pre-activation
    for the activations whose gradient reads it (NEEDS_INPUT), as the epilogue keeps it."""
    import cupy
    n = x.shape[0]
    sy, sx = layer._strides
    keep = layer.activation in NEEDS_INPUT
    spec = dict(channels=layer.c, size=layer.size, filters=layer.n, taps=layer.c * layer.size ** 2,
                stride_x=sx, stride_y=sy, pad=layer.padding)
    name = "dp_conv_{}_{}".format(layer.activation, "_".join(str(v) for v in spec.values())) \
        + ("_keep" if keep else "")
    kernel = _kernel(name, _SOURCE.format(
        name=name, act=_ACT[layer.activation][0],
        keep="a[at + f * plane] = v;" if keep else "", **spec))
    y = cupy.empty((n, layer.n, layer.out_h, layer.out_w), dtype=cupy.float32)
    a = cupy.empty_like(y) if keep else None
    weights = cupy.ascontiguousarray(layer.weights, dtype=cupy.float32)
    biases = cupy.ascontiguousarray(layer.biases, dtype=cupy.float32)
    positions = layer.out_h * layer.out_w
    kernel(((positions + _BLOCK - 1) // _BLOCK, n), (_BLOCK,),
           (x, weights, biases, y, np.uint64(0) if a is None else a, np.int32(layer.h),
            np.int32(layer.w), np.int32(layer.out_h), np.int32(layer.out_w)))
    return y, a
