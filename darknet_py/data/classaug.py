"""Classifier training augmentation, as pj's ``load_image_augment_paths`` (src/data.c).

For each image of a list-file dataset: a random crop (``random_augment_args`` +
``rotate_crop_image``, src/image.c) -- or the centre crop when ``center=1`` --, a horizontal flip
with probability 1/2, then hue/saturation/exposure.  The [net] keys, with pj's defaults:

    max_crop = 2*width, min_crop = width   (max_ratio = max_crop/width, min_ratio = min_crop/width)
    angle = 0 (degrees), aspect = 1, center = 0, hue = 0, saturation = 1, exposure = 1

``random_augment_args``: aspect a = rand_scale(aspect); r = a random integer in
[min_ratio*width, max_ratio*width]; scale = r / min(H, W*a) (as an int, like the C);
rad = U(-angle, angle) in radians; dx = U(-Dx, Dx) with Dx = (W*scale/a - width)/2, dy likewise
with Dy = (H*scale - width)/2 (pj uses the width for both).  ``rotate_crop_image`` samples every
output pixel (x, y) of the width x height crop at

    rx = cos(rad)*((x - w/2)/s*a + dx/s*a) - sin(rad)*((y - h/2)/s + dy/s) + W/2
    ry = sin(rad)*((x - w/2)/s*a + dx/s*a) + cos(rad)*((y - h/2)/s + dy/s) + H/2

bilinearly, reading 0 outside the image (the result equals libdarknet's, tests/test_classaug.py).
Hue/saturation/exposure go through Pillow's HSV, as the detector's augmentation does.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..image import distort_image, rand_scale, resize_image

F32 = np.float32


def rotate_crop_image(img, rad, s, w, h, dx, dy, aspect):
    """pj ``rotate_crop_image`` of a float32 (c, H, W) image: (c, h, w)."""
    img = np.asarray(img, F32)
    c, ih, iw = img.shape
    # The C's types: (x - w/2.)/s*aspect is double (w/2. is), dx/s*aspect and dy/s are float
    # (float operands), cos/sin of the float rad are double; rx, ry are rounded to float.
    x = np.arange(w, dtype=np.float64)[None, :]
    y = np.arange(h, dtype=np.float64)[:, None]
    s, aspect, dx, dy = (F32(v) for v in (s, aspect, dx, dy))
    cos, sin = math.cos(float(F32(rad))), math.sin(float(F32(rad)))   # libm, as the C
    u = (x - w / 2.) / float(s) * float(aspect) + float(dx / s * aspect)
    v = (y - h / 2.) / float(s) + float(dy / s)
    rx = (cos * u - sin * v + iw / 2.).astype(F32)
    ry = (sin * u + cos * v + ih / 2.).astype(F32)
    return bilinear_interpolate(img, rx, ry)


def bilinear_interpolate(img, rx, ry):
    """pj ``bilinear_interpolate`` at float32 positions (h, w) of every channel; a pixel
    outside the image reads 0 (``get_pixel_extend``)."""
    c, ih, iw = img.shape
    ix, iy = np.floor(rx), np.floor(ry)
    fx, fy = (rx - ix).astype(F32), (ry - iy).astype(F32)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    one = F32(1)

    def pixel(px, py):
        inside = (px >= 0) & (px < iw) & (py >= 0) & (py < ih)
        return np.where(inside, img[:, np.clip(py, 0, ih - 1), np.clip(px, 0, iw - 1)], F32(0))

    # the C sums the four terms left to right, each a float product
    val = (one - fy) * (one - fx) * pixel(ix, iy)
    val = val + fy * (one - fx) * pixel(ix, iy + 1)
    val = val + (one - fy) * fx * pixel(ix + 1, iy)
    val = val + fy * fx * pixel(ix + 1, iy + 1)
    return val.astype(F32)


def validation_crop(img, w, h):
    """pj ``validate_classifier_single``'s input: ``resize_min`` (the shorter side to w, pj's
    integer arithmetic) then the centred w x h ``crop_image`` (edge pixels repeated)."""
    c, ih, iw = img.shape
    if iw < ih:
        nw, nh = w, (ih * w) // iw
    else:
        nw, nh = (iw * w) // ih, w
    if (nw, nh) != (iw, ih):
        img = resize_image(img, nw, nh)
    dx, dy = (nw - w) // 2, (nh - h) // 2
    rows = np.clip(np.arange(h) + dy, 0, nh - 1)
    cols = np.clip(np.arange(w) + dx, 0, nw - 1)
    return np.ascontiguousarray(img[:, rows][:, :, cols], F32)


@dataclass
class ClassifierAugment:
    """The [net] augmentation options of classifier training (pj parse_net_options)."""
    size: int
    low: int
    high: int
    angle: float = 0.0
    aspect: float = 1.0
    center: bool = False
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0

    @classmethod
    def from_section(cls, sec, width):
        """From the [net] section (its keys are declared in NetOptions.cfg_keys)."""
        max_crop = sec.int("max_crop", width * 2)
        min_crop = sec.int("min_crop", width)
        max_ratio = sec.float("max_ratio", float(F32(max_crop) / F32(width)))
        min_ratio = sec.float("min_ratio", float(F32(min_crop) / F32(width)))
        return cls(size=width, low=int(F32(min_ratio) * F32(width)),
                   high=int(F32(max_ratio) * F32(width)),
                   angle=sec.float("angle", 0.0), aspect=sec.float("aspect", 1.0),
                   center=sec.bool("center"), hue=sec.float("hue", 0.0),
                   saturation=sec.float("saturation", 1.0) or 1.0,
                   exposure=sec.float("exposure", 1.0) or 1.0)

    def crop_args(self, rng, iw, ih):
        """pj ``random_augment_args``: (rad, scale, dx, dy, aspect)."""
        aspect = F32(rand_scale(rng, self.aspect))
        r = int(rng.integers(min(self.low, self.high), max(self.low, self.high) + 1))
        low = int(ih) if ih < iw * aspect else int(F32(iw) * aspect)   # int min = ...
        scale = F32(r) / F32(max(low, 1))
        rad = F32(rng.uniform(-self.angle, self.angle) * 2 * np.pi / 360.)
        dx = (iw * float(scale) / float(aspect) - self.size) / 2.
        dy = (ih * float(scale) - self.size) / 2.          # pj: the width here too
        dx = F32(rng.uniform(-dx, dx)) if dx else F32(0)
        dy = F32(rng.uniform(-dy, dy)) if dy else F32(0)
        return rad, scale, dx, dy, aspect

    def __call__(self, img, rng):
        """One training image (c, H, W) floats in [0, 1] -> (c, size, size)."""
        c, ih, iw = img.shape
        if self.center:
            m = min(iw, ih)
            top, left = (ih - m) // 2, (iw - m) // 2
            out = resize_image(img[:, top:top + m, left:left + m], self.size, self.size)
        else:
            rad, scale, dx, dy, aspect = self.crop_args(rng, iw, ih)
            out = rotate_crop_image(img, rad, scale, self.size, self.size, dx, dy, aspect)
        if rng.random() < 0.5:
            out = out[:, :, ::-1]
        if c == 3 and (self.hue or self.saturation != 1 or self.exposure != 1):
            out = distort_image(out, rng, self.hue, self.saturation, self.exposure)
        return np.ascontiguousarray(out, F32)
