"""Image files: every way one can be bad is a one-line error naming it."""

import pytest

from darknet_py.data.datasets import load_image, open_image
from darknet_py.detection.detect import load_image_color
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
