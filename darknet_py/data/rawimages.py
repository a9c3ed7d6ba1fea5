"""Training images handed over as bytes, their colour distortion finished on the GPU.

A detection worker spends most of its time on Pillow's RGB -> HSV -> RGB round trip of the
colour distortion (image.apply_hsv: ~70% of an image at 416x416), which is a function of each
pixel alone.  When the network trains on the GPU, the workers can stop before it: they hand over
the canvas as bytes (n, h, w, 3), already placed and flipped, with the image's three 256-entry
tables (image.hsv_tables, drawn at the same point of its generator, so the batches are the
same) and a flag saying whether to apply them; the GPU then does the round trip with Pillow's
arithmetic, the tables, and byte / 255 -- the same float32 bits as the CPU path, a quarter of
the bytes over the bus.  Mosaic and mixup batches are finished on the CPU as before.

Pillow's conversions (its libImaging Convert.c, "following colorsys.py"), as arithmetic:

* to HSV: v = max(r, g, b); for max == min, h = s = 0; else with c = float(max - min),
  s = c / float(max) and the float distances rc, gc, bc = float(max - r|g|b) / c,
  h = bc - gc (r is the max, checked first), 2.0 + rc - bc (g), 4.0 + gc - rc (b) -- the
  constants are doubles, the sum rounded to float -- then h = fmod(h / 6.0 + 1.0, 1.0) in
  double, rounded to float; bytes int(h * 255.0) and int(s * 255.0), clipped.
* to RGB: s == 0 gives (v, v, v); else i = floor(h * 6.0 / 255.0), f = float(h * 6.0 / 255.0
  - i), fs = float(s / 255.0), and round-half-away of v (1 - fs), v (1 - fs f) (fs f in
  float), v (1 - fs (1 - f)) as p, q, t, clipped; by i % 6: (v,t,p) (q,v,p) (p,v,t) (p,q,v)
  (t,p,v) (v,p,q).

``HSV_SOURCE`` is that arithmetic in C, compiled for the GPU without FMA contraction (which
would round differently); the tests compile the same source with the host's C compiler and
compare it with Pillow over all 2^24 colours both ways.
"""

import numpy as np
from PIL import Image

from ..image import apply_hsv

F32 = np.float32
TABLES = 3 * 256

HSV_SOURCE = r"""
#define CLIP_BYTE(v) ((v) <= 0 ? 0 : (v) >= 255 ? 255 : (v))

DEVICE void pillow_rgb_to_hsv(int r, int g, int b, int* hh, int* ss, int* vv)
{
    int hi = r > g ? (r > b ? r : b) : (g > b ? g : b);
    int lo = r < g ? (r < b ? r : b) : (g < b ? g : b);
    *vv = hi;
    if (hi == lo) { *hh = 0; *ss = 0; return; }
    float span = (float)(hi - lo);
    float s = span / (float)hi;
    float dr = (float)(hi - r) / span, dg = (float)(hi - g) / span, db = (float)(hi - b) / span;
    float h;
    if (r == hi) h = db - dg;
    else if (g == hi) h = (float)(2.0 + dr - db);
    else h = (float)(4.0 + dg - dr);
    h = (float)fmod(h / 6.0 + 1.0, 1.0);
    int hb = (int)(h * 255.0), sb = (int)(s * 255.0);
    *hh = CLIP_BYTE(hb);
    *ss = CLIP_BYTE(sb);
}

DEVICE void pillow_hsv_to_rgb(int h, int s, int v, int* r, int* g, int* b)
{
    if (s == 0) { *r = *g = *b = v; return; }
    int sector = (int)floor((float)h * 6.0 / 255.0);
    float f = (float)((float)h * 6.0 / 255.0 - (float)sector);
    float fs = (float)((float)s / 255.0);
    int p = (int)round((float)v * (1.0 - fs));
    int q = (int)round((float)v * (1.0 - (float)(fs * f)));
    int t = (int)round((float)v * (1.0 - fs * (1.0 - f)));
    p = CLIP_BYTE(p); q = CLIP_BYTE(q); t = CLIP_BYTE(t);
    switch (sector % 6) {
        case 0: *r = v; *g = t; *b = p; break;
        case 1: *r = q; *g = v; *b = p; break;
        case 2: *r = p; *g = v; *b = t; break;
        case 3: *r = p; *g = q; *b = v; break;
        case 4: *r = t; *g = p; *b = v; break;
        default: *r = v; *g = p; *b = q; break;
    }
}

/* one pixel through the image's tables (h, s, v: 256 entries each), as image.apply_hsv */
DEVICE void distort_pixel(const unsigned char* rgb, const unsigned char* tables, int* out)
{
    int h, s, v;
    pillow_rgb_to_hsv(rgb[0], rgb[1], rgb[2], &h, &s, &v);
    pillow_hsv_to_rgb(tables[h], tables[256 + s], tables[512 + v], out, out + 1, out + 2);
}
"""

_KERNEL = r"""
#define DEVICE __device__
""" + HSV_SOURCE + r"""
extern "C" __global__
void finish_images(const unsigned char* pixels, const unsigned char* tables,
                   const unsigned char* flags, float* out, long long n_pixels, int hw)
{
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;     // (image, y, x)
    if (id >= n_pixels) return;
    long long image = id / hw, at = id % hw;
    const unsigned char* rgb = pixels + 3 * id;
    int c[3] = {rgb[0], rgb[1], rgb[2]};
    if (flags[image]) distort_pixel(rgb, tables + 768 * image, c);
    float* o = out + 3 * image * hw + at;          // (image, channel, y, x)
    for (int k = 0; k < 3; ++k) o[k * hw] = (float)c[k] / 255.0f;
}
"""


class RawImages:
    """A batch's images as bytes: ``pixels`` (n, h, w, 3) uint8, ``tables`` (n, 768) uint8 and
    ``flags`` (n,) uint8 (1: apply the tables).  ``self[k]`` is row k (the same views)."""

    def __init__(self, pixels, tables, flags):
        self.pixels, self.tables, self.flags = pixels, tables, flags

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, k):
        return RawImages(self.pixels[k], self.tables[k], self.flags[k:k + 1])

    @property
    def shape(self):
        """The (n, c, h, w) of the finished images."""
        n, h, w, c = self.pixels.shape
        return n, c, h, w

    def set(self, canvas, tables):
        """This row (an item of a batch): the canvas bytes (h, w, 3) and the tables (768
        values) to apply, or None."""
        np.copyto(self.pixels, canvas)
        self.flags[0] = tables is not None
        if tables is not None:
            self.tables[:] = tables

    def finish(self):
        """The float32 (n, 3, h, w) images on the host, as the CPU path makes them (Pillow):
        the reference the GPU kernel equals, and what -show_imgs draws."""
        out = np.empty(self.shape, F32)
        for k in range(len(self)):
            rgb = self.pixels[k]
            if self.flags[k]:
                rgb = np.asarray(apply_hsv(Image.fromarray(rgb), self.tables[k].tolist()))
            np.divide(rgb.transpose(2, 0, 1), F32(255), out=out[k], dtype=F32)
        return out


def raw_layout(n, shape, truth_width):
    """(bytes of the truth, of the pixels, of a batch) for ``n`` images of ``shape`` (c, h, w):
    the truth (float32) first, then pixels, tables and flags."""
    c, h, w = shape
    truth = 4 * n * truth_width
    pixels = n * h * w * c
    return truth, pixels, truth + pixels + n * TABLES + n


def raw_views(buf, n, shape, truth_width):
    """(RawImages, truth) over a raw batch buffer."""
    c, h, w = shape
    t, p, _ = raw_layout(n, shape, truth_width)
    truth = np.ndarray((n, truth_width), F32, buffer=buf)
    pixels = np.ndarray((n, h, w, c), np.uint8, buffer=buf, offset=t)
    tables = np.ndarray((n, TABLES), np.uint8, buffer=buf, offset=t + p)
    flags = np.ndarray((n,), np.uint8, buffer=buf, offset=t + p + n * TABLES)
    return RawImages(pixels, tables, flags), truth


_FINISH = None


def finish_on_device(raw, out):
    """Launch the kernel on the current CuPy stream: ``raw`` a RawImages of device arrays,
    ``out`` the float32 (n, 3, h, w) device array it writes."""
    global _FINISH
    import cupy
    if _FINISH is None:
        _FINISH = cupy.RawKernel(_KERNEL, "finish_images", options=("--fmad=false",))
    n, c, h, w = raw.shape
    count = n * h * w
    _FINISH(((count + 255) // 256,), (256,),
            (raw.pixels, raw.tables, raw.flags, out, cupy.int64(count), cupy.int32(h * w)))
    return out
