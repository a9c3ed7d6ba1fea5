"""Detection post-processing as pj Darknet's ``detector test`` does it.

    im = load_image_color("dog.jpg")                    # float32 (3, h, w), RGB, byte/255
    x = letterbox(im, net_w, net_h)                     # pj letterbox_image
    net.forward(x[None])
    dets = get_network_boxes(net, im.shape[2], im.shape[1], thresh=.5)
    do_nms_sort(dets, classes, .45)
    print("\\n".join(detection_lines(dets, names, .5)))
    draw_detections("dog.jpg", dets, names, .5, "predictions.jpg")

or all at once: ``detect_image(net, "dog.jpg")``.

Everything follows pj (pjreddie/darknet, 2018): src/image.c (load_image_stb, resize_image,
letterbox_image, draw_detections, get_color), src/network.c (get_network_boxes),
src/yolo_layer.c (get_yolo_detections, correct_yolo_boxes), src/region_layer.c
(get_region_detections, correct_region_boxes), src/box.c (box_iou, do_nms_sort).  The arithmetic
is done in the C types (float32, or double where C promotes), so boxes and probabilities match
libdarknet to float32 rounding and the letterboxed input bit for bit.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..atomic import atomic_open
from ..nn.backend import to_numpy

F32 = np.float32


# ------------------------------------------------------------------------------------------------
# images (pj src/image.c)
# ------------------------------------------------------------------------------------------------

def load_image_color(path) -> np.ndarray:
    """pj ``load_image_color(path, 0, 0)``: float32 (3, h, w), RGB, values byte/255 in [0, 1].

    Decoded with Pillow like pj's stb path (``load_image_stb``): greyscale is expanded to three
    equal channels, alpha is dropped, the EXIF orientation is *not* applied.  An unreadable file
    is a one-line DarknetError (pj's OpenCV build would silently return a 10x10 black
    image)."""
    from ..data.datasets import open_image

    with open_image(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            # stb gives 8 bits per channel: the high byte of a 16-bit sample
            grey = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
            arr = np.repeat(grey[:, :, None], 3, axis=2)
        else:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    # C: (float)data[i]/255. -- a double division, then rounded to float
    return (arr.transpose(2, 0, 1).astype(np.float64) / 255.0).astype(F32)


def _as_chw(image) -> np.ndarray:
    a = np.asarray(to_numpy(image), dtype=F32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected a (channels, height, width) image, got shape {a.shape}")
    return a


def resize_image(image, w: int, h: int) -> np.ndarray:
    """pj ``resize_image``: separable linear interpolation with corners aligned.

    First along x into a (c, H, w) image (the last column copies the source's last column),
    then along y; the last output row gets only its ``(1 - dy)`` term, like pj (when
    ``(h-1)*h_scale`` rounds below H-1 in float32 that row is darkened, as in Darknet).
    Every step is the same float32 operation as the C code, so the result is bit-identical."""
    im = _as_chw(image)
    c, H, W = im.shape
    w, h = int(w), int(h)
    if w < 1 or h < 1:
        raise ValueError(f"cannot resize to {w}x{h}")
    one = F32(1)
    # horizontal pass
    part = np.empty((c, H, w), F32)
    if W == 1:
        part[:] = im[:, :, W - 1:W]
    else:
        if w > 1:
            w_scale = F32(W - 1) / F32(w - 1)
            sx = np.arange(w - 1, dtype=F32) * w_scale
            ix = sx.astype(np.int64)                    # (int) sx, sx >= 0
            dx = sx - ix.astype(F32)
            ix1 = np.minimum(ix + 1, W - 1)
            ix = np.minimum(ix, W - 1)
            part[:, :, :w - 1] = (one - dx) * im[:, :, ix] + dx * im[:, :, ix1]
        part[:, :, w - 1] = im[:, :, W - 1]
    # vertical pass
    if h > 1:
        h_scale = F32(H - 1) / F32(h - 1)
        sy = np.arange(h, dtype=F32) * h_scale
    else:
        sy = np.zeros(1, F32)       # pj: 0 * (H-1)/0 (NaN); the one row is source row 0
    iy = np.minimum(sy.astype(np.int64), H - 1)
    dy = sy - iy.astype(F32)
    out = (one - dy)[None, :, None] * part[:, iy, :]
    if H > 1:
        rows = np.arange(h - 1)     # pj skips the second term for the last row
        iy1 = np.minimum(iy[rows] + 1, H - 1)
        out[:, rows, :] = out[:, rows, :] + dy[rows][None, :, None] * part[:, iy1, :]
    return out.astype(F32, copy=False)


def letterbox_size(img_w: int, img_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """(new_w, new_h) of pj's letterbox: the image scaled to fit, integer arithmetic."""
    if F32(net_w) / F32(img_w) < F32(net_h) / F32(img_h):
        return net_w, (img_h * net_w) // img_w
    return (img_w * net_h) // img_h, net_h


def letterbox(image, w: int, h: int) -> np.ndarray:
    """pj ``letterbox_image``: resize keeping the aspect ratio (``resize_image``), then paste it
    centred at ((w-new_w)/2, (h-new_h)/2) (integer division) on a w x h canvas of 0.5."""
    im = _as_chw(image)
    c, ih, iw = im.shape
    new_w, new_h = letterbox_size(iw, ih, int(w), int(h))
    resized = resize_image(im, new_w, new_h)
    boxed = np.full((c, int(h), int(w)), 0.5, F32)
    dx, dy = (int(w) - new_w) // 2, (int(h) - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resized
    return boxed


letterbox_image = letterbox


# ------------------------------------------------------------------------------------------------
# boxes and detections (pj src/box.c, include/darknet.h)
# ------------------------------------------------------------------------------------------------

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


def box_iou(a, b) -> float:
    """pj ``box_iou`` of two centre-format boxes (x, y, w, h), in float32 like the C code.

    Returns 0 when the union is 0 (pj would divide 0 by 0; either way it never exceeds an NMS
    threshold)."""
    return float(_iou_many(np.asarray(a, F32), np.asarray(b, F32).reshape(1, 4))[0])


def _columns(a):
    """x, y, w, h of one box (4,) as float32 scalars, or of boxes (k, 4) as (k, 1) columns
    that broadcast against n other boxes."""
    a = np.asarray(a, F32)
    return tuple(a[..., i, None] if a.ndim == 2 else a[i] for i in range(4))


def _iou_many(a: np.ndarray, bs: np.ndarray) -> np.ndarray:
    """box_iou of boxes a (k, 4) or one box (4,) against boxes bs (n, 4): (k, n) or (n,),
    float32 throughout like pj's C."""
    two = F32(2)
    ax, ay, aw, ah = _columns(a)

    def overlap(x1, w1, x2, w2):
        l1, l2 = x1 - w1 / two, x2 - w2 / two
        left = np.where(l1 > l2, l1, l2)
        r1, r2 = x1 + w1 / two, x2 + w2 / two
        right = np.where(r1 < r2, r1, r2)
        return (right - left).astype(F32)

    with np.errstate(invalid="ignore", over="ignore"):   # infinite boxes give nan: no match
        ow = overlap(ax, aw, bs[:, 0], bs[:, 2])
        oh = overlap(ay, ah, bs[:, 1], bs[:, 3])
        inter = np.where((ow < 0) | (oh < 0), F32(0), ow * oh).astype(F32)
        union = (aw * ah + bs[:, 2] * bs[:, 3] - inter).astype(F32)
        iou = np.where(union != 0, inter / np.where(union != 0, union, F32(1)), F32(0))
    return iou.astype(F32)


def _diou_many(a: np.ndarray, bs: np.ndarray, beta: float) -> np.ndarray:
    """AlexeyAB's ``box_diounms(a, b, beta)`` = IoU - (d/c)^beta, d the squared distance of the
    centres and c the squared diagonal of the enclosing box (IoU where c = 0); float32 like
    the C, the power in double.  ``box_diou`` is the same with beta = 0.6."""
    iou = _iou_many(a, bs)
    two = F32(2)
    ax, ay, aw, ah = _columns(a)
    bx, by, bw, bh = (bs[:, i] for i in range(4))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        w = (np.maximum(ax + aw / two, bx + bw / two) - np.minimum(ax - aw / two, bx - bw / two))
        h = (np.maximum(ay + ah / two, by + bh / two) - np.minimum(ay - ah / two, by - bh / two))
        c = (w * w + h * h).astype(F32)
        d = ((ax - bx) * (ax - bx) + (ay - by) * (ay - by)).astype(F32)
        u = np.power((d / np.where(c == 0, F32(1), c)).astype(F32).astype(np.float64),
                     float(F32(beta))).astype(F32)
        return np.where(c == 0, iou, (iou - u).astype(F32)).astype(F32)


# nms_kind of AlexeyAB's [yolo] -> the overlap score its NMS compares with the threshold
# (AB's diounms_sort: greedynms compares box_diou, diounms box_diounms with beta_nms,
# cornersnms box_iou -- its box merging is commented out in AB's code).
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")


def _overlap(kind: str, beta: float):
    if kind == "greedynms":
        return lambda a, bs: _diou_many(a, bs, 0.6)
    if kind == "diounms":
        return lambda a, bs: _diou_many(a, bs, beta)
    return _iou_many


def _suppress(boxes: np.ndarray, keep: np.ndarray, thresh: np.float32,
              over: np.ndarray | None = None, rows: np.ndarray | None = None,
              score=_iou_many) -> None:
    """pj's greedy NMS pass over boxes sorted best first: each box still kept clears ``keep``
    of every later box whose IoU (``score``) with it exceeds thresh (in place).

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
        hits = score(boxes[block], boxes[r:]) > thresh
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
        score = _overlap(kind, beta)
        over = None
        # one IoU matrix for every class (<= 64 MiB) when the per-class passes would compute
        # more pairs than it has
        pairs = (np.count_nonzero(probs, axis=0).astype(np.float64) ** 2).sum() / 2
        if total <= 8192 and pairs > total * total:
            over = np.empty((total, total), bool)
            for r in range(0, total, 256):
                over[r:r + 256] = score(boxes[r:r + 256], boxes) > t
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


# ------------------------------------------------------------------------------------------------
# network output -> detections (pj src/network.c, yolo_layer.c, region_layer.c)
# ------------------------------------------------------------------------------------------------

def correct_boxes(boxes: np.ndarray, img_w: int, img_h: int, net_w: int, net_h: int,
                  relative: bool = True, letterboxed: bool = True) -> np.ndarray:
    """pj ``correct_yolo_boxes`` / ``correct_region_boxes`` (identical): undo the letterbox.

    ``boxes`` (n, 4) float32 x, y, w, h relative to the network input; returns them relative to
    the original img_w x img_h image (pixels when ``relative`` is false).  new_w/new_h use pj's
    integer arithmetic; the shift and scale are double like the C code, each result a float."""
    b = np.asarray(boxes, F32).reshape(-1, 4)
    if not letterboxed:                  # stretched input (AB letter_box=0): nothing to undo
        new_w, new_h = net_w, net_h
    elif F32(net_w) / F32(img_w) < F32(net_h) / F32(img_h):
        new_w, new_h = net_w, (img_h * net_w) // img_w
    else:
        new_h, new_w = net_h, (img_w * net_h) // img_h
    sx = float(F32(new_w) / F32(net_w))             # (float)new_w/netw
    sy = float(F32(new_h) / F32(net_h))
    out = np.empty_like(b)
    out[:, 0] = ((b[:, 0].astype(np.float64) - (net_w - new_w) / 2.0 / net_w) / sx).astype(F32)
    out[:, 1] = ((b[:, 1].astype(np.float64) - (net_h - new_h) / 2.0 / net_h) / sy).astype(F32)
    out[:, 2] = b[:, 2] * (F32(net_w) / F32(new_w))  # b.w *= (float)netw/new_w
    out[:, 3] = b[:, 3] * (F32(net_h) / F32(new_h))
    if not relative:
        out[:, 0] *= F32(img_w)
        out[:, 2] *= F32(img_w)
        out[:, 1] *= F32(img_h)
        out[:, 3] *= F32(img_h)
    return out


correct_yolo_boxes = correct_region_boxes = correct_boxes


def _layer_planes(layer, batch_index: int) -> np.ndarray:
    """The layer's output for one image as (anchors, entries, h, w), float32 NumPy."""
    out = np.asarray(to_numpy(layer.output), F32)
    per = layer.out_c * layer.out_h * layer.out_w
    return out.reshape(out.shape[0], per)[batch_index].reshape(
        layer.n, -1, layer.out_h, layer.out_w)


def get_yolo_detections(layer, img_w, img_h, net_w, net_h, thresh, relative=True,
                        classes=None, batch_index=0) -> list[Detection]:
    """pj ``get_yolo_detections``: every (cell, anchor) with objectness > thresh, cells in
    row-major order and anchors inner; bx = (i + x)/lw, by = (j + y)/lh,
    bw = exp(w) * anchor_w / net_w, bh likewise; prob = objectness * p(class), zeroed when
    <= thresh; then the letterbox correction."""
    p = _layer_planes(layer, batch_index)                 # (n, 5 + C, lh, lw)
    n, _, lh, lw = p.shape
    t = F32(thresh)
    # order of pj's loops: for cell i (row-major), for anchor n
    obj = p[:, 4].transpose(1, 2, 0)                      # (lh, lw, n)
    rows, cols, ks = np.nonzero(obj > t)
    if rows.size == 0:
        return []
    objectness = obj[rows, cols, ks]
    tx, ty = p[ks, 0, rows, cols], p[ks, 1, rows, cols]
    tw, th = p[ks, 2, rows, cols], p[ks, 3, rows, cols]
    anchors = np.asarray(layer.anchors, F32).reshape(-1, 2)
    a = anchors[np.asarray(layer.mask, np.int64)[ks]]
    boxes = np.empty((rows.size, 4), F32)
    boxes[:, 0] = (cols.astype(F32) + tx) / F32(lw)
    boxes[:, 1] = (rows.astype(F32) + ty) / F32(lh)
    # exp() is double in C: exp((double)t) * (double)anchor / netw, then rounded to float.
    # An untrained net's huge tw gives an infinite width, as in Darknet; such boxes are
    # clipped when drawn and never match in NMS, so the overflow is not worth a warning.
    with np.errstate(over="ignore"):
        boxes[:, 2] = (np.exp(tw.astype(np.float64)) * a[:, 0] / net_w).astype(F32)
        boxes[:, 3] = (np.exp(th.astype(np.float64)) * a[:, 1] / net_h).astype(F32)
    boxes = correct_boxes(boxes, img_w, img_h, net_w, net_h, relative,
                          uses_letterbox(layer_net_options(layer)))
    ncls = layer.classes
    probs = (objectness[:, None] * p[ks, 5:5 + ncls, rows, cols]).astype(F32)
    probs = np.where(probs > t, probs, F32(0))
    width = layer.classes if classes is None else classes
    out = []
    for d in range(rows.size):
        prob = np.zeros(width, F32)
        m = min(width, ncls)
        prob[:m] = probs[d, :m]
        out.append(Detection(Box(*(float(v) for v in boxes[d])), float(objectness[d]), prob,
                             width))
    return out


def get_region_detections(layer, img_w, img_h, net_w, net_h, thresh, relative=True,
                          classes=None, batch_index=0) -> list[Detection]:
    """pj ``get_region_detections`` (no tree/softmax_tree): one detection per anchor and cell,
    anchor-major (index n*lw*lh + cell); bx = (i + x)/lw, bw = exp(w) * anchor_w / lw (anchors
    in grid cells); objectness = obj if > thresh else 0 (1 with ``background``); probs only
    where objectness != 0: obj * p(class), zeroed when <= thresh; then the letterbox
    correction."""
    if getattr(layer, "softmax_tree", None):
        raise NotImplementedError("[region] tree= (YOLO9000) is not supported")
    p = _layer_planes(layer, batch_index)                 # (n, coords + 1 + C, lh, lw)
    n, _, lh, lw = p.shape
    coords = layer.coords
    t = F32(thresh)
    cols = np.tile(np.arange(lw), lh)
    rows = np.repeat(np.arange(lh), lw)
    flat = p.reshape(n, p.shape[1], lh * lw)              # (n, entries, cells)
    if layer.background:
        scale = np.ones((n, lh * lw), F32)
    else:
        scale = flat[:, coords]
    anchors = np.asarray(layer.anchors, F32).reshape(-1, 2)[:n]
    boxes = np.empty((n, lh * lw, 4), F32)
    boxes[..., 0] = (cols.astype(F32)[None] + flat[:, 0]) / F32(lw)
    boxes[..., 1] = (rows.astype(F32)[None] + flat[:, 1]) / F32(lh)
    boxes[..., 2] = (np.exp(flat[:, 2].astype(np.float64)) * anchors[:, 0:1] / lw).astype(F32)
    boxes[..., 3] = (np.exp(flat[:, 3].astype(np.float64)) * anchors[:, 1:2] / lh).astype(F32)
    boxes = correct_boxes(boxes.reshape(-1, 4), img_w, img_h, net_w, net_h, relative,
                          uses_letterbox(layer_net_options(layer)))
    objectness = np.where(scale > t, scale, F32(0)).reshape(-1)
    ncls = layer.classes
    # pj reads the classes at entry coords + 1 (whether or not the layer has a background)
    cls = flat[:, coords + 1:coords + 1 + ncls].transpose(0, 2, 1).reshape(-1, ncls)
    probs = (scale.reshape(-1)[:, None] * cls).astype(F32)
    probs = np.where((probs > t) & (objectness[:, None] != 0), probs, F32(0))
    masks = None
    if coords > 4:
        masks = flat[:, 4:coords].transpose(0, 2, 1).reshape(-1, coords - 4)
    width = layer.classes if classes is None else classes
    out = []
    for d in range(n * lh * lw):
        prob = np.zeros(width, F32)
        m = min(width, ncls)
        prob[:m] = probs[d, :m]
        out.append(Detection(Box(*(float(v) for v in boxes[d])), float(objectness[d]), prob,
                             width, None if masks is None else masks[d].copy()))
    return out


def uses_letterbox(options) -> bool:
    """Letterbox (pj, the default) unless the cfg's [net] says ``letter_box=0`` (AlexeyAB's
    stretching: the image resized to the network size, aspect not kept)."""
    return options is None or options.data.get("letter_box", 1) != 0


def layer_net_options(layer):
    return getattr(layer, "net_options", None)


def network_size(net) -> tuple[int, int]:
    """(width, height) of the network input ([net] width/height)."""
    _, h, w = net.input_shape
    return int(w), int(h)


def get_network_boxes(net, img_w: int, img_h: int, thresh: float = 0.5, hier_thresh: float = 0.5,
                      relative: int = 1, batch_index: int = 0) -> list[Detection]:
    """pj ``get_network_boxes(net, w, h, thresh, hier, 0, relative, &n)`` after a forward pass.

    Walks the layers in order: [yolo] layers add their detections above ``thresh``, [region]
    layers every anchor of every cell.  Each prob array has the last layer's ``classes``
    entries (pj's make_network_boxes).  Boxes are relative to the original img_w x img_h image
    (pixels if ``relative`` is 0).  ``hier_thresh`` only matters for tree (9000) region layers,
    which are not supported; it is accepted for the call signature."""
    del hier_thresh
    net_w, net_h = network_size(net)
    classes = getattr(net.layers[-1], "classes", 0)
    dets: list[Detection] = []
    for layer in net.layers:
        if layer.type == "yolo":
            dets += get_yolo_detections(layer, img_w, img_h, net_w, net_h, thresh, relative,
                                        classes, batch_index)
        elif layer.type == "region":
            dets += get_region_detections(layer, img_w, img_h, net_w, net_h, thresh, relative,
                                          classes, batch_index)
    # a diverged network can give infinite boxes: they can be neither drawn nor scored
    return [d for d in dets if np.isfinite(np.asarray(d.bbox, np.float64)).all()]


def network_classes(net) -> int:
    """classes of the last layer, what pj's test_detector passes to NMS and drawing."""
    return int(getattr(net.layers[-1], "classes", 0))


def detect_image(net, image, thresh: float = 0.5, hier_thresh: float = 0.5, nms: float = 0.45):
    """pj test_detector for one image: load (a path, or a (3, h, w) float array), letterbox to
    the network size, forward, get_network_boxes(relative=1), NMS when nms > 0.

    Returns ``(image_chw, dets)``."""
    im = load_image_color(image) if isinstance(image, (str, os.PathLike)) else _as_chw(image)
    net_w, net_h = network_size(net)
    sized = letterbox(im, net_w, net_h) if uses_letterbox(net.options) else \
        resize_image(im, net_w, net_h)
    with np.errstate(all="ignore"):     # overflowing outputs are reported by heads_are_finite
        net.forward(sized[None])
    dets = get_network_boxes(net, im.shape[2], im.shape[1], thresh, hier_thresh, 1)
    if nms > 0:
        network_nms(net, dets, nms)
    return im, dets


def heads_are_finite(net) -> bool:
    """Whether the detection layers' last outputs are all finite numbers (untrained or broken
    weights overflow to inf and NaN, as in Darknet)."""
    return all(bool(np.isfinite(to_numpy(layer.output)).all()) for layer in net.layers
               if layer.type in ("yolo", "region") and layer.output is not None)


def network_nms(net, dets: list[Detection], thresh: float) -> list[Detection]:
    """The NMS a detector's test command runs: pj's do_nms_sort, or AlexeyAB's diounms_sort
    when the last layer sets ``nms_kind`` (greedynms, diounms with ``beta_nms``)."""
    last = net.layers[-1]
    return do_nms_sort(dets, network_classes(net), thresh, getattr(last, "nms_kind", "default"),
                       getattr(last, "beta_nms", 0.6))


# ------------------------------------------------------------------------------------------------
# printing and JSON
# ------------------------------------------------------------------------------------------------

def _c_round(v: float) -> float:
    """C round(): halves away from zero (an infinite value stays infinite, as in C)."""
    return math.copysign(math.floor(abs(v) + 0.5), v) if math.isfinite(v) else v


def _json_number(v: float) -> float | None:
    """JSON has no infinity: an untrained net's overflowing box size is written as null."""
    return v if math.isfinite(v) else None


def _name(names, j: int) -> str:
    return names[j] if names is not None and j < len(names) else str(j)


def detection_lines(dets, names, thresh: float, img_w: int | None = None,
                    img_h: int | None = None, ext_output: bool = False) -> list[str]:
    """The lines pj's draw_detections prints: for each detection (list order) and each class
    with prob > thresh, ``"{name}: {100*p:.0f}%"`` (``"%s: %.0f%%"``, p*100 in float32).

    With ``ext_output`` (AB's ``-ext_output``; needs img_w, img_h) each line gets
    ``"\\t(left_x: %4.0f   top_y: %4.0f   width: %4.0f   height: %4.0f)"`` in pixels of the
    original image, rounded like C's round()."""
    if ext_output and (img_w is None or img_h is None):
        raise ValueError("ext_output needs the image size (img_w, img_h)")
    t = F32(thresh)
    lines = []
    for d in dets:
        prob = np.asarray(d.prob, F32)
        box = ""
        if ext_output:
            x, y, w, h = (F32(v) for v in d.bbox)
            iw, ih = F32(img_w), F32(img_h)     # AB: round((b.x - b.w/2)*im.w), in float
            box = ("\t(left_x: %4.0f   top_y: %4.0f   width: %4.0f   height: %4.0f)" % (
                _c_round(float((x - w / F32(2)) * iw)), _c_round(float((y - h / F32(2)) * ih)),
                _c_round(float(w * iw)), _c_round(float(h * ih))))
        for j in np.nonzero(prob > t)[0]:
            lines.append("%s: %.0f%%%s" % (_name(names, int(j)), float(prob[j] * F32(100)), box))
    return lines


def detections_json(dets, names, thresh: float, img_w: int | None = None,
                    img_h: int | None = None) -> list[dict]:
    """A JSON-able list, one object per (detection, class with prob > thresh), in the order of
    ``detection_lines``: class_id, name, confidence, relative_coordinates (centre_x, centre_y,
    width, height; AB's ``-out result.json`` fields) and, given the image size, pixel box
    (left, top, width, height, not rounded)."""
    t = F32(thresh)
    out = []
    for d in dets:
        prob = np.asarray(d.prob, F32)
        x, y, w, h = (float(v) for v in d.bbox)
        for j in np.nonzero(prob > t)[0]:
            obj = {"class_id": int(j), "name": _name(names, int(j)),
                   "confidence": float(prob[j]),
                   "relative_coordinates": {k: _json_number(v) for k, v in (
                       ("center_x", x), ("center_y", y), ("width", w), ("height", h))}}
            if img_w is not None and img_h is not None:
                pixel = zip(("left", "top", "width", "height"), d.pixel_box(img_w, img_h))
                obj["pixel_box"] = {k: _json_number(v) for k, v in pixel}
            out.append(obj)
    return out


# ------------------------------------------------------------------------------------------------
# drawing (pj draw_detections)
# ------------------------------------------------------------------------------------------------

_COLORS = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def get_color(c: int, x: int, max_: int) -> float:
    """pj ``get_color``: channel c of the palette interpolated at x/max*5 (float32 as in C)."""
    ratio = F32(x) / F32(max_) * F32(5)
    i, j = int(math.floor(ratio)), int(math.ceil(ratio))
    ratio = ratio - F32(i)
    return float((F32(1) - ratio) * F32(_COLORS[i][c]) + ratio * F32(_COLORS[j][c]))


def class_color(class_id: int, classes: int) -> tuple[int, int, int]:
    """The (r, g, b) bytes pj draws class ``class_id`` with: offset = class*123457 % classes;
    red = get_color(2), green = get_color(1), blue = get_color(0); byte = (int)(255*v)."""
    offset = (class_id * 123457) % max(classes, 1)
    return tuple(int(F32(255) * F32(get_color(c, offset, max(classes, 1)))) for c in (2, 1, 0))


def _to_pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        from ..data.datasets import open_image
        with open_image(image) as img:
            return img.convert("RGB")
    a = _as_chw(image)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    # pj save_image: (unsigned char)(255 * v)
    data = (np.clip(a[:3], 0, 1) * F32(255)).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(data), "RGB")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(size, 8))
    except TypeError:               # Pillow < 10.1: the fixed bitmap font only
        return ImageFont.load_default()


def save_image_atomic(img, out_path) -> str:
    """Save a PIL image through a temporary file in the same folder and a rename.

    A path without an extension gets ``.jpg`` (pj's save_image); JPEGs use quality 80 like pj.
    Returns the path written."""
    path = os.fspath(out_path)
    root, ext = os.path.splitext(path)
    if not ext:
        ext = ".jpg"
        path = root + ext
    from PIL import Image
    fmt = Image.registered_extensions().get(ext.lower(), "JPEG")
    opts = {"quality": 80} if fmt == "JPEG" else {}
    with atomic_open(path, ext) as f:
        img.save(f, format=fmt, **opts)
    return path


def draw_detections(image, dets, names, thresh: float, out_path=None, classes: int | None = None):
    """pj ``draw_detections`` with Pillow; returns the PIL image (saved atomically to
    ``out_path`` when given; see ``save_image_atomic``).

    ``image`` is a path, a PIL image or a (c, h, w) float array in [0, 1].  For each detection
    with some prob > thresh: the label is the names of those classes joined by ", ", the colour
    that of the first one; the box is left/right/top/bottom = (x -/+ w/2)*W, (y -/+ h/2)*H
    truncated and clamped to the image, drawn as ``int(H*.006)`` (at least 1) nested 1-pixel
    rectangles shrinking inward; the label (black text on the box colour, font size ~ H*.03)
    sits on the box's top-left corner, above the box when there is room."""
    from PIL import ImageDraw

    img = _to_pil(image)
    W, H = img.size
    draw = ImageDraw.Draw(img)
    t = F32(thresh)
    font = _font(int(H * .03))
    for d in dets:
        prob = np.asarray(d.prob, F32)
        ncls = len(prob) if classes is None else classes
        hits = [int(j) for j in np.nonzero(prob[:ncls] > t)[0]]
        if not hits:
            continue
        label = ", ".join(_name(names, j) for j in hits)
        color = class_color(hits[0], ncls)
        width = max(1, int(H * .006))
        x, y, w, h = (float(v) for v in d.bbox)
        # clamped to just outside the image before int(): an overflowing (infinite) size
        # draws as a box along the image's edges instead of failing
        left, right = (int(min(max(v * W, -1.), W)) for v in (x - w / 2., x + w / 2.))
        top, bot = (int(min(max(v * H, -1.), H)) for v in (y - h / 2., y + h / 2.))
        left, top = max(left, 0), max(top, 0)
        right, bot = min(right, W - 1), min(bot, H - 1)
        for i in range(width):
            x1, y1, x2, y2 = left + i, top + i, right - i, bot - i
            if x2 < x1 or y2 < y1:
                break
            draw.rectangle((x1, y1, x2, y2), outline=color)
        tl, tt, tr, tb = draw.textbbox((0, 0), label, font=font)
        pad = max(1, int(H * .004))
        lw, lh = tr - tl + 2 * pad, tb - tt + 2 * pad
        row = top + width
        if row - lh >= 0:
            row -= lh
        col = left
        draw.rectangle((col, row, col + lw - 1, row + lh - 1), fill=color)
        draw.text((col + pad - tl, row + pad - tt), label, fill=(0, 0, 0), font=font)
    if out_path is not None:
        save_image_atomic(img, out_path)
    return img
