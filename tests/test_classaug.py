"""Classifier augmentation (pj load_image_augment_paths): the crop equals libdarknet's."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from conftest import require_darknet, rng_for_test  # noqa: E402
from darknet_py.cfg.parser import parse_cfg_text  # noqa: E402
from darknet_py.data.classaug import ClassifierAugment, rotate_crop_image  # noqa: E402
from oracle.darknet import DarknetOracle  # noqa: E402


def test_the_identity_crop_returns_the_image():
    img = rng_for_test().uniform(0, 1, (3, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(rotate_crop_image(img, 0, 1, 9, 7, 0, 0, 1), img)


def test_outside_the_image_reads_zero():
    img = np.ones((1, 4, 4), np.float32)
    out = rotate_crop_image(img, 0, 1, 8, 8, 0, 0, 1)       # a crop twice the image's size
    assert out[0, 0, 0] == 0 and out[0, 4, 4] == 1 and out.shape == (1, 8, 8)


@pytest.mark.darknet
@pytest.mark.parametrize("rad,s,w,h,dx,dy,aspect", [
    (0.0, 1.0, 9, 7, 0.0, 0.0, 1.0),
    (0.3, 1.7, 16, 16, 2.5, -3.25, 1.0),
    (-0.12, 0.8, 12, 10, -1.0, 0.5, 1.3),
    (0.7, 2.3, 20, 20, 4.0, 4.0, 0.75),
])
def test_rotate_crop_image_equals_darknet(rad, s, w, h, dx, dy, aspect):
    ok, why = DarknetOracle.available()
    require_darknet(ok, why, "classifier augmentation tests")
    from oracle.darknet import rotate_crop_image as darknet_rotate_crop_image
    img = rng_for_test().uniform(0, 1, (3, 11, 13)).astype(np.float32)
    ours = rotate_crop_image(img, rad, s, w, h, dx, dy, aspect)
    theirs = darknet_rotate_crop_image(img, rad, s, w, h, dx, dy, aspect)
    # libdarknet's build reassociates this arithmetic (its disassembly multiplies by a
    # precomputed aspect/s instead of dividing by s): up to an ulp of float32 differs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2.5e-7)


def test_defaults_follow_pj_parse_net_options():
    net = parse_cfg_text("[net]\nwidth=224\nheight=224\nchannels=3\n", "t.cfg").net
    a = ClassifierAugment.from_section(net, 224)
    assert (a.low, a.high, a.angle, a.aspect, a.center) == (224, 448, 0.0, 1.0, False)
    net = parse_cfg_text("[net]\nmax_crop=320\nmin_crop=256\nangle=7\naspect=.75\nhue=.1\n",
                         "t.cfg").net
    a = ClassifierAugment.from_section(net, 256)
    assert (a.low, a.high, a.angle, a.aspect, a.hue) == (256, 320, 7.0, 0.75, 0.1)


def test_a_crop_is_the_network_size_and_depends_on_the_draw():
    a = ClassifierAugment(size=32, low=32, high=64, angle=10, aspect=1.2, hue=.1,
                          saturation=1.5, exposure=1.5)
    img = rng_for_test().uniform(0, 1, (3, 50, 70)).astype(np.float32)
    one, same = a(img, np.random.default_rng(1)), a(img, np.random.default_rng(1))
    other = a(img, np.random.default_rng(2))
    assert one.shape == (3, 32, 32) and one.dtype == np.float32
    np.testing.assert_array_equal(one, same)
    assert not np.array_equal(one, other)
    assert 0 <= one.min() and one.max() <= 1
    centre = ClassifierAugment(size=32, low=32, high=64, center=True)(img, np.random.default_rng(3))
    assert centre.shape == (3, 32, 32)


def test_validation_takes_pj_valids_centre_crop():
    """resize_min to the network width, then the centred crop (as validate_classifier_single)."""
    from darknet_py.data.classaug import validation_crop
    from darknet_py.image import resize_image
    img = rng_for_test().uniform(0, 1, (3, 20, 40)).astype(np.float32)
    out = validation_crop(img, 10, 10)
    np.testing.assert_array_equal(out, resize_image(img, 20, 10)[:, :, 5:15])
    square = img[:, :, :20]
    np.testing.assert_array_equal(validation_crop(square, 20, 20), square)   # nothing to do
