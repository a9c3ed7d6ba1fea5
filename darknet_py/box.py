"""Boxes and detections (pj:src/box.c, include/darknet.h): the IoU family and NMS.

A box is centre x, centre y, width, height.  The overlap scores take boxes as *columns*: four
arrays x, y, w, h (or numbers) that broadcast against the other box's columns, so one call scores
one pair, one box against n, or k against n as a (k, n) matrix (``columns`` splits (..., 4) rows).
Columns are NumPy or CuPy arrays (or numbers); the result lives where they do.  The arithmetic
is done in the columns' float dtype (float64 for Python numbers), operation for operation as
pj's C: float32 columns give pj's float32 results bit for bit.  ``score`` is float64, with the
array module's ``arctan`` (within an ulp or so of libm's ``atan``).

    overlap(x1, w1, x2, w2) = min(x1 + w1/2, x2 + w2/2) - max(x1 - w1/2, x2 - w2/2)
    I = ow * oh (0 when ow < 0 or oh < 0),         U = w1 h1 + w2 h2 - I
    iou  = I / U  (0 when U <= 0 or undefined)
    giou = iou - (C - U) / C                       C = cw ch, the smallest enclosing box
    diou = iou - rho^2 / c^2                       rho: centre distance, c^2 = cw^2 + ch^2
    ciou = diou - alpha v,  v = 4/pi^2 (atan(wt/ht) - atan(w/h))^2,
                            alpha = v / (1 - iou + v), held constant (as the CIoU paper)
    box_diounms = iou - (rho^2 / c^2)^beta         AlexeyAB's NMS score (iou where c^2 = 0)

The iou_loss of AlexeyAB's [yolo] trains with ``dx_box_iou``, AlexeyAB's own box deltas (float32
as its C, equal to it bit for bit: tests/test_ab_box_oracle.py), not the exact gradient of
1 - ``score``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .nn.backend import xp_of

F32 = np.float32
KINDS = ("iou", "giou", "diou", "ciou")
_FOUR_PI2 = 4 / math.pi ** 2


class Box(NamedTuple):
    """Centre x, centre y, width, height (relative to the image unless stated otherwise)."""
    x: float
    y: float
    w: float
    h: float


@dataclass
class Detection:
    """One pj ``detection``: a box, its objectness and one probability per class.

    ``prob[j]`` is objectness * p(class j), or 0 where that is <= thresh (and after NMS
    suppression).  ``do_nms_sort`` zeroes entries of ``prob`` in place, as pj does."""
    bbox: Box
    objectness: float
    prob: np.ndarray
    classes: int
    mask: np.ndarray | None = field(default=None, repr=False)

    def best_class(self) -> tuple[int, float]:
        j = int(np.argmax(self.prob)) if self.classes else -1
        return j, (float(self.prob[j]) if j >= 0 else 0.0)

    def pixel_box(self, img_w: int, img_h: int) -> tuple[float, float, float, float]:
        """(left, top, width, height) in pixels of an img_w x img_h image (not rounded)."""
        x, y, w, h = (float(v) for v in self.bbox)
        return (x - w / 2) * img_w, (y - h / 2) * img_h, w * img_w, h * img_h


# ------------------------------------------------------------------------------------------------
# the IoU family, on columns
# ------------------------------------------------------------------------------------------------

def columns(boxes, dtype=F32):
    """x, y, w, h of box rows (..., 4) as four arrays of ``dtype``; rows (k, 1, 4) against
    rows (n, 4) score as a (k, n) matrix."""
    b = np.asarray(boxes, dtype)
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def _floats(a, b, dtype=None):
    """Both boxes' columns as arrays of one float dtype -- ``dtype``, else theirs (numbers and
    arrays together keep the arrays' dtype; Python numbers alone are float64) -- on the array
    module of the first CuPy column (NumPy without one), that dtype's scalar type and the
    module."""
    cols = (*a, *b)
    xp = next((m for m in map(xp_of, cols) if m is not np), np)
    dt = np.dtype(dtype or np.result_type(*(getattr(v, "dtype", v) for v in cols)))
    if not np.issubdtype(dt, np.floating):
        dt = np.dtype(np.float64)
    a, b = (tuple(xp.asarray(v, dt) for v in box) for box in (a, b))
    return a, b, dt.type, xp


def _edges(box, two):
    x, y, w, h = box
    return x - w / two, x + w / two, y - h / two, y + h / two


def _intersection(a, b, f, xp):
    """pj box_intersection's overlaps ow, oh (C's ternary min/max), the intersection and
    the union of columns a and b (of scalar type f)."""
    al, ar, at, ab = _edges(a, f(2))
    bl, br, bt, bb = _edges(b, f(2))
    ow = xp.where(ar < br, ar, br) - xp.where(al > bl, al, bl)
    oh = xp.where(ab < bb, ab, bb) - xp.where(at > bt, at, bt)
    inter = xp.where((ow < 0) | (oh < 0), f(0), ow * oh)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return ow, oh, inter, union


def _enclosing(a, b, f, xp):
    """Width and height of the smallest box enclosing columns a and b."""
    al, ar, at, ab = _edges(a, f(2))
    bl, br, bt, bb = _edges(b, f(2))
    return xp.maximum(ar, br) - xp.minimum(al, bl), xp.maximum(ab, bb) - xp.minimum(at, bt)


def _ratio(num, den, f, xp, fallback=0):
    """num / den where den > 0, else ``fallback`` (0 by default), without a warning."""
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, f(1)), fallback)


def iou(a, b):
    """pj ``box_iou`` of columns a and b: I / U, or 0 where U <= 0 or is NaN (pj would divide
    by zero; a box of infinite size overlaps nothing)."""
    a, b, f, xp = _floats(a, b)
    with np.errstate(invalid="ignore", over="ignore"):
        _, _, inter, union = _intersection(a, b, f, xp)
        return _ratio(inter, union, f, xp).astype(f)[()]


def diou_nms(a, b, beta):
    """AlexeyAB's ``box_diounms(a, b, beta)`` of columns a and b: iou - (d/c)^beta, d the
    squared distance of the centres, c the squared diagonal of the enclosing box (the iou where
    c = 0); ``box_diou`` is beta = 0.6.  The power is double, of the float quotient, as AB's."""
    a, b, f, xp = _floats(a, b)
    i = iou(a, b)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        cw, ch = _enclosing(a, b, f, xp)
        c = cw * cw + ch * ch
        d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
        u = xp.power((d / xp.where(c == 0, f(1), c)).astype(f).astype(np.float64),
                     float(F32(beta))).astype(f)
        return xp.where(c == 0, i, (i - u).astype(f)).astype(f)[()]


def box_iou(a, b, dtype=F32):
    """``iou`` of box rows a and b (..., 4), in ``dtype`` (pj's float32 by default)."""
    return iou(columns(a, dtype), columns(b, dtype))


def box_diounms(a, b, beta, dtype=F32):
    """``diou_nms`` of box rows a and b (..., 4), in ``dtype`` (float32 as AlexeyAB's)."""
    return diou_nms(columns(a, dtype), columns(b, dtype), beta)


def score(p, t, kind):
    """The ``kind`` score (iou, giou, diou, ciou) of predicted box p and truth t, columns;
    float64."""
    p, t, f, xp = _floats(p, t, np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        _, _, inter, union = _intersection(p, t, f, xp)
        iou_ = _ratio(inter, union, f, xp)
        if kind == "iou":
            return iou_[()]
        cw, ch = _enclosing(p, t, f, xp)
        if kind == "giou":
            c = cw * ch
            return (iou_ - _ratio(c - union, c, f, xp))[()]
        dx, dy = p[0] - t[0], p[1] - t[1]
        d = _ratio(dx * dx + dy * dy, cw * cw + ch * ch, f, xp)
        if kind == "diou":
            return (iou_ - d)[()]
        diff = xp.arctan(t[2] / t[3]) - xp.arctan(p[2] / p[3])
        v = _FOUR_PI2 * (diff * diff)
        return (iou_ - d - _ratio(v, 1 - iou_ + v, f, xp) * v)[()]


def dx_box_iou(pred, truth, kind):
    """AlexeyAB's ``dx_box_iou(pred, truth, iou_loss)`` (AB:src/box.c) of columns: its (dx, dy,
    dw, dh) of the predicted box, float32 operation for operation as AB's C (fmin/fmax, float
    arithmetic; CIoU's atan terms in double, rounded to float where AB stores them).

    Not the exact gradient of the score: the IoU part is d IoU / d edges summed as
    dx = dl + dr, dw = dr - dl (no 1/2); giou adds d(U/C) and, without overlap, replaces the IoU
    part by it; diou/ciou add AB's centre-distance terms (the x/y ones with AB's sign), ciou
    alpha 8/pi^2 (atan(wt/ht) - atan(w/h)) h (no 1/(w^2 + h^2)); ``kind`` iou or mse: the IoU
    part only (AB has no mse branch).  NaN/inf are left as AB's (delta_yolo_box zeroes them)."""
    p, t, f, xp = _floats(pred, truth, np.float32)
    two, zero, one = f(2), f(0), f(1)
    fmin, fmax, where = xp.fmin, xp.fmax, xp.where
    with np.errstate(all="ignore"):
        top, bot, left, right = p[1] - p[3] / two, p[1] + p[3] / two, \
            p[0] - p[2] / two, p[0] + p[2] / two                            # to_tblr
        pt, pb, pl, pr = fmin(top, bot), fmax(top, bot), fmin(left, right), fmax(left, right)
        tt, tb, tl, tr = t[1] - t[3] / two, t[1] + t[3] / two, \
            t[0] - t[2] / two, t[0] + t[2] / two
        X = (pb - pt) * (pr - pl)
        Xhat = (tb - tt) * (tr - tl)
        Ih = fmin(pb, tb) - fmax(pt, tt)
        Iw = fmin(pr, tr) - fmax(pl, tl)
        inter = Iw * Ih
        U = X + Xhat - inter
        S = (p[0] - t[0]) * (p[0] - t[0]) + (p[1] - t[1]) * (p[1] - t[1])
        gCw = fmax(pr, tr) - fmin(pl, tl)
        gCh = fmax(pb, tb) - fmin(pt, tt)
        gC = gCw * gCh
        # t, b, l, r: d X, d I, d U = dX - dI and d C (GIoU's enclosing area) by the edges
        dX = (-(pr - pl), pr - pl, -(pb - pt), pb - pt)
        dI = (where(pt > tt, -Iw, zero), where(pb < tb, Iw, zero),
              where(pl > tl, -Ih, zero), where(pr < tr, Ih, zero))
        dU = tuple(a - b for a, b in zip(dX, dI))
        dC = (where(pt < tt, -gCw, zero), where(pb > tb, gCw, zero),
              where(pl < tl, -gCh, zero), where(pr > tr, gCh, zero))
        g = [where(U > 0, ((U * di) - (inter * du)) / (U * U), zero) for di, du in zip(dI, dU)]
        # "apply grad from prediction min/max for correct corner selection": where top >= bot
        # the top takes the bottom's (AB then sets p_db from the new p_dt: unchanged)
        g[0] = where(top < bot, g[0], g[1])
        g[2] = where(left < right, g[2], g[3])
        apart = (Iw <= 0) | (Ih <= 0)
        if kind == "giou":
            cterm = [((gC * du) - (U * dc)) / (gC * gC) for du, dc in zip(dU, dC)]
            g = [where(gC > 0, gi + c, gi) for gi, c in zip(g, cterm)]
            g = [where(apart, c, gi) for gi, c in zip(g, cterm)]
        # DIoU's enclosing box C = Cw^2 + Ch^2 and its derivatives by x, y, w, h
        Ct = fmin(p[1] - p[3] / two, t[1] - t[3] / two)
        Cb = fmax(p[1] + p[3] / two, t[1] + t[3] / two)
        Cl = fmin(p[0] - p[2] / two, t[0] - t[2] / two)
        Cr = fmax(p[0] + p[2] / two, t[0] + t[2] / two)
        Cw, Ch = Cr - Cl, Cb - Ct
        C = Cw * Cw + Ch * Ch
        up, down, lft, rgt = pt < tt, pb > tb, pl < tl, pr > tr
        half = f(0.5)
        dCw = (where(rgt, one, zero) - where(lft, one, zero), zero - zero,
               where(rgt, half, zero) - where(lft, -half, zero), zero - zero)
        dCh = (zero - zero, where(down, one, zero) - where(up, one, zero), zero - zero,
               where(down, half, zero) - where(up, -half, zero))
        d = [g[2] + g[3], g[0] + g[1], g[3] - g[2], g[1] - g[0]]       # p_dx, p_dy, p_dw, p_dh
        if kind in ("diou", "ciou"):
            CC = C * C
            span = [(two * Cw * a + two * Ch * b) * S for a, b in zip(dCw, dCh)]
            terms = [(two * (t[0] - p[0]) * C - span[0]) / CC,
                     (two * (t[1] - p[1]) * C - span[1]) / CC, span[2] / CC, span[3] / CC]
            if kind == "ciou":
                diff = xp.arctan((t[2] / t[3]).astype(np.float64)) - \
                    xp.arctan((p[2] / p[3]).astype(np.float64))
                ar_loss = (4 / (math.pi * math.pi) * diff * diff).astype(f)
                alpha = (ar_loss.astype(np.float64) /
                         ((one - inter / U + ar_loss).astype(np.float64) + 0.000001)).astype(f)
                ar_dw = (8 / (math.pi * math.pi) * diff * p[3].astype(np.float64)).astype(f)
                ar_dh = (-8 / (math.pi * math.pi) * diff * p[2].astype(np.float64)).astype(f)
                terms[2] = terms[2] + alpha * ar_dw
                terms[3] = terms[3] + alpha * ar_dh
            d = [where(C > 0, di + te, di) for di, te in zip(d, terms)]
            d = [where(apart, te, di) for di, te in zip(d, terms)]
        return tuple(xp.asarray(v, f)[()] for v in d)


# ------------------------------------------------------------------------------------------------
# NMS (pj do_nms_sort, do_nms_obj; AlexeyAB's diounms_sort)
# ------------------------------------------------------------------------------------------------

# nms_kind of AlexeyAB's [yolo] -> the overlap score its NMS compares with the threshold
# (AB's diounms_sort: greedynms compares box_diou, diounms box_diounms with beta_nms,
# cornersnms box_iou -- its box merging is commented out in AB's code).
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")


def nms_score(kind: str = "default", beta: float = 0.6):
    """The float32 overlap of box rows that NMS ``kind`` compares with its threshold."""
    if kind == "greedynms":
        return lambda a, b: box_diounms(a, b, 0.6)
    if kind == "diounms":
        return lambda a, b: box_diounms(a, b, beta)
    return box_iou


def _suppress(boxes: np.ndarray, keep: np.ndarray, thresh: np.float32,
              over: np.ndarray | None = None, rows: np.ndarray | None = None,
              score=box_iou) -> None:
    """pj's greedy NMS pass over boxes sorted best first: each box still kept clears ``keep``
    of every later box whose overlap ``score`` with it exceeds thresh (in place).

    ``over`` is a precomputed (score > thresh) matrix of all boxes and ``rows`` these boxes'
    rows in it; without it, scores are computed a block of rows at a time, skipping suppressed
    rows."""
    m = len(keep)
    if over is not None:
        for p in np.flatnonzero(keep[:-1]):
            if keep[p]:
                keep[p + 1:] &= ~over[rows[p], rows[p + 1:]]
        return
    for r in range(0, m, 256):
        block = r + np.flatnonzero(keep[r:r + 256])
        if not block.size:
            continue
        hits = score(boxes[block][:, None], boxes[r:]) > thresh
        for i, p in enumerate(block):
            if keep[p]:
                keep[p + 1:] &= ~hits[i, p + 1 - r:]


def _zero_objectness_to_the_end(dets: list[Detection]) -> tuple[list[int], int]:
    """pj's swap loop at the start of both NMS functions: detections with objectness 0 are
    swapped to the end.  Returns the order (indexes into dets) and how many lead it."""
    order = list(range(len(dets)))
    k = len(order) - 1
    i = 0
    while i <= k:                           # for(i = 0; i <= k; ++i) with --k; --i on a swap
        if dets[order[i]].objectness == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
            i -= 1
        i += 1
    return order, k + 1


def do_nms_sort(dets: list[Detection], classes: int, thresh: float, kind: str = "default",
                beta: float = 0.6) -> list[Detection]:
    """pj ``do_nms_sort``, in place on the list (and on each ``prob``); returns ``dets``.
    ``kind`` greedynms or diounms: AlexeyAB's ``diounms_sort`` (the same loops, comparing
    DIoU instead of IoU).

    Detections with objectness 0 are swapped to the end (pj's swap loop) and ignored.  Then for
    every class k: the rest is sorted by prob[k], descending (glibc's qsort is a stable merge
    sort, so ties keep their order: Python's sort does the same), and each detection with
    prob[k] != 0 zeroes prob[k] of every later one whose IoU with it exceeds ``thresh``.  The
    list is left in the order of the last class's sort, as pj leaves its array."""
    order, total = _zero_objectness_to_the_end(dets)
    if total > 0 and classes > 0:
        live = order[:total]
        boxes = np.array([dets[d].bbox for d in live], F32).reshape(total, 4)
        probs = np.array([np.asarray(dets[d].prob, F32)[:classes] for d in live],
                         F32).reshape(total, classes)
        perm = np.arange(total)             # current array position -> row of boxes/probs
        t = F32(thresh)
        score = nms_score(kind, beta)
        over = None
        # one IoU matrix for every class (<= 64 MiB) when the per-class passes would compute
        # more pairs than it has
        pairs = (np.count_nonzero(probs, axis=0).astype(np.float64) ** 2).sum() / 2
        if total <= 8192 and pairs > total * total:
            over = np.empty((total, total), bool)
            for r in range(0, total, 256):
                over[r:r + 256] = score(boxes[r:r + 256][:, None], boxes) > t
        for c in range(classes):
            perm = perm[np.argsort(-probs[perm, c], kind="stable")]
            col = probs[perm, c]            # a copy, kept in sync with probs below
            # pj visits every pair, but a zero prob neither suppresses nor changes when
            # suppressed: only the sorted run up to the last nonzero one matters
            nonzero = np.flatnonzero(col)
            m = int(nonzero[-1]) + 1 if nonzero.size else 0
            keep = col[:m] != 0
            _suppress(boxes[perm[:m]], keep, t, over, perm[:m], score)
            probs[perm[:m][~keep], c] = 0
        for row, d in enumerate(live):
            prob = dets[d].prob
            if isinstance(prob, np.ndarray) and prob.dtype == F32 and prob.flags.writeable:
                prob[:classes] = probs[row]         # in place, like pj
            else:
                dets[d].prob = probs[row].copy()
        order[:total] = [live[r] for r in perm]
    dets[:] = [dets[d] for d in order]
    return dets


def do_nms_obj(dets: list[Detection], classes: int, thresh: float) -> list[Detection]:
    """pj ``do_nms_obj`` (class-agnostic, used by the demo): sort by objectness and drop the
    later of two boxes with IoU > thresh entirely (objectness and every prob set to 0)."""
    order, total = _zero_objectness_to_the_end(dets)
    live = sorted(order[:total], key=lambda d: -np.float32(dets[d].objectness))
    if total:
        keep = np.ones(total, bool)     # every live one has objectness != 0
        _suppress(np.array([dets[d].bbox for d in live], F32).reshape(total, 4), keep,
                  F32(thresh))
        for q in np.flatnonzero(~keep):
            b = dets[live[q]]
            b.objectness = 0.0
            b.prob = np.zeros_like(np.asarray(b.prob, F32))
    dets[:] = [dets[d] for d in live + order[total:]]
    return dets
