"""AlexeyAB's [scale_channels], [sam], [implicit] and [empty]: equal to loops written from
AlexeyAB's C (ab:src/scale_channels_layer.c, sam_layer.c, representation_layer.c, parser.c),
finite-difference gradients (float64), the update, the .weights layout and the cfgs of
AlexeyAB's cfg/ folder that use them."""

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.errors import CfgError
from darknet_py.nn.layers.base import UpdateArgs
from test_gradients import check_net, input_for, make_net

ACT = {"linear": lambda v: v, "logistic": lambda v: 1 / (1 + np.exp(-v)),
       "leaky": lambda v: np.where(v > 0, v, 0.1 * v)}


# -- loops from AlexeyAB's C ------------------------------------------------------------------

def ab_scale_channels_forward(inp, from_output, scale_wh, activation):
    """ab forward_scale_channels_layer: one flat loop over the output."""
    n, c, h, w = from_output.shape
    size, channel_size, batch_size = n * c * h * w, h * w, c * h * w
    x, f = inp.reshape(-1), from_output.reshape(-1)
    out = np.empty(size)
    for i in range(size):
        if scale_wh:
            out[i] = x[i % channel_size + (i // batch_size) * channel_size] * f[i]
        else:
            out[i] = x[i // channel_size] * f[i]
    return ACT[activation](out).reshape(from_output.shape)


def ab_scale_channels_backward(delta, inp, from_output, scale_wh):
    """ab backward_scale_channels_layer (linear activation): (state.delta, from_delta)."""
    n, c, h, w = from_output.shape
    size, channel_size, batch_size = n * c * h * w, h * w, c * h * w
    d, x, f = delta.reshape(-1), inp.reshape(-1), from_output.reshape(-1)
    state_delta, from_delta = np.zeros(x.size), np.zeros(size)
    for i in range(size):
        at = i % channel_size + (i // batch_size) * channel_size if scale_wh \
            else i // channel_size
        state_delta[at] += d[i] * f[i]
        from_delta[i] += x[at] * d[i]
    return state_delta.reshape(inp.shape), from_delta.reshape(from_output.shape)


def ab_sam_forward(inp, from_output, activation):
    x, f = inp.reshape(-1), from_output.reshape(-1)
    return ACT[activation](np.array([x[i] * f[i] for i in range(x.size)])).reshape(inp.shape)


# -- [scale_channels] -------------------------------------------------------------------------

SE = """
[convolutional]
filters=4
size=3
stride=1
pad=1
activation=tanh

[avgpool]

[convolutional]
filters=4
size=1
stride=1
activation=logistic

[scale_channels]
from=-3
"""

SPATIAL = """
[convolutional]
filters=3
size=3
stride=1
pad=1
activation=tanh

[convolutional]
filters=1
size=1
stride=1
activation=logistic

[scale_channels]
from=-2
scale_wh=1
"""


@pytest.mark.parametrize("body,scale_wh", [(SE, 0), (SPATIAL, 1)], ids=["channels", "wh"])
@pytest.mark.parametrize("activation", ["linear", "leaky"])
def test_scale_channels_equals_alexeyabs_loops(body, scale_wh, activation):
    net = build("[net]\nbatch=2\nchannels=2\nwidth=5\nheight=5\n" + body
                + f"activation={activation}\n")
    x = rng_for_test().standard_normal((2, 2, 5, 5)).astype(np.float32)
    out = net.forward(x, train=True)
    layer, prev = net.layers[-1], net.layers[-2]
    source = net.layers[layer.source]
    want = ab_scale_channels_forward(prev.output.astype(np.float64),
                                     source.output.astype(np.float64), scale_wh, activation)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    if activation == "linear":
        delta = rng_for_test().standard_normal(out.shape).astype(np.float32)
        layer.delta[...] = delta
        for l in net.layers[:-1]:
            l.delta[...] = 0
        layer.backward(_state(net, len(net.layers) - 1))
        state_delta, from_delta = ab_scale_channels_backward(
            delta.astype(np.float64), prev.output.astype(np.float64),
            source.output.astype(np.float64), scale_wh)
        np.testing.assert_allclose(prev.delta, state_delta, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(source.delta, from_delta, rtol=1e-5, atol=1e-6)


def _state(net, i):
    """What Network.backward hands layer i."""
    from types import SimpleNamespace
    prev = net.layers[i - 1]
    return SimpleNamespace(xp=np, layers=net.layers, input=prev.output, delta=prev.delta,
                           index=i)


@pytest.mark.parametrize("body", [SE, SPATIAL], ids=["channels", "wh"])
@pytest.mark.parametrize("activation", ["linear", "logistic", "mish"])
def test_scale_channels_gradients(body, activation):
    net = make_net(body + f"activation={activation}\n", batch=2, c=2, h=4, w=4)
    check_net(net, input_for(net))


def test_scale_channels_refuses_an_input_it_cannot_broadcast():
    head = "[net]\nbatch=1\nchannels=2\nwidth=4\nheight=4\n[convolutional]\nfilters=4\n" \
           "size=1\nactivation=linear\n[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"
    with pytest.raises(CfgError, match="scales the 4 channels of layer 0"):
        build(head + "[scale_channels]\nfrom=-2\n")
    with pytest.raises(CfgError, match="scale_wh=1"):
        build(head + "[scale_channels]\nfrom=-2\nscale_wh=1\n")


# -- [sam] ------------------------------------------------------------------------------------

SAM = """
[convolutional]
filters=3
size=3
stride=1
pad=1
activation=tanh

[convolutional]
filters=3
size=1
stride=1
activation=logistic

[sam]
from=-2
"""


def test_sam_equals_alexeyabs_loop_and_adds_into_both_deltas():
    net = build("[net]\nbatch=2\nchannels=2\nwidth=4\nheight=4\n" + SAM)
    x = rng_for_test().standard_normal((2, 2, 4, 4)).astype(np.float32)
    out = net.forward(x, train=True)
    sam, prev, source = net.layers[2], net.layers[1], net.layers[0]
    want = ab_sam_forward(prev.output.astype(np.float64), source.output.astype(np.float64),
                          "linear")
    np.testing.assert_allclose(out, want, rtol=1e-6)
    delta = rng_for_test().standard_normal(out.shape).astype(np.float32)
    sam.delta[...] = delta
    source.delta[...] = 1.0                 # something already there: it must be kept
    prev.delta[...] = 0
    sam.backward(_state(net, 2))
    np.testing.assert_allclose(prev.delta, delta * source.output, rtol=1e-6)
    np.testing.assert_allclose(source.delta, 1 + delta * prev.output, rtol=1e-6)


@pytest.mark.parametrize("activation", ["linear", "logistic", "swish"])
def test_sam_gradients(activation):
    net = make_net(SAM + f"activation={activation}\n", batch=2, c=2, h=4, w=4)
    check_net(net, input_for(net))


def test_sam_refuses_layers_of_another_shape():
    with pytest.raises(CfgError, match="same shape"):
        build("[net]\nbatch=1\nchannels=2\nwidth=4\nheight=4\n[convolutional]\nfilters=4\n"
              "size=1\nactivation=linear\n[convolutional]\nfilters=3\nsize=1\n"
              "activation=linear\n[sam]\nfrom=-2\n")


# -- [implicit] -------------------------------------------------------------------------------

IMPLICIT = """
[convolutional]
filters=4
size=3
stride=1
pad=1
activation=tanh

[implicit]
filters=4
mean=1
std=0.1

[scale_channels]
from=-2
"""


def test_implicit_is_its_weights_for_every_image_and_trains_them():
    net = build("[net]\nbatch=3\nchannels=2\nwidth=4\nheight=4\nlearning_rate=0.1\n"
                "momentum=0.9\ndecay=0.0005\n[implicit]\nfilters=5\natoms=2\nmean=0.5\nstd=0.2\n")
    layer = net.layers[0]
    assert layer.out_shape == (5, 2, 1) and layer.weights.shape == (5, 2, 1)
    assert ((layer.weights >= 0.3) & (layer.weights <= 0.7)).all()
    assert layer.weights.std() > 0
    x = rng_for_test().standard_normal((3, 2, 4, 4)).astype(np.float32)
    out = net.forward(x, train=True)
    np.testing.assert_array_equal(out, np.broadcast_to(layer.weights, (3, 5, 2, 1)))
    delta = rng_for_test().standard_normal(out.shape).astype(np.float32)
    layer.delta[...] = delta
    dx = np.zeros_like(x)
    net.backward(dx)
    assert not dx.any()                               # the input is not used
    np.testing.assert_allclose(layer.weight_updates, delta.sum(axis=0), rtol=1e-6)
    # ab update_implicit_layer: U += -decay*B*w; w += lr/B * U; U *= momentum
    w0, u0 = layer.weights.astype(np.float64), layer.weight_updates.astype(np.float64)
    layer.update(UpdateArgs(0.1, 0.9, 0.0005, 3))
    u = u0 - 0.0005 * 3 * w0
    np.testing.assert_allclose(layer.weights, w0 + 0.1 / 3 * u, rtol=1e-6)
    np.testing.assert_allclose(layer.weight_updates, 0.9 * u, rtol=1e-6)


def test_implicit_mul_gradients():
    """YOLOR's ImplicitM: [implicit] times the maps through [scale_channels]; the implicit
    weights are differentiated too (the check covers every layer's weights)."""
    net = make_net(IMPLICIT, batch=2, c=2, h=4, w=4)
    check_net(net, input_for(net))


def test_implicit_weights_are_filters_times_atoms_floats_in_the_file(tmp_path):
    text = "[net]\nbatch=1\nchannels=3\nwidth=4\nheight=4\n" + \
        IMPLICIT.replace("filters=4\nmean", "filters=4\natoms=1\nmean")
    net = build(text, seed=2)
    path = tmp_path / "w.weights"
    net.save_weights(path)
    conv = net.layers[0]
    header = 20                                       # major, minor, revision, 64-bit seen
    assert path.stat().st_size == header + 4 * (conv.biases.size + conv.weights.size + 4)
    floats = np.fromfile(path, np.float32, offset=header)
    np.testing.assert_array_equal(floats[-4:], net.layers[1].weights.reshape(-1))
    again = build(text, seed=9)
    again.load_weights(path)
    np.testing.assert_array_equal(again.layers[1].weights, net.layers[1].weights)


# -- [empty] ----------------------------------------------------------------------------------

def test_empty_passes_the_input_and_the_delta_through():
    body = """
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [empty]

        [silence]

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """
    net = make_net(body, batch=2, c=2, h=4, w=4)
    x = input_for(net)
    net.forward(x)
    np.testing.assert_array_equal(net.layers[2].output, net.layers[0].output)
    assert net.layers[1].type == net.layers[2].type == "empty"
    check_net(net, x)


# -- AlexeyAB's cfgs --------------------------------------------------------------------------

def test_squeeze_excitation_block_as_efficientnet_b0_writes_it():
    """efficientnet_b0.cfg's block: dwise conv (swish), [avgpool], conv swish, conv logistic,
    [scale_channels] from=-4."""
    net = make_net("""
        [convolutional]
        groups=2
        filters=2
        size=3
        stride=1
        pad=1
        batch_normalize=1
        activation=swish

        [avgpool]

        [convolutional]
        filters=3
        size=1
        stride=1
        activation=swish

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=logistic

        [scale_channels]
        from=-4
        """, batch=3, c=2, h=4, w=4)
    check_net(net, input_for(net))
