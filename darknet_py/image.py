"""Images as pj Darknet handles them (pj:src/image.c): float32 (c, h, w) planes in [0, 1].

    im = load_image_color("dog.jpg")            # pj load_image_color(path, 0, 0): RGB, byte/255
    x = letterbox(im, 416, 416)                 # pj letterbox_image (the network input)
    y = resize_image(im, 224, 224)              # pj resize_image
    draw_detections("dog.jpg", dets, names, .5, "predictions.jpg")

Files are decoded with Pillow the way pj's stb path (``load_image_stb``) decodes them.
``resize_image`` and ``letterbox`` repeat pj's float32 arithmetic step for step, so they equal
libdarknet's bit for bit (tests/test_detect.py); the detector and the classifier both take their
network input from them.  Training-time placement and colour distortion work on Pillow images in
bytes (``distort_hsv``), as darknet_py's augmentation always has.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from .atomic import atomic_open
from .errors import DarknetError
from .nn.backend import to_numpy

F32 = np.float32

# Pillow's modes of more than 8 bits per sample (16-bit PNGs, TIFFs)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

# pj's load_image_stb divides each byte by 255. in double and stores a float: a table of the
# 256 results gives the same floats without a float64 copy of the image
_BYTE_TO_FLOAT = (np.arange(256, dtype=np.float64) / 255.0).astype(F32)

# The size policy (issue 15), on every path that opens an image (open_image): a file whose
# header claims more than Pillow's Image.MAX_IMAGE_PIXELS (89,478,485, ~9459 x 9459) is refused
# with one line before anything is decoded -- pj's stb would try to allocate it -- and an
# image of 0 pixels too.  Pillow itself only warns between the limit and twice it (and raises
# its DecompressionBombError above): that warning is replaced by the error, so it is silenced.
# Thin images (20000 x 2) are read: their letterboxed side is at least one pixel (letterbox_size).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def open_image(path):
    """``with open_image(path) as im``: a Pillow image; a missing, unreadable or corrupt file
    (also when decoding fails inside the block) is a one-line DarknetError naming it."""
    try:
        with Image.open(path) as im:
            check_image_size(im.size, path)
            yield im
    except FileNotFoundError:
        raise DarknetError("image file does not exist", str(path)) from None
    except Image.DecompressionBombError as e:     # above twice the limit: Pillow's own check
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise DarknetError(_too_large(int(pixels.group(1)) if pixels else 2 * (
            Image.MAX_IMAGE_PIXELS or 0), "" if pixels else "over "), str(path)) from None
    except UnidentifiedImageError:
        what = "an empty file (0 bytes)" if _size_of(path) == 0 else \
            "not an image file Pillow can read"
        raise DarknetError(what, str(path)) from None
    except OSError as e:            # e.g. "image file is truncated" while decoding
        raise DarknetError(f"cannot read image: {e.strerror or e}", str(path)) from None
    except (ValueError, EOFError, SyntaxError, struct.error) as e:
        if not _raised_in_pillow(e):
            raise
        # a decoder's own error: a raw PPM/PGM shorter than its header says is mapped as a
        # buffer ("buffer is not large enough")
        raise DarknetError(f"cannot read image (truncated or corrupt): {e}", str(path)) from None


def _raised_in_pillow(e):
    """Whether ``e`` was raised in Pillow's code (not in the caller's, inside open_image)."""
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "PIL" in Path(tb.tb_frame.f_code.co_filename).parts


def _size_of(path):
    try:
        return os.path.getsize(path)
    except (OSError, TypeError):      # a file object, or gone
        return None


def check_image_size(size, path):
    """Refuse (one line naming ``path``) an image ``size`` (w, h) of 0 pixels or of more than
    Pillow's ``Image.MAX_IMAGE_PIXELS`` (the size policy above)."""
    w, h = size
    if w < 1 or h < 1:
        raise DarknetError(f"the image is {w}x{h}: no pixels", str(path))
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        raise DarknetError(_too_large(w * h, f"{w}x{h} = "), str(path))


def _too_large(pixels, size=""):
    limit = Image.MAX_IMAGE_PIXELS
    return (f"the image is {size}{pixels:,} pixels, "
            f"over the limit of {limit:,} (Pillow's MAX_IMAGE_PIXELS, against decompression "
            "bombs): downscale it (every image is resized to the network's size anyway)")


def load_image(path, shape=(3, None, None), letterbox: bool = False) -> np.ndarray:
    """pj ``load_image(path, w, h, c)``: the file as float32 (c, h, w), each byte / 255 --
    c = 1 grey (Pillow's luma), otherwise RGB -- then, for ``shape`` (c, h, w), fitted to w x h
    by ``fit_image``: ``letterbox`` as pj's predict_classifier and test_detector
    (letterbox_image), else stretched (resize_image); ``shape`` (c, None, None) keeps the size.

    As stb: a grey file gives three equal channels, alpha is dropped, the EXIF orientation is
    *not* applied, a 16-bit sample gives its high byte.  An unreadable file is a one-line
    DarknetError (pj's OpenCV build would silently return a 10x10 black image)."""
    c, h, w = shape
    with open_image(path) as img:
        im = pil_to_chw(img, c)
    return im if w is None else fit_image(im, w, h, letterbox)


def pil_to_chw(img, c: int = 3) -> np.ndarray:
    """A Pillow image as pj's float32 (c, h, w) planes, each byte / 255 (``load_image``'s
    decoding rules: luma for c = 1, else RGB; a 16-bit sample gives its high byte)."""
    if img.mode in _WIDE_MODES:
        arr = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        if c != 1:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
    else:
        arr = np.asarray(img.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    # C: (float)data[i]/255. -- a double division, then rounded to float
    return _BYTE_TO_FLOAT[arr.transpose(2, 0, 1)]


def to_image(image, c: int = 3) -> np.ndarray:
    """Any image a user hands over as pj's float32 (c, h, w) planes in [0, 1]: a path (decoded
    as ``load_image``), a Pillow image, a uint8 array (h, w) or (h, w, 3|4), RGB(A) rows as
    Pillow and imageio give them (decoded like a file of those bytes), or a float array
    (h, w) or (c, h, w) already in [0, 1] (darknet_py's own layout, taken as it is)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, (c, None, None))
    if isinstance(image, Image.Image):
        return pil_to_chw(image, c)
    a = np.asarray(to_numpy(image))
    if a.dtype == np.uint8:
        if a.ndim == 3 and a.shape[2] in (3, 4):
            a = a[:, :, :3]
        elif a.ndim != 2:
            raise ValueError(f"a uint8 image is (height, width) or (height, width, 3|4) "
                             f"pixels, not shape {a.shape}")
        return pil_to_chw(Image.fromarray(np.ascontiguousarray(a)), c)
    if a.dtype.kind != "f":
        raise TypeError(f"an image array is uint8 pixels (h, w, 3) or floats in [0, 1] "
                        f"(c, h, w), not dtype {a.dtype}")
    if a.ndim == 3 and a.shape[0] not in (1, 3) and a.shape[2] in (1, 3):
        raise ValueError(f"a float image is (channels, height, width); shape {a.shape} looks "
                         "like (height, width, channels): pass a.transpose(2, 0, 1)")
    return as_chw(a)


def load_image_color(path) -> np.ndarray:
    """pj ``load_image_color(path, 0, 0)``: float32 (3, h, w), RGB, byte/255 (``load_image``)."""
    return load_image(path)


def as_chw(image) -> np.ndarray:
    """A (c, h, w) float32 NumPy image from an array (h, w) or (c, h, w), NumPy or CuPy."""
    a = np.asarray(to_numpy(image), dtype=F32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected a (channels, height, width) image, got shape {a.shape}")
    return a


# ------------------------------------------------------------------------------------------------
# resizing
# ------------------------------------------------------------------------------------------------

def resize_image(image, w: int, h: int) -> np.ndarray:
    """pj ``resize_image``: separable linear interpolation with corners aligned.

    First along x into a (c, H, w) image (the last column copies the source's last column),
    then along y; the last output row gets only its ``(1 - dy)`` term, like pj (when
    ``(h-1)*h_scale`` rounds below H-1 in float32 that row is darkened, as in Darknet).
    Every step is the same float32 operation as the C code, so the result is bit-identical."""
    im = as_chw(image)
    c, H, W = im.shape
    w, h = int(w), int(h)
    if w < 1 or h < 1:
        raise ValueError(f"cannot resize to {w}x{h}")
    one = F32(1)
    # horizontal pass
    part = np.empty((c, H, w), F32)
    if W == 1:
        part[:] = im[:, :, W - 1:W]
    else:
        if w > 1:
            w_scale = F32(W - 1) / F32(w - 1)
            sx = np.arange(w - 1, dtype=F32) * w_scale
            ix = sx.astype(np.int64)                    # (int) sx, sx >= 0
            dx = sx - ix.astype(F32)
            ix1 = np.minimum(ix + 1, W - 1)
            ix = np.minimum(ix, W - 1)
            part[:, :, :w - 1] = (one - dx) * im[:, :, ix] + dx * im[:, :, ix1]
        part[:, :, w - 1] = im[:, :, W - 1]
    # vertical pass
    if h > 1:
        h_scale = F32(H - 1) / F32(h - 1)
        sy = np.arange(h, dtype=F32) * h_scale
    else:
        sy = np.zeros(1, F32)       # pj: 0 * (H-1)/0 (NaN); the one row is source row 0
    iy = np.minimum(sy.astype(np.int64), H - 1)
    dy = sy - iy.astype(F32)
    out = (one - dy)[None, :, None] * part[:, iy, :]
    if H > 1:
        rows = np.arange(h - 1)     # pj skips the second term for the last row
        iy1 = np.minimum(iy[rows] + 1, H - 1)
        out[:, rows, :] = out[:, rows, :] + dy[rows][None, :, None] * part[:, iy1, :]
    return out.astype(F32, copy=False)


def letterbox_size(img_w: int, img_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """(new_w, new_h) of pj's letterbox: the image scaled to fit, integer arithmetic (also
    what correct_yolo_boxes undoes).  A side that pj's arithmetic rounds to 0 (a 20000 x 2
    image into 256 x 256) is one pixel: pj would resize to nothing and give a grey canvas."""
    if F32(net_w) / F32(img_w) < F32(net_h) / F32(img_h):
        return net_w, max(1, (img_h * net_w) // img_w)
    return max(1, (img_w * net_h) // img_h), net_h


def letterbox(image, w: int, h: int) -> np.ndarray:
    """pj ``letterbox_image``: resize keeping the aspect ratio (``resize_image``), then paste it
    centred at ((w-new_w)/2, (h-new_h)/2) (integer division) on a w x h canvas of 0.5."""
    im = as_chw(image)
    c, ih, iw = im.shape
    new_w, new_h = letterbox_size(iw, ih, int(w), int(h))
    resized = resize_image(im, new_w, new_h)
    boxed = np.full((c, int(h), int(w)), 0.5, F32)
    dx, dy = (int(w) - new_w) // 2, (int(h) - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resized
    return boxed


def fit_image(image, w: int, h: int, letterboxed: bool = True) -> np.ndarray:
    """The w x h network input of an image: ``letterbox`` (pj), or ``resize_image`` (stretched,
    AlexeyAB's letter_box=0)."""
    return letterbox(image, w, h) if letterboxed else resize_image(image, w, h)


def resize_array(img, shape) -> np.ndarray:
    """An IDX dataset's (c, h, w) float image resized to ``shape`` (c, h, w) with Pillow's
    bilinear filter, channels averaged to grey or repeated as ``shape`` asks (IDX files are
    darknet_py's own input, not pj's: no pj resize to equal)."""
    c, h, w = shape
    planes = [np.asarray(Image.fromarray(p).resize((w, h), Image.BILINEAR)) for p in img]
    if c == len(planes):
        return np.stack(planes)
    grey = np.mean(planes, axis=0)
    return np.stack([grey] * c) if c > 1 else grey[None]


# ------------------------------------------------------------------------------------------------
# colour distortion (pj random_distort_image, in Pillow's byte HSV)
# ------------------------------------------------------------------------------------------------

def rand_scale(rng, s):
    """pj ``rand_scale`` (pj:src/utils.c): u ~ U(1, s), or 1/u with probability 1/2."""
    u = rng.uniform(1, s) if s > 1 else 1.0
    return u if rng.random() < 0.5 else 1.0 / u


def distort_hsv(rgb, rng, hue, saturation, exposure):
    """pj's random_distort_image on a Pillow RGB image, in Pillow's byte HSV: h += a hue
    shift U(-hue, hue) of a turn (mod 256), s *= rand_scale(saturation), v *=
    rand_scale(exposure), each clipped to a byte -- a function of the byte value alone, so
    applied as 256-entry tables."""
    return apply_hsv(rgb, hsv_tables(rng, hue, saturation, exposure))


def hsv_tables(rng, hue, saturation, exposure):
    """``distort_hsv``'s draws: its three 256-entry tables (h, s, v), as Pillow's ``point``
    takes them."""
    v = np.arange(256, dtype=np.float32)
    h_lut = (v + np.float32(rng.uniform(-hue, hue) * 256)) % 256
    s_lut = v * np.float32(rand_scale(rng, saturation))
    v_lut = v * np.float32(rand_scale(rng, exposure))
    return np.clip(np.concatenate([h_lut, s_lut, v_lut]), 0, 255).astype(np.uint8).tolist()


def apply_hsv(rgb, tables):
    """A Pillow RGB image through ``hsv_tables``: pixel by pixel, so a part of an image
    distorted alone equals that part of the whole image distorted."""
    return rgb.convert("HSV").point(tables).convert("RGB")


def distort_image(img, rng, hue, saturation, exposure) -> np.ndarray:
    """``distort_hsv`` of a float (3, h, w) image (rounded to bytes and back)."""
    rgb = Image.fromarray((np.clip(img, 0, 1) * 255 + .5).astype(np.uint8).transpose(1, 2, 0))
    out = distort_hsv(rgb, rng, hue, saturation, exposure)
    return np.asarray(out, F32).transpose(2, 0, 1) / F32(255)


# ------------------------------------------------------------------------------------------------
# drawing and saving (pj draw_detections, get_color, save_image)
# ------------------------------------------------------------------------------------------------

_COLORS = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def get_color(c: int, x: int, max_: int) -> float:
    """pj ``get_color``: channel c of the palette interpolated at x/max*5 (float32 as in C)."""
    ratio = F32(x) / F32(max_) * F32(5)
    i, j = int(math.floor(ratio)), int(math.ceil(ratio))
    ratio = ratio - F32(i)
    return float((F32(1) - ratio) * F32(_COLORS[i][c]) + ratio * F32(_COLORS[j][c]))


def class_color(class_id: int, classes: int) -> tuple[int, int, int]:
    """The (r, g, b) bytes pj draws class ``class_id`` with: offset = class*123457 % classes;
    red = get_color(2), green = get_color(1), blue = get_color(0); byte = (int)(255*v)."""
    offset = (class_id * 123457) % max(classes, 1)
    return tuple(int(F32(255) * F32(get_color(c, offset, max(classes, 1)))) for c in (2, 1, 0))


def class_name(names, j: int) -> str:
    """names[j], or j itself where there are no names (or too few)."""
    return names[j] if names is not None and j < len(names) else str(j)


def _to_pil(image):
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with open_image(image) as img:
            return img.convert("RGB")
    a = as_chw(image)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    # pj save_image: (unsigned char)(255 * v)
    data = (np.clip(a[:3], 0, 1) * F32(255)).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(data), "RGB")


def font(size: int):
    """Pillow's default font at ``size`` px (at least 8); Pillow < 10.1 has only its fixed
    bitmap font."""
    try:
        return ImageFont.load_default(size=max(size, 8))
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def save_image_atomic(img, out_path) -> str:
    """Save a PIL image through a temporary file in the same folder and a rename.

    A path without an extension gets ``.jpg`` (pj's save_image); JPEGs use quality 80 like pj.
    Returns the path written."""
    path = os.fspath(out_path)
    root, ext = os.path.splitext(path)
    if not ext:
        ext = ".jpg"
        path = root + ext
    fmt = Image.registered_extensions().get(ext.lower(), "JPEG")
    opts = {"quality": 80} if fmt == "JPEG" else {}
    with atomic_open(path, ext) as f:
        img.save(f, format=fmt, **opts)
    return path


def draw_detections(image, dets, names, thresh: float, out_path=None, classes: int | None = None):
    """pj ``draw_detections`` with Pillow; returns the PIL image (saved atomically to
    ``out_path`` when given; see ``save_image_atomic``).

    ``image`` is a path, a PIL image or a (c, h, w) float array in [0, 1]; ``dets`` are
    detections (``bbox`` x, y, w, h relative to the image, ``prob``).  For each detection
    with some prob > thresh: the label is the names of those classes joined by ", ", the colour
    that of the first one; the box is left/right/top/bottom = (x -/+ w/2)*W, (y -/+ h/2)*H
    truncated and clamped to the image, drawn as ``int(H*.006)`` (at least 1) nested 1-pixel
    rectangles shrinking inward; the label (black text on the box colour, font size ~ H*.03)
    sits on the box's top-left corner, above the box when there is room."""
    img = _to_pil(image)
    W, H = img.size
    draw = ImageDraw.Draw(img)
    t = F32(thresh)
    label_font = font(int(H * .03))
    for d in dets:
        prob = np.asarray(d.prob, F32)
        ncls = len(prob) if classes is None else classes
        hits = [int(j) for j in np.nonzero(prob[:ncls] > t)[0]]
        if not hits:
            continue
        label = ", ".join(class_name(names, j) for j in hits)
        color = class_color(hits[0], ncls)
        width = max(1, int(H * .006))
        x, y, w, h = (float(v) for v in d.bbox)
        # clamped to just outside the image before int(): an overflowing (infinite) size
        # draws as a box along the image's edges instead of failing
        left, right = (int(min(max(v * W, -1.), W)) for v in (x - w / 2., x + w / 2.))
        top, bot = (int(min(max(v * H, -1.), H)) for v in (y - h / 2., y + h / 2.))
        left, top = max(left, 0), max(top, 0)
        right, bot = min(right, W - 1), min(bot, H - 1)
        for i in range(width):
            x1, y1, x2, y2 = left + i, top + i, right - i, bot - i
            if x2 < x1 or y2 < y1:
                break
            draw.rectangle((x1, y1, x2, y2), outline=color)
        tl, tt, tr, tb = draw.textbbox((0, 0), label, font=label_font)
        pad = max(1, int(H * .004))
        lw, lh = tr - tl + 2 * pad, tb - tt + 2 * pad
        row = top + width
        if row - lh >= 0:
            row -= lh
        col = left
        draw.rectangle((col, row, col + lw - 1, row + lh - 1), fill=color)
        draw.text((col + pad - tl, row + pad - tt), label, fill=(0, 0, 0), font=label_font)
    if out_path is not None:
        save_image_atomic(img, out_path)
    return img
