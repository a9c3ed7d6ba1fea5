"""Detection post-processing as pj Darknet's ``detector test`` does it.

    im = load_image_color("dog.jpg")                    # float32 (3, h, w), RGB, byte/255
    x = letterbox(im, net_w, net_h)                     # pj letterbox_image (darknet_py.image)
    net.forward(x[None])
    dets = get_network_boxes(net, im.shape[2], im.shape[1], thresh=.5)
    do_nms_sort(dets, classes, .45)                     # darknet_py.box
    print("\\n".join(detection_lines(dets, names, .5)))
    draw_detections("dog.jpg", dets, names, .5, "predictions.jpg")     # darknet_py.image

or all at once: ``detect_image(net, "dog.jpg")``.

Everything follows pj (pjreddie/darknet, 2018): src/network.c (get_network_boxes),
src/yolo_layer.c (get_yolo_detections, correct_yolo_boxes), src/region_layer.c
(get_region_detections, correct_region_boxes), examples/detector.c (test_detector's printing).
The arithmetic is done in the C types (float32, or double where C promotes), so boxes and
probabilities match libdarknet to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np

from ..box import Box, Detection, do_nms_sort
from ..image import class_name, fit_image, letterbox_size, to_image
from ..nn.backend import to_numpy, xp_of
from .tree import region_tree_probs


F32 = np.float32
#: the layer types whose outputs are detections
HEADS = ("yolo", "gaussian_yolo", "region", "detection")


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
    # a stretched input (AB letter_box=0) has no letterbox to undo
    new_w, new_h = letterbox_size(img_w, img_h, net_w, net_h) if letterboxed else (net_w, net_h)
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


def _head_values(layer):
    """The layer's output as (images, anchors, entries, h, w), on the network's device."""
    out = layer.output
    return out.reshape(out.shape[0], layer.n, -1, layer.out_h, layer.out_w)


def _fetch(values, where):
    """The entries of the cells ``where`` ((m, 4) rows image, anchor, row, column, on the
    device) of ``values`` (_head_values): ``where`` and (m, entries) float32, on the host."""
    b, k, r, c = (where[:, i] for i in range(4))
    return np.asarray(to_numpy(where), np.int64), np.asarray(to_numpy(values[b, k, :, r, c]), F32)


def _yolo_cells(values, thresh, obj=4):
    """The cells of a [yolo] output (_head_values) with objectness (entry ``obj``) > thresh,
    in pj's order: per image, cells row-major and anchors inner."""
    xp = xp_of(values)
    keep = values[:, :, obj].astype(F32) > F32(thresh)
    return _fetch(values, xp.argwhere(keep.transpose(0, 2, 3, 1))[:, [0, 3, 1, 2]])


def _detections(boxes, objectness, probs, width, masks=None) -> list[Detection]:
    """One Detection per row; each prob array has ``width`` entries (pj make_network_boxes:
    the last layer's classes), the layer's classes copied in, zeros after them."""
    m = min(width, probs.shape[1])
    out = []
    for d in range(len(boxes)):
        prob = np.zeros(width, F32)
        prob[:m] = probs[d, :m]
        out.append(Detection(Box(*(float(v) for v in boxes[d])), float(objectness[d]), prob,
                             width, None if masks is None else masks[d].copy()))
    return out


def _yolo_decode(layer, where, v, img_w, img_h, net_w, net_h, thresh, relative, classes):
    """pj get_yolo_detections' arithmetic for the cells ``where`` with entries ``v``."""
    ks, rows, cols = where[:, 1], where[:, 2], where[:, 3]
    lh, lw = layer.out_h, layer.out_w
    t = F32(thresh)
    objectness = v[:, 4]
    tx, ty, tw, th = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
    anchors = np.asarray(layer.anchors, F32).reshape(-1, 2)
    a = anchors[np.asarray(layer.mask, np.int64)[ks]]
    boxes = np.empty((len(v), 4), F32)
    boxes[:, 0] = (cols.astype(F32) + tx) / F32(lw)
    boxes[:, 1] = (rows.astype(F32) + ty) / F32(lh)
    # exp() is double in C: exp((double)t) * (double)anchor / netw, then rounded to float.
    # An untrained net's huge tw gives an infinite width, as in Darknet; get_network_boxes
    # leaves such boxes out (plausible) and the commands say how many.
    if getattr(layer, "new_coords", False):
        # AlexeyAB's new_coords: x*x*4*biases/w, all float (ab get_yolo_box)
        with np.errstate(over="ignore"):
            boxes[:, 2] = tw * tw * F32(4) * a[:, 0] / F32(net_w)
            boxes[:, 3] = th * th * F32(4) * a[:, 1] / F32(net_h)
    else:
        with np.errstate(over="ignore"):
            boxes[:, 2] = (np.exp(tw.astype(np.float64)) * a[:, 0] / net_w).astype(F32)
            boxes[:, 3] = (np.exp(th.astype(np.float64)) * a[:, 1] / net_h).astype(F32)
    boxes = correct_boxes(boxes, img_w, img_h, net_w, net_h, relative,
                          uses_letterbox(layer_net_options(layer)))
    ncls = layer.classes
    probs = (objectness[:, None] * v[:, 5:5 + ncls]).astype(F32)
    probs = np.where(probs > t, probs, F32(0))
    return _detections(boxes, objectness, probs, layer.classes if classes is None else classes)


def _gaussian_decode(layer, where, v, img_w, img_h, net_w, net_h, thresh, relative, classes):
    """AlexeyAB get_gaussian_yolo_detections' arithmetic for the cells ``where`` with entries
    ``v`` (x, sigma_x, y, sigma_y, w, sigma_w, h, sigma_h, obj, classes): get_gaussian_yolo_box
    (float, exp in double) with ``yolo_point``; prob_j = obj * p_j * (1.0 - mean sigma), the
    mean in float then double, zeroed when <= thresh; correct_gaussian_yolo_boxes (pj's)."""
    ks, rows, cols = where[:, 1], where[:, 2], where[:, 3]
    anchors = np.asarray(layer.anchors, F32).reshape(-1, 2)
    a = anchors[np.asarray(layer.mask, np.int64)[ks]]
    boxes = np.empty((len(v), 4), F32)
    with np.errstate(over="ignore"):
        boxes[:, 2] = (np.exp(v[:, 4].astype(np.float64)) * a[:, 0] / net_w).astype(F32)
        boxes[:, 3] = (np.exp(v[:, 6].astype(np.float64)) * a[:, 1] / net_h).astype(F32)
    boxes[:, 0] = (cols.astype(F32) + v[:, 0]) / F32(layer.out_w)
    boxes[:, 1] = (rows.astype(F32) + v[:, 2]) / F32(layer.out_h)
    shift = {"center": 0, "left_top": 1, "right_bottom": -1}[layer.yolo_point]
    if shift:
        boxes[:, 0] += F32(shift) * (boxes[:, 2] / F32(2))
        boxes[:, 1] += F32(shift) * (boxes[:, 3] / F32(2))
    boxes = correct_boxes(boxes, img_w, img_h, net_w, net_h, relative,
                          uses_letterbox(layer_net_options(layer)))
    objectness = v[:, 8]
    uc_aver = ((v[:, 1] + v[:, 3] + v[:, 5] + v[:, 7]).astype(np.float64) / 4.0)[:, None]
    probs = ((objectness[:, None] * v[:, 9:9 + layer.classes]) * (1.0 - uc_aver)).astype(F32)
    probs = np.where(probs > F32(thresh), probs, F32(0))
    return _detections(boxes, objectness, probs, layer.classes if classes is None else classes)


def get_gaussian_yolo_detections(layer, img_w, img_h, net_w, net_h, thresh, relative=True,
                                 classes=None, batch_index=0) -> list[Detection]:
    """AlexeyAB ``get_gaussian_yolo_detections``: [yolo]'s cells and order, objectness at
    entry 8 (see :func:`_gaussian_decode`)."""
    where, v = _yolo_cells(_head_values(layer)[batch_index:batch_index + 1], thresh, 8)
    if len(v) == 0:
        return []
    return _gaussian_decode(layer, where, v, img_w, img_h, net_w, net_h, thresh, relative,
                            classes)


def get_yolo_detections(layer, img_w, img_h, net_w, net_h, thresh, relative=True,
                        classes=None, batch_index=0) -> list[Detection]:
    """pj ``get_yolo_detections``: every (cell, anchor) with objectness > thresh, cells in
    row-major order and anchors inner; bx = (i + x)/lw, by = (j + y)/lh,
    bw = exp(w) * anchor_w / net_w, bh likewise (AlexeyAB's new_coords: bw = 4 w^2 anchor_w /
    net_w); prob = objectness * p(class), zeroed when
    <= thresh; then the letterbox correction."""
    where, v = _yolo_cells(_head_values(layer)[batch_index:batch_index + 1], thresh)
    if len(v) == 0:
        return []
    return _yolo_decode(layer, where, v, img_w, img_h, net_w, net_h, thresh, relative, classes)


def _region_decode(layer, where, v, img_w, img_h, net_w, net_h, thresh, relative, classes,
                   hier_thresh=0.5, map=None):
    """pj get_region_detections' arithmetic for the cells ``where`` with entries ``v``; a
    tree= layer's probabilities as detection.tree.region_tree_probs (``hier_thresh``,
    ``map``)."""
    ks, rows, cols = where[:, 1], where[:, 2], where[:, 3]
    lh, lw = layer.out_h, layer.out_w
    coords = layer.coords
    t = F32(thresh)
    scale = np.ones(len(v), F32) if layer.background else v[:, coords]
    a = np.asarray(layer.anchors, F32).reshape(-1, 2)[:layer.n][ks]
    boxes = np.empty((len(v), 4), F32)
    boxes[:, 0] = (cols.astype(F32) + v[:, 0]) / F32(lw)
    boxes[:, 1] = (rows.astype(F32) + v[:, 1]) / F32(lh)
    boxes[:, 2] = (np.exp(v[:, 2].astype(np.float64)) * a[:, 0] / lw).astype(F32)
    boxes[:, 3] = (np.exp(v[:, 3].astype(np.float64)) * a[:, 1] / lh).astype(F32)
    boxes = correct_boxes(boxes, img_w, img_h, net_w, net_h, relative,
                          uses_letterbox(layer_net_options(layer)))
    objectness = np.where(scale > t, scale, F32(0))
    ncls = layer.classes
    # pj reads the classes at entry coords + 1 (whether or not the layer has a background)
    if getattr(layer, "softmax_tree", None) is not None:
        probs = region_tree_probs(layer, v, scale, thresh, hier_thresh, map)
    else:
        probs = (scale[:, None] * v[:, coords + 1:coords + 1 + ncls]).astype(F32)
        probs = np.where((probs > t) & (objectness[:, None] != 0), probs, F32(0))
    masks = v[:, 4:coords] if coords > 4 else None
    return _detections(boxes, objectness, probs, layer.classes if classes is None else classes,
                       masks)


def get_region_detections(layer, img_w, img_h, net_w, net_h, thresh, relative=True,
                          classes=None, batch_index=0, hier_thresh=0.5,
                          map=None) -> list[Detection]:
    """pj ``get_region_detections``: one detection per anchor and cell, anchor-major (index
    n*lw*lh + cell); bx = (i + x)/lw, bw = exp(w) * anchor_w / lw (anchors in grid cells);
    objectness = obj if > thresh else 0 (1 with ``background``); probs only where
    objectness != 0: obj * p(class), zeroed when <= thresh -- with tree= (YOLO9000) pj's
    hierarchy branch (``hier_thresh``, ``map``: detection.tree.region_tree_probs); then the
    letterbox correction."""
    values = _head_values(layer)[batch_index:batch_index + 1]
    xp = xp_of(values)
    where, v = _fetch(values, xp.argwhere(xp.ones(values[:, :, 0].shape, bool)))
    return _region_decode(layer, where, v, img_w, img_h, net_w, net_h, thresh, relative, classes,
                          hier_thresh, map)


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


# A box wider or taller than this many images, or centred further than this many images
# outside it, is no object of the image: untrained or diverged weights, whose exp(tw) reaches
# 1e38 or inf (pj prints such boxes; they can be neither drawn nor scored).
ABSURD_SIZE = 16.0


def plausible(dets, img_w: int, img_h: int, relative: int = 1):
    """(kept, dropped): ``dets`` without the boxes of non-finite or absurd size or place
    (:data:`ABSURD_SIZE`), and how many those were."""
    sw, sh = (1.0, 1.0) if relative else (float(img_w), float(img_h))
    kept = []
    for d in dets:
        x, y, w, h = (float(v) for v in d.bbox)
        if all(math.isfinite(v) for v in (x, y, w, h)) \
                and abs(w) <= ABSURD_SIZE * sw and abs(h) <= ABSURD_SIZE * sh \
                and abs(x / sw - 0.5) <= ABSURD_SIZE and abs(y / sh - 0.5) <= ABSURD_SIZE:
            kept.append(d)
    return kept, len(dets) - len(kept)


def get_network_boxes(net, img_w: int, img_h: int, thresh: float = 0.5, hier_thresh: float = 0.5,
                      relative: int = 1, batch_index: int = 0,
                      dropped: list | None = None, map=None) -> list[Detection]:
    """pj ``get_network_boxes(net, w, h, thresh, hier, map, relative, &n)`` after a forward pass.

    Walks the layers in order: [yolo] (and [Gaussian_yolo]) layers add their detections above
    ``thresh``, [region] layers every anchor of every cell.  Each prob array has the last
    layer's ``classes`` entries (pj's make_network_boxes).  Boxes are relative to the original img_w x img_h image
    (pixels if ``relative`` is 0).  ``hier_thresh`` and ``map`` only matter for tree=
    (YOLO9000) region layers (pj's test_detector: -hier, no map).  Boxes of non-finite or
    absurd size are left out (:func:`plausible`); their count is appended to ``dropped``."""
    net_w, net_h = network_size(net)
    classes = getattr(net.layers[-1], "classes", 0)
    dets: list[Detection] = []
    for layer in net.layers:
        if layer.type == "yolo":
            dets += get_yolo_detections(layer, img_w, img_h, net_w, net_h, thresh, relative,
                                        classes, batch_index)
        elif layer.type == "gaussian_yolo":
            dets += get_gaussian_yolo_detections(layer, img_w, img_h, net_w, net_h, thresh,
                                                 relative, classes, batch_index)
        elif layer.type == "region":
            dets += get_region_detections(layer, img_w, img_h, net_w, net_h, thresh, relative,
                                          classes, batch_index, hier_thresh, map)
        elif layer.type == "detection":
            dets += get_detection_detections(layer, img_w, img_h, thresh, relative, classes,
                                             batch_index)
    dets, bad = plausible(dets, img_w, img_h, relative)
    if dropped is not None:
        dropped.append(bad)
    return dets


def _safe_cells(layer, values, sizes, net_w, net_h, relative):
    """The cells of a [region] output whose box is plausible (see :func:`plausible`) for every
    image of ``sizes``, by a bound with a little headroom: x, y finite and exp(tw), exp(th)
    below ABSURD_SIZE images once scaled by the anchor and the letterbox correction."""
    xp = xp_of(values)
    unit = np.array([[0.5, 0.5, 1, 1]], F32)
    letterboxed = uses_letterbox(layer_net_options(layer))
    with np.errstate(all="ignore"):
        factors = np.array([correct_boxes(unit, w, h, net_w, net_h, relative, letterboxed)[0]
                            for w, h in sizes], np.float64).reshape(-1, 4)
        anchors = np.abs(np.asarray(layer.anchors, np.float64).reshape(-1, 2)[:layer.n])
        images = np.array([(1.0, 1.0) if relative else (w, h) for w, h in sizes],
                          np.float64).reshape(-1, 2)
        limits = [np.log(ABSURD_SIZE) - 0.01 - np.log(anchors[:, i].max(initial=0) / grid)
                  + np.min(np.log(images[:, i]) - np.log(factors[:, 2 + i]), initial=np.inf)
                  for i, grid in ((0, layer.out_w), (1, layer.out_h))]
    if not np.isfinite(factors).all():
        limits = [-np.inf, -np.inf]
    # a NaN fails every comparison, and so does an infinite tw (times a zero anchor: NaN)
    return (xp.isfinite(values[:, :, 0]) & xp.isfinite(values[:, :, 1])
            & (values[:, :, 2] < limits[0]) & (values[:, :, 3] < limits[1]))


def _nms_order(live):
    """Where pj's swap loop (box.do_nms_sort) puts the detections with objectness != 0
    (``live``) of a list: the ones in the first ``live.sum()`` places stay, and the others
    fill the gaps left by the objectness-0 ones there, the last one first.  Indexes into the
    list."""
    total = int(live.sum())
    order = np.arange(total)
    order[np.flatnonzero(~live[:total])] = (np.flatnonzero(live[total:]) + total)[::-1]
    return order


def network_boxes_for_nms(net, sizes, thresh: float = 0.5, relative: int = 1,
                          dropped: list | None = None) -> list[list[Detection]]:
    """get_network_boxes for every image of the last forward pass, as NMS sees them: per image
    (``sizes``: the original images' (w, h)), the detections with objectness != 0 in the order
    pj's do_nms_sort gives them after moving the objectness-0 ones out, so that NMS over these
    keeps the same boxes and probabilities as over get_network_boxes' list (``thresh`` >= 0:
    the objectness-0 ones have no probability above it).

    For the batch at once on the network's device: only the cells with objectness above
    ``thresh`` are copied to the host (and, of [region] heads, the few whose box may be
    absurd: those leave the list before NMS, which changes the order).  Per image, the number
    of boxes left out as absurd (:func:`plausible`) is appended to ``dropped``."""
    net_w, net_h = network_size(net)
    classes = getattr(net.layers[-1], "classes", 0)
    live = [[] for _ in sizes]      # per image, per head: the live flags of its finite boxes
    kept = [[] for _ in sizes]      # per image: the live detections, in list order
    bad = [0 for _ in sizes]        # per image: the absurd boxes left out
    for layer in net.layers:
        if layer.type not in HEADS:
            continue
        for b, (w, h), dets, places, cells in _head_lists(layer, sizes, net_w, net_h, thresh,
                                                          relative, classes):
            finite = np.array([plausible([d], w, h, relative)[1] == 0 for d in dets], bool)
            alive = np.array([d.objectness != 0 for d in dets], bool) & finite
            bad[b] += int((~finite).sum())
            if cells is None:           # its list is these detections
                flags = alive[finite]
            else:                       # [region]: every cell, the others finite and 0
                k, r, c = places[:, 1], places[:, 2], places[:, 3]
                at = (k * layer.out_h + r) * layer.out_w + c
                flags, keep = np.zeros(cells, bool), np.ones(cells, bool)
                flags[at], keep[at] = alive, finite
                flags = flags[keep]
            live[b].append(flags)
            kept[b].extend(d for d, a in zip(dets, alive) if a)
    out = []
    for flags, dets in zip(live, kept):
        flags = np.concatenate(flags) if flags else np.zeros(0, bool)
        rank = np.cumsum(flags) - 1     # list place -> index into dets
        out.append([dets[rank[i]] for i in _nms_order(flags)])
    if dropped is not None:
        dropped.extend(bad)
    return out


def _head_lists(layer, sizes, net_w, net_h, thresh, relative, classes):
    """Per image of the batch: (b, its size, the head's detections from the cells fetched,
    those cells' places, the head's cell count when the list holds every cell else None)."""
    if layer.type == "detection":     # YOLOv1: a small output, decoded on the host
        for b, size in enumerate(sizes):
            yield b, size, get_detection_detections(layer, *size, thresh, relative, classes,
                                                    b), None, None
        return
    values = _head_values(layer)
    if layer.type == "yolo":
        where, v = _yolo_cells(values, thresh)
        decode, cells = _yolo_decode, None
    elif layer.type == "gaussian_yolo":
        where, v = _yolo_cells(values, thresh, 8)
        decode, cells = _gaussian_decode, None
    else:       # a tree layer's probabilities are at most obj: these cells hold them all
        xp = xp_of(values)
        score = xp.ones(values[:, :, 0].shape, bool) if layer.background else \
            values[:, :, layer.coords].astype(F32) > F32(thresh)
        unsafe = ~_safe_cells(layer, values, sizes, net_w, net_h, relative)
        where, v = _fetch(values, xp.argwhere(score | unsafe))
        decode, cells = _region_decode, layer.n * layer.out_h * layer.out_w
    bounds = np.searchsorted(where[:, 0], np.arange(len(sizes) + 1))
    for b, (w, h) in enumerate(sizes):
        part = slice(bounds[b], bounds[b + 1])
        dets = decode(layer, where[part], v[part], w, h, net_w, net_h, thresh, relative,
                      classes) if bounds[b + 1] > bounds[b] else []
        yield b, (w, h), dets, where[part], cells


def get_detection_detections(layer, img_w, img_h, thresh, relative=True, classes=None,
                             batch_index=0) -> list[Detection]:
    """pj ``get_detection_detections`` (YOLOv1's [detection]): one detection per box of every
    cell, cells row-major and boxes inner; bx = (x + col)/side, by = (y + row)/side, bw = w
    (w^2 with ``sqrt``), bh likewise, times the image's size in pixels (``relative`` 0) --
    pj multiplies by the image's size whatever ``relative`` asks, which its drawing then
    scales again: darknet_py gives relative boxes for relative 1; objectness = the box's
    confidence, prob = confidence x p(class), zeroed when <= thresh.  No letterbox
    correction, as pj."""
    p = np.asarray(to_numpy(layer.output[batch_index]), F32).reshape(-1)
    side, n, ncls = layer.side, layer.n, layer.classes
    cells = side * side
    scale = p[cells * ncls:cells * (ncls + n)]                       # (cell, box) flat
    boxes = p[cells * (ncls + n):cells * (ncls + n) + cells * n * 4].reshape(-1, 4)
    row, col = np.divmod(np.repeat(np.arange(cells), n), side)
    w, h = (F32(1), F32(1)) if relative else (F32(img_w), F32(img_h))
    out = np.empty((cells * n, 4), F32)
    out[:, 0] = (boxes[:, 0] + col.astype(F32)) / F32(side) * w      # float, as pj's C
    out[:, 1] = (boxes[:, 1] + row.astype(F32)) / F32(side) * h
    power = 2.0 if layer.sqrt else 1.0                               # pow() is double
    with np.errstate(over="ignore", invalid="ignore"):
        out[:, 2] = (np.power(boxes[:, 2].astype(np.float64), power) * float(w)).astype(F32)
        out[:, 3] = (np.power(boxes[:, 3].astype(np.float64), power) * float(h)).astype(F32)
    probs = scale[:, None] * np.repeat(p[:cells * ncls].reshape(cells, ncls), n, axis=0)
    probs = np.where(probs > F32(thresh), probs, F32(0)).astype(F32)
    return _detections(out, scale, probs, ncls if classes is None else classes)


def network_classes(net) -> int:
    """classes of the last layer, what pj's test_detector passes to NMS and drawing."""
    return int(getattr(net.layers[-1], "classes", 0))


def detect_image(net, image, thresh: float = 0.5, hier_thresh: float = 0.5, nms: float = 0.45,
                 dropped: list | None = None, map=None):
    """pj test_detector for one image: load (a path, a Pillow image or an array, see
    ``image.to_image``), letterbox to the network size, forward, get_network_boxes
    (relative=1; ``map``: a tree [region]'s, as pj validate_detector's), NMS when nms > 0.
    The number of absurd boxes left out before NMS is appended to ``dropped`` (see
    get_network_boxes).

    Returns ``(image_chw, dets)``."""
    im = to_image(image)
    sized = fit_image(im, *network_size(net), uses_letterbox(net.options))
    with np.errstate(all="ignore"):     # overflowing outputs are reported by heads_are_finite
        net.forward(sized[None])
    dets = get_network_boxes(net, im.shape[2], im.shape[1], thresh, hier_thresh, 1,
                             dropped=dropped, map=map)
    if nms > 0:
        network_nms(net, dets, nms)
    return im, dets


def detect_images(net, images, thresh: float = 0.5, nms: float = 0.45,
                  dropped: list | None = None):
    """:func:`detect_image` for several images in one forward pass of the batch: the same
    detections per image (network_boxes_for_nms keeps what NMS keeps, in its order).

    Returns ``(images_chw, dets_per_image)``."""
    ims = [to_image(image) for image in images]
    if not ims:
        return [], []
    net_w, net_h = network_size(net)
    letterboxed = uses_letterbox(net.options)
    with np.errstate(all="ignore"):
        net.forward(np.stack([fit_image(im, net_w, net_h, letterboxed) for im in ims]))
    per_image = network_boxes_for_nms(net, [(im.shape[2], im.shape[1]) for im in ims],
                                      max(thresh, 0.0), 1, dropped)
    if nms > 0:
        for dets in per_image:
            network_nms(net, dets, nms)
    return ims, per_image


def heads_are_finite(net) -> bool:
    """Whether the detection layers' last outputs are all finite numbers (untrained or broken
    weights overflow to inf and NaN, as in Darknet)."""
    return all(bool(np.isfinite(to_numpy(layer.output)).all()) for layer in net.layers
               if layer.type in HEADS and layer.output is not None)


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
            lines.append("%s: %.0f%%%s" % (class_name(names, int(j)),
                                           float(prob[j] * F32(100)), box))
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
            obj = {"class_id": int(j), "name": class_name(names, int(j)),
                   "confidence": float(prob[j]),
                   "relative_coordinates": {k: _json_number(v) for k, v in (
                       ("center_x", x), ("center_y", y), ("width", w), ("height", h))}}
            if img_w is not None and img_h is not None:
                pixel = zip(("left", "top", "width", "height"), d.pixel_box(img_w, img_h))
                obj["pixel_box"] = {k: _json_number(v) for k, v in pixel}
            out.append(obj)
    return out
