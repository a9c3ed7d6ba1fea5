"""The IoU-family box losses: exact values and gradients equal to finite differences."""

import math

import pytest

from darknet_py.box import KINDS, score, score_gradient
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


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind):
    rng = rng_for_test()
    checked = 0
    while checked < 40:
        p = tuple(rng.uniform([0.3, 0.3, 0.1, 0.1], [0.7, 0.7, 0.5, 0.5]))
        t = tuple(rng.uniform([0.3, 0.3, 0.1, 0.1], [0.7, 0.7, 0.5, 0.5]))
        edges = [p[0] - p[2] / 2, p[0] + p[2] / 2, t[0] - t[2] / 2, t[0] + t[2] / 2,
                 p[1] - p[3] / 2, p[1] + p[3] / 2, t[1] - t[3] / 2, t[1] + t[3] / 2]
        if min(abs(a - b) for a in edges[:2] for b in edges[2:4]) < 1e-3 or \
                min(abs(a - b) for a in edges[4:6] for b in edges[6:]) < 1e-3:
            continue                                    # keep away from the kinks
        g = score_gradient(p, t, kind)
        eps = 1e-7
        for k in range(4):
            hi = list(p)
            lo = list(p)
            hi[k] += eps
            lo[k] -= eps
            num = (score(hi, t, kind) - score(lo, t, kind)) / (2 * eps)
            if kind == "ciou":      # alpha is held constant: differentiate with it frozen
                num = _ciou_frozen_alpha_diff(p, t, k, eps)
            assert g[k] == pytest.approx(num, rel=1e-5, abs=1e-7), (kind, k, p, t)
        checked += 1


def _ciou_frozen_alpha_diff(p, t, k, eps):
    iou = score(p, t, "iou")
    v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(p[2] / p[3])) ** 2
    alpha = v / (1 - iou + v)

    def f(q):
        vq = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(q[2] / q[3])) ** 2
        return score(q, t, "diou") - alpha * vq
    hi, lo = list(p), list(p)
    hi[k] += eps
    lo[k] -= eps
    return (f(hi) - f(lo)) / (2 * eps)


@pytest.mark.parametrize("kind", KINDS)
def test_array_module_math_equals_libm_math(kind):
    """score and score_gradient use the array module's arctan and v * v (one formula for NumPy
    and CuPy); libm's atan and pow (the loop reference's) agree to the last bits, on a (k, n)
    matrix of boxes including disjoint, nested and zero-size ones."""
    import numpy as np
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
    for got, want in zip(score_gradient(cols(p), cols(t), kind),
                         libm.score_gradient(cols(p), cols(t), kind)):
        assert got.shape == (40, 60)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
