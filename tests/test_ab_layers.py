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


# -- [maxpool] stride_x / stride_y, maxpool_depth ----------------------------------------------

def ab_maxpool(x, size, stride_x, stride_y, pad, out_h, out_w):
    """ab forward_maxpool_layer's loops (the training path): (output, flat argmax indexes)."""
    n, c, h, w = x.shape
    flat = x.reshape(-1)
    out = np.empty((n, c, out_h, out_w), x.dtype)
    idx = np.empty(out.shape, np.int64)
    for b in range(n):
        for k in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    best, best_i = -np.inf, -1
                    for dy in range(size):
                        for dx in range(size):
                            cur_h = -(pad // 2) + i * stride_y + dy
                            cur_w = -(pad // 2) + j * stride_x + dx
                            index = cur_w + w * (cur_h + h * (k + b * c))
                            valid = 0 <= cur_h < h and 0 <= cur_w < w
                            val = flat[index] if valid else -np.inf
                            if val > best:
                                best, best_i = val, index
                    out[b, k, i, j], idx[b, k, i, j] = best, best_i
    return out, idx


def ab_maxpool_depth(x, out_c):
    n, c, h, w = x.shape
    flat = x.reshape(-1)
    out = np.empty((n, out_c, h, w), x.dtype)
    idx = np.empty(out.shape, np.int64)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for g in range(out_c):
                    best, best_i = -np.inf, -1
                    for k in range(g, c, out_c):
                        in_index = j + w * (i + h * (k + c * b))
                        if flat[in_index] > best:
                            best, best_i = flat[in_index], in_index
                    out[b, g, i, j], idx[b, g, i, j] = best, best_i
    return out, idx


def _scatter(delta, idx, size):
    dx = np.zeros(size)
    np.add.at(dx, idx.reshape(-1), delta.reshape(-1))
    return dx


MAXPOOL = {
    "stride_x=2": ("size=2\nstride_x=2\nstride_y=1\n", 7, 6),
    "stride_y=3": ("size=3\nstride=1\nstride_y=3\n", 6, 7),
    "stride_x=1 stride_y=2 padding=0": ("size=2\nstride_x=1\nstride_y=2\npadding=0\n", 5, 6),
    "depth 5->2": ("maxpool_depth=1\nout_channels=2\n", 5, 5),
    "depth 6->3": ("maxpool_depth=1\nout_channels=3\n", 4, 5),
}


@pytest.mark.parametrize("case", list(MAXPOOL))
def test_maxpool_alexeyab_options_equal_alexeyabs_loops(case):
    opts, h, w = MAXPOOL[case]
    c = 6 if "6->3" in case else 5
    net = build(f"[net]\nbatch=2\nchannels={c}\nwidth={w}\nheight={h}\n[maxpool]\n{opts}")
    layer = net.layers[0]
    x = rng_for_test().standard_normal((2, c, h, w)).astype(np.float32)
    x[0, 0, 0, :2] = x[0, 0, 0, 2]                   # ties: the first maximum wins
    out = net.forward(x, train=True)
    if layer.depth:
        want, idx = ab_maxpool_depth(x, layer.out_c)
    else:
        want, idx = ab_maxpool(x, layer.size, layer.stride_x, layer.stride_y, layer.padding,
                               layer.out_h, layer.out_w)
    assert out.shape == want.shape
    np.testing.assert_array_equal(out, want)
    delta = rng_for_test().standard_normal(out.shape).astype(np.float32)
    layer.delta[...] = delta
    dx = np.zeros_like(x)
    net.backward(dx)
    np.testing.assert_allclose(dx.reshape(-1), _scatter(delta, idx, x.size), rtol=1e-6)


@pytest.mark.parametrize("opts", ["size=3\nstride_x=2\nstride_y=1\n",
                                  "maxpool_depth=1\nout_channels=2\n"])
def test_maxpool_alexeyab_options_gradients(opts):
    net = make_net(f"""
        [convolutional]
        filters=5
        size=3
        stride=1
        pad=1
        activation=tanh

        [maxpool]
        {opts.replace(chr(10), chr(10) + '        ')}
        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """, batch=2, c=2, h=5, w=6)
    check_net(net, input_for(net))


# -- [convolutional] stride_x / stride_y, dilation ---------------------------------------------

def ab_conv(x, weights, stride_x, stride_y, pad, dilation, out_h, out_w):
    """ab forward_convolutional_layer's CPU path: im2col_cpu_ext (padding pad*dilation, taps
    dilation apart, zeros outside) then the GEMM, groups=1."""
    n, c, h, w = x.shape
    filters, _, size, _ = weights.shape
    p = pad * dilation
    out = np.zeros((n, filters, out_h, out_w))
    for b in range(n):
        col = np.zeros((c, size, size, out_h, out_w))
        for ch in range(c):
            for ky in range(size):
                for kx in range(size):
                    for i in range(out_h):
                        row = -p + ky * dilation + i * stride_y
                        for j in range(out_w):
                            colx = -p + kx * dilation + j * stride_x
                            if 0 <= row < h and 0 <= colx < w:
                                col[ch, ky, kx, i, j] = x[b, ch, row, colx]
        out[b] = np.tensordot(weights, col, axes=([1, 2, 3], [0, 1, 2]))
    return out


CONV_AB = {
    "stride_x=2": ("size=3\nstride_x=2\nstride_y=1\npad=1\n", 7, 8),
    "stride_y=2 stride_x=3": ("size=3\nstride_y=2\nstride_x=3\npadding=0\n", 8, 7),
    "dilation=2": ("size=3\nstride=1\npad=1\ndilation=2\n", 7, 7),
    "dilation=3 stride=2": ("size=3\nstride=2\npad=1\ndilation=3\n", 9, 8),
    "dilation=2 size=5": ("size=5\nstride=1\npad=1\ndilation=2\n", 9, 9),
    "dilation on 1x1 is 1": ("size=1\nstride=1\ndilation=4\n", 5, 5),
}


@pytest.mark.parametrize("case", list(CONV_AB))
def test_conv_alexeyab_geometry_equals_alexeyabs_loops(case):
    opts, h, w = CONV_AB[case]
    net = build(f"[net]\nbatch=2\nchannels=2\nwidth={w}\nheight={h}\n[convolutional]\n"
                f"filters=3\n{opts}activation=linear\n")
    layer = net.layers[0]
    x = rng_for_test().standard_normal((2, 2, h, w)).astype(np.float32)
    out = net.forward(x)
    # AlexeyAB's output size: (h + 2 pad - size)/stride_y + 1, whatever the dilation
    assert out.shape[2:] == ((h + 2 * layer.padding - layer.size) // layer.stride_y + 1,
                             (w + 2 * layer.padding - layer.size) // layer.stride_x + 1)
    want = ab_conv(x.astype(np.float64), layer.weights.astype(np.float64), layer.stride_x,
                   layer.stride_y, layer.padding, layer.dilation, out.shape[2], out.shape[3])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CONV_AB if "1x1" not in c])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_alexeyab_geometry_gradients(case, groups):
    opts, h, w = CONV_AB[case]
    net = make_net(f"""
        [convolutional]
        filters=4
        groups={groups}
        batch_normalize=1
        {opts.replace(chr(10), chr(10) + '        ')}activation=tanh
        """, batch=2, c=2, h=h, w=w)
    check_net(net, input_for(net))


def test_dilation_needs_the_padding_that_keeps_alexeyabs_output_size():
    with pytest.raises(CfgError, match=r"dilation=2 in \[convolutional\] needs padding"):
        build("[net]\nbatch=1\nchannels=1\nwidth=8\nheight=8\n[convolutional]\nfilters=1\n"
              "size=3\npadding=0\ndilation=2\nactivation=linear\n")
