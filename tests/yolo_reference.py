"""THE REFERENCE: the [yolo] and [region] training losses as darknet_py computed them with Python
loops (per image, per truth, per anchor), kept verbatim for the tests only.

A literal copy of ``YoloLayer._loss``, ``RegionLayer._loss`` and their helpers
(``_DetectionHead._pred_boxes``, ``_box_delta``, ``_truth_rows``, ``YoloLayer._thresh_score``,
``_class_weight``, ``_class_delta``) and of ``darknet_py.box``'s ``score`` (libm's atan and pow,
float64), made into plain functions of the layer.  The iou_loss box deltas are AlexeyAB's:
``dx_box_iou`` and ``_ab_iou_delta`` transcribe AB:src/box.c dx_box_iou and
AB:src/yolo_layer.c delta_yolo_box line by line on float32 scalars (checked against AB's C in
tests/test_ab_box_oracle.py).  The vectorised loss in ``darknet_py.nn.layers.yololoss`` must
equal it (tests/test_yolo_loss.py).  Each function returns (delta, cost, stats) instead of
setting them on the layer.
"""

import math

import numpy as np

# ------------------------------------------------------------------------------------------------
# darknet_py.box's score (libm's atan and pow); AlexeyAB's dx_box_iou
# ------------------------------------------------------------------------------------------------

_FOUR_PI2 = 4 / math.pi ** 2
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


_F = np.float32


def dx_box_iou(pred, truth, kind):
    """AB:src/box.c dx_box_iou of one box pair, line by line as AlexeyAB's C on float32 scalars
    (libm's atan and exp in double where AB calls them)."""
    F = _F
    px, py, pw, ph = (F(v) for v in pred)
    tx, ty, tw, th = (F(v) for v in truth)
    two = F(2)
    with np.errstate(all="ignore"):
        top, bot, left, right = py - ph / two, py + ph / two, px - pw / two, px + pw / two
        pred_t, pred_b = F(min(top, bot)), F(max(top, bot))
        pred_l, pred_r = F(min(left, right)), F(max(left, right))
        t_top, t_bot, t_left, t_right = ty - th / two, ty + th / two, tx - tw / two, tx + tw / two
        X = (pred_b - pred_t) * (pred_r - pred_l)
        Xhat = (t_bot - t_top) * (t_right - t_left)
        Ih = F(min(pred_b, t_bot)) - F(max(pred_t, t_top))
        Iw = F(min(pred_r, t_right)) - F(max(pred_l, t_left))
        I = Iw * Ih
        U = X + Xhat - I
        S = (px - tx) * (px - tx) + (py - ty) * (py - ty)
        giou_Cw = F(max(pred_r, t_right)) - F(min(pred_l, t_left))
        giou_Ch = F(max(pred_b, t_bot)) - F(min(pred_t, t_top))
        giou_C = giou_Cw * giou_Ch
        dX = {"t": -(pred_r - pred_l), "b": pred_r - pred_l, "l": -(pred_b - pred_t),
              "r": pred_b - pred_t}
        dI = {"t": -Iw if pred_t > t_top else F(0), "b": Iw if pred_b < t_bot else F(0),
              "l": -Ih if pred_l > t_left else F(0), "r": Ih if pred_r < t_right else F(0)}
        dU = {k: dX[k] - dI[k] for k in "tblr"}
        dC = {"t": -giou_Cw if pred_t < t_top else F(0),
              "b": giou_Cw if pred_b > t_bot else F(0),
              "l": -giou_Ch if pred_l < t_left else F(0),
              "r": giou_Ch if pred_r > t_right else F(0)}
        g = {k: F(0) for k in "tblr"}
        if U > 0:
            g = {k: ((U * dI[k]) - (I * dU[k])) / (U * U) for k in "tblr"}
        g["t"] = g["t"] if top < bot else g["b"]
        g["b"] = g["b"] if top < bot else g["t"]
        g["l"] = g["l"] if left < right else g["r"]
        g["r"] = g["r"] if left < right else g["l"]
        if kind == "giou":
            if giou_C > 0:
                g = {k: g[k] + ((giou_C * dU[k]) - (U * dC[k])) / (giou_C * giou_C)
                     for k in "tblr"}
            if Iw <= 0 or Ih <= 0:
                g = {k: ((giou_C * dU[k]) - (U * dC[k])) / (giou_C * giou_C) for k in "tblr"}
        Cw = F(max(px + pw / two, tx + tw / two)) - F(min(px - pw / two, tx - tw / two))
        Ch = F(max(py + ph / two, ty + th / two)) - F(min(py - ph / two, ty - th / two))
        C = Cw * Cw + Ch * Ch
        one, half = F(1), F(0.5)
        dCt_dy, dCt_dh = (one, -half) if pred_t < t_top else (F(0), F(0))
        dCb_dy, dCb_dh = (one, half) if pred_b > t_bot else (F(0), F(0))
        dCl_dx, dCl_dw = (one, -half) if pred_l < t_left else (F(0), F(0))
        dCr_dx, dCr_dw = (one, half) if pred_r > t_right else (F(0), F(0))
        dCw = {"x": dCr_dx - dCl_dx, "y": F(0), "w": dCr_dw - dCl_dw, "h": F(0)}
        dCh = {"x": F(0), "y": dCb_dy - dCt_dy, "w": F(0), "h": dCb_dh - dCt_dh}
        d = {"x": g["l"] + g["r"], "y": g["t"] + g["b"], "w": g["r"] - g["l"],
             "h": g["b"] - g["t"]}
        if kind in ("diou", "ciou"):
            extra = {"w": F(0), "h": F(0)}
            if kind == "ciou":
                diff = math.atan(tw / th) - math.atan(pw / ph)
                ar_loss = F(4 / (math.pi * math.pi) * diff * diff)
                alpha = F(float(ar_loss) / (float(one - I / U + ar_loss) + 0.000001))
                extra = {"w": alpha * F(8 / (math.pi * math.pi) * diff * float(ph)),
                         "h": alpha * F(-8 / (math.pi * math.pi) * diff * float(pw))}
            term = {"x": (two * (tx - px) * C - (two * Cw * dCw["x"] + two * Ch * dCh["x"]) * S)
                    / (C * C),
                    "y": (two * (ty - py) * C - (two * Cw * dCw["y"] + two * Ch * dCh["y"]) * S)
                    / (C * C)}
            for k in "wh":
                term[k] = (two * Cw * dCw[k] + two * Ch * dCh[k]) * S / (C * C)
                if kind == "ciou":
                    term[k] = term[k] + extra[k]
            if C > 0:
                d = {k: d[k] + term[k] for k in "xywh"}
            if Iw <= 0 or Ih <= 0:
                d = dict(term)
        return tuple(F(d[k]) for k in "xywh")


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


def _ab_iou_delta(layer, t, x, aw, ah, i, j, weight):
    """AB:src/yolo_layer.c delta_yolo_box's iou_loss branch (with get_yolo_box) for one cell's
    outputs x = (x, y, w, h), as AB's C: float32, exp in double."""
    F = _F
    uw, uh = anchor_units(layer)
    x = [F(v) for v in x]
    bx, by = (F(i) + x[0]) / F(layer.w), (F(j) + x[1]) / F(layer.h)
    if _new_coords(layer):
        bw = x[2] * x[2] * F(4) * F(aw) / F(uw)
        bh = x[3] * x[3] * F(4) * F(ah) / F(uh)
    else:
        bw = F(math.exp(float(x[2])) * float(F(aw)) / uw)
        bh = F(math.exp(float(x[3])) * float(F(ah)) / uh)
    bw, bh = (F(1) if v == 0 else v for v in (bw, bh))     # "avoid nan in dx_box_iou"
    dx, dy, dw, dh = dx_box_iou((bx, by, bw, bh), t[:4], layer.iou_loss)
    if not _new_coords(layer):
        dw = F(float(dw) * math.exp(float(x[2])))
        dh = F(float(dh) * math.exp(float(x[3])))
    norm = F(layer.iou_normalizer) * F(weight)
    out = []
    with np.errstate(all="ignore"):
        for v in (dx * norm, dy * norm, dw * norm, dh * norm):
            v = F(0) if not math.isfinite(v) else v                 # fix_nan_inf
            if layer.max_delta != math.inf:                         # clip_value
                top = F(layer.max_delta)
                v = top if v > top else (-top if v < -top else v)
            out.append(v)
    return out


def _box_delta(layer, t, o, d, anchor, a, j, i, scale, weight=1.0):
    uw, uh = anchor_units(layer)
    aw, ah = layer.anchors[2 * anchor], layer.anchors[2 * anchor + 1]
    px, py = (i + o[a, 0, j, i]) / layer.w, (j + o[a, 1, j, i]) / layer.h
    new = _new_coords(layer)
    if new:
        ow, oh = o[a, 2, j, i], o[a, 3, j, i]
        pw, ph = ow * ow * 4 * aw / uw, oh * oh * 4 * ah / uh
    else:
        pw = math.exp(o[a, 2, j, i]) * aw / uw
        ph = math.exp(o[a, 3, j, i]) * ah / uh
    iou = float(score((px, py, pw, ph), tuple(t[:4]), "iou"))
    kind = layer.iou_loss
    if kind != "mse":
        d[a, 0, j, i], d[a, 1, j, i], d[a, 2, j, i], d[a, 3, j, i] = _ab_iou_delta(
            layer, t, o[a, :4, j, i], aw, ah, i, j, weight)
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
            if layer.objectness_smooth:
                # ab forward_yolo_layer: best_match_iou counts where compare_yolo_class finds
                # some class above 0.25; then delta = max(delta, obj_norm (match - obj))
                for a, j, i in np.ndindex(*best.shape):
                    if (o[a, 5:, j, i] > 0.25).any() and best[a, j, i] > layer.ignore_thresh:
                        smooth = layer.obj_normalizer * (best[a, j, i] - o[a, 4, j, i])
                        if smooth > delta[b, a, 4, j, i]:
                            delta[b, a, 4, j, i] = smooth
            else:
                delta[b, :, 4][best > layer.ignore_thresh] = 0
            for a, j, i in zip(*np.nonzero(best > layer.truth_thresh)):
                t = rows[best_t[a, j, i]]
                m = _class_weight(layer, int(t[4]))
                target = best[a, j, i] ** 2 if layer.objectness_smooth else 1
                delta[b, a, 4, j, i] = layer.obj_normalizer * (target - o[a, 4, j, i])
                _class_delta(o, delta[b], a, j, i, int(t[4]), None,
                             smooth=layer.label_smooth_eps, focal=layer.focal_loss, weight=m)
                if layer.objectness_smooth:
                    c = 5 + int(t[4])
                    delta[b, a, c, j, i] = m * (target - o[a, c, j, i])
                _box_delta(layer, t, o, delta[b], mask[a], a, j, i,
                           (2 - t[2] * t[3]) * layer.iou_normalizer * m, m)
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
                if not layer.objectness_smooth or delta[b, a, 4, j, i] == 0:
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
