"""CUDA graphs (nn/graphs.py): a replayed inference forward equals the eager one.

Run on a CUDA machine: ``pytest -m gpu``.
"""

import numpy as np
import pytest

from darknet_py.nn.backend import to_numpy

from conftest import build, rng_for_test

pytestmark = pytest.mark.gpu

NET = ("[net]\nbatch=2\nchannels=3\nwidth=32\nheight=32\n"
       "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nbatch_normalize=1\nactivation=leaky\n"
       "[maxpool]\nsize=2\nstride=2\n"
       "[convolutional]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=mish\n"
       "[route]\nlayers=-1,-2\n"
       "[upsample]\nstride=2\n"
       "[convolutional]\nfilters=4\nsize=1\nstride=1\nactivation=logistic\n")


def _net():
    net = build(NET, device="gpu")
    rng = rng_for_test()
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False):
            layer.rolling_mean[:] = net.xp.asarray(rng.uniform(-1, 1, layer.out_c), np.float32)
            layer.rolling_variance[:] = net.xp.asarray(rng.uniform(0.5, 2, layer.out_c),
                                                       np.float32)
    return net, rng


def test_a_replayed_forward_equals_the_eager_one_and_follows_new_inputs():
    net, rng = _net()
    xs = [rng.random((2, 3, 32, 32), dtype=np.float32) for _ in range(3)]
    eager = [to_numpy(net.forward(x)).copy() for x in xs]
    assert net.enable_graphs()
    for x, want in zip(xs + xs[::-1], eager + eager[::-1]):
        got = to_numpy(net.forward(x))
        np.testing.assert_array_equal(got, want)
    assert net.graphs.failed is None and len(net.graphs.captured) == 1


def test_a_new_shape_is_captured_beside_the_first_and_layer_outputs_follow():
    net, rng = _net()
    net.enable_graphs()
    small, big = (rng.random((n, 3, 32, 32), dtype=np.float32) for n in (1, 2))
    out_small = to_numpy(net.forward(small)).copy()
    out_big = to_numpy(net.forward(big)).copy()
    assert len(net.graphs.captured) == 2
    np.testing.assert_array_equal(to_numpy(net.forward(small)), out_small)
    assert net.layers[-1].output.shape[0] == 1
    np.testing.assert_array_equal(to_numpy(net.layers[-1].output), out_small)
    np.testing.assert_array_equal(to_numpy(net.forward(big)), out_big)


def test_replaced_weights_are_not_replayed_from_the_old_graph(tmp_path):
    net, rng = _net()
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    net.enable_graphs()
    before = to_numpy(net.forward(x)).copy()
    other, _ = _net()
    for layer in other.layers:
        if hasattr(layer, "weights"):
            layer.weights *= 2
    other.save_weights(tmp_path / "w.weights")
    net.load_weights(tmp_path / "w.weights", fuse=True)
    after = to_numpy(net.forward(x))
    net.graphs = None
    np.testing.assert_array_equal(after, to_numpy(net.forward(x)))
    assert not np.array_equal(after, before)


def test_a_replayed_forward_checks_and_scales_its_input_as_the_eager_one():
    net, rng = _net()
    pixels = (rng.random((2, 3, 32, 32)) * 255).astype(np.uint8)
    want = to_numpy(net.forward(pixels)).copy()
    net.enable_graphs()
    np.testing.assert_array_equal(to_numpy(net.forward(pixels)), want)
    with pytest.raises(ValueError):
        net.forward(np.zeros((2, 32, 32, 3), np.float32))
