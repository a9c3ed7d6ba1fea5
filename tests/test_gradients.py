"""Finite-difference gradient checks (float64, CPU) for every layer type and every activation.

Darknet's sign convention: ``layer.delta`` is -dL/d(output) and the ``*_updates`` buffers hold
-dL/d(param) summed over the batch.  For a loss L = sum(r * last_output) we seed the last delta
with -r, run the backward pass and compare -dx and -updates with central differences of L,
recomputed by ``forward(train=True)`` (batch norm in train mode uses batch statistics, and that is
the function being differentiated).

The loss layers ([softmax], [cost], [logistic]) fuse their loss into the backward pass, so they are
checked against the finite-difference gradient of ``net.cost`` instead.  [dropout] draws its mask
in train mode; the checks re-seed its generator before every forward pass so the mask is fixed.
[crop] has no backward and [yolo]/[region] refuse training (checked, not differentiated).
"""

import textwrap

import numpy as np
import pytest

from darknet_py.cfg.parser import parse_cfg_text
from darknet_py.errors import CfgError, DarknetError
from darknet_py.nn.network import Network

EPS = 1e-6          # central-difference step
RTOL = 1e-6         # relative tolerance (normwise, see assert_grad_close)
PARAMS = ("weights", "biases", "scales")
UPDATES = {"weights": "weight_updates", "biases": "bias_updates", "scales": "scale_updates"}

# Every activation darknet_py knows (pj + AlexeyAB), with the points where it has a kink or a jump
# in its derivative; inputs are kept away from them.
ACTIVATION_BREAKS = {
    "logistic": [], "relu": [0.0], "relie": [0.0], "linear": [], "ramp": [0.0], "tanh": [],
    "plse": [-4.0, 4.0], "leaky": [0.0], "elu": [0.0], "loggy": [], "stair": "integers",
    "hardtan": [-1.0, 1.0], "lhtan": [0.0, 1.0], "selu": [0.0], "relu6": [0.0, 6.0],
    "swish": [], "mish": [], "hard_mish": [-2.0, 0.0], "gelu": [],
}
MARGIN = 1e-3       # minimum distance of a pre-activation from a breakpoint


# -- helpers ---------------------------------------------------------------------------------

def net_header(batch, c, h, w):
    return f"[net]\nbatch={batch}\nchannels={c}\nheight={h}\nwidth={w}\n\n"


def make_net(body, batch=3, c=3, h=6, w=6, seed=1):
    """A float64 network; biases and BN scales are randomised so their gradients are generic."""
    text = net_header(batch, c, h, w) + textwrap.dedent(body)
    # strict: an option the layer does not read is an error, so every cfg here tests what it says
    net = Network(parse_cfg_text(text, "t.cfg"), seed=seed, warn=False, strict=True)
    net = net.astype(np.float64)
    rng = np.random.default_rng(seed + 1000)
    for layer in net.layers:
        if getattr(layer, "biases", None) is not None:
            layer.biases[...] = rng.normal(0.0, 0.3, layer.biases.shape)
        if getattr(layer, "scales", None) is not None:
            layer.scales[...] = rng.uniform(0.5, 1.5, layer.scales.shape)
    return net


def param_keys(net):
    keys = []
    for i, layer in enumerate(net.layers):
        for name in PARAMS:
            if getattr(layer, name, None) is not None and \
                    getattr(layer, UPDATES[name], None) is not None:
                keys.append((i, name))
    return keys


def input_for(net, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((net.batch,) + tuple(net.input_shape))


def analytic_grads(net, x, r=None, truth=None, prepare=None):
    """-dx and -updates from one backward pass (the loss layer's own delta when r is None)."""
    if prepare:
        prepare(net)
    net.forward(x, train=True, truth=truth)
    keys = param_keys(net)
    for i, name in keys:
        getattr(net.layers[i], UPDATES[name])[...] = 0
    before = {k: getattr(net.layers[k[0]], k[1]).copy() for k in keys}
    if r is not None:
        last = net.layers[-1]
        assert last.delta.shape == r.shape
        last.delta[...] = -r
    dx = np.zeros_like(x)
    net.backward(dx)
    for k in keys:     # backward only accumulates; it never changes a parameter
        np.testing.assert_array_equal(getattr(net.layers[k[0]], k[1]), before[k],
                                      err_msg=f"backward changed layer {k[0]} {k[1]}")
    grads = {"input": -dx}
    for i, name in keys:
        grads[(i, name)] = -getattr(net.layers[i], UPDATES[name]).copy()
    return grads


def objective(net, x, r=None, truth=None, prepare=None):
    if prepare:
        prepare(net)
    net.forward(x, train=True, truth=truth)
    if r is not None:
        return float(np.sum(r * net.layers[-1].output))
    return float(net.cost)


def numeric_grad(f, a):
    """Central differences of f() with respect to every element of ``a`` (modified in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        v = a[idx]
        a[idx] = v + EPS
        fp = f()
        a[idx] = v - EPS
        fm = f()
        a[idx] = v
        g[idx] = (fp - fm) / (2 * EPS)
    return g


def assert_grad_close(analytic, numeric, what, rtol=RTOL, atol=1e-9):
    """|analytic - numeric| <= rtol * (|numeric| + max|numeric|) + atol, elementwise.

    ``atol`` only covers the central differences' round-off (|L| * 1e-16 / EPS) where the true
    gradient is zero (e.g. a bias in front of batch norm).
    """
    assert analytic.shape == numeric.shape, what
    scale = float(np.abs(numeric).max())
    err = np.abs(analytic - numeric)
    tol = rtol * (np.abs(numeric) + scale) + atol
    bad = err > tol
    if bad.any():
        idx = np.unravel_index(np.argmax(err - tol), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} entries differ; worst at {idx}: analytic "
            f"{analytic[idx]:.10g} vs numeric {numeric[idx]:.10g} (gradient scale {scale:.3g})")


def check_net(net, x, r=None, truth=None, prepare=None, factor=1.0, rtol=RTOL, skip=()):
    """Compare the backward pass with central differences of the objective.

    With ``r`` the objective is sum(r * last_output); otherwise ``net.cost`` (given ``truth``) and
    -dx, -updates must equal ``factor`` times its gradient.
    """
    if r is None and truth is None:
        objective(net, x, prepare=prepare)
        r = np.random.default_rng(99).standard_normal(net.layers[-1].output.shape)
    grads = analytic_grads(net, x, r=r, truth=truth, prepare=prepare)

    def f():
        return objective(net, x, r=r, truth=truth, prepare=prepare)

    dx = factor * numeric_grad(f, x)
    assert np.abs(dx).max() > 1e-6, "the numeric input gradient is zero: a vacuous check"
    assert_grad_close(grads["input"], dx, "d/d input", rtol)
    for i, name in param_keys(net):
        if (i, name) in skip:
            continue
        p = getattr(net.layers[i], name)
        assert_grad_close(grads[(i, name)], factor * numeric_grad(f, p),
                          f"d/d layer {i} ({net.layers[i].type}) {name}", rtol)


# -- convolutional ---------------------------------------------------------------------------

CONV_CASES = {
    "3x3 pad": dict(c=3, h=6, w=6, opts="filters=4\nsize=3\nstride=1\npad=1"),
    "3x3 no pad": dict(c=3, h=6, w=6, opts="filters=3\nsize=3\nstride=1"),
    "groups=2": dict(c=4, h=5, w=5, opts="filters=4\nsize=3\nstride=1\npad=1\ngroups=2"),
    "depthwise groups=4": dict(c=4, h=5, w=5, opts="filters=4\nsize=3\nstride=1\npad=1\ngroups=4"),
    "stride 2 pad": dict(c=2, h=7, w=7, opts="filters=3\nsize=3\nstride=2\npad=1"),
    "1x1 stride 2": dict(c=3, h=6, w=6, opts="filters=4\nsize=1\nstride=2"),
    "1x1 stride 1": dict(c=3, h=5, w=5, opts="filters=2\nsize=1\nstride=1"),
    "5x5 padding=1": dict(c=2, h=6, w=6, opts="filters=2\nsize=5\nstride=1\npadding=1"),
    "4x4 stride 3 padding=2": dict(c=2, h=7, w=7, opts="filters=3\nsize=4\nstride=3\npadding=2"),
}


@pytest.mark.parametrize("bn", [0, 1], ids=["plain", "bn"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_convolutional(case, bn):
    spec = CONV_CASES[case]
    net = make_net(f"""
        [convolutional]
        batch_normalize={bn}
        {spec['opts'].replace(chr(10), chr(10) + '        ')}
        activation=tanh
        """, c=spec["c"], h=spec["h"], w=spec["w"])
    check_net(net, input_for(net))


def test_conv_chain_with_bn_accumulates_into_previous_delta():
    """Two convs (the second 1x1, where pj's CPU overwrote the previous delta) after a split."""
    net = make_net("""
        [convolutional]
        batch_normalize=1
        filters=4
        size=3
        stride=1
        pad=1
        activation=mish

        [convolutional]
        filters=3
        size=1
        stride=1
        activation=logistic

        [route]
        layers=-1,-2

        [convolutional]
        batch_normalize=1
        filters=2
        size=1
        stride=1
        activation=tanh
        """, c=2, h=5, w=5)
    check_net(net, input_for(net))


# -- connected / batchnorm -------------------------------------------------------------------

@pytest.mark.parametrize("bn", [0, 1], ids=["plain", "bn"])
def test_connected(bn):
    net = make_net(f"""
        [connected]
        output=5
        batch_normalize={bn}
        activation=tanh

        [connected]
        output=3
        batch_normalize={bn}
        activation=logistic
        """, c=2, h=3, w=3)
    check_net(net, input_for(net))


def test_batchnorm_standalone_on_input():
    net = make_net("""
        [batchnorm]
        """, c=3, h=4, w=4)
    check_net(net, input_for(net, scale=2.0) + 0.5)


def test_batchnorm_standalone_between_convs():
    net = make_net("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [batchnorm]

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """, c=2, h=5, w=5)
    check_net(net, input_for(net))


def test_batchnorm_after_connected_flat():
    net = make_net("""
        [connected]
        output=4
        activation=linear

        [batchnorm]
        """, c=2, h=2, w=2, batch=4)
    check_net(net, input_for(net))


# -- maxpool / avgpool -----------------------------------------------------------------------

MAXPOOL_CASES = {
    # (opts, h=w, expected out size): Darknet's rule out = (w + padding - size)//stride + 1,
    # padding defaults to size-1 and the window starts at -(padding//2)
    "size2 stride2 odd": ("size=2\nstride=2", 5, 3),
    "size2 stride2 even": ("size=2\nstride=2", 6, 3),
    "size3 stride1": ("size=3\nstride=1", 5, 5),
    "size2 stride1": ("size=2\nstride=1", 5, 5),
    "size3 stride2": ("size=3\nstride=2", 7, 4),
    "size2 stride2 padding0": ("size=2\nstride=2\npadding=0", 5, 2),
    "size5 stride1": ("size=5\nstride=1", 6, 6),
}


@pytest.mark.parametrize("case", list(MAXPOOL_CASES))
def test_maxpool(case):
    opts, hw, out = MAXPOOL_CASES[case]
    body = "[maxpool]\n" + opts + "\n\n[convolutional]\nfilters=2\nsize=1\nstride=1\nactivation=linear\n"
    net = make_net(body, c=2, h=hw, w=hw)
    assert net.layers[0].out_shape == (2, out, out)
    check_net(net, input_for(net))


def test_maxpool_on_conv_output():
    net = make_net("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [maxpool]
        size=2
        stride=2
        """, c=2, h=5, w=5)
    check_net(net, input_for(net))


def test_avgpool():
    net = make_net("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [avgpool]

        [connected]
        output=2
        activation=linear
        """, c=2, h=5, w=4)
    assert net.layers[1].out_shape == (3, 1, 1)
    check_net(net, input_for(net))


# -- route / shortcut ------------------------------------------------------------------------

def test_route_two_sources():
    net = make_net("""
        [convolutional]
        filters=4
        size=3
        stride=1
        pad=1
        activation=tanh

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=logistic

        [route]
        layers=-1,-2

        [convolutional]
        filters=3
        size=3
        stride=2
        pad=1
        activation=tanh
        """, c=2, h=6, w=6)
    assert net.layers[2].out_shape == (6, 6, 6)
    check_net(net, input_for(net))


def test_route_groups_group_id():
    net = make_net("""
        [convolutional]
        filters=4
        size=3
        stride=1
        pad=1
        activation=tanh

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=logistic

        [route]
        layers=-1,-2
        groups=2
        group_id=1

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=tanh
        """, c=2, h=5, w=5)
    assert net.layers[2].out_shape == (3, 5, 5)
    check_net(net, input_for(net))


def test_route_mismatched_sizes_is_flat():
    net = make_net("""
        [convolutional]
        filters=2
        size=3
        stride=1
        pad=1
        activation=tanh

        [convolutional]
        filters=3
        size=3
        stride=2
        pad=1
        activation=tanh

        [route]
        layers=0,1

        [connected]
        output=3
        activation=linear
        """, c=2, h=4, w=4)
    assert net.layers[2].flat
    check_net(net, input_for(net))


SHORTCUT_CASES = {
    "same shape": ("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [shortcut]
        from=-2
        activation=linear
        """, 6),
    "same shape alpha beta swish": ("""
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

        [shortcut]
        from=-2
        alpha=0.7
        beta=1.3
        activation=swish
        """, 5),
    # from 6x6x2 into 3x3x3: stride = 2, sample = 1, channels min(2, 3)
    "from larger (stride rule) alpha beta": ("""
        [convolutional]
        filters=2
        size=3
        stride=1
        pad=1
        activation=tanh

        [convolutional]
        filters=3
        size=3
        stride=2
        pad=1
        activation=tanh

        [shortcut]
        from=0
        alpha=0.6
        beta=1.5
        activation=linear
        """, 6),
    # from 3x3x4 into 6x6x2: stride = 1, sample = 2, channels min(4, 2)
    "from smaller (sample rule) alpha beta": ("""
        [convolutional]
        filters=4
        size=3
        stride=2
        pad=1
        activation=tanh

        [upsample]
        stride=2

        [convolutional]
        filters=2
        size=3
        stride=1
        pad=1
        activation=tanh

        [shortcut]
        from=0
        alpha=2.0
        beta=0.5
        activation=tanh
        """, 6),
}


@pytest.mark.parametrize("case", list(SHORTCUT_CASES))
def test_shortcut(case):
    body, hw = SHORTCUT_CASES[case]
    net = make_net(body, c=2, h=hw, w=hw)
    check_net(net, input_for(net))


# -- upsample / reorg / l2norm ---------------------------------------------------------------

UPSAMPLE_CASES = {
    "stride 2 scale 0.5": ("stride=2\nscale=0.5", 4, 8),
    "stride 3": ("stride=3", 3, 9),
    "stride -2 (downsample)": ("stride=-2", 6, 3),
    "stride -2 scale 0.5 odd size": ("stride=-2\nscale=0.5", 5, 2),
}


@pytest.mark.parametrize("case", list(UPSAMPLE_CASES))
def test_upsample(case):
    opts, hw, out = UPSAMPLE_CASES[case]
    net = make_net("""
        [convolutional]
        filters=2
        size=3
        stride=1
        pad=1
        activation=tanh

        [upsample]
        """ + opts.replace("\n", "\n        ") + """

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """, c=2, h=hw, w=hw)
    assert net.layers[1].out_shape == (2, out, out)
    check_net(net, input_for(net))


REORG_CASES = {
    # (section, options, input c, h=w, expected out shape)
    "reorg stride 2": ("reorg", "stride=2", 4, 4, (16, 2, 2)),
    "reorg stride 2 reverse": ("reorg", "stride=2\nreverse=1", 8, 2, (2, 4, 4)),
    "reorg3d stride 2": ("reorg3d", "stride=2", 3, 4, (12, 2, 2)),
    "reorg3d stride 2 reverse": ("reorg3d", "stride=2\nreverse=1", 8, 2, (2, 4, 4)),
}


@pytest.mark.parametrize("case", list(REORG_CASES))
def test_reorg(case):
    section, opts, c, hw, out = REORG_CASES[case]
    net = make_net(f"""
        [convolutional]
        filters={c}
        size=3
        stride=1
        pad=1
        activation=tanh

        [{section}]
        """ + opts.replace("\n", "\n        ") + """

        [convolutional]
        filters=3
        size=1
        stride=1
        activation=linear
        """, c=2, h=hw, w=hw)
    assert net.layers[1].out_shape == out
    check_net(net, input_for(net))


def test_reorg_alone_is_a_permutation():
    """Backward of the pj reorg is the exact inverse of its forward (dx = the routed r)."""
    net = make_net("[reorg]\nstride=2\n", c=4, h=4, w=4, batch=2)
    x = input_for(net)
    check_net(net, x)
    y = net.forward(x, train=True)
    assert sorted(y.ravel()) == sorted(x.ravel())


def test_reorg_channels_not_divisible_by_stride_squared():
    """pj's [reorg] reinterprets the input as (C/s^2, H*s, W*s), so C=3 with stride 2 cannot work
    (pj divides by C/s^2 = 0).  darknet_py must refuse it when the network is built, with a
    one-line CfgError, instead of building and then failing in forward with a NumPy ValueError.
    """
    with pytest.raises(CfgError, match=r"^t\.cfg:\d+: error: "):
        make_net("[reorg]\nstride=2\n", c=3, h=4, w=4, batch=2)


def test_l2norm():
    net = make_net("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [l2norm]

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """, c=2, h=4, w=4)
    check_net(net, input_for(net))


def test_l2norm_flat():
    net = make_net("""
        [connected]
        output=5
        activation=linear

        [l2norm]
        """, c=2, h=2, w=2)
    check_net(net, input_for(net))


# -- activations -----------------------------------------------------------------------------

def near_break(z, name, margin=MARGIN):
    breaks = ACTIVATION_BREAKS[name]
    if breaks == "integers":
        return np.abs(z - np.round(z)) < margin
    near = np.zeros(z.shape, dtype=bool)
    for b in breaks:
        near |= np.abs(z - b) < margin
    return near


def test_activation_list_is_complete():
    from darknet_py.nn.activations import ACTIVATIONS
    assert set(ACTIVATION_BREAKS) <= set(ACTIVATIONS)


@pytest.mark.parametrize("name", list(ACTIVATION_BREAKS))
def test_activation_layer(name):
    """[activation] directly on the input, with inputs spread over [-7, 8] away from kinks."""
    net = make_net(f"[activation]\nactivation={name}\n", c=2, h=5, w=5)
    rng = np.random.default_rng(5)
    x = rng.uniform(-7.0, 8.0, (net.batch,) + tuple(net.input_shape))
    for _ in range(100):
        bad = near_break(x, name)
        if not bad.any():
            break
        x[bad] = rng.uniform(-7.0, 8.0, int(bad.sum()))
    assert not near_break(x, name).any()
    check_net(net, x)


@pytest.mark.parametrize("name", list(ACTIVATION_BREAKS))
def test_activation_in_conv(name):
    """The activation of a conv layer; pre-activations (spread over about [-12, 12]) are computed
    with a linear twin of the same network and kept away from kinks by re-drawing the input."""
    body = """
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation={}
        """
    net = make_net(body.format(name), c=2, h=5, w=5)
    twin = make_net(body.format("linear"), c=2, h=5, w=5)
    np.testing.assert_array_equal(twin.layers[0].weights, net.layers[0].weights)
    for seed in range(50):
        x = input_for(net, seed=seed, scale=3.0)
        z = twin.forward(x, train=True)
        if not near_break(z, name).any():
            break
    else:
        pytest.fail("could not draw an input away from the activation's kinks")
    if ACTIVATION_BREAKS[name] and ACTIVATION_BREAKS[name] != "integers":
        # both sides of every kink are exercised
        for b in ACTIVATION_BREAKS[name]:
            assert (z < b).any() and (z > b).any(), (name, b)
    check_net(net, x)


@pytest.mark.parametrize("name", ["leaky", "mish", "swish", "gelu", "hard_mish", "selu"])
def test_activation_in_connected_with_bn(name):
    net = make_net(f"""
        [connected]
        output=4
        batch_normalize=1
        activation={name}
        """, c=2, h=2, w=2, batch=4)
    twin = make_net("""
        [connected]
        output=4
        batch_normalize=1
        activation=linear
        """, c=2, h=2, w=2, batch=4)
    for seed in range(50):
        x = input_for(net, seed=seed)
        if not near_break(twin.forward(x, train=True), name).any():
            break
    check_net(net, x)


# -- loss layers: gradient of net.cost -------------------------------------------------------

def one_hot(rng, n, k, groups=1):
    t = np.zeros((n, groups, k))
    for b in range(n):
        for g in range(groups):
            t[b, g, rng.integers(k)] = 1.0
    return t.reshape(n, groups * k)


def test_softmax_cost_gradient():
    """delta = t - p is -dCost/dz for cost = -log p[true class] (one-hot truth)."""
    net = make_net("""
        [convolutional]
        filters=2
        size=3
        stride=1
        pad=1
        activation=tanh

        [connected]
        output=5
        activation=linear

        [softmax]
        """, c=2, h=4, w=4)
    truth = one_hot(np.random.default_rng(3), net.batch, 5)
    check_net(net, input_for(net), truth=truth)


def test_softmax_groups_cost_gradient():
    net = make_net("""
        [connected]
        output=6
        activation=linear

        [softmax]
        groups=2
        """, c=2, h=3, w=3)
    truth = one_hot(np.random.default_rng(4), net.batch, 3, groups=2)
    check_net(net, input_for(net), truth=truth)


def test_softmax_directly_on_input():
    net = make_net("[softmax]\n", c=4, h=1, w=1)
    truth = one_hot(np.random.default_rng(5), net.batch, 4)
    check_net(net, input_for(net), truth=truth)


def test_softmax_spatial_cost_gradient():
    net = make_net("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [softmax]
        spatial=1
        """, c=2, h=3, w=3)
    rng = np.random.default_rng(6)
    t = np.zeros((net.batch, 3, 3, 3))
    cls = rng.integers(3, size=(net.batch, 3, 3))
    for k in range(3):
        t[:, k][cls == k] = 1.0
    check_net(net, input_for(net), truth=t.reshape(net.batch, -1))


COST_CASES = {
    # (options, truth, factor): -dx = factor * dCost/dx.  Darknet's cost is sum(err) with no 1/2
    # while delta = d for L2 (so factor 1/2); L1 delta = sign(d) is exactly -dCost/dy.
    "sse": ("type=sse", "normal", 0.5),
    "sse scale 2": ("type=sse\nscale=2", "normal", 1.0),
    "seg": ("type=seg", "normal", 0.5),
    "masked": ("type=masked", "masked", 0.5),
    "smooth": ("type=smooth", "wide", 0.5),
    "L1": ("type=L1", "normal", 1.0),
}


@pytest.mark.parametrize("case", list(COST_CASES))
def test_cost_gradient(case):
    opts, kind, factor = COST_CASES[case]
    net = make_net("""
        [connected]
        output=6
        activation=tanh

        [cost]
        """ + opts.replace("\n", "\n        ") + "\n", c=2, h=2, w=2)
    x = input_for(net)
    y = net.forward(x, train=True).reshape(net.batch, -1)
    rng = np.random.default_rng(7)
    if kind == "wide":
        # both regimes of smooth L1: |d| < 1 and |d| > 1, away from |d| == 1
        d = rng.choice([-1, 1], y.shape) * rng.uniform(0.1, 0.8, y.shape)
        big = rng.random(y.shape) < 0.5
        d[big] = np.sign(d[big]) * rng.uniform(1.3, 3.0, int(big.sum()))
        truth = y + d
    else:
        truth = y + rng.choice([-1, 1], y.shape) * rng.uniform(0.1, 1.5, y.shape)
    if kind == "masked":
        truth[rng.random(y.shape) < 0.3] = -1234.0
    if case == "L1":
        assert np.abs(truth - y).min() > 1e-3
    check_net(net, x, truth=truth, factor=factor)


def test_cost_delta_is_half_negative_gradient_of_cost():
    """The documented relation, exactly: with d = t - y, cost = sum(d^2) and delta = d."""
    net = make_net("[cost]\ntype=sse\n", c=3, h=1, w=1)
    x = input_for(net)
    t = np.random.default_rng(8).standard_normal((net.batch, 3))
    net.forward(x, train=True, truth=t)
    layer = net.layers[-1]
    d = t - x.reshape(net.batch, -1)
    np.testing.assert_allclose(layer.delta.reshape(d.shape), d, rtol=0, atol=1e-15)
    assert net.cost == pytest.approx(float((d * d).sum()), rel=1e-14)
    dx = np.zeros_like(x)
    net.backward(dx)
    # delta = -1/2 dCost/dy, and [cost] adds scale * delta into its input's delta
    np.testing.assert_allclose(dx.reshape(d.shape), d, rtol=0, atol=1e-15)
    check_net(net, x, truth=t, factor=0.5)


def test_logistic_cost_gradient():
    """[logistic]: cost = -t log y - (1-t) log(1-y) with delta = t - y (= -dCost/dx up to the
    1e-7 Darknet adds inside the logs; pre-activations are kept moderate so that is < 1e-6)."""
    net = make_net("""
        [connected]
        output=6
        activation=linear

        [logistic]
        """, c=2, h=2, w=2)
    x = input_for(net, scale=0.5)
    z = net.layers[0]
    rng = np.random.default_rng(9)
    truth = np.where(rng.random((net.batch, 6)) < 0.5, 1.0, 0.0)
    truth[:, :2] = rng.uniform(0, 1, (net.batch, 2))        # soft targets too
    net.forward(x, train=True)
    assert np.abs(z.output).max() < 2.5
    check_net(net, x, truth=truth)


def test_logistic_on_conv_image():
    net = make_net("""
        [convolutional]
        filters=2
        size=3
        stride=1
        pad=1
        activation=linear

        [logistic]
        """, c=2, h=3, w=3)
    rng = np.random.default_rng(10)
    truth = np.where(rng.random((net.batch, 18)) < 0.5, 1.0, 0.0)
    check_net(net, input_for(net, scale=0.5), truth=truth)


# -- dropout ---------------------------------------------------------------------------------

def fixed_dropout_mask(seed):
    def prepare(net):
        for layer in net.layers:
            if layer.type == "dropout":
                layer.rng = np.random.default_rng(seed)
    return prepare


def test_dropout_mask_consistency():
    """Backward applies exactly the mask (and 1/(1-p) scale) that forward drew."""
    net = make_net("[dropout]\nprobability=0.4\n", c=3, h=6, w=6, batch=4)
    x = input_for(net)
    y = net.forward(x, train=True)
    kept = y != 0
    assert 0.2 < 1 - kept.mean() < 0.6            # some values are dropped, most are not
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-15)
    r = np.random.default_rng(11).standard_normal(y.shape)
    net.layers[-1].delta[...] = -r
    dx = np.zeros_like(x)
    net.backward(dx)
    np.testing.assert_allclose(-dx, np.where(kept, r / 0.6, 0.0), rtol=1e-15, atol=0)
    # inference: identity
    np.testing.assert_array_equal(net.forward(x, train=False), x)


def test_dropout_gradient_with_fixed_mask():
    net = make_net("""
        [convolutional]
        filters=3
        size=3
        stride=1
        pad=1
        activation=tanh

        [dropout]
        probability=0.3

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """, c=2, h=4, w=4)
    check_net(net, input_for(net), prepare=fixed_dropout_mask(21))


def test_dropout_flat_gradient_with_fixed_mask():
    net = make_net("""
        [connected]
        output=6
        activation=tanh

        [dropout]
        probability=0.5

        [connected]
        output=3
        activation=linear
        """, c=2, h=2, w=2)
    check_net(net, input_for(net), prepare=fixed_dropout_mask(22))


# -- layers without a gradient ---------------------------------------------------------------

def test_crop_passes_no_gradient():
    net = make_net("""
        [crop]
        crop_height=3
        crop_width=3
        noadjust=1

        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear
        """, c=2, h=5, w=5)
    x = input_for(net)
    grads = analytic_grads(net, x, r=np.ones((net.batch, 2, 3, 3)))
    assert not grads["input"].any()


@pytest.mark.parametrize("head", ["yolo", "region"])
def test_detection_heads_refuse_training_without_what_they_need(head):
    """[yolo] and [region] train on box truths: without them, a clear error."""
    opts = "classes=1\nnum=1\nmask=0\nanchors=1,1" if head == "yolo" else \
        "classes=1\nnum=1\ncoords=4\nanchors=1,1"
    net = make_net(f"""
        [convolutional]
        filters=6
        size=1
        stride=1
        activation=linear

        [{head}]
        """ + opts.replace("\n", "\n        ") + "\n", c=2, h=3, w=3)
    with pytest.raises(DarknetError, match="trains on box truths"):
        net.forward(input_for(net), train=True)


# -- a mixed network and the accumulate-only contract ----------------------------------------

MIXED = """
    [convolutional]
    batch_normalize=1
    filters=4
    size=3
    stride=1
    pad=1
    activation=leaky

    [maxpool]
    size=2
    stride=2

    [convolutional]
    batch_normalize=1
    filters=4
    size=3
    stride=1
    pad=1
    activation=mish

    [shortcut]
    from=-2
    activation=linear

    [convolutional]
    filters=2
    size=1
    stride=1
    activation=logistic

    [upsample]
    stride=2

    [route]
    layers=-1,0

    [convolutional]
    filters=3
    size=1
    stride=1
    activation=linear
    """


def test_mixed_network():
    net = make_net(MIXED, c=2, h=6, w=6, batch=2)
    check_net(net, input_for(net))


def test_backward_accumulates_updates():
    """Two forward/backward passes without zeroing: updates double, parameters never change."""
    net = make_net(MIXED, c=2, h=6, w=6, batch=2)
    x = input_for(net)
    r = np.random.default_rng(12).standard_normal((2, 3, 6, 6))
    once = analytic_grads(net, x, r=r)
    net.forward(x, train=True)
    net.layers[-1].delta[...] = -r
    net.backward(np.zeros_like(x))
    for i, name in param_keys(net):
        np.testing.assert_allclose(-getattr(net.layers[i], UPDATES[name]),
                                   2 * once[(i, name)], rtol=1e-12, atol=1e-14)
