"""AlexeyAB's activations revleaky and normalize_channels, normalize_channels_softmax,
normalize_channels_softmax_maxval (ab:src/activations.c, activation_kernels.cu, applied in
[convolutional] as ab:src/convolutional_layer.c does): forward equal to loops written from
AlexeyAB's C, backward the exact gradient (finite differences, float64), revleaky's backward
AlexeyAB's GPU one."""

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.cfg.check import check_cfg
from darknet_py.errors import CfgError
from darknet_py.nn.activations import (CHANNEL_ACTIVATIONS, activate, activate_channels,
                                       gradient)
from test_gradients import check_net, make_net


def ab_normalize_channels(x, name):
    """ab activate_array_normalize_channels(_softmax): loops over the positions, then the
    channels, float32 with eps = 0.0001 first in the sum."""
    x = x.astype(np.float32)
    n, channels, h, w = x.shape
    wh_step = h * w
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    eps = np.float32(0.0001)
    for i in range(n * wh_step):
        wh_i, b = i % wh_step, i // wh_step
        at = [wh_i + k * wh_step + b * wh_step * channels for k in range(channels)]
        s = eps
        if name == "normalize_channels":
            for k in at:
                if flat[k] > 0:
                    s += flat[k]
            for k in at:
                out[k] = flat[k] / s if flat[k] > 0 else 0
            continue
        max_val = np.float32(0)
        if name.endswith("maxval"):
            max_val = flat[at[0]]
            for k in at:
                if flat[k] > max_val:
                    max_val = flat[k]
        for k in at:
            s += np.exp(flat[k] - max_val)
        for k in at:
            out[k] = np.exp(flat[k] - max_val) / s
    return out.reshape(x.shape)


@pytest.mark.parametrize("name", CHANNEL_ACTIVATIONS)
def test_channel_activations_equal_alexeyabs_loops(name):
    x = (rng_for_test().standard_normal((2, 5, 3, 4)) * 3).astype(np.float32)
    np.testing.assert_allclose(activate_channels(x, name), ab_normalize_channels(x, name),
                               rtol=2e-6, atol=1e-7)


CONV = """
[convolutional]
filters=4
size=3
stride=1
pad=1
batch_normalize={bn}
activation={act}

[convolutional]
filters=2
size=1
stride=1
activation=linear
"""


@pytest.mark.parametrize("bn", [0, 1], ids=["bias", "bn"])
@pytest.mark.parametrize("name", CHANNEL_ACTIVATIONS)
def test_channel_activations_in_conv_have_the_exact_gradient(name, bn):
    """The gradient, not AlexeyAB's gradient_array_normalize_channels* (delta * sum(y delta),
    which is not one); normalize_channels' pre-activations are kept away from its kink at 0."""
    net = make_net(CONV.format(bn=bn, act=name), batch=2, c=2, h=4, w=4)
    rng = rng_for_test()
    conv = net.layers[0]
    np.testing.assert_array_equal(conv.weights, 1)        # AlexeyAB's init for NORM_CHAN*
    conv.weights[...] = rng.normal(0, 0.5, conv.weights.shape)
    for _ in range(200):
        x = rng.standard_normal((2, 2, 4, 4))
        net.forward(x, train=True)
        if name != "normalize_channels" or np.abs(conv.activation_input).min() > 1e-3:
            break
    else:
        pytest.fail("no input away from normalize_channels' kink")
    if name == "normalize_channels":
        z = conv.activation_input
        assert (z > 0).any() and (z < 0).any()
    check_net(net, x)


def test_channel_activation_output_sums_to_one_per_position():
    net = build("[net]\nbatch=2\nchannels=3\nwidth=5\nheight=5\n"
                + CONV.format(bn=0, act="normalize_channels_softmax_maxval"))
    net.forward(rng_for_test().standard_normal((2, 3, 5, 5)).astype(np.float32))
    y = net.layers[0].output
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-3)
    assert (y > 0).all()


def test_channel_activations_only_in_convolutional():
    head = "[net]\nbatch=1\nchannels=2\nwidth=4\nheight=4\n[convolutional]\nfilters=2\n" \
           "size=1\nactivation=linear\n"
    for tail in ("[shortcut]\nfrom=-1\nactivation=normalize_channels\n",
                 "[connected]\noutput=3\nactivation=normalize_channels_softmax\n",
                 "[activation]\nactivation=normalize_channels\n"):
        with pytest.raises(CfgError, match="normalize_channels"):
            build(head + tail)


def test_cfg_check_accepts_channel_activations_in_conv_only(tmp_path):
    head = "[net]\nbatch=1\nchannels=2\nwidth=4\nheight=4\n[convolutional]\nfilters=2\n" \
           "size=1\nactivation=normalize_channels_softmax\n"
    ok = tmp_path / "ok.cfg"
    ok.write_text(head)
    assert not [f for f in check_cfg(str(ok)) if f.level == "error"]
    bad = tmp_path / "bad.cfg"
    bad.write_text(head + "[shortcut]\nfrom=-1\nactivation=normalize_channels\n")
    errors = [f for f in check_cfg(str(bad)) if f.level == "error"]
    assert len(errors) == 1 and errors[0].line == 12
    assert "works in [convolutional] layers only" in errors[0].message


# -- revleaky ---------------------------------------------------------------------------------

def test_revleaky_is_leaky_forward_and_alexeyabs_reversed_slope_backward():
    """ab gradient_array_revleaky_kernel: delta /= leaky_gradient(y): 1 above 0, 1/0.1 = 10
    below (its CPU gradient() uses leaky's; the GPU one is what the name means)."""
    x = np.array([-3.0, -0.5, 0.5, 2.0])
    np.testing.assert_array_equal(activate(x, "revleaky"), activate(x, "leaky"))
    np.testing.assert_array_equal(gradient(activate(x, "revleaky"), None, "revleaky"),
                                  [10, 10, 1, 1])
    net = build("[net]\nbatch=1\nchannels=1\nwidth=4\nheight=1\n"
                "[activation]\nactivation=revleaky\n")
    net.forward(x.reshape(1, 1, 1, 4).astype(np.float32), train=True)
    net.layers[0].delta[...] = 1
    dx = np.zeros((1, 1, 1, 4), np.float32)
    net.backward(dx)
    np.testing.assert_array_equal(dx.reshape(-1), [10, 10, 1, 1])


def test_revleaky_in_conv_is_leaky_forward_with_ten_times_the_negative_side_backward():
    rev = make_net(CONV.format(bn=1, act="revleaky"), batch=2, c=2, h=4, w=4)
    leaky = make_net(CONV.format(bn=1, act="leaky"), batch=2, c=2, h=4, w=4)
    x = rng_for_test().standard_normal((2, 2, 4, 4))
    for net in (rev, leaky):
        net.forward(x, train=True)
        net.layers[-1].delta[...] = 1
        net.backward(np.zeros_like(x))
    y = rev.layers[0].output
    np.testing.assert_array_equal(y, leaky.layers[0].output)
    assert (y < 0).any() and (y > 0).any()
    # the conv's bias (BN beta) gradient: the delta after the activation, summed
    d_rev, d_leaky = rev.layers[0].delta, leaky.layers[0].delta
    np.testing.assert_allclose(d_rev, d_leaky)      # what reached the activation's output
    want = (d_leaky * np.where(y > 0, 1, 10)).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(rev.layers[0].bias_updates, want, rtol=1e-9)
