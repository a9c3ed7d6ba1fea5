"""Smoke tests for the Darknet oracle itself: it loads, runs, saves and trains."""
import re
import struct

import numpy as np
import pytest

from . import DarknetOracle

ok, why = DarknetOracle.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"Darknet oracle: {why}")

TINY_CFG = "/usr/share/darknet/cfg/tiny.cfg"

SMALL_CFG = """\
[net]
batch=4
subdivisions=1
channels=1
height=28
width=28
learning_rate=0.1
momentum=0.9
decay=0.0005

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[connected]
output=10
activation=linear

[softmax]
"""


def set_net_keys(text: str, **keys) -> str:
    """Rewrite `key=value` lines (Darknet strips all spaces, so `^key=` is exact)."""
    for k, v in keys.items():
        text, n = re.subn(rf"(?m)^{k}=.*$", f"{k}={v}", text, count=1)
        assert n == 1, k
    return text


@pytest.fixture
def tiny64(tmp_path):
    cfg = tmp_path / "tiny64.cfg"
    text = open(TINY_CFG).read()
    cfg.write_text(set_net_keys(text, batch=2, width=64, height=64))
    return cfg


@pytest.fixture
def small(tmp_path):
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SMALL_CFG)
    return cfg


def test_tiny_save_reload_gives_identical_outputs(tiny64, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    with DarknetOracle.load(tiny64, batch=2) as net:
        assert net.n_layers == 22
        assert net.layer_shape(0) == (16, 64, 64)
        assert net.layer_shape(19) == (1000, 4, 4)
        assert net.layer_type(20) == "AVGPOOL"
        net.randomize_bn(7)
        net.forward(x)
        before = [net.layer_output(i) for i in range(net.n_layers)]
        net.save(tmp_path / "tiny64.weights")

    # a different seed gives different random init, which the weights must overwrite
    with DarknetOracle.load(tiny64, tmp_path / "tiny64.weights", batch=2, seed=99) as net:
        net.forward(x)
        for i, ref in enumerate(before):
            np.testing.assert_array_equal(net.layer_output(i), ref, err_msg=f"layer {i}")
    probs = before[-1]
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_first_conv_matches_the_pj_cpu_inference_formula(small):
    """conv (no bias) -> (y - rolling_mean) / (sqrt(rolling_variance) + 1e-6) * scales + biases -> leaky."""
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28), dtype=np.float32)
    with DarknetOracle.load(small, batch=4) as net:
        net.randomize_bn(3)
        net.forward(x)
        w = net.get(0, "weights").reshape(8, 1, 3, 3).astype(np.float64)
        rm, rv = net.get(0, "rolling_mean"), net.get(0, "rolling_variance")
        scales, biases = net.get(0, "scales"), net.get(0, "biases")
        got = net.layer_output(0).reshape(4, 8, 28, 28)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = sum(np.einsum("bhw,o->bohw", xp[:, 0, i:i + 28, j:j + 28], w[:, 0, i, j])
            for i in range(3) for j in range(3))
    c = (slice(None), None, None)
    y = (y - rm[c]) / (np.sqrt(rv[c]) + 1e-6) * scales[c] + biases[c]
    y = np.where(y > 0, y, 0.1 * y)
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-5)


def test_small_train_step_changes_the_saved_weights(small, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 1, 28, 28), dtype=np.float32)
    truth = np.eye(10, dtype=np.float32)[[0, 3, 5, 9]]
    with DarknetOracle.load(small, batch=4) as net:
        assert (net.batch, net.inputs, net.truths) == (4, 784, 10)
        net.randomize_bn(5)
        net.save(tmp_path / "before.weights")
        cost = net.train_step(x, truth)
        assert np.isfinite(cost) and cost > 0
        assert net.seen == 4
        net.save(tmp_path / "after.weights")
        net.forward(x)
        trained = net.layer_output(-1)

    before = (tmp_path / "before.weights").read_bytes()
    after = (tmp_path / "after.weights").read_bytes()
    # header: major=0, minor=2, revision=0, 64-bit seen; then conv(8 biases+3x8 BN+72 weights)
    # and connected(10 biases + 10*1568 weights), float32
    assert struct.unpack("<iiiQ", after[:20]) == (0, 2, 0, 4)
    assert len(after) == len(before) == 20 + 4 * (8 + 24 + 72 + 10 + 10 * 8 * 14 * 14)
    assert before[20:] != after[20:]

    with DarknetOracle.load(small, tmp_path / "after.weights", batch=4) as net:
        assert net.seen == 4
        net.forward(x)
        np.testing.assert_array_equal(net.layer_output(-1), trained)
