"""Convolution as im2col + GEMM (pj:src/im2col.c, col2im.c, convolutional_layer.c), for xp arrays.

Cross-correlation (no kernel flip), weights ``[filters][c/groups][size][size]``, zero padding,
groups: filter f sees input channels of group ``f // (filters/groups)``; AlexeyAB's stride_x /
stride_y (``stride`` an int or (stride_y, stride_x)) and dilation (taps ``dilation`` apart).
Always correct for 1x1 stride-2 convs and always *accumulates* into the input delta (pj's CPU
1x1 path does neither).
"""

from .backend import xp_of


def out_size(size_in, size, stride, pad, dilation=1):
    return (size_in + 2 * pad - dilation * (size - 1) - 1) // stride + 1


def _pair(stride):
    """(stride_y, stride_x) from an int or a pair."""
    return (stride, stride) if isinstance(stride, int) else tuple(stride)


def im2col(x, size, stride, pad, dilation=1):
    """(N, C, H, W) -> (N, C, size, size, OH, OW) patches (a copy); ``stride`` an int or
    (stride_y, stride_x), taps ``dilation`` apart, ``pad`` zeros on every side."""
    xp = xp_of(x)
    sy, sx = _pair(stride)
    n, c, h, w = x.shape
    oh, ow = out_size(h, size, sy, pad, dilation), out_size(w, size, sx, pad, dilation)
    if pad:
        x = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    x = xp.ascontiguousarray(x)
    sn, sc, sh, sw = x.strides
    patches = xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, size, size, oh, ow),
        strides=(sn, sc, sh * dilation, sw * dilation, sh * sy, sw * sx))
    return xp.ascontiguousarray(patches)


def col2im(cols, shape, size, stride, pad, dilation=1):
    """Inverse of im2col by summation: (N, C, size, size, OH, OW) -> (N, C, H, W)."""
    xp = xp_of(cols)
    sy, sx = _pair(stride)
    n, c, h, w = shape
    oh, ow = cols.shape[4], cols.shape[5]
    out = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for ky in range(size):
        for kx in range(size):
            y0, x0 = ky * dilation, kx * dilation
            out[:, :, y0:y0 + sy * oh:sy, x0:x0 + sx * ow:sx] += cols[:, :, ky, kx]
    return out[:, :, pad:pad + h, pad:pad + w]


def conv_forward(x, weights, stride, pad, groups, dilation=1):
    """y[n, f] = sum over the group's channels and the window of w * x."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    filters, cg, size, _ = weights.shape
    cols = im2col(x, size, stride, pad, dilation)
    oh, ow = cols.shape[4], cols.shape[5]
    cols = cols.reshape(n, groups, cg * size * size, oh * ow)
    wg = weights.reshape(1, groups, filters // groups, cg * size * size)
    return xp.matmul(wg, cols).reshape(n, filters, oh, ow)


def conv_backward_filter(x, delta, size, stride, pad, groups, dilation=1):
    """dW = sum over images of delta . im2col(x)^T, shaped like the weights."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    filters = delta.shape[1]
    cg = c // groups
    cols = im2col(x, size, stride, pad, dilation).reshape(n, groups, cg * size * size, -1)
    d = delta.reshape(n, groups, filters // groups, -1)
    dw = xp.matmul(d, cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return dw.reshape(filters, cg, size, size)


def conv_backward_data(delta, weights, x_shape, stride, pad, groups, dilation=1):
    """dx = col2im(W^T . delta)."""
    xp = xp_of(delta)
    n = delta.shape[0]
    filters, cg, size, _ = weights.shape
    oh, ow = delta.shape[2], delta.shape[3]
    wg = weights.reshape(1, groups, filters // groups, cg * size * size)
    d = delta.reshape(n, groups, filters // groups, oh * ow)
    cols = xp.matmul(wg.transpose(0, 1, 3, 2), d)
    cols = cols.reshape(n, groups * cg, size, size, oh, ow)
    return col2im(cols, x_shape, size, stride, pad, dilation)
