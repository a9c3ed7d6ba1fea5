"""The .weights format: headers, per-layer records, partial loads, atomic saves."""

import os
import struct

import numpy as np
import pytest

from darknet_py.errors import WeightsError

from conftest import build

CFG = ("[net]\nbatch=1\nchannels=2\nwidth=4\nheight=4\n"
       "[convolutional]\nfilters=3\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
       "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
       "[connected]\noutput=4\nbatch_normalize=1\nactivation=linear\n"
       "[connected]\noutput=3\nactivation=linear\n")
# conv BN: 3 biases + 3*3 BN + 3*2*9 weights ; conv: 2 + 2*3 ; connected BN: 4 + 4*32 + 3*4 ;
# connected: 3 + 3*4
SIZES = [3 + 9 + 54, 2 + 6, 4 + 128 + 12, 3 + 12]


def randomized(seed=0):
    net = build(CFG, seed=seed)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for name in layer.weight_record():
            arr = getattr(layer, name)
            arr[...] = rng.uniform(0.5, 1.5, arr.shape)
    return net


def test_file_layout_is_header_then_records_in_darknets_order(tmp_path):
    net = randomized()
    net.seen = 1234
    path = tmp_path / "a.weights"
    net.save_weights(path)
    data = path.read_bytes()
    assert data[:20] == struct.pack("<3iQ", 0, 2, 0, 1234)
    assert len(data) == 20 + 4 * sum(SIZES)
    floats = np.frombuffer(data[20:], "<f4")
    conv = net.layers[0]
    expected = np.concatenate([conv.biases, conv.scales, conv.rolling_mean,
                               conv.rolling_variance, conv.weights.ravel()])
    np.testing.assert_array_equal(floats[:SIZES[0]], expected)
    dense = net.layers[2]          # connected: BN arrays come after the weights
    start = SIZES[0] + SIZES[1]
    expected = np.concatenate([dense.biases, dense.weights.ravel(), dense.scales,
                               dense.rolling_mean, dense.rolling_variance])
    np.testing.assert_array_equal(floats[start:start + SIZES[2]], expected)


def test_save_load_save_is_byte_identical(tmp_path):
    a, b = tmp_path / "a.weights", tmp_path / "b.weights"
    randomized().save_weights(a)
    net = build(CFG, seed=5)
    assert net.load_weights(a) == 4
    net.save_weights(b)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("version,seen_format", [((0, 1, 0), "<I"), ((0, 2, 0), "<Q"),
                                                 ((0, 2, 5), "<Q"), ((1, 0, 0), "<Q")])
def test_every_header_version_is_read(tmp_path, version, seen_format):
    payload = randomized().save_weights(tmp_path / "x.weights") or \
        (tmp_path / "x.weights").read_bytes()[20:]
    path = tmp_path / "v.weights"
    path.write_bytes(struct.pack("<3i", *version) + struct.pack(seen_format, 77) + payload)
    net = build(CFG)
    net.load_weights(path)
    assert net.seen == 77
    reference = randomized()
    np.testing.assert_array_equal(net.layers[0].weights, reference.layers[0].weights)


def test_old_transposed_connected_weights(tmp_path):
    ref = randomized()
    chunks = [struct.pack("<3iI", 0, 1001, 0, 0)]
    for layer in ref.layers:
        for name in layer.weight_record():
            arr = getattr(layer, name)
            if layer.type == "connected" and name == "weights":
                arr = arr.T              # stored inputs x outputs in those files
            chunks.append(np.ascontiguousarray(arr, "<f4").tobytes())
    path = tmp_path / "old.weights"
    path.write_bytes(b"".join(chunks))
    net = build(CFG)
    net.load_weights(path)
    np.testing.assert_array_equal(net.layers[3].weights, ref.layers[3].weights)


def test_too_short_file_names_the_layer(tmp_path):
    path = tmp_path / "a.weights"
    randomized().save_weights(path)
    data = path.read_bytes()
    path.write_bytes(data[:20 + 4 * (SIZES[0] + 3)])
    with pytest.raises(WeightsError, match=r"file ends in layer 1 \(convolutional\): it needs 8 "
                                           r"more floats but only 3 are left"):
        build(CFG).load_weights(path)


def test_partial_load_counts_the_layers_filled(tmp_path):
    path = tmp_path / "a.weights"
    ref = randomized()
    ref.save_weights(path, cutoff=2)               # like darknet partial ... 2
    net = build(CFG, seed=9)
    before = net.layers[3].weights.copy()
    assert net.load_weights(path, partial=True) == 2
    np.testing.assert_array_equal(net.layers[1].weights, ref.layers[1].weights)
    np.testing.assert_array_equal(net.layers[3].weights, before)


def test_a_partial_load_refuses_a_file_of_another_cfg(tmp_path):
    """A backbone ends between two layers' records; a file that ends inside one, or has floats
    left over once every layer is filled, was written for another cfg: partial or not, an
    error, nothing read into the wrong arrays unnoticed.  Cut off before the layers that
    differ, its first layers load."""
    path = tmp_path / "a.weights"
    randomized().save_weights(path, cutoff=2)
    path.write_bytes(path.read_bytes()[:-4 * 3])           # inside layer 1's record
    with pytest.raises(WeightsError, match=r"file ends in layer 1 \(convolutional\): it needs "
                                           r"8 more floats but only 5 are left; the file does "
                                           r"not match the cfg$"):
        build(CFG).load_weights(path, partial=True)
    other = tmp_path / "other.weights"                     # the same net with 5 outputs last
    ref = build(CFG.replace("output=3", "output=5"), seed=3)
    ref.save_weights(other)
    with pytest.raises(WeightsError, match="the file does not match the cfg"):
        build(CFG).load_weights(other, partial=True)
    net = build(CFG, seed=9)
    assert net.load_weights(other, partial=True, cutoff=3) == 3
    np.testing.assert_array_equal(net.layers[2].weights, ref.layers[2].weights)


def test_a_file_with_a_record_for_a_dontload_layer_is_too_long(tmp_path):
    """AlexeyAB's dontload: the layer has no record in the file (ab:src/parser.c
    load_weights_upto skips it), so a file that has one has floats left over."""
    path = tmp_path / "a.weights"
    randomized().save_weights(path)
    skipping = CFG.replace("output=3\n", "output=3\ndontload=1\n")
    with pytest.raises(WeightsError, match=f"{SIZES[3]} floats more than the cfg's 4 layers"):
        build(skipping).load_weights(path)
    assert build(skipping).load_weights(path, cutoff=3) == 3


def test_too_long_file_is_an_error(tmp_path):
    path = tmp_path / "a.weights"
    randomized().save_weights(path)
    path.write_bytes(path.read_bytes() + b"\0" * 16)
    with pytest.raises(WeightsError, match="4 floats more than the cfg's 4 layers use"):
        build(CFG).load_weights(path)


def test_broken_files_get_one_line_errors(tmp_path):
    path = tmp_path / "a.weights"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(WeightsError, match="shorter than a .weights header"):
        build(CFG).load_weights(path)
    path.write_bytes(struct.pack("<3iQ", 0, 2, 0, 0) + b"\0" * 5)
    with pytest.raises(WeightsError, match="not a whole number of float32"):
        build(CFG).load_weights(path)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        build(CFG).load_weights(tmp_path / "missing.weights")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.weights"
    net = randomized()
    net.save_weights(path)
    good = path.read_bytes()
    net.layers[2].weights = "broken"       # the save fails half way through the file
    with pytest.raises(ValueError):        # (past the NaN check, which looks first)
        net.save_weights(path, allow_nonfinite=True)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["a.weights"]


def test_dontload_and_dontloadscales_do_not_advance_the_file(tmp_path):
    ref = randomized()
    path = tmp_path / "a.weights"
    # a file without layer 0's BN arrays, read by a cfg that says dontloadscales
    conv = ref.layers[0]
    chunks = [struct.pack("<3iQ", 0, 2, 0, 0), conv.biases.tobytes(), conv.weights.tobytes()]
    for layer in ref.layers[1:]:
        chunks += [getattr(layer, n).astype("<f4").tobytes() for n in layer.weight_record()]
    path.write_bytes(b"".join(chunks))
    net = build(CFG.replace("activation=leaky\n", "activation=leaky\ndontloadscales=1\n"))
    assert net.load_weights(path) == 4
    np.testing.assert_array_equal(net.layers[0].weights, conv.weights)
    np.testing.assert_array_equal(net.layers[0].rolling_variance, np.zeros(3))
    np.testing.assert_array_equal(net.layers[3].weights, ref.layers[3].weights)
