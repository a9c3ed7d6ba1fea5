"""Layer forward semantics with exact expected values (Darknet's rules, pj:src/*_layer.c)."""

import numpy as np
import pytest

from conftest import build


def net_for(section, c=1, h=4, w=4, batch=1):
    return build(f"[net]\nbatch={batch}\nchannels={c}\nheight={h}\nwidth={w}\n" + section)


def test_maxpool_size2_stride2_pads_only_right_and_bottom():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5) - 30     # all negative
    out = net_for("[maxpool]\nsize=2\nstride=2\n", h=5, w=5).forward(x)
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [[-24, -22, -21], [-14, -12, -11], [-9, -7, -6]])


def test_maxpool_size2_stride1_keeps_the_size():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = net_for("[maxpool]\nsize=2\nstride=1\n").forward(x)
    assert out.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(out[0, 0, 3], [13, 14, 15, 15])


def test_maxpool_size3_stride1_is_symmetric():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 0] = 1
    out = net_for("[maxpool]\nsize=3\nstride=1\n").forward(x)
    np.testing.assert_array_equal(out[0, 0, :2, :2], np.ones((2, 2)))
    assert out[0, 0, 2:, :].sum() == 0


def pj_reorg_cpu(x, w, h, c, batch, stride, forward):
    """pj:src/blas.c reorg_cpu, loop for loop."""
    out = np.zeros(x.size, np.float32)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


@pytest.mark.parametrize("reverse", [0, 1])
def test_reorg_is_darknets_exact_mapping(reverse):
    c, h, w = (8, 4, 4)
    x = np.arange(2 * c * h * w, dtype=np.float32)
    net = net_for(f"[reorg]\nstride=2\nreverse={reverse}\n", c=c, h=h, w=w, batch=2)
    out = net.forward(x.reshape(2, c, h, w))
    np.testing.assert_array_equal(out.ravel(), pj_reorg_cpu(x, w, h, c, 2, 2, reverse))
    assert out.shape == ((2, 2, 8, 8) if reverse else (2, 32, 2, 2))


def test_reorg3d_is_space_to_depth():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = net_for("[reorg3d]\nstride=2\n").forward(x)
    np.testing.assert_array_equal(out[0, :, 0, 0], [0, 1, 4, 5])   # (dy,dx) = 00, 01, 10, 11


def test_shortcut_from_a_larger_layer_subsamples():
    # layer 0: 4x4x2 ; layer 1: maxpool to 2x2x2 ; shortcut adds layer 0 at stride 2
    net = net_for("[activation]\nactivation=linear\n[maxpool]\nsize=2\nstride=2\n"
                  "[shortcut]\nfrom=0\nalpha=2\nbeta=10\n", c=2)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    out = net.forward(x)
    pooled = net.layers[1].output
    np.testing.assert_allclose(out, 2 * pooled + 10 * x[:, :, ::2, ::2], rtol=1e-6)


def test_shortcut_from_a_smaller_layer_adds_at_every_sample_th_pixel():
    net = net_for("[maxpool]\nsize=2\nstride=2\n[upsample]\nstride=2\n"
                  "[shortcut]\nfrom=0\nalpha=2\nbeta=10\n", c=3)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    out = net.forward(x)
    up = net.layers[1].output
    expected = up.copy()
    expected[:, :, ::2, ::2] = 2 * up[:, :, ::2, ::2] + 10 * net.layers[0].output
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_shortcut_with_fewer_channels_leaves_the_rest_unscaled():
    net = net_for("[convolutional]\nfilters=2\nactivation=linear\n"
                  "[convolutional]\nfilters=4\nactivation=linear\n"
                  "[shortcut]\nfrom=0\nalpha=3\n", c=1)
    out = net.forward(np.ones((1, 1, 4, 4)))
    prev, src = net.layers[1].output, net.layers[0].output
    np.testing.assert_allclose(out[:, :2], 3 * prev[:, :2] + src, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2:], prev[:, 2:], rtol=1e-6)


def test_upsample_scale_and_negative_stride_sums_blocks():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    up = net_for("[upsample]\nstride=2\nscale=0.5\n").forward(x)
    assert up.shape == (1, 1, 8, 8) and up[0, 0, 7, 7] == 7.5
    down = net_for("[upsample]\nstride=-2\n").forward(x)
    np.testing.assert_array_equal(down[0, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                                               [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])


def test_softmax_groups_and_temperature():
    x = np.log(np.array([[1, 3, 2, 2]], np.float32))
    net = build("[net]\nbatch=1\ninputs=4\n[softmax]\ngroups=2\ntemperature=0.5\n")
    out = net.forward(x).ravel()
    np.testing.assert_allclose(out, [0.1, 0.9, 0.5, 0.5], rtol=1e-6)


def test_softmax_loss_is_darknets():
    net = build("[net]\nbatch=2\ninputs=3\n[softmax]\n")
    x = np.array([[0, 0, 0], [1, 2, 3]], np.float32)
    t = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    net.forward(x, train=True, truth=t)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert net.cost == pytest.approx(-np.log(p[0, 1]) - np.log(p[1, 2]), rel=1e-6)
    np.testing.assert_allclose(net.layers[0].delta.reshape(2, 3), t - p, rtol=1e-6)


@pytest.mark.parametrize("kind,err,delta", [
    ("sse", [0.25, 4.0], [0.5, -2.0]),
    ("L1", [0.5, 2.0], [1.0, -1.0]),
    ("smooth", [0.25, 3.0], [0.5, -1.0]),
])
def test_cost_types(kind, err, delta):
    net = build(f"[net]\nbatch=1\ninputs=2\n[cost]\ntype={kind}\n")
    net.forward(np.array([[0.5, 3.0]]), train=True, truth=np.array([[1.0, 1.0]]))
    layer = net.layers[0]
    np.testing.assert_allclose(layer.output.ravel(), err)
    np.testing.assert_allclose(layer.delta.ravel(), delta)
    assert net.cost == pytest.approx(sum(err))


def test_network_output_is_the_layer_before_cost():
    net = build("[net]\nbatch=1\ninputs=2\n[connected]\noutput=2\nactivation=linear\n[cost]\n")
    assert net.output_layer is net.layers[0]


def test_route_groups_take_the_group_id_slice():
    net = net_for("[convolutional]\nfilters=4\nactivation=linear\n"
                  "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n", c=1)
    out = net.forward(np.ones((1, 1, 4, 4)))
    assert out.shape == (1, 2, 4, 4)
    np.testing.assert_array_equal(out, net.layers[0].output[:, 2:])


def test_route_of_mismatched_sizes_is_flat():
    net = net_for("[activation]\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n", c=1)
    route = net.layers[2]
    assert route.flat and route.out_shape == (4 + 16, 1, 1)


def test_crop_in_inference_is_centred_and_rescaled():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 16
    out = net_for("[crop]\ncrop_width=2\ncrop_height=2\n").forward(x)
    np.testing.assert_allclose(out[0, 0], x[0, 0, 1:3, 1:3] * 2 - 1)


def test_l2norm_normalises_each_pixel_over_channels():
    x = np.zeros((1, 2, 1, 2), np.float32)
    x[0, :, 0, 0] = [3, 4]
    out = net_for("[l2norm]\n", c=2, h=1, w=2).forward(x)
    np.testing.assert_allclose(out[0, :, 0, 0], [0.6, 0.8])
    np.testing.assert_array_equal(out[0, :, 0, 1], [0, 0])      # zero vector stays finite


def test_dropout_is_identity_in_inference_and_scales_in_training():
    net = build("[net]\nbatch=1\ninputs=1000\n[dropout]\nprobability=0.25\n", seed=3)
    x = np.ones((1, 1000), np.float32)
    np.testing.assert_array_equal(net.forward(x).ravel(), x.ravel())
    out = net.forward(x, train=True).ravel()
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.15 < (out == 0).mean() < 0.35


def test_yolo_head_applies_logistic_to_xy_obj_and_classes_only():
    net = net_for("[yolo]\nclasses=1\nnum=1\nmask=0\nanchors=1,1\n", c=6, h=2, w=2)
    x = np.full((1, 6, 2, 2), 2.0, np.float32)
    out = net.forward(x)
    s = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(out[0, :, 0, 0], [s, s, 2, 2, s, s], rtol=1e-6)


def test_resized_network_shares_parameters():
    from darknet_py import Network
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    net = Network.from_cfg(os.path.join(root, "cfg/yolov3-tiny.cfg"), batch=1, seed=0,
                           warn=False)
    small = net.resized(320, 320)
    assert small.input_shape == (3, 320, 320) and small.layers[16].out_h == 10
    assert small.layers[0].weights is net.layers[0].weights
    net.layers[0].weights[0, 0, 0, 0] = 5.0
    assert small.layers[0].weights[0, 0, 0, 0] == 5.0
