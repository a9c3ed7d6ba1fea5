"""THE REFERENCE: the [yolo] and [region] training losses as darknet_py computed them with Python
loops (per image, per truth, per anchor), kept verbatim for the tests only.

A literal copy of ``YoloLayer._loss``, ``RegionLayer._loss`` and their helpers
(``_DetectionHead._pred_boxes``, ``_box_delta``, ``_truth_rows``, ``YoloLayer._thresh_score``,
``_class_weight``, ``_class_delta``) and of ``darknet_py.box``'s ``score`` and
``score_gradient`` (libm's atan and pow, float64), made into plain functions of the layer.  The
vectorised loss in ``darknet_py.nn.layers.yololoss`` must equal it (tests/test_yolo_loss.py).
Each function returns (delta, cost, stats) instead of setting them on the layer.
"""

import math

import numpy as np

# ------------------------------------------------------------------------------------------------
# darknet_py.box's score and score_gradient (libm's atan and pow)
# ------------------------------------------------------------------------------------------------

_FOUR_PI2, _EIGHT_PI2 = 4 / math.pi ** 2, 8 / math.pi ** 2
_atan = np.vectorize(math.atan, otypes=[np.float64])


def _sq(v):
    return np.float_power(v, 2)


def _floats(a, b, dtype=None):
    dt = np.dtype(dtype or np.result_type(*a, *b))
    if not np.issubdtype(dt, np.floating):
        dt = np.dtype(np.float64)
    a, b = (tuple(np.asarray(v, dt) for v in box) for box in (a, b))
    return a, b, dt.type


def _edges(box, two):
    x, y, w, h = box
    return x - w / two, x + w / two, y - h / two, y + h / two


def _intersection(a, b, f):
    al, ar, at, ab = _edges(a, f(2))
    bl, br, bt, bb = _edges(b, f(2))
    ow = np.where(ar < br, ar, br) - np.where(al > bl, al, bl)
    oh = np.where(ab < bb, ab, bb) - np.where(at > bt, at, bt)
    inter = np.where((ow < 0) | (oh < 0), f(0), ow * oh)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return ow, oh, inter, union


def _enclosing(a, b, f):
    al, ar, at, ab = _edges(a, f(2))
    bl, br, bt, bb = _edges(b, f(2))
    return np.maximum(ar, br) - np.minimum(al, bl), np.maximum(ab, bb) - np.minimum(at, bt)


def _ratio(num, den, f, fallback=0):
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, f(1)), fallback)


def score(p, t, kind):
    p, t, f = _floats(p, t, np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        _, _, inter, union = _intersection(p, t, f)
        iou_ = _ratio(inter, union, f)
        if kind == "iou":
            return iou_[()]
        cw, ch = _enclosing(p, t, f)
        if kind == "giou":
            c = cw * ch
            return (iou_ - _ratio(c - union, c, f))[()]
        dx, dy = p[0] - t[0], p[1] - t[1]
        d = _ratio(_sq(dx) + _sq(dy), cw * cw + ch * ch, f)
        if kind == "diou":
            return (iou_ - d)[()]
        diff = _atan(t[2] / t[3]) - _atan(p[2] / p[3])
        v = _FOUR_PI2 * _sq(diff)
        return (iou_ - d - _ratio(v, 1 - iou_ + v, f) * v)[()]


def score_gradient(p, t, kind):
    p, t, f = _floats(p, t, np.float64)
    x, y, w, h = p
    zero = f(0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        l, r, top, bot = _edges(p, f(2))
        tl, tr, tt, tb = _edges(t, f(2))
        iw, ih, inter, union = _intersection(p, t, f)
        overlap = (iw > 0) & (ih > 0)
        dI = [np.where(overlap & (l > tl), -ih, zero), np.where(overlap & (r < tr), ih, zero),
              np.where(overlap & (top > tt), -iw, zero), np.where(overlap & (bot < tb), iw, zero)]
        dU = [a - i for a, i in zip((-h, h, -w, w), dI)]
        iou_ = _ratio(inter, union, f)
        u2 = np.where(union > 0, _sq(union), zero)
        g = [_ratio(di * union - inter * du, u2, f) for di, du in zip(dI, dU)]
        gx = gy = gw = gh = zero
        if kind in ("giou", "diou", "ciou"):
            cw, ch = _enclosing(p, t, f)
            dcw = [np.where(l < tl, f(-1), zero), np.where(r > tr, f(1), zero), zero, zero]
            dch = [zero, zero, np.where(top < tt, f(-1), zero), np.where(bot > tb, f(1), zero)]
            if kind == "giou":
                c = cw * ch
                c_2 = np.where(c > 0, _sq(c), zero)
                dC = [a * ch + b * cw for a, b in zip(dcw, dch)]
                g = [gi + _ratio(du * c - union * dc, c_2, f) for gi, du, dc in zip(g, dU, dC)]
            else:
                c2 = cw * cw + ch * ch
                rho2 = _sq(x - t[0]) + _sq(y - t[1])
                dc2 = [2 * cw * a + 2 * ch * b for a, b in zip(dcw, dch)]
                g = [gi + _ratio(rho2 * dc, _sq(c2), f) for gi, dc in zip(g, dc2)]
                gx = gx - _ratio(2 * (x - t[0]), c2, f)
                gy = gy - _ratio(2 * (y - t[1]), c2, f)
            if kind == "ciou":
                diff = _atan(t[2] / t[3]) - _atan(w / h)
                v = _FOUR_PI2 * _sq(diff)
                alpha = _ratio(v, 1 - iou_ + v, f)
                k = _EIGHT_PI2 * diff / (w * w + h * h)
                gw = gw + alpha * k * h
                gh = gh - alpha * k * w
        return tuple(np.asarray(v, f)[()] for v in (gx + (g[0] + g[1]), gy + (g[2] + g[3]),
                                                     gw + (g[1] - g[0]) / 2,
                                                     gh + (g[3] - g[2]) / 2))


# ------------------------------------------------------------------------------------------------
# _DetectionHead's helpers
# ------------------------------------------------------------------------------------------------

def _new_stats():
    return dict(iou=0.0, cls=0.0, obj=0.0, anyobj=0.0, recall=0, recall75=0, count=0)


def anchor_units(layer):
    return (layer.net_w, layer.net_h) if layer.type == "yolo" else (layer.w, layer.h)


def _truth_rows(rows):
    ends = np.nonzero(rows[:, 0] == 0)[0]
    return rows[:ends[0]] if ends.size else rows


def _new_coords(layer):
    return getattr(layer, "new_coords", False)


def _pred_boxes(layer, o, anchors):
    jj, ii = np.meshgrid(np.arange(layer.h), np.arange(layer.w), indexing="ij")
    uw, uh = anchor_units(layer)
    if _new_coords(layer):
        # ab:src/yolo_layer.c get_yolo_box, new_coords: b.w = x*x*4*biases[2n]/w
        return ((ii + o[:, 0]) / layer.w, (jj + o[:, 1]) / layer.h,
                o[:, 2] * o[:, 2] * 4 * anchors[:, 0, None, None] / uw,
                o[:, 3] * o[:, 3] * 4 * anchors[:, 1, None, None] / uh)
    return ((ii + o[:, 0]) / layer.w, (jj + o[:, 1]) / layer.h,
            np.exp(o[:, 2]) * anchors[:, 0, None, None] / uw,
            np.exp(o[:, 3]) * anchors[:, 1, None, None] / uh)


def _box_delta(layer, t, o, d, anchor, a, j, i, scale, weight=1.0):
    uw, uh = anchor_units(layer)
    aw, ah = layer.anchors[2 * anchor], layer.anchors[2 * anchor + 1]
    px, py = (i + o[a, 0, j, i]) / layer.w, (j + o[a, 1, j, i]) / layer.h
    new = _new_coords(layer)
    if new:
        ow, oh = o[a, 2, j, i], o[a, 3, j, i]
        pw, ph = ow * ow * 4 * aw / uw, oh * oh * 4 * ah / uh
        dpw, dph = 8 * ow * aw / uw, 8 * oh * ah / uh          # d pw / d ow, d ph / d oh
    else:
        pw = math.exp(o[a, 2, j, i]) * aw / uw
        ph = math.exp(o[a, 3, j, i]) * ah / uh
        dpw, dph = pw, ph
    iou = float(score((px, py, pw, ph), tuple(t[:4]), "iou"))
    kind = layer.iou_loss
    if kind != "mse":
        gx, gy, gw, gh = score_gradient((px, py, pw, ph), tuple(t[:4]), kind)
        n = layer.iou_normalizer * weight
        deltas = (n * gx / layer.w, n * gy / layer.h, 0.0 if dpw == 0 else n * gw * dpw,
                  0.0 if dph == 0 else n * gh * dph)
        limit = layer.max_delta
        if limit != math.inf:
            deltas = tuple(min(max(v if math.isfinite(v) else 0.0, -limit), limit)
                           for v in deltas)
        d[a, 0, j, i], d[a, 1, j, i], d[a, 2, j, i], d[a, 3, j, i] = deltas
        return iou
    if new:     # ab delta_yolo_box, new_coords: tw = sqrt(truth.w*w / (4*biases[2n]))
        target = (t[0] * layer.w - i, t[1] * layer.h - j, math.sqrt(t[2] * uw / (4 * aw)),
                  math.sqrt(t[3] * uh / (4 * ah)))
    else:
        target = (t[0] * layer.w - i, t[1] * layer.h - j, math.log(t[2] * uw / aw),
                  math.log(t[3] * uh / ah))
    for k in range(4):
        d[a, k, j, i] = scale * (target[k] - o[a, k, j, i])
    return iou


# ------------------------------------------------------------------------------------------------
# [yolo]
# ------------------------------------------------------------------------------------------------

def yolo_loss(layer, output, truth):
    """(delta, cost, stats) of YoloLayer._loss."""
    B = output.shape[0]
    n, hh, ww, nc = layer.n, layer.h, layer.w, layer.classes
    out = output.reshape(B, n, 5 + nc, hh, ww).astype(np.float64)
    delta = np.zeros_like(out)
    anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)
    mask = np.asarray(layer.mask)
    truth = truth.reshape(B, -1, 5).astype(np.float64)
    stats = _new_stats()
    for b in range(B):
        rows = _truth_rows(truth[b])
        o = out[b]
        px, py, pw, ph = _pred_boxes(layer, o, anchors[mask])
        stats["anyobj"] += o[:, 4].sum()
        delta[b, :, 4] = layer.obj_normalizer * (0 - o[:, 4])     # ab process_batch
        if len(rows):
            ious = score((px[..., None], py[..., None], pw[..., None], ph[..., None]),
                         tuple(rows[:, :4].T), "iou")
            best = ious.max(axis=-1)
            best_t = ious.argmax(axis=-1)
            delta[b, :, 4][best > layer.ignore_thresh] = 0
            for a, j, i in zip(*np.nonzero(best > layer.truth_thresh)):
                t = rows[best_t[a, j, i]]
                m = _class_weight(layer, int(t[4]))
                delta[b, a, 4, j, i] = layer.obj_normalizer * (1 - o[a, 4, j, i])
                _class_delta(o, delta[b], a, j, i, int(t[4]), None,
                             smooth=layer.label_smooth_eps, focal=layer.focal_loss, weight=m)
                _box_delta(layer, t, o, delta[b], mask[a], a, j, i, (2 - t[2] * t[3]) * m, m)
        for t in rows:
            i, j = int(t[0] * ww), int(t[1] * hh)
            shape_iou = score((0, 0, anchors[:, 0] / layer.net_w, anchors[:, 1] / layer.net_h),
                              (0, 0, t[2], t[3]), "iou")
            best_n = int(np.argmax(shape_iou)) if shape_iou.max() > 0 else 0
            chosen = [best_n] + [k for k in range(len(anchors)) if k != best_n
                                 and _thresh_score(layer, shape_iou[k], anchors[k], t)
                                 > layer.iou_thresh]
            for anchor in chosen:
                hits = np.nonzero(mask == anchor)[0]
                if not hits.size:
                    continue
                a = int(hits[0])
                m = _class_weight(layer, int(t[4]))
                iou = _box_delta(layer, t, o, delta[b], anchor, a, j, i,
                                 (2 - t[2] * t[3]) * layer.iou_normalizer * m, m)

                stats["obj"] += o[a, 4, j, i]
                delta[b, a, 4, j, i] = m * layer.obj_normalizer * (1 - o[a, 4, j, i])
                stats["cls"] += _class_delta(o, delta[b], a, j, i, int(t[4]), True,
                                             layer.cls_normalizer,
                                             layer.label_smooth_eps, layer.focal_loss,
                                             m)
                stats["count"] += 1
                stats["iou"] += iou
                stats["recall"] += iou > .5
                stats["recall75"] += iou > .75
    cost = float((delta * delta).sum())
    stats["cells"] = B * n * hh * ww
    return delta.reshape(output.shape).astype(output.dtype), cost, stats


def _thresh_score(layer, iou, anchor, t):
    kind = layer.iou_thresh_kind
    if kind not in ("giou", "ciou") or iou <= 0:
        return iou
    return score((0.0, 0.0, anchor[0] / layer.net_w, anchor[1] / layer.net_h),
                 (0.0, 0.0, float(t[2]), float(t[3])), kind)


def _class_weight(layer, cls):
    m = layer.class_multipliers
    return 1.0 if m is None or not 0 <= cls < len(m) else float(m[cls])


def _class_delta(o, d, a, j, i, cls, count, scale=1.0, smooth=0.0, focal=False, weight=1.0):
    hit, miss = 1 - smooth + 0.5 * smooth, 0.5 * smooth
    if d[a, 5, j, i]:
        d[a, 5 + cls, j, i] = scale * (hit - o[a, 5 + cls, j, i]) * weight
        return o[a, 5 + cls, j, i]
    if focal:
        pt = float(np.float32(o[a, 5 + cls, j, i]) + np.float32(1e-15))
        grad = -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
        d[a, 5:, j, i] = scale * (0 - o[a, 5:, j, i]) * 0.5 * grad
        d[a, 5 + cls, j, i] = scale * (1 - o[a, 5 + cls, j, i]) * 0.5 * grad
        return o[a, 5 + cls, j, i]
    d[a, 5:, j, i] = scale * (miss - o[a, 5:, j, i])
    d[a, 5 + cls, j, i] = scale * (hit - o[a, 5 + cls, j, i]) * weight
    return o[a, 5 + cls, j, i]


# ------------------------------------------------------------------------------------------------
# [region]
# ------------------------------------------------------------------------------------------------

def region_loss(layer, output, truth, seen):
    """(delta, cost, stats) of RegionLayer._loss."""
    B = output.shape[0]
    n, hh, ww, nc, c = layer.n, layer.h, layer.w, layer.classes, layer.coords
    out = output.reshape(B, n, c + 1 + nc, hh, ww).astype(np.float64)
    delta = np.zeros_like(out)
    anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)
    truth = truth.reshape(B, -1, c + 1).astype(np.float64)[:, :30]
    jj, ii = np.meshgrid(np.arange(hh), np.arange(ww), indexing="ij")
    stats = _new_stats()
    for b in range(B):
        rows = _truth_rows(truth[b])
        o = out[b]
        px, py, pw, ph = _pred_boxes(layer, o, anchors)
        stats["anyobj"] += o[:, c].sum()
        delta[b, :, c] = layer.noobject_scale * ((1 if layer.background else 0) - o[:, c])
        if len(rows):
            best = score((px[..., None], py[..., None], pw[..., None], ph[..., None]),
                         tuple(rows[:, :4].T), "iou").max(axis=-1)
            delta[b, :, c][best > layer.thresh] = 0
        if seen < 12800:
            for a in range(n):
                t = ((ii + .5) / ww, (jj + .5) / hh, anchors[a, 0] / ww, anchors[a, 1] / hh)
                target = (t[0] * ww - ii, t[1] * hh - jj, np.zeros_like(px[a]),
                          np.zeros_like(px[a]))
                for k in range(4):
                    delta[b, a, k] = .01 * (target[k] - o[a, k])
        for t in rows:
            i, j = int(t[0] * ww), int(t[1] * hh)
            if layer.bias_match:
                sw, sh = anchors[:, 0] / ww, anchors[:, 1] / hh
            else:
                sw = np.exp(o[:, 2, j, i]) * anchors[:, 0] / ww
                sh = np.exp(o[:, 3, j, i]) * anchors[:, 1] / hh
            shape_iou = score((0, 0, sw, sh), (0, 0, t[2], t[3]), "iou")
            a = int(np.argmax(shape_iou)) if shape_iou.max() > 0 else 0
            iou = _box_delta(layer, t, o, delta[b], a, a, j, i,
                             layer.coord_scale * (2 - t[2] * t[3]))
            stats["recall"] += iou > .5
            stats["recall75"] += iou > .75
            stats["iou"] += iou
            stats["obj"] += o[a, c, j, i]
            target = 0 if layer.background else (iou if layer.rescore else 1)
            delta[b, a, c, j, i] = layer.object_scale * (target - o[a, c, j, i])
            cls = int(t[4])
            first = c + 1
            if delta[b, a, first, j, i] and not layer.softmax:
                delta[b, a, first + cls, j, i] = layer.class_scale * (
                    1 - o[a, first + cls, j, i])
            else:
                delta[b, a, first:, j, i] = -layer.class_scale * o[a, first:, j, i]
                delta[b, a, first + cls, j, i] += layer.class_scale
                stats["cls"] += o[a, first + cls, j, i]
            stats["count"] += 1
    cost = float((delta * delta).sum())
    stats["cells"] = B * n * hh * ww
    return delta.reshape(output.shape).astype(output.dtype), cost, stats
