"""Batch normalization: cuDNN's SPATIAL formula on every backend, and who updates gamma/beta."""

import numpy as np
import pytest

from darknet_py.nn.layers.batchnorm import normalized_input

from conftest import build

EPS = 1e-5


def conv_bn_net(batch=4):
    return build(f"[net]\nbatch={batch}\nchannels=2\nwidth=5\nheight=5\n"
                 "[convolutional]\nfilters=3\nsize=3\npad=1\nbatch_normalize=1\n"
                 "activation=linear\n")


def test_training_normalises_per_channel_over_batch_height_width_with_biased_variance(rng):
    net = conv_bn_net()
    layer = net.layers[0]
    layer.scales[:] = rng.uniform(0.5, 2, 3)
    layer.biases[:] = rng.uniform(-1, 1, 3)
    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    out = net.forward(x, train=True).astype(np.float64)
    # the same conv without BN gives z; then cuDNN's formula
    raw = build("[net]\nbatch=4\nchannels=2\nwidth=5\nheight=5\n[convolutional]\nfilters=3\n"
                "size=3\npad=1\nactivation=linear\n")
    raw.layers[0].weights[:] = layer.weights
    z = raw.forward(x).astype(np.float64)
    mean = z.mean(axis=(0, 2, 3), keepdims=True)
    var = z.var(axis=(0, 2, 3), keepdims=True)           # biased, as cuDNN
    expected = (z - mean) / np.sqrt(var + EPS) * layer.scales.reshape(1, 3, 1, 1) \
        + layer.biases.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_exact_values_on_a_tiny_channel():
    net = build("[net]\nbatch=4\ninputs=1\n[batchnorm]\n")
    out = net.forward(np.array([[1], [2], [3], [4]], np.float32), train=True).ravel()
    # mean 2.5, biased variance 1.25
    np.testing.assert_allclose(out, (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25 + EPS),
                               rtol=1e-6)
    layer = net.layers[0]
    # rolling statistics: factor 0.01, variance unbiased (5/3), starting from 0 and 0
    np.testing.assert_allclose(layer.rolling_mean, [0.025], rtol=1e-6)
    np.testing.assert_allclose(layer.rolling_variance, [0.01 * 5 / 3], rtol=1e-6)


def test_inference_uses_rolling_statistics(rng):
    net = conv_bn_net()
    layer = net.layers[0]
    layer.rolling_mean[:] = [0.5, -1, 2]
    layer.rolling_variance[:] = [0.25, 4, 1]
    layer.scales[:] = [1, 2, 3]
    layer.biases[:] = [0, 1, -1]
    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    before = (layer.rolling_mean.copy(), layer.rolling_variance.copy())
    out = net.forward(x, train=False)
    raw = build("[net]\nbatch=4\nchannels=2\nwidth=5\nheight=5\n[convolutional]\nfilters=3\n"
                "size=3\npad=1\nactivation=linear\n")
    raw.layers[0].weights[:] = layer.weights
    z = raw.forward(x)
    c = lambda v: np.asarray(v).reshape(1, 3, 1, 1)  # noqa: E731
    expected = (z - c(before[0])) / np.sqrt(c(before[1]) + EPS) * c([1, 2, 3]) + c([0, 1, -1])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer.rolling_mean, before[0])     # inference changes nothing
    np.testing.assert_array_equal(layer.rolling_variance, before[1])


def test_connected_bn_spatial_equals_per_activation(rng):
    """On (N, C, 1, 1), SPATIAL (over N,H,W per C) and PER_ACTIVATION (over N per C,H,W)
    reduce over the same N values: mean, variance, output and gradients coincide."""
    net = build("[net]\nbatch=6\ninputs=7\n[connected]\noutput=5\nbatch_normalize=1\n"
                "activation=linear\n")
    layer = net.layers[0]
    layer.scales[:] = rng.uniform(0.5, 2, 5)
    layer.biases[:] = rng.uniform(-1, 1, 5)
    x = rng.standard_normal((6, 7)).astype(np.float32)
    out = net.forward(x, train=True).reshape(6, 5).astype(np.float64)
    z = x.astype(np.float64) @ layer.weights.T.astype(np.float64)          # (N, units)
    per_activation = (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + EPS) * layer.scales \
        + layer.biases
    np.testing.assert_allclose(out, per_activation, rtol=1e-5, atol=1e-5)
    # the gradients of PER_ACTIVATION, written out per unit over the batch axis
    dy = rng.standard_normal((6, 5))
    net.layers[0].delta[...] = dy.reshape(6, 5, 1, 1)
    net.backward()
    xhat = (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + EPS)
    np.testing.assert_allclose(layer.bias_updates, dy.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.scale_updates, (dy * xhat).sum(axis=0), rtol=1e-4,
                               atol=1e-5)


def test_backward_only_computes_scale_and_bias_updates(rng):
    """Like cuDNN's batch-norm backward: gradients out, parameters untouched."""
    net = conv_bn_net()
    layer = net.layers[0]
    scales, biases = layer.scales.copy(), layer.biases.copy()
    net.forward(rng.standard_normal((4, 2, 5, 5)), train=True)
    delta = rng.standard_normal(layer.output.shape).astype(np.float32)
    layer.delta[...] = delta
    net.backward()
    np.testing.assert_array_equal(layer.scales, scales)
    np.testing.assert_array_equal(layer.biases, biases)
    np.testing.assert_allclose(layer.bias_updates, delta.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.scale_updates, (delta * normalized_input(layer)).sum(axis=(0, 2, 3)),
                               rtol=1e-4, atol=1e-5)


def test_update_moves_scales_and_biases_inside_the_layer(rng):
    net = conv_bn_net()
    layer = net.layers[0]
    net.forward(rng.standard_normal((4, 2, 5, 5)), train=True)
    layer.delta[...] = 1.0
    net.backward()
    su, bu = layer.scale_updates.copy(), layer.bias_updates.copy()
    s0, b0 = layer.scales.copy(), layer.biases.copy()
    net.update()
    lr = net.current_rate()
    np.testing.assert_allclose(layer.scales, s0 + lr / 4 * su, rtol=1e-6)
    np.testing.assert_allclose(layer.biases, b0 + lr / 4 * bu, rtol=1e-6)


@pytest.mark.parametrize("where", ["before", "after"])
def test_standalone_batchnorm_can_sit_before_or_after_the_activation(where, rng):
    conv = "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation={}\n"
    if where == "before":
        body = conv.format("linear") + "[batchnorm]\n[activation]\nactivation=leaky\n"
    else:
        body = conv.format("leaky") + "[batchnorm]\n"
    net = build("[net]\nbatch=4\nchannels=2\nwidth=5\nheight=5\n" + body)
    out = net.forward(rng.standard_normal((4, 2, 5, 5)), train=True)
    bn_out = net.layers[1].output
    assert np.allclose(bn_out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    if where == "before":
        assert (out.min() < 0) and np.allclose(out[out < 0], 0.1 * bn_out[bn_out < 0])
    else:
        assert out.min() < 0           # normalised after leaky: negative values again


def test_standalone_batchnorm_weights_record_is_alexeyabs():
    net = build("[net]\nbatch=1\nchannels=3\nwidth=2\nheight=2\n[batchnorm]\n")
    assert net.layers[0].weight_record() == ("biases", "scales", "rolling_mean",
                                             "rolling_variance")


def test_folding_bn_into_the_weights_keeps_inference_outputs(rng):
    net = build("[net]\nbatch=4\nchannels=2\nwidth=6\nheight=6\n"
                "[convolutional]\nfilters=3\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
                "[connected]\noutput=5\nbatch_normalize=1\nactivation=linear\n")
    for layer in net.layers:
        for name, lo, hi in (("rolling_mean", -1, 1), ("rolling_variance", 0.2, 2),
                             ("scales", 0.5, 2), ("biases", -1, 1)):
            getattr(layer, name)[...] = rng.uniform(lo, hi, getattr(layer, name).shape)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    before = net.forward(x).copy()
    assert net.fold_batchnorm() == 2
    assert not any(layer.batch_normalize for layer in net.layers)
    after = net.forward(x)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * np.abs(before).max())
    assert net.layers[0].weight_record() == ("biases", "weights")


def test_dropping_bn_at_inference_changes_the_outputs(rng):
    """BN cannot simply be removed: without it the scale and shift it learned are gone."""
    net = conv_bn_net()
    layer = net.layers[0]
    layer.rolling_mean[:] = [0.5, -1, 2]
    layer.rolling_variance[:] = [0.25, 4, 1]
    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    with_bn = net.forward(x).copy()
    layer.batch_normalize = False
    layer.biases[:] = 0
    assert np.abs(net.forward(x) - with_bn).max() > 0.1
