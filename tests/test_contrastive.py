"""AlexeyAB's [contrastive]: inference leaves its zero buffer (AlexeyAB's forward returns when
not training), the [yolo] outputs are untouched; it must name a [yolo]; training is refused."""

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.errors import CfgError, NotSupportedError

HEAD = ("[net]\nwidth=32\nheight=32\nchannels=3\nbatch=2\n"
        "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
        "[convolutional]\nfilters=18\nsize=1\nstride=1\nactivation=linear\n"
        "[yolo]\nmask=0,1\nanchors=4,4, 8,8\nclasses=4\nnum=2\n"
        "[route]\nlayers=-3\n"
        "[convolutional]\nfilters=6\nsize=1\nstride=1\nactivation=linear\n")


def test_inference_leaves_the_contrastive_output_zero_and_the_head_as_without_it():
    rng = rng_for_test()
    net = build(HEAD + "[contrastive]\nclasses=1\nyolo_layer=-3\n")
    plain = build(HEAD, seed=1)
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    out = net.forward(x)
    assert out.shape == (2, 6, 16, 16) and not out.any()
    plain.forward(x)
    np.testing.assert_array_equal(net.layers[2].output, plain.layers[2].output)


def test_contrastive_must_name_a_yolo_layer():
    text = HEAD + "[contrastive]\nyolo_layer=-2\n"
    with pytest.raises(CfgError, match=r"yolo_layer=-2 .*layer 3 \(route\).*\[yolo\]") as e:
        build(text)
    assert e.value.line == text.splitlines().index("yolo_layer=-2") + 1


def test_training_through_contrastive_is_refused_in_one_line():
    net = build(HEAD + "[contrastive]\nyolo_layer=-3\n")
    x = np.zeros((2, 3, 32, 32), np.float32)
    truth = np.zeros((2, 90 * 5), np.float32)
    truth[:, :5] = [0.5, 0.5, 0.2, 0.2, 1]
    with pytest.raises(NotSupportedError, match=r"\[contrastive\].*inference only"):
        net.train_step(x, truth)
