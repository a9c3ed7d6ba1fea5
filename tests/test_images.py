"""Image files: every way one can be bad is a one-line error naming it."""

import numpy as np
import pytest

from darknet_py.image import letterbox, load_image, load_image_color, open_image
from darknet_py.errors import DarknetError


@pytest.fixture
def files(tmp_path):
    from PIL import Image
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    raw = {}
    for mode, ext in (("RGB", "ppm"), ("L", "pgm")):    # a grey one Pillow maps as a buffer
        whole = tmp_path / f"good.{ext}"
        Image.new(mode, (40, 30), 7).save(whole)
        raw[ext] = tmp_path / f"truncated.{ext}"
        raw[ext].write_bytes(whole.read_bytes()[:-100])
    return {"good": good, "truncated": truncated, "text": text, "missing": tmp_path / "no.png",
            "truncated_ppm": raw["ppm"], "truncated_pgm": raw["pgm"]}


@pytest.mark.parametrize("kind,message", [
    ("missing", "image file does not exist"),
    ("text", "not an image file Pillow can read"),
    ("truncated", "cannot read image: "),
    ("truncated_ppm", "cannot read image: image file is truncated"),
    ("truncated_pgm", "cannot read image (truncated or corrupt): "),
])
@pytest.mark.parametrize("reader", [lambda p: load_image(p, (3, 8, 8)), load_image_color],
                         ids=["classifier", "detector"])
def test_a_bad_image_is_one_error_naming_the_file(files, kind, message, reader):
    with pytest.raises(DarknetError) as e:
        reader(files[kind])
    assert str(e.value).startswith(f"{files[kind]}: error: {message}")
    assert "\n" not in str(e.value)


def test_an_error_of_the_callers_own_inside_open_image_is_not_blamed_on_the_file(files):
    with pytest.raises(ValueError, match="the caller's"):
        with open_image(files["good"]):
            raise ValueError("the caller's")


def test_a_good_image_opens(files):
    with open_image(files["good"]) as im:
        assert im.size == (40, 30)
    assert load_image_color(files["good"]).shape == (3, 30, 40)


# --- the classifier's letterbox (pj predict_classifier: letterbox_image of load_image_color) -----

def _noise_png(tmp_path, w, h, mode="RGB"):
    from PIL import Image
    rng = np.random.default_rng(w * 100 + h)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    path = tmp_path / f"noise_{w}x{h}_{mode}.png"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


@pytest.mark.parametrize("iw,ih,w,h", [(53, 37, 48, 48), (37, 53, 64, 32), (40, 30, 40, 30)])
def test_classifier_letterbox_is_the_detectors(tmp_path, iw, ih, w, h):
    """load_image(..., letterbox=True) (classifier predict) = letterbox(load_image_color(...)):
    pj's resize_image and a canvas of 0.5, not another resize and fill."""
    path = _noise_png(tmp_path, iw, ih)
    got = load_image(path, (3, h, w), letterbox=True)
    want = letterbox(load_image_color(path), w, h)
    assert got.dtype == np.float32 and got.shape == (3, h, w)
    np.testing.assert_array_equal(got, want)


def test_grey_classifier_letterbox_is_pj_letterbox_of_the_grey_image(tmp_path):
    path = _noise_png(tmp_path, 30, 20, "L")
    got = load_image(path, (1, 16, 16), letterbox=True)
    grey = load_image(path, (1, None, None))
    assert grey.shape == (1, 20, 30)
    np.testing.assert_array_equal(got, letterbox(grey, 16, 16))
    assert got[0, 0, 0] == np.float32(0.5)              # the padding rows


@pytest.fixture(scope="module")
def oracle():
    from conftest import require_darknet
    from oracle.darknet import DarknetOracle
    ok, why = DarknetOracle.available()
    require_darknet(ok, why, "Darknet image tests")
    from oracle import darknet as dk
    dk._detect_lib()
    return dk


@pytest.mark.darknet
@pytest.mark.parametrize("iw,ih,w,h", [(53, 37, 48, 48), (37, 53, 64, 32)])
def test_classifier_letterbox_equals_darknet(oracle, tmp_path, iw, ih, w, h):
    path = _noise_png(tmp_path, iw, ih)
    want = oracle.letterbox_image(oracle.load_image_color(path), w, h)
    np.testing.assert_array_equal(load_image(path, (3, h, w), letterbox=True), want)


# --- the size policy (issue 15): refused before decoding, or read safely -----------------------

def png_header(w, h):
    """A PNG whose header claims w x h (a decompression bomb when large): a few bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


READERS = [lambda p: load_image(p, (3, 8, 8)), load_image_color,
           lambda p: open_image(p).__enter__()]


@pytest.mark.parametrize("reader", READERS, ids=["classifier", "detector", "open"])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, reader):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(50000, 50000))
    with pytest.raises(DarknetError) as e:
        reader(bomb)
    assert str(e.value).startswith(f"{bomb}: error: the image is 2,500,000,000 pixels, over the "
                                   "limit of ")
    assert "downscale it" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("limit,size", [(1000, "40x30 = 1,200"), (500, "1,200")])
def test_an_image_over_the_limit_is_refused_where_pillow_would_only_warn(files, monkeypatch,
                                                                          limit, size):
    """Pillow warns between its limit and twice it, and raises above: both are one error
    (that Pillow's warning is not printed too: test_reliability's command-line cases)."""
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DarknetError, match=f"the image is {size} pixels, over the limit "
                                           f"of {limit:,}"):
        load_image_color(files["good"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1200)
    assert load_image_color(files["good"]).shape == (3, 30, 40)


def test_an_empty_file_says_so(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DarknetError, match=f"^{empty}: error: an empty file \\(0 bytes\\)$"):
        load_image_color(empty)


@pytest.mark.parametrize("iw,ih", [(2000, 2), (2, 2000), (5000, 1)])
def test_a_thin_image_letterboxes_to_a_strip_of_at_least_one_pixel(tmp_path, iw, ih):
    """pj's integer arithmetic gives a side of 0 (resize_image to nothing: a grey canvas);
    darknet_py keeps one pixel, and both the detector and the classifier read it."""
    from darknet_py.image import letterbox_size
    from darknet_py.data.classaug import validation_crop
    path = _noise_png(tmp_path, iw, ih)
    new_w, new_h = letterbox_size(iw, ih, 64, 64)
    assert min(new_w, new_h) == 1 and max(new_w, new_h) == 64
    im = load_image_color(path)
    boxed = letterbox(im, 64, 64)
    assert boxed.shape == (3, 64, 64)
    assert np.count_nonzero(boxed != np.float32(0.5)) > 64   # the strip is there
    assert load_image(path, (3, 28, 28), letterbox=True).shape == (3, 28, 28)
    assert validation_crop(im, 28, 28).shape == (3, 28, 28)
