"""AB-style mAP (ab:src/detector.c validate_detector_map) on hand-made cases with exact answers, plus a literal port of AB's
rank walk as a reference on random data."""

from functools import partial

import numpy as np
import pytest

from darknet_py import box
from darknet_py.detection.mapeval import evaluate_map, format_map_table

box_iou = partial(box.box_iou, dtype=np.float64)        # the IoU mAP uses: float64

T1 = (0.25, 0.25, 0.2, 0.2)
T2 = (0.75, 0.75, 0.2, 0.2)
T3 = (0.25, 0.75, 0.2, 0.2)
T4 = (0.75, 0.25, 0.2, 0.2)
T5 = (0.5, 0.5, 0.1, 0.1)
FAR = (0.5, 0.05, 0.05, 0.05)       # overlaps no truth


def d(cls, conf, box):
    return (cls, conf) + tuple(box)


def t(cls, box):
    return (cls,) + tuple(box)


def test_perfect_detections():
    truths = [[t(0, T1), t(1, T2)], [t(0, T3)]]
    dets = [[d(0, 0.9, T1), d(1, 0.8, T2)], [d(0, 0.7, T3)]]
    for method in ("area", "11point"):
        r = evaluate_map(dets, truths, classes=2, method=method)
        assert r["ap"] == [1.0, 1.0] and r["map"] == 1.0
        assert (r["tp"], r["fp"], r["fn"]) == (3, 0, 0)
        assert r["precision"] == r["recall"] == r["f1"] == 1.0
        assert r["average_iou"] == pytest.approx(1.0)
        assert r["truths_per_class"] == [2, 1] and r["unique_truth_count"] == 3


def test_one_false_positive_ranked_first():
    # ranks: FP (P=0, R=0), TP (1/2, 1/2), TP (2/3, 1): the area is 1/2*2/3 + 1/2*2/3 = 2/3,
    # and every 11-point level sees max precision 2/3
    truths = [[t(0, T1), t(0, T2)]]
    dets = [[d(0, 0.9, FAR), d(0, 0.8, T1), d(0, 0.7, T2)]]
    r = evaluate_map(dets, truths, classes=1)
    assert r["ap"][0] == pytest.approx(2 / 3)
    assert evaluate_map(dets, truths, 1, method="11point")["ap"][0] == pytest.approx(2 / 3)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0
    assert r["f1"] == pytest.approx(0.8)
    assert r["average_iou"] == pytest.approx(2 / 3)      # AB divides the IoU sum by TP + FP


def test_11point_differs_from_area():
    # 3 truths; ranks TP, FP, TP: (P, R) = (1, 1/3), (1/2, 1/3), (2/3, 2/3)
    # area: 1/3 * 1 + 1/3 * max(1/2, 2/3) = 5/9
    # 11-point: levels 0, .1, .2, .3 -> 1; .4, .5, .6 -> 2/3; .7 .. 1.0 -> 0: (4 + 2) / 11
    # 101-point: k <= 33 -> 1 (34 levels); 34 <= k <= 66 -> 2/3 (33 levels): (34 + 22) / 101
    truths = [[t(0, T1), t(0, T2), t(0, T3)]]
    dets = [[d(0, 0.9, T1), d(0, 0.8, FAR), d(0, 0.7, T2)]]
    assert evaluate_map(dets, truths, 1)["ap"][0] == pytest.approx(5 / 9)
    assert evaluate_map(dets, truths, 1, method="11point")["ap"][0] == pytest.approx(6 / 11)
    assert evaluate_map(dets, truths, 1, points=101)["ap"][0] == pytest.approx(56 / 101)
    c = evaluate_map(dets, truths, 1)["curves"][0]
    np.testing.assert_allclose(c["precision"], [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(c["recall"], [1 / 3, 1 / 3, 2 / 3])


def test_thresholded_stats_f1_and_average_iou():
    # 5 truths; detections .9 (IoU .6 with T1), .8 (T2 exact), .6 FP, .5 (T3 exact), .1 (T4, under
    # the threshold: counts for AP, not for the thresholded statistics); T5 never detected.
    shifted = (0.30, 0.25, 0.2, 0.2)
    assert box_iou(shifted, [T1])[0] == pytest.approx(0.6)
    truths = [[t(0, T1), t(0, T2)], [t(0, T3), t(0, T4), t(0, T5)]]
    dets = [[d(0, 0.9, shifted), d(0, 0.8, T2), d(0, 0.6, FAR)],
            [d(0, 0.5, T3), d(0, 0.1, T4)]]
    r = evaluate_map(dets, truths, 1, conf_thresh=0.25)
    assert (r["tp"], r["fp"], r["fn"]) == (3, 1, 2)
    assert r["precision"] == pytest.approx(0.75) and r["recall"] == pytest.approx(0.6)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["average_iou"] == pytest.approx((0.6 + 1 + 1) / 4)
    # P = 1, 1, 2/3, 3/4, 4/5; R = .2, .4, .4, .6, .8 -> .2 + .2 + .2 * .8 + .2 * .8
    assert r["ap"][0] == pytest.approx(0.72)
    assert r["tp_per_class"] == [3] and r["fp_per_class"] == [1]


def test_duplicate_detection_is_false_positive():
    truths = [[t(0, T1)]]
    dets = [[d(0, 0.9, T1), d(0, 0.8, (0.26, 0.25, 0.2, 0.2))]]
    r = evaluate_map(dets, truths, 1)
    assert r["ap"][0] == pytest.approx(1.0)                 # the FP comes after full recall
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0) and r["f1"] == pytest.approx(2 / 3)


def test_best_truth_already_claimed_is_false_positive():
    # AB (like VOC) matches a detection to its best-IoU truth only; if a higher-ranked detection
    # claimed it, this one is an FP even though another truth (B, IoU 2/3) is free.
    a, b = (0.5, 0.5, 0.2, 0.2), (0.56, 0.5, 0.2, 0.2)
    det2 = (0.52, 0.5, 0.2, 0.2)
    assert box_iou(det2, [a, b]) == pytest.approx([0.036 / 0.044, 0.032 / 0.048])
    r = evaluate_map([[d(0, 0.9, a), d(0, 0.8, det2)]], [[t(0, a), t(0, b)]], 1)
    assert r["ap"][0] == pytest.approx(0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)


def test_wrong_class_and_classes_without_truths():
    r = evaluate_map([[d(1, 0.9, T1)]], [[t(0, T1)]], 2)
    assert r["ap"] == [0.0, 0.0] and r["map"] == 0.0
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 1)
    # a class with no truths still counts in the mean (AP 0)
    truths = [[t(0, T1), t(1, T2)]]
    dets = [[d(0, 0.9, T1), d(1, 0.9, T2)]]
    assert evaluate_map(dets, truths, 3)["map"] == pytest.approx(2 / 3)


def test_iou_threshold_is_strict():
    truth = (0.5, 0.5, 0.5, 0.5)
    det = (0.375, 0.5, 0.25, 0.5)                # IoU exactly 0.125 / 0.25 = 0.5
    assert box_iou(det, [truth])[0] == 0.5
    assert evaluate_map([[d(0, 0.9, det)]], [[t(0, truth)]], 1)["ap"][0] == 0.0
    assert evaluate_map([[d(0, 0.9, det)]], [[t(0, truth)]], 1, iou_thresh=0.49)["ap"][0] == 1.0


def test_row_order_does_not_matter_and_zero_confidence_ignored():
    rng = np.random.default_rng(0)
    truths, dets = _random_case(rng, images=6, classes=3)
    r1 = evaluate_map(dets, truths, 3)
    shuffled = [np.asarray(x)[rng.permutation(len(x))] if len(x) else x for x in dets]
    with_zero = [list(map(tuple, x)) + [d(0, 0.0, T1)] for x in shuffled]
    r2 = evaluate_map(with_zero, truths, 3)
    for k in ("ap", "map", "tp", "fp", "fn", "average_iou", "detections_count"):
        assert r1[k] == pytest.approx(r2[k]), k


def test_empty_inputs_and_errors():
    r = evaluate_map([[], None], [np.zeros((0, 5)), []], 2)
    assert r["map"] == 0.0 and r["detections_count"] == 0 and r["f1"] == 0.0
    with pytest.raises(ValueError):
        evaluate_map([[]], [[], []], 1)
    with pytest.raises(ValueError):
        evaluate_map([[d(2, 0.5, T1)]], [[]], 2)
    with pytest.raises(ValueError):
        evaluate_map([[]], [[t(0, T1)]], 1, method="voc")


def test_format_map_table():
    truths = [[t(0, T1), t(1, T2)], [t(0, T3)]]
    dets = [[d(0, 0.9, T1), d(1, 0.8, T2)], [d(0, 0.7, T3), d(1, 0.1, FAR)]]
    text = format_map_table(evaluate_map(dets, truths, 2), ["circle", "square"])
    lines = text.splitlines()
    assert lines[0] == "detections_count = 4, unique_truth_count = 3"
    assert lines[1] == "class_id = 0, name = circle, ap = 100.00%   \t (TP = 2, FP = 0)"
    assert lines[2] == "class_id = 1, name = square, ap = 100.00%   \t (TP = 1, FP = 0)"
    assert "for conf_thresh = 0.25, precision = 1.00, recall = 1.00, F1-score = 1.00" in lines
    assert "for conf_thresh = 0.25, TP = 3, FP = 0, FN = 0, average IoU = 100.00 %" in lines
    assert "IoU threshold = 50 %, used Area-Under-Curve for each unique Recall" in lines
    assert lines[-1] == "mean average precision (mAP@0.50) = 1.000000, or 100.00 %"
    text11 = format_map_table(evaluate_map(dets, truths, 2, method="11point"))
    assert "IoU threshold = 50 %, used 11 Recall-points" in text11
    assert "name = 1," in text11


# --- a literal port of AB's validate_detector_map rank walk, as a reference ------------------

def _random_case(rng, images, classes):
    truths, dets = [], []
    for _ in range(images):
        n = int(rng.integers(0, 5))
        tr = np.column_stack([rng.integers(0, classes, n), rng.uniform(0.2, 0.8, (n, 2)),
                              rng.uniform(0.1, 0.3, (n, 2))])
        rows = []
        for row in tr:                               # jittered copies, some with the wrong class
            for _ in range(int(rng.integers(0, 3))):
                c = row[0] if rng.random() < 0.8 else rng.integers(0, classes)
                rows.append([c, rng.random(), *(row[1:3] + rng.normal(0, 0.03, 2)),
                             *(row[3:5] * rng.uniform(0.8, 1.2, 2))])
        for _ in range(int(rng.integers(0, 3))):     # pure false positives
            rows.append([rng.integers(0, classes), rng.random(), *rng.uniform(0.1, 0.9, 2),
                         *rng.uniform(0.05, 0.3, 2)])
        truths.append(tr)
        dets.append(np.array(rows).reshape(-1, 6))
    return truths, dets


def _ab_reference(dets, truths, classes, iou_thresh, points):
    recs, counts, unique = [], np.zeros(classes, int), 0
    for dd, tt in zip(dets, truths):
        tt = np.asarray(tt, float).reshape(-1, 5)
        for row in tt:
            counts[int(row[0])] += 1
        for row in np.asarray(dd, float).reshape(-1, 6):
            if row[1] <= 0:
                continue
            max_iou, idx = 0.0, -1
            for j, tr in enumerate(tt):
                cur = box_iou(row[2:], [tr[1:]])[0]
                if cur > iou_thresh and int(row[0]) == int(tr[0]) and cur > max_iou:
                    max_iou, idx = cur, unique + j
            recs.append((row[1], int(row[0]), idx))
        unique += len(tt)
    recs.sort(key=lambda x: -x[0])
    D = len(recs)
    tp = np.zeros((classes, D))
    fp = np.zeros((classes, D))
    prec = np.zeros((classes, D))
    rec = np.zeros((classes, D))
    flags = set()
    for r, (_, c, idx) in enumerate(recs):
        if r > 0:
            tp[:, r], fp[:, r] = tp[:, r - 1], fp[:, r - 1]
        if idx >= 0 and idx not in flags:
            flags.add(idx)
            tp[c, r] += 1
        else:
            fp[c, r] += 1
        for i in range(classes):
            prec[i, r] = tp[i, r] / (tp[i, r] + fp[i, r]) if tp[i, r] + fp[i, r] else 0
            rec[i, r] = tp[i, r] / counts[i] if counts[i] else 0
    aps = []
    for i in range(classes):
        ap = 0.0
        if D == 0:
            aps.append(0.0)
            continue
        if points == 0:
            last_r, last_p = rec[i, D - 1], prec[i, D - 1]
            for r in range(D - 2, -1, -1):
                delta = last_r - rec[i, r]
                last_r = rec[i, r]
                last_p = max(last_p, prec[i, r])
                ap += delta * last_p
            ap += last_r * last_p
        else:
            for k in range(points):
                level = k * 1.0 / (points - 1)
                cur = 0.0
                for r in range(D):
                    if rec[i, r] >= level and prec[i, r] > cur:
                        cur = prec[i, r]
                ap += cur
            ap /= points
        aps.append(ap)
    return aps


@pytest.mark.parametrize("seed", range(6))
def test_matches_literal_ab_walk(seed):
    rng = np.random.default_rng(seed)
    truths, dets = _random_case(rng, images=8, classes=3)
    for points, method in ((0, "area"), (11, "11point"), (101, None)):
        kw = {"method": method} if method else {"points": points}
        got = evaluate_map(dets, truths, 3, **kw)["ap"]
        np.testing.assert_allclose(got, _ab_reference(dets, truths, 3, 0.5, points), atol=1e-12)
