"""Detection mAP the way AlexeyAB/darknet's ``detector map`` computes it
(ab:src/detector.c validate_detector_map).

    from darknet_py.detection.mapeval import evaluate_map, format_map_table
    result = evaluate_map(dets, truths, classes=4)              # AP@0.5, area under the PR curve
    print(format_map_table(result, ["circle", "square", "triangle", "star"]))

Inputs, one entry per image (lists of equal length):

* ``detections_per_image[i]``: rows ``(class_id, confidence, x, y, w, h)`` -- an (n, 6) array or
  a list of tuples; boxes centre-based and relative to the image (like label files).  One row per
  (box, class) pair, as AB records every class with probability > 0; rows with confidence <= 0 are
  ignored, as in AB.
* ``truths_per_image[i]``: rows ``(class_id, x, y, w, h)`` -- e.g. the array from
  :func:`darknet_py.data.labels.read_labels`; an empty array is an image without objects.

Algorithm (AB):

1. For every detection, the truth of the *same class* in the same image with the highest IoU,
   among those with IoU **strictly greater** than ``iou_thresh`` (AB: ``current_iou > iou_thresh``;
   the VOC devkit also uses ``>``), is its match candidate (a global truth index).
2. All detections of all images and classes are sorted by confidence, highest first (a stable
   sort: ties keep image order, then row order; AB's ``qsort`` leaves ties unspecified).  Walking
   the ranks, a detection whose candidate truth is not claimed yet is a TP and claims it;
   otherwise (no candidate, or its candidate already claimed by a higher-ranked detection) it is
   an FP -- AB, like VOC, does not fall back to the second-best truth.
3. Per class, precision P_r = TP/(TP+FP) and recall R_r = TP/(truths of that class) after each
   rank r.  AP:

   * ``method="area"`` (AB's default ``-points 0``; VOC2010+/ImageNet): with
     M_r = max_{r' >= r} P_{r'}, AP = R_0 M_0 + sum_{r>=1} (R_r - R_{r-1}) M_{r-1}
     (AB walks from the last rank to the first, updating the running maximum first).
   * ``method="11point"`` (VOC2007, ``-points 11``) or ``points=N`` (e.g. 101, COCO-style): for
     each recall level r_k = k/(N-1), k = 0..N-1, the highest precision among ranks with
     recall >= r_k (0 if none); AP = mean over the N levels.

4. mAP = mean AP over **all** ``classes`` (a class without truths has AP 0, as in AB).

Statistics at ``conf_thresh`` (AB's ``-thresh``, default 0.25): detections with confidence
**strictly greater** than ``conf_thresh``, per image in descending confidence; a detection whose
candidate truth is not yet claimed by another such detection of the image is a TP (its IoU is added
to the IoU sum), otherwise an FP.  FN = truths - TP; precision = TP/(TP+FP), recall = TP/(TP+FN),
F1 = 2PR/(P+R) (0 instead of NaN when a denominator is 0); **average IoU = IoU sum / (TP+FP)**,
as AB divides it (false positives count as IoU 0).  Difference from AB: AB checks "already claimed"
against every earlier detection of the image in network-output order, including detections below
the threshold; darknet_py uses confidence order and only detections above the threshold, so the
numbers do not depend on the order of the rows.
"""

import numpy as np

from ..box import box_iou

__all__ = ["evaluate_map", "format_map_table"]


def _rows(x, ncols, what, index):
    if x is None:
        return np.zeros((0, ncols))
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, ncols))
    if a.ndim == 1 and a.shape[0] == ncols:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != ncols:
        raise ValueError(f"{what} of image {index}: expected rows of {ncols} numbers, "
                         f"got shape {a.shape}")
    return a


def _check_classes(ids, classes, what, index):
    bad = (ids < 0) | (ids >= classes) | (ids != np.floor(ids))
    if bad.any():
        raise ValueError(f"{what} of image {index}: class id {ids[bad][0]:g} is not in "
                         f"0..{classes - 1}")


def _ap_area(precision, recall):
    if len(precision) == 0:
        return 0.0
    m = np.maximum.accumulate(precision[::-1])[::-1]
    return float(recall[0] * m[0] + np.sum((recall[1:] - recall[:-1]) * m[:-1]))


def _ap_points(precision, recall, points):
    if len(precision) == 0:
        return 0.0
    total = 0.0
    for k in range(points):
        level = k * 1.0 / (points - 1)
        sel = precision[recall >= level]
        total += float(sel.max()) if sel.size else 0.0
    return total / points


def evaluate_map(detections_per_image, truths_per_image, classes, iou_thresh=0.5,
                 method="area", conf_thresh=0.25, points=None):
    """AB's mAP: AP per class, mAP, and P/R/F1, TP/FP/FN, average IoU at ``conf_thresh``.

    ``method`` is ``"area"`` (all-point area under the interpolated PR curve) or ``"11point"``;
    ``points`` (an int >= 2, or 0 for the area) overrides it, e.g. ``points=101``.
    Returns a dict (see the keys below); ``format_map_table`` prints it like AB.
    """
    if points is None:
        if method == "area":
            points = 0
        elif method == "11point":
            points = 11
        else:
            raise ValueError(f"method must be 'area' or '11point', not {method!r}")
    points = int(points)
    if points == 1 or points < 0:
        raise ValueError("points must be 0 (area under the curve) or >= 2")
    classes = int(classes)
    if classes < 1:
        raise ValueError("classes must be >= 1")
    detections_per_image = list(detections_per_image)
    truths_per_image = list(truths_per_image)
    if len(detections_per_image) != len(truths_per_image):
        raise ValueError(f"{len(detections_per_image)} images with detections but "
                         f"{len(truths_per_image)} with truths")

    truths_per_class = np.zeros(classes, dtype=np.int64)
    rec_conf, rec_cls, rec_truth = [], [], []
    tp_thr = np.zeros(classes, dtype=np.int64)
    fp_thr = np.zeros(classes, dtype=np.int64)
    iou_sum = 0.0
    unique = 0
    for i, (dets, truths) in enumerate(zip(detections_per_image, truths_per_image)):
        t = _rows(truths, 5, "truths", i)
        d = _rows(dets, 6, "detections", i)
        _check_classes(t[:, 0], classes, "truths", i)
        _check_classes(d[:, 0], classes, "detections", i)
        t_cls = t[:, 0].astype(np.int64)
        truths_per_class += np.bincount(t_cls, minlength=classes)
        d = d[d[:, 1] > 0]
        n = len(d)
        cand = np.full(n, -1, dtype=np.int64)
        cand_iou = np.zeros(n)
        for j in range(n):
            c = int(d[j, 0])
            same = np.nonzero(t_cls == c)[0]
            if same.size:
                ious = box_iou(d[j, 2:6], t[same, 1:5], np.float64)
                k = int(np.argmax(ious))        # first of equal maxima, like AB's strict '>'
                if ious[k] > iou_thresh:
                    cand[j] = unique + same[k]
                    cand_iou[j] = ious[k]
        rec_conf.append(d[:, 1])
        rec_cls.append(d[:, 0].astype(np.int64))
        rec_truth.append(cand)
        # statistics at conf_thresh, per image
        above = np.nonzero(d[:, 1] > conf_thresh)[0]
        above = above[np.argsort(-d[above, 1], kind="stable")]
        claimed = set()
        for j in above:
            c = int(d[j, 0])
            if cand[j] >= 0 and cand[j] not in claimed:
                claimed.add(int(cand[j]))
                tp_thr[c] += 1
                iou_sum += cand_iou[j]
            else:
                fp_thr[c] += 1
        unique += len(t)

    conf = np.concatenate(rec_conf) if rec_conf else np.zeros(0)
    cls = np.concatenate(rec_cls) if rec_cls else np.zeros(0, np.int64)
    cand = np.concatenate(rec_truth) if rec_truth else np.zeros(0, np.int64)
    order = np.argsort(-conf, kind="stable")
    conf, cls, cand = conf[order], cls[order], cand[order]
    is_tp = np.zeros(len(conf), dtype=bool)
    matched = np.nonzero(cand >= 0)[0]
    if matched.size:
        _, first = np.unique(cand[matched], return_index=True)
        is_tp[matched[first]] = True

    ap, curves = [], []
    for c in range(classes):
        sel = cls == c
        tp = np.cumsum(is_tp[sel])
        fp = np.cumsum(~is_tp[sel])
        precision = tp / np.maximum(tp + fp, 1)
        n_truth = int(truths_per_class[c])
        recall = tp / n_truth if n_truth > 0 else np.zeros(len(tp))
        ap.append(_ap_points(precision, recall, points) if points else _ap_area(precision, recall))
        curves.append({"confidence": conf[sel].tolist(), "precision": precision.tolist(),
                       "recall": recall.tolist()})

    tp_total, fp_total = int(tp_thr.sum()), int(fp_thr.sum())
    fn_total = int(truths_per_class.sum()) - tp_total
    prec = tp_total / (tp_total + fp_total) if tp_total + fp_total else 0.0
    rec = tp_total / (tp_total + fn_total) if tp_total + fn_total else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "classes": classes,
        "iou_thresh": float(iou_thresh),
        "points": points,
        "method": "area" if points == 0 else f"{points}point",
        "ap": [float(a) for a in ap],
        "map": float(np.mean(ap)),
        "truths_per_class": truths_per_class.tolist(),
        "detections_per_class": np.bincount(cls, minlength=classes).tolist(),
        "detections_count": int(len(conf)),
        "unique_truth_count": int(unique),
        "conf_thresh": float(conf_thresh),
        "tp_per_class": tp_thr.tolist(),
        "fp_per_class": fp_thr.tolist(),
        "tp": tp_total,
        "fp": fp_total,
        "fn": fn_total,
        "precision": float(prec),
        "recall": float(rec),
        "f1": float(f1),
        "average_iou": float(iou_sum / (tp_total + fp_total)) if tp_total + fp_total else 0.0,
        "curves": curves,
    }


def format_map_table(result, names=None):
    """The result as AB's ``detector map`` prints it (ab:src/detector.c validate_detector_map's printf lines)."""
    r = result
    lines = [f"detections_count = {r['detections_count']}, "
             f"unique_truth_count = {r['unique_truth_count']}"]
    for i, ap in enumerate(r["ap"]):
        name = names[i] if names is not None and i < len(names) else str(i)
        lines.append(f"class_id = {i}, name = {name}, ap = {100 * ap:.2f}%   \t "
                     f"(TP = {r['tp_per_class'][i]}, FP = {r['fp_per_class'][i]})")
    t = r["conf_thresh"]
    lines += [
        "",
        f"for conf_thresh = {t:.2f}, precision = {r['precision']:.2f}, recall = {r['recall']:.2f}, "
        f"F1-score = {r['f1']:.2f}",
        f"for conf_thresh = {t:.2f}, TP = {r['tp']}, FP = {r['fp']}, FN = {r['fn']}, "
        f"average IoU = {100 * r['average_iou']:.2f} %",
        "",
        f"IoU threshold = {100 * r['iou_thresh']:.0f} %, " + (
            f"used {r['points']} Recall-points" if r["points"]
            else "used Area-Under-Curve for each unique Recall"),
        f"mean average precision (mAP@{r['iou_thresh']:.2f}) = {r['map']:.6f}, "
        f"or {100 * r['map']:.2f} %",
    ]
    return "\n".join(lines)
