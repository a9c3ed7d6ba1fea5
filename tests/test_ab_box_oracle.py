"""darknet_py's port of AlexeyAB's iou_loss box deltas equals AlexeyAB's C: tests/oracle/ab_box.c
(dx_box_iou, box_iou and delta_yolo_box copied verbatim from AlexeyAB/darknet) is compiled with
the C compiler into a pytest tmp dir and called through ctypes on seeded random box pairs and
head outputs, degenerate ones included (zero and negative sizes, no overlap, identical boxes,
touching edges)."""

import ctypes
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import yolo_reference as reference  # noqa: E402
from conftest import rng_for_test, under_ci  # noqa: E402
from darknet_py.box import dx_box_iou, iou  # noqa: E402
from darknet_py.nn.layers.yololoss import _box_delta  # noqa: E402

SOURCE = HERE / "oracle" / "ab_box.c"
AB_KINDS = ("iou", "giou", "mse", "diou", "ciou")        # AB's IOU_LOSS enum, in order
F32P = ctypes.POINTER(ctypes.c_float)
I32P = ctypes.POINTER(ctypes.c_int)
FLT_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(scope="module")
def ab(tmp_path_factory):
    """AlexeyAB's box.c functions as a ctypes library (skipped without a C compiler, failed
    under CI, which installs gcc)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if under_ci():
            pytest.fail("no C compiler: CI must run the AlexeyAB box oracle", pytrace=False)
        pytest.skip("no C compiler (cc/gcc) to build AlexeyAB's box.c oracle")
    lib = tmp_path_factory.mktemp("ab_box") / "ab_box.so"
    subprocess.run([cc, "-O2", "-ffp-contract=off", "-std=gnu99", "-shared", "-fPIC", "-w",
                    str(SOURCE), "-o", str(lib), "-lm"], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _f32(a):
    return np.ascontiguousarray(a, np.float32)


def ab_dx_box_iou(ab, pred, truth, kind):
    pred, truth = _f32(pred), _f32(truth)
    out = np.zeros_like(pred)
    ab.ab_dx_box_iou(len(pred), pred.ctypes.data_as(F32P), truth.ctypes.data_as(F32P),
                     AB_KINDS.index(kind), out.ctypes.data_as(F32P))
    return out


def box_pairs(rng, n=4000):
    """Random (pred, truth) rows (n, 4), a fifth of them degenerate."""
    p = rng.uniform([0, 0, 0, 0], [1, 1, 0.6, 0.6], (n, 4)).astype(np.float32)
    t = rng.uniform([0, 0, 0, 0], [1, 1, 0.6, 0.6], (n, 4)).astype(np.float32)
    k = n // 20
    p[:k, 2] = 0                                        # zero width
    p[k:2 * k, 3] = 0                                   # zero height
    t[2 * k:3 * k, 2:] = 0                              # a zero-size truth
    t[3 * k:4 * k] = p[3 * k:4 * k]                     # identical
    p[4 * k:5 * k, 0] = t[4 * k:5 * k, 0] + 2           # far apart
    p[5 * k:6 * k, 2:] *= -1                            # negative sizes: AB's corner swap
    p[6 * k:7 * k, :2] = t[6 * k:7 * k, :2]             # nested: same centre, smaller
    p[6 * k:7 * k, 2:] = t[6 * k:7 * k, 2:] * 0.5
    p[7 * k:8 * k, 0] = t[7 * k:8 * k, 0] + (t[7 * k:8 * k, 2] + p[7 * k:8 * k, 2]) / 2   # touch
    return p, t


def assert_equal_f32(got, want, kind):
    """Bit for bit (NaN where AB's is NaN), but ciou's atan (NumPy's against libm's, double)
    may round one float differently: within 1e-5 relative of the largest value there."""
    got = np.asarray(got, np.float32)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    if kind != "ciou":
        np.testing.assert_array_equal(got[ok], want[ok])
        return
    finite = ok & np.isfinite(want)
    np.testing.assert_array_equal(got[ok & ~finite], want[ok & ~finite])
    scale = np.abs(want[finite]).max()
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6 * scale)
    assert (got[finite] == want[finite]).mean() > 0.99


@pytest.mark.parametrize("kind", AB_KINDS)
def test_dx_box_iou_equals_alexeyabs(ab, kind):
    p, t = box_pairs(rng_for_test())
    want = ab_dx_box_iou(ab, p, t, kind)
    got = np.stack(dx_box_iou(tuple(p.T), tuple(t.T), kind), axis=1)
    assert_equal_f32(got, want, kind)
    assert np.isfinite(want).mean() > 0.9 and (want != 0).any(axis=0).all()
    # the loop reference's line-by-line transcription (tests/yolo_reference.py) too
    rows = range(0, len(p), 13)
    ref = np.array([reference.dx_box_iou(p[r], t[r], kind) for r in rows], np.float32)
    assert_equal_f32(ref, want[rows], kind)


def test_box_iou_equals_alexeyabs(ab):
    """darknet_py's float32 iou (pj's box_iou) is AB's box_iou where sizes are positive."""
    p, t = (np.abs(b) + 1e-3 for b in box_pairs(rng_for_test()))
    p, t = p.astype(np.float32), t.astype(np.float32)
    want = np.zeros_like(p)
    ab.ab_scores(len(p), p.ctypes.data_as(F32P), t.ctypes.data_as(F32P),
                 want.ctypes.data_as(F32P))
    np.testing.assert_array_equal(iou(tuple(p.T), tuple(t.T)), want[:, 0])
    assert (want[:, 0] > 0).mean() > 0.2


def head_cells(rng, n, new_coords):
    """One cell's outputs per row: x, y in [0, 1); w, h raw (new_coords: [0, 1), some 0)."""
    x = rng.random((n, 4)).astype(np.float32)
    if new_coords:
        x[:, 2:] = np.where(rng.random((n, 2)) < 0.05, 0, x[:, 2:])
    else:
        x[:, 2:] = rng.normal(0, 1.5, (n, 2))
        x[: n // 50, 2] = 100                           # exp overflows: AB's fix_nan_inf
    return _f32(x)


@pytest.mark.parametrize("new_coords", [0, 1], ids=["exp", "new_coords"])
@pytest.mark.parametrize("max_delta", [math.inf, 0.5], ids=["free", "max_delta"])
@pytest.mark.parametrize("kind", AB_KINDS)
def test_box_delta_equals_alexeyabs_delta_yolo_box(ab, kind, max_delta, new_coords):
    """yololoss._box_delta (the truths' writes and truth_thresh) against AB's delta_yolo_box:
    iou_loss deltas bit for bit (ciou within atan rounding); mse (pj's targets in float64)
    within float32 rounding."""
    rng = rng_for_test()
    n, lw, lh, net = 3000, 13, 9, (416, 288)
    x = head_cells(rng, n, new_coords)
    truth = rng.uniform([0.01, 0.01, 0.02, 0.02], [0.99, 0.99, 0.7, 0.7], (n, 4))
    truth = _f32(truth)
    i = np.minimum(truth[:, 0] * lw, lw - 1).astype(np.int32)
    j = np.minimum(truth[:, 1] * lh, lh - 1).astype(np.int32)
    i[: n // 4] = rng.integers(0, lw, n // 4)           # truth_thresh: any cell's box
    anchors = _f32(rng.uniform(5, 300, (n, 2)))
    norm, mult = 0.07, _f32(rng.choice([1, 2.5, 4], n))
    delta = np.zeros(4 * n, np.float32)
    ab.ab_delta_yolo_box(
        n, truth.ctypes.data_as(F32P), x.ctypes.data_as(F32P), anchors.ctypes.data_as(F32P),
        _f32(i).astype(np.int32).ctypes.data_as(I32P), j.ctypes.data_as(I32P), lw, lh, *net,
        delta.ctypes.data_as(F32P), ctypes.c_float(1.0),
        _f32(np.float32(norm) * mult).ctypes.data_as(F32P), AB_KINDS.index(kind),
        ctypes.c_float(FLT_MAX if max_delta == math.inf else max_delta), new_coords)
    want = delta.reshape(n, 4)
    layer = SimpleNamespace(w=lw, h=lh, iou_loss=kind, iou_normalizer=norm, max_delta=max_delta,
                            new_coords=bool(new_coords))
    cols = [x[:, k].astype(np.float64) for k in range(4)]
    t = [truth[:, k].astype(np.float64) for k in range(4)]
    scale = 1.0 * norm * mult.astype(np.float64)
    got = np.stack(_box_delta(layer, cols, t, i.astype(float), j.astype(float),
                              anchors[:, 0].astype(np.float64), anchors[:, 1].astype(np.float64),
                              scale, mult.astype(np.float64), net), axis=1)
    if kind == "mse":       # AB clips only the iou_loss deltas; pj's mse in float64
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5 * np.abs(want).max())
        return
    assert np.isfinite(got).all()
    assert_equal_f32(got, want, kind)
    if max_delta != math.inf:
        assert np.abs(want).max() == np.float32(max_delta)
