"""AlexeyAB's [convolutional] share_index: a layer computing with an earlier layer's weights,
biases and batch-norm arrays (ab make_convolutional_layer's share_layer), none of them in the
.weights file; inference only."""

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.errors import CfgError, NotSupportedError

NET = "[net]\nwidth=12\nheight=10\nchannels=3\nbatch=2\n"
CONV = ("[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nbatch_normalize={bn}\n"
        "activation=leaky\n")


def _cfg(share, bn=1):
    """conv 0, conv 1 (4 -> 4), conv 2 (4 -> 4, sharing layer 1's weights when ``share``)."""
    third = CONV.format(bn=bn) + (f"share_index={share}\n" if share is not None else "")
    return NET + CONV.format(bn=bn) + CONV.format(bn=bn) + third


def _randomise(net, rng):
    for layer in net.layers:
        for name in layer.weight_record():
            a = getattr(layer, name)
            values = rng.uniform(0.5, 1.5, a.shape) if name == "rolling_variance" else \
                rng.standard_normal(a.shape)
            setattr(layer, name, values.astype(np.float32))


@pytest.mark.parametrize("share", [1, -1], ids=["absolute", "relative"])
@pytest.mark.parametrize("bn", [1, 0])
def test_a_shared_layer_computes_with_the_weights_it_names(share, bn):
    """The same outputs as the network without share_index whose layer 2 holds a copy of
    layer 1's arrays, and after folding batch norm too."""
    rng = rng_for_test()
    shared, plain = build(_cfg(share, bn)), build(_cfg(None, bn))
    _randomise(shared, rng)
    for name in plain.layers[0].weight_record():
        for k in (0, 1):
            setattr(plain.layers[k], name, getattr(shared.layers[k], name).copy())
        setattr(plain.layers[2], name, getattr(shared.layers[1], name).copy())
    x = rng.random((2, 3, 10, 12), dtype=np.float32)
    want = plain.forward(x).copy()
    np.testing.assert_array_equal(shared.forward(x), want)
    assert shared.layers[2].weights is shared.layers[1].weights
    if bn:
        assert shared.fold_batchnorm() == 2 and plain.fold_batchnorm() == 3
        assert not shared.layers[2].batch_normalize
        np.testing.assert_allclose(shared.forward(x), plain.forward(x), rtol=1e-6, atol=1e-6)


def test_the_weights_file_holds_no_shared_layer(tmp_path):
    """Saved and loaded without layer 2's record (ab save/load_weights skip it): the file is
    the unshared network's less one layer, and loading fills the shared arrays once."""
    rng = rng_for_test()
    shared, plain = build(_cfg(1)), build(_cfg(None))
    _randomise(shared, rng)
    shared.save_weights(tmp_path / "s.weights")
    plain.save_weights(tmp_path / "p.weights")
    size = lambda n: (tmp_path / n).stat().st_size  # noqa: E731
    # layer 2's record: biases, scales, rolling mean and variance (4 each), 4x4x3x3 weights
    assert size("p.weights") - size("s.weights") == 4 * (4 * 4 + 4 * 4 * 9)
    again = build(_cfg(1), seed=7)
    again.load_weights(tmp_path / "s.weights")
    x = rng.random((2, 3, 10, 12), dtype=np.float32)
    np.testing.assert_array_equal(again.forward(x), shared.forward(x))
    assert again.layers[2].biases is again.layers[1].biases


def test_training_a_shared_layer_is_refused_in_one_line():
    net = build(_cfg(1))
    truth = None
    x = np.zeros((2, 3, 10, 12), np.float32)
    net.forward(x, train=True, truth=truth)
    with pytest.raises(NotSupportedError, match="share_index.*inference only"):
        net.backward()
    assert [k for k, _v, _line in net.layers[2].unimplemented] == ["share_index"]


@pytest.mark.parametrize("text,expect", [
    (NET + CONV.format(bn=1) + "[maxpool]\nsize=2\nstride=1\n" + CONV.format(bn=1)
     + "share_index=1\n", "layer 1 \\(maxpool\\)"),
    (NET + CONV.format(bn=1) + CONV.format(bn=0) + "share_index=0\n", "batch_normalize"),
    (NET + CONV.format(bn=1) + "share_index=0\n", "no earlier layer"),
    (NET + CONV.format(bn=1) + CONV.format(bn=1) + "share_index=5\n", "not before"),
])
def test_a_bad_share_index_is_an_error_at_its_line(text, expect):
    with pytest.raises(CfgError, match=expect) as e:
        build(text)
    assert e.value.line and "share_index" in str(e.value)
