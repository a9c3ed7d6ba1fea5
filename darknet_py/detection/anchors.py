"""Anchor boxes by k-means with the distance 1 - IoU (ab:src/detector.c
calc_anchors) and the cfg lines that go with them (``mask=``
per [yolo] layer and ``filters=``).

    from darknet_py.detection.anchors import calc_anchors, anchors_report, boxes_wh_from_labels
    wh = boxes_wh_from_labels(label_files, width=416, height=416)     # (n, 2) in network pixels
    anchors, avg_iou = calc_anchors(wh, k=6)
    print(anchors_report(anchors, 2, classes=4, avg_iou=avg_iou))

IoU here is shape-only: both boxes centred at the same point, IoU = min(w)min(h) / (area_a +
area_b - min(w)min(h)).  k-means as AB's ``do_kmeans``: assign every box to the centre with the
highest IoU, move each centre to the mean w, h of its boxes (an empty cluster keeps its centre),
repeat until no assignment changes or ``iterations`` rounds.  AB starts from k random boxes
(``init="random"``); the default here is k-means++ (each next centre drawn with probability
proportional to its squared distance 1 - IoU to the nearest chosen one), run ``n_init`` times from
different seeds, keeping the run with the best average IoU.  Anchors are returned sorted by area
(ascending, as AB prints them); the average IoU is AB's: the mean over boxes of the best IoU with
any anchor.
"""

import numpy as np

from ..box import iou
from ..data.labels import read_labels

__all__ = ["anchors_report", "boxes_wh_from_labels", "calc_anchors", "format_anchors",
           "split_masks", "wh_iou"]


def wh_iou(wh, centres):
    """Shape-only IoU matrix (n, k) between boxes ``wh`` (n, 2) and ``centres`` (k, 2): the
    IoU of the boxes centred at one point (float64)."""
    wh = np.asarray(wh, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    return iou((0.0, 0.0, wh[:, None, 0], wh[:, None, 1]),
               (0.0, 0.0, centres[None, :, 0], centres[None, :, 1]))


def _init_kmeanspp(wh, k, rng):
    n = len(wh)
    idx = [int(rng.integers(n))]
    d = 1.0 - wh_iou(wh, wh[idx])[:, 0]
    for _ in range(1, k):
        p = d * d
        s = p.sum()
        if s <= 0:                      # every box equals a chosen centre: fall back to uniform
            j = int(rng.integers(n))
        else:
            j = int(rng.choice(n, p=p / s))
        idx.append(j)
        d = np.minimum(d, 1.0 - wh_iou(wh, wh[[j]])[:, 0])
    return wh[idx].copy()


def _kmeans(wh, k, rng, iterations, init):
    if init == "random":
        centres = wh[rng.choice(len(wh), size=k, replace=False)].copy()
    elif init in ("kmeans++", "k-means++"):
        centres = _init_kmeanspp(wh, k, rng)
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', not {init!r}")
    assign = None
    for _ in range(max(1, iterations)):
        new = np.argmax(wh_iou(wh, centres), axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        sums = np.zeros((k, 2))
        np.add.at(sums, assign, wh)
        counts = np.bincount(assign, minlength=k)
        nonempty = counts > 0
        centres[nonempty] = sums[nonempty] / counts[nonempty, None]
    avg_iou = float(wh_iou(wh, centres).max(axis=1).mean())
    return centres, avg_iou


def calc_anchors(boxes_wh, k, seed=0, iterations=1000, init="kmeans++", n_init=3):
    """k-means anchors for boxes ``boxes_wh`` (n, 2): widths and heights, in pixels of the
    network input (w * width, h * height of the labels).

    Returns ``(anchors, avg_iou)``: ``anchors`` a float64 (k, 2) array sorted by area ascending,
    ``avg_iou`` in [0, 1] (AB prints it in percent).  Deterministic for a given ``seed``.
    """
    wh = np.asarray(boxes_wh, dtype=np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"boxes_wh must have shape (n, 2), not {wh.shape}")
    if not np.all(np.isfinite(wh)) or np.any(wh <= 0):
        bad = np.nonzero(~np.all(np.isfinite(wh) & (wh > 0), axis=1))[0]
        raise ValueError(f"{len(bad)} boxes have a width or height <= 0 or not finite "
                         f"(first: row {bad[0]}, {wh[bad[0]].tolist()})")
    k = int(k)
    if k < 1:
        raise ValueError("k must be >= 1")
    if len(wh) < k:
        raise ValueError(f"{len(wh)} boxes are too few for {k} anchors")
    best = None
    for run in range(max(1, int(n_init) if init != "random" else 1)):
        rng = np.random.default_rng([int(seed), run])
        centres, avg_iou = _kmeans(wh, k, rng, iterations, init)
        if best is None or avg_iou > best[1] + 1e-12:
            best = (centres, avg_iou)
    centres, avg_iou = best
    order = np.argsort(centres[:, 0] * centres[:, 1], kind="stable")
    return centres[order], avg_iou


def boxes_wh_from_labels(label_files, width, height, classes=None):
    """Widths and heights (n, 2) in network pixels of every valid box in ``label_files``
    (paths, or arrays as returned by :func:`darknet_py.data.labels.read_labels`), plus nothing else:
    problems are skipped here -- run the dataset check to see them."""
    out = []
    for item in label_files:
        if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
            arr, _ = read_labels(item, classes=classes)
        else:
            arr = np.asarray(item, dtype=np.float64).reshape(-1, 5)
        if len(arr):
            out.append(np.stack([arr[:, 3] * width, arr[:, 4] * height], axis=1))
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 2))


def format_anchors(anchors, decimals=None):
    """The cfg value ``w,h,  w,h, ...``: whole numbers (at least 1) when ``decimals`` is 0 --
    the default when every anchor is >= 2 (pixels) -- else ``decimals`` (default 4) places."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    if decimals is None:
        decimals = 0 if anchors.size and anchors.min() >= 2 else 4
    if decimals == 0:
        vals = np.maximum(np.rint(anchors), 1).astype(int)
        return ",  ".join(f"{w},{h}" for w, h in vals)
    return ",  ".join(f"{w:.{decimals}f},{h:.{decimals}f}" for w, h in anchors)


def split_masks(k, layers, first="coarse"):
    """Masks for ``layers`` [yolo] layers sharing ``k`` anchors sorted by area.

    The anchors are cut into ``layers`` runs as even as possible (smaller runs hold the larger
    anchors when ``k`` does not divide).  ``first="coarse"`` (YOLOv3 / yolov3-tiny cfgs, whose
    first [yolo] layer has the largest stride) gives the first layer the largest anchors:
    6 anchors, 2 layers -> ``[[3, 4, 5], [0, 1, 2]]``.  ``first="fine"`` (YOLOv4 cfgs) gives the
    first layer the smallest anchors: ``[[0, 1, 2], [3, 4, 5]]``.
    """
    k, layers = int(k), int(layers)
    if layers < 1 or layers > k:
        raise ValueError(f"cannot split {k} anchors over {layers} yolo layers")
    groups = [g.tolist() for g in np.array_split(np.arange(k), layers)]   # small anchors first
    if first == "coarse":
        return groups[::-1]
    if first == "fine":
        return groups
    raise ValueError(f"first must be 'coarse' or 'fine', not {first!r}")


def anchors_report(anchors, yolo_layers_masks_or_count, classes, avg_iou=None, first="coarse",
                   decimals=None):
    """Text for the cfg: the ``anchors =`` line, ``num``, and per [yolo] layer its ``mask =`` and
    the ``filters =`` of the [convolutional] layer just before it (len(mask) * (classes + 5)).

    ``yolo_layers_masks_or_count`` is the number of [yolo] layers (masks from
    :func:`split_masks` with ``first``) or the list of masks to use.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    k = len(anchors)
    classes = int(classes)
    if isinstance(yolo_layers_masks_or_count, (int, np.integer)):
        masks = split_masks(k, yolo_layers_masks_or_count, first)
    else:
        masks = [[int(i) for i in m] for m in yolo_layers_masks_or_count]
        for m in masks:
            for i in m:
                if not 0 <= i < k:
                    raise ValueError(f"mask index {i} is not one of the {k} anchors 0..{k - 1}")
    lines = []
    if avg_iou is not None:
        lines.append(f"avg IoU = {100 * avg_iou:.2f} %")
    lines.append(f"anchors = {format_anchors(anchors, decimals)}")
    lines.append(f"num = {k}")
    integer = decimals == 0 or (decimals is None and k and anchors.min() >= 2)
    n = len(masks)
    centre = [float(np.mean(m)) if m else 0.0 for m in masks]
    largest, smallest = int(np.argmax(centre)), int(np.argmin(centre))
    for j, m in enumerate(masks):
        where = ""
        if n > 1 and largest != smallest:
            if j == largest:
                where = " (largest anchors: coarsest grid)"
            elif j == smallest:
                where = " (smallest anchors: finest grid)"
        places = 0 if integer else 4
        sizes = ", ".join(f"{anchors[i, 0]:.{places}f}x{anchors[i, 1]:.{places}f}" for i in m)
        lines.append(f"[yolo] layer {j + 1}{where}: mask = {','.join(str(i) for i in m)}"
                     f"   filters={len(m) * (classes + 5)}   # anchors {sizes}")
    lines.append(f"In every [yolo] section set anchors as above, num={k}, classes={classes} "
                 "and its mask; in the [convolutional] section just before it set "
                 "filters = len(mask) * (classes + 5).")
    return "\n".join(lines)
