"""The IoU-family scores: exact values; AlexeyAB's box deltas against finite differences."""

import math

import pytest

import numpy as np

from darknet_py.box import KINDS, dx_box_iou, score
from conftest import rng_for_test


def test_known_values():
    a, b = (0.5, 0.5, 0.2, 0.2), (0.6, 0.5, 0.2, 0.2)          # half overlap side by side
    iou = 0.02 / 0.06
    assert score(a, b, "iou") == pytest.approx(iou)
    assert score(a, b, "giou") == pytest.approx(iou - (0.06 - 0.06) / 0.06)
    assert score(a, b, "diou") == pytest.approx(iou - 0.01 / (0.3 ** 2 + 0.2 ** 2))
    assert score(a, b, "ciou") == pytest.approx(score(a, b, "diou"))    # same aspect: v = 0
    far = (0.1, 0.1, 0.1, 0.1), (0.9, 0.9, 0.1, 0.1)
    assert score(*far, "iou") == 0 and score(*far, "giou") < -0.9


@pytest.mark.parametrize("kind", ["iou", "giou"])
def test_alexeyabs_iou_and_giou_deltas_are_the_gradient_with_twice_its_size_terms(kind):
    """AB's dx_box_iou sums the edge derivatives: dx = dl + dr is d score / dx, but dw = dr - dl
    is twice d score / dw (AB: "we do not divide by 2"); for overlapping boxes that is all the
    difference for iou and giou.  (Without overlap AB's intersection Iw Ih is not clamped at 0:
    no gradient; the oracle test covers that case.)"""
    rng = rng_for_test()
    checked = 0
    while checked < 40:
        p = tuple(rng.uniform([0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.5, 0.5]))
        t = tuple(rng.uniform([0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.5, 0.5]))
        edges = [p[0] - p[2] / 2, p[0] + p[2] / 2, t[0] - t[2] / 2, t[0] + t[2] / 2,
                 p[1] - p[3] / 2, p[1] + p[3] / 2, t[1] - t[3] / 2, t[1] + t[3] / 2]
        if min(abs(a - b) for a in edges[:2] for b in edges[2:4]) < 1e-2 or \
                min(abs(a - b) for a in edges[4:6] for b in edges[6:]) < 1e-2:
            continue                                    # keep away from the kinks
        p = tuple(float(v) for v in np.float32(p))
        t = tuple(float(v) for v in np.float32(t))
        if score(p, t, "iou") == 0:
            continue
        got = dx_box_iou(p, t, kind)
        for k, factor in zip(range(4), (1, 1, 2, 2)):
            hi, lo = list(p), list(p)
            hi[k] += 1e-6
            lo[k] -= 1e-6
            num = (score(hi, t, kind) - score(lo, t, kind)) / 2e-6
            assert float(got[k]) == pytest.approx(factor * num, rel=2e-3, abs=1e-4), \
                (kind, k, p, t)
        checked += 1


@pytest.mark.parametrize("kind", KINDS)
def test_array_module_math_equals_libm_math(kind):
    """score uses the array module's arctan and v * v (one formula for NumPy and CuPy); libm's
    atan and pow (the loop reference's) agree to the last bits, on a (k, n) matrix of boxes
    including disjoint, nested and zero-size ones."""
    import yolo_reference as libm
    rng = rng_for_test()
    p = rng.uniform([0, 0, 0, 0.01], [1, 1, 0.6, 0.6], (40, 1, 4))
    t = rng.uniform([0, 0, 0, 0.01], [1, 1, 0.6, 0.6], (60, 4))
    p[:5, 0, 2] = 0                                  # zero width
    t[:5] = p[5:10, 0]                               # identical boxes
    p[10:15, 0, 2:] = t[10:15, 2:] * 0.25            # nested
    p[10:15, 0, :2] = t[10:15, :2]
    cols = lambda b: tuple(b[..., k] for k in range(4))   # noqa: E731
    np.testing.assert_allclose(score(cols(p), cols(t), kind), libm.score(cols(p), cols(t), kind),
                               rtol=1e-12, atol=1e-15)
