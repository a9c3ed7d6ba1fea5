"""train/topk.py: classifier validation's top-1/top-k hits as pj's top_k picks them (the
oracle: libdarknet's own top_k), on the host and in the GPU kernel."""

import ctypes

import numpy as np
import pytest

from darknet_py.predict import top_classes
from darknet_py.train.topk import TopK

from conftest import require_darknet, rng_for_test
from oracle.darknet import DarknetOracle


def tied_probs(rng, n, classes):
    """Probabilities on a coarse grid, so that rows hold ties (pj's tie rule decides)."""
    return rng.integers(0, 4, (n, classes)).astype(np.float32) / 4


@pytest.mark.darknet
@pytest.mark.parametrize("classes,top", [(10, 1), (10, 2), (5, 5), (40, 3)])
def test_hits_are_pj_top_ks(classes, top):
    """A hit is the truth among libdarknet's ``top_k(pred, classes, k)`` (its first for
    top-1), and ``classifier predict`` lists those classes in that order (pj:src/utils.c)."""
    require_darknet(*DarknetOracle.available(), "top_k oracle")
    top_k = DarknetOracle.lib().top_k
    top_k.restype, top_k.argtypes = None, [ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                           ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    rng = rng_for_test()
    probs = tied_probs(rng, 300, classes)
    labels = rng.integers(0, classes, 300)
    hits1 = hitsk = 0
    for row, label in zip(probs, labels):
        row, index = np.ascontiguousarray(row), np.zeros(top, np.int32)
        top_k(row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), classes, top,
              index.ctypes.data_as(ctypes.POINTER(ctypes.c_int)))
        hits1 += int(index[0] == label)
        hitsk += int(label in index)
        np.testing.assert_array_equal(top_classes(row, top), index)    # predict's order
    count = TopK(np, top)
    count.add(probs[:170], labels[:170])          # two batches add up
    count.add(probs[170:], labels[170:])
    assert count.counts() == (hits1, hitsk)
    assert 0 < hits1 < hitsk or top == 1


def test_pj_top_k_lists_on_ties_and_short_rows():
    """pj's walk, not a sort: a displaced entry lands after a run of ties, one pushed off the
    end is gone; a list longer than the classes keeps -1 in its tail; a NaN is not displaced
    (no comparison with it is true)."""
    from darknet_py.train.topk import top_k_lists
    probs = np.array([[0.5, 0.5, 0.75], [0.2, 0.9, 0.9], [np.nan, 0.5, 0.7]], np.float32)
    assert top_k_lists(probs, 2).tolist() == [[2, 1], [1, 2], [0, 2]]     # libdarknet's
    assert top_k_lists(probs[:1], 4).tolist() == [[2, 1, 0, -1]]
    assert top_classes(probs[0], 4).tolist() == [2, 1, 0]
    count = TopK(np, 2)
    count.add(probs, np.array([0, 2, 2]))
    assert count.counts() == (0, 2)


@pytest.mark.gpu
def test_gpu_topk_kernel_equals_numpy():
    import cupy
    rng = rng_for_test()
    for classes, top in ((10, 1), (10, 3), (1000, 5), (12, 40)):      # 40: on the host
        count, gpu = TopK(np, top), TopK(cupy, top)
        for n in (256, 77):
            probs = tied_probs(rng, n, classes)
            probs[rng.random((n, classes)) < 0.01] = np.nan
            labels = rng.integers(0, classes, n)
            count.add(probs, labels)
            gpu.add(cupy.asarray(probs), cupy.asarray(labels))
        assert gpu.counts() == count.counts()
