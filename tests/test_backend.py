"""nn/backend.py: host copies of many arrays at once (what a backup reads of a network), and
copies read later as they were when asked for (a training loss read one iteration late)."""

import numpy as np
import pytest

from darknet_py.nn.backend import HostCopy, host_copies, to_numpy
from darknet_py.nn.layers.base import PendingCost
from darknet_py.train.checkpoint import state_snapshot

from conftest import build, rng_for_test

NET = ("[net]\nbatch=2\nchannels=3\nwidth=8\nheight=8\nlearning_rate=0.1\nmomentum=0.9\n"
       "[convolutional]\nfilters=4\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
       "[convolutional]\nfilters=5\nsize=1\nactivation=linear\n"
       "[connected]\noutput=3\nactivation=linear\n")


def test_host_copies_are_copies_in_order_with_their_shapes_and_dtypes():
    rng = rng_for_test()
    arrays = [rng.random((2, 3), dtype=np.float32), None, np.arange(5),
              np.float32(2.5) * np.ones(()), rng.random((0, 4), dtype=np.float32)]
    got = host_copies(arrays)
    assert got[1] is None
    for a, g in zip(arrays, got):
        if a is None:
            continue
        assert g is not a and g.dtype == a.dtype and g.shape == a.shape
        np.testing.assert_array_equal(g, a)
    arrays[0][0, 0] = -1.0           # a copy, not a view: training goes on changing them
    assert got[0][0, 0] != -1.0
    read_at_once = host_copies(arrays, copy=False)
    assert all(g is a for a, g in zip(arrays, read_at_once) if isinstance(a, np.ndarray))


def test_a_host_copy_holds_the_values_it_was_made_from():
    rng = rng_for_test()
    a, b = rng.random((2, 3), dtype=np.float32), np.arange(4)
    copy = HostCopy([a, 2.5, b[1:]])
    want = [a.copy(), 2.5, b[1:].copy()]
    a[...], b[...] = -1, -1              # the arrays go on changing (the next pass)
    for got, w in zip(copy.get(), want):
        np.testing.assert_array_equal(got, w)
    assert PendingCost([1.0, np.float32(2.0), np.array([3.0])]).value() == 2.0
    assert np.isnan(PendingCost([]).value())


@pytest.mark.gpu
def test_gpu_a_host_copy_is_the_value_when_made_not_when_read():
    """The transfer is queued when the copy is made: work queued after it (the next pass
    overwriting a replayed graph's loss) does not change what ``get`` returns."""
    import cupy
    loss = cupy.full((1,), 1.5, dtype=cupy.float32)
    stats = cupy.arange(8, dtype=cupy.float64)
    pending = PendingCost([loss, stats[3]])
    copy = HostCopy([loss, stats, np.float32(7)])
    loss[...] = 9.0
    stats *= 10
    assert pending.value() == (1.5 + 3.0) / 2
    got = copy.get()
    assert got[0].tolist() == [1.5] and got[1].tolist() == list(range(8)) and got[2] == 7
    assert isinstance(got[1], np.ndarray) and got[1].dtype == np.float64


@pytest.mark.gpu
def test_gpu_host_copies_gather_per_dtype_and_equal_each_arrays_own_copy():
    import cupy
    rng = rng_for_test()
    host = [rng.random((3, 4), dtype=np.float32), np.arange(7, dtype=np.int64),
            rng.random(5, dtype=np.float32), rng.random((2, 2), dtype=np.float32).T]
    arrays = [cupy.asarray(host[0]), cupy.asarray(host[1]), host[2], cupy.asarray(host[3])]
    got = host_copies(arrays)
    for a, g in zip(host, got):
        assert isinstance(g, np.ndarray) and g.dtype == a.dtype and g.shape == a.shape
        np.testing.assert_array_equal(g, a)


@pytest.mark.gpu
def test_gpu_backup_bytes_and_state_equal_the_cpu_networks():
    """A GPU network's backup (weights file bytes, state arrays) is the one of a CPU network
    holding the same values, copied array by array."""
    from darknet_py.nn.backend import resolve_device
    cpu = build(NET, seed=3)
    gpu = build(NET, seed=3, device=resolve_device("gpu"))
    rng = rng_for_test()
    gpu.forward(gpu.xp.asarray(rng.random((2, 3, 8, 8), dtype=np.float32)), train=True)
    for mine, theirs in zip(cpu.layers, gpu.layers):
        for name, array in mine.state().items():
            array[...] = to_numpy(theirs.state()[name])
    assert gpu.weights_chunks(refuse="w") == cpu.weights_chunks(refuse="w")
    meta_c, want = state_snapshot(cpu, {})
    meta_g, got = state_snapshot(gpu, {})
    assert meta_c == meta_g and list(got) == list(want)
    for key in want:
        assert isinstance(got[key], np.ndarray)
        np.testing.assert_array_equal(got[key], to_numpy(want[key]), err_msg=key)
