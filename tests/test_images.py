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
    return {"good": good, "truncated": truncated, "text": text, "missing": tmp_path / "no.png"}


@pytest.mark.parametrize("kind,message", [
    ("missing", "image file does not exist"),
    ("text", "not an image file Pillow can read"),
    ("truncated", "cannot read image: "),
])
@pytest.mark.parametrize("reader", [lambda p: load_image(p, (3, 8, 8)), load_image_color],
                         ids=["classifier", "detector"])
def test_a_bad_image_is_one_error_naming_the_file(files, kind, message, reader):
    with pytest.raises(DarknetError) as e:
        reader(files[kind])
    assert str(e.value).startswith(f"{files[kind]}: error: {message}")
    assert "\n" not in str(e.value)


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
