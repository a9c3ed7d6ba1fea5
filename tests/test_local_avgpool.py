"""AlexeyAB's [local_avgpool]: the forward equal to a loop from AlexeyAB's C
(ab:src/maxpool_layer.c forward_local_avgpool_layer), the backward the exact gradient of it
(finite differences, float64; AB's CPU and GPU backwards approximate it, docs/notes.md), the
shape rule of parse_local_avgpool and the AlexeyAB cfg that uses it."""

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.cfg.check import check_cfg
from darknet_py.errors import CfgError
from test_gradients import check_net, input_for, make_net

CASES = ["size=2\nstride=2\n", "size=3\nstride=1\n", "size=3\nstride_x=2\nstride_y=1\n",
         "size=3\nstride=2\npadding=0\n", "size=2\nstride=1\npadding=2\n", "stride=2\n"]


def ab_local_avgpool(x, size, stride_x, stride_y, pad, out_h, out_w):
    """ab forward_local_avgpool_layer, loop for loop."""
    batch, c, h, w = x.shape
    out = np.zeros((batch, c, out_h, out_w))
    w_offset = h_offset = -(pad // 2)
    for b in range(batch):
        for k in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    avg, counter = 0.0, 0
                    for n in range(size):
                        for m in range(size):
                            cur_h = h_offset + i * stride_y + n
                            cur_w = w_offset + j * stride_x + m
                            if 0 <= cur_h < h and 0 <= cur_w < w:
                                counter += 1
                                avg += x[b, k, cur_h, cur_w]
                    out[b, k, i, j] = avg / counter
    return out


@pytest.mark.parametrize("opts", CASES)
def test_forward_equals_alexeyabs_loop_and_shape_rule(opts):
    rng = rng_for_test()
    net = build(f"[net]\nbatch=2\nchannels=3\nwidth=7\nheight=6\n[local_avgpool]\n{opts}")
    layer = net.layers[0]
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    y = net.forward(x)
    # ab make_maxpool_layer: out = (in + padding - size) / stride + 1
    assert (layer.out_h, layer.out_w) == ((6 + layer.padding - layer.size) // layer.stride_y + 1,
                                          (7 + layer.padding - layer.size) // layer.stride_x + 1)
    expected = ab_local_avgpool(x.astype(np.float64), layer.size, layer.stride_x,
                                layer.stride_y, layer.padding, layer.out_h, layer.out_w)
    np.testing.assert_allclose(np.asarray(y).reshape(expected.shape), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("opts", CASES)
def test_gradient(opts):
    net = make_net(f"[local_avgpool]\n{opts}", c=2, h=6, w=5)
    check_net(net, input_for(net))


def test_gradient_after_a_conv():
    net = make_net("[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=leaky\n"
                   "[local_avgpool]\nsize=3\nstride=2\n", c=2, h=6, w=6)
    check_net(net, input_for(net))


def test_cfg_check_passes_it_and_the_layer_after_sees_its_shape(tmp_path):
    path = tmp_path / "l.cfg"
    path.write_text("[net]\nbatch=1\nwidth=32\nheight=32\nchannels=3\n"
                    "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
                    "[local_avgpool]\nsize=3\nstride=2\n[route]\nlayers=-1,-2\n"
                    "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n")
    said = [(f.line, f.message) for f in check_cfg(str(path)) if f.level == "error"]
    assert len(said) == 1 and "(16x16x4) and layer 0 (32x32x4)" in said[0][1], said


@pytest.mark.parametrize("opts,key", [("size=2\nstride=1\npadding=4\n", "padding"),
                                      ("size=1\nstride=3\npadding=6\n", "padding")])
def test_a_window_wholly_in_the_padding_is_refused_at_its_line(tmp_path, opts, key):
    """AlexeyAB divides by a count of 0 there (NaN)."""
    text = f"[net]\nbatch=1\nwidth=7\nheight=7\nchannels=3\n[local_avgpool]\n{opts}"
    with pytest.raises(CfgError) as e:
        build(text)
    assert e.value.line == text.splitlines().index(f"{key}={opts.split(key + '=')[1].strip()}") + 1
    assert "padding" in e.value.message
