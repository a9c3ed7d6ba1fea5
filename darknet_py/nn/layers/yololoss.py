"""The ``[yolo]`` and ``[region]`` training losses, vectorised over the batch, the anchor slots
and the truths: one formula for NumPy and CuPy (``xp_of``), in float64, on the outputs' device.
What depends only on the truths and the anchors is planned on the host with NumPy (at most
batch x 90 truths); the plan's indices and values travel to the outputs' device in one copy per
dtype.  The cost and the report statistics come back as one small array (``STATS``), read once
by ``fetch_stats``.

Truth: per image rows (x, y, w, h, class) up to the first with x == 0 ([region]: of the first
30).  The box of anchor slot a at cell (j, i) is ((i + x)/W, (j + y)/H, exp(w) anchor_w / U_w,
exp(h) anchor_h / U_h), U the network's size ([yolo]: anchors in pixels) or the grid ([region]).
A truth is written at cell (int(y H), int(x W)).  With AlexeyAB's ``new_coords=1`` (outputs
already in (0, 1) from the conv's logistic) the box is ((i + x)/W, (j + y)/H, 4 w^2 anchor_w / U_w,
4 h^2 anchor_h / U_h) and the mse targets of w, h are sqrt(t_w U_w / (4 anchor_w)), ... (ab
get_yolo_box, delta_yolo_box).

[yolo] (pj:src/yolo_layer.c forward_yolo_layer, AlexeyAB's options as ab:src/yolo_layer.c):

* objectness obj_normalizer (0 - obj), or 0 where the box's best IoU with a truth of its image
  exceeds ignore_thresh; above truth_thresh the cell gets that truth's deltas (objectness
  obj_normalizer (1 - obj), class scale 1, box as a truth's write below) -- obj_normalizer and
  iou_normalizer as AlexeyAB's process_batch (pj has neither: 1);
* each truth takes the best of ALL anchors by the IoU of centred shapes, and every other anchor
  whose iou_thresh_kind score exceeds iou_thresh; those in the mask get, at their first slot:
  box (mse) (2 - w h) iou_normalizer m (target - o), target (x W - i, y H - j,
  log(w U_w / anchor_w), log(h U_h / anchor_h)); with iou_loss iou/giou/diou/ciou instead
  AlexeyAB's delta_yolo_box deltas in float32 (``_iou_box_delta``: ``darknet_py.box.dx_box_iou``
  of the box, w/h terms times exp(o_w), exp(o_h) -- new_coords: not scaled --, times
  iou_normalizer m, NaN and inf -> 0, clipped to +-max_delta when set), not the gradient of the
  score; objectness m obj_normalizer (1 - obj); classes
  cls_normalizer (y - p), y = 1 - eps/2 for the truth's class (times m) and eps/2 for the others
  (label_smooth_eps), or with focal_loss cls_normalizer (y - p) 0.5 grad, y in {0, 1},
  grad = -(1 - pt)(2 pt log pt + pt - 1), pt the truth class's p;  m = the largest
  counters_per_class count / the class's count, at most max_delta (1 without counters).

[region] (pj:src/region_layer.c forward_region_layer):

* objectness noobject_scale (background - obj), or 0 where the best IoU exceeds thresh; while
  seen < 12800 images every box delta is .01 (the anchor at the cell's centre - o);
* each truth takes the anchor whose shape (bias_match: the anchor, else the cell's predicted
  shape) has the best IoU with its own: box coord_scale (2 - w h) (target - o); objectness
  object_scale (y - obj), y = 0 with background, the box's IoU with rescore, else 1; classes
  class_scale ([c == class] - p), c through ``map=`` when the layer has one;
* with ``tree=`` (YOLO9000) the classes' deltas and pj's class-only images are regiontree.py's.

cost = the sum of the squared deltas.  Darknet writes the truths one after another, and the
loss keeps that order: an op is one truth's write at one cell; the op of rank r in its cell
(r earlier ops there) goes to round r, and round after round writes its ops, each to a cell of
its own.  So the later truth of a cell wins the box and objectness, and pj's class rule --
delta_yolo_class / delta_region_class write every class unless the cell's class-0 delta is
already nonzero (``if (delta[index])``; [region]: and no softmax), and then only the truth's
class -- reads the deltas the earlier rounds left.  Round 0 of a cell no earlier write touched
writes every class.  Where the device picks the slot ([region] without bias_match) the rounds
go by the image's cell.  The IoU of an op's box with its truth is read from the ignore mask's
IoU matrix (the same numbers).
"""

import math

import numpy as np

from ...box import dx_box_iou, score
from ..backend import to_numpy, xp_of
from ..kernels import box_ignore
from .regiontree import class_only, class_only_images, hier_writes, write_plan

#: the order of the statistics array the losses return
STATS = ("cost", "iou", "cls", "obj", "anyobj", "recall", "recall75", "count")
_BLOCK = 1 << 22        # predictions x truths of one batched IoU block


class _Grid:
    """A head's output as float64 ``o`` (B, n, C, H, W), its deltas ``d`` (zeros, the same
    shape) and both flat, for gathers and scatters at host-computed places."""

    def __init__(self, output, n, planes, h, w):
        self.xp = xp = xp_of(output)
        self.batch, self.n, self.planes, self.h, self.w = output.shape[0], n, planes, h, w
        self.o = output.reshape(self.batch, n, planes, h, w).astype(xp.float64)
        self.d = xp.zeros_like(self.o)
        self.o_flat, self.d_flat = self.o.reshape(-1), self.d.reshape(-1)

    def place(self, b, a, j, i):
        """The flat index of plane 0 at image b, slot a, cell (j, i) (host arrays)."""
        return ((b * self.n + a) * self.planes * self.h + j) * self.w + i

    def planes_at(self, place):
        """(ops, C) flat indices of every plane at the ops' places."""
        return place[..., None] + np.arange(self.planes) * (self.h * self.w)

    def finish(self, output, iou, p_class, p_obj, count):
        """The deltas in ``output``'s shape and dtype, and the STATS array of the ops' IoU,
        class and objectness probabilities (``count``: a device array of one value)."""
        xp = self.xp
        sums = xp.stack((iou, p_class, p_obj, iou > .5, iou > .75)).sum(axis=1)
        stats = xp.concatenate(((self.d * self.d).sum()[None], sums[:3],
                                self.o[:, :, 4].sum()[None], sums[3:], count))
        return self.d.reshape(output.shape).astype(output.dtype), stats


def _upload(xp, arrays):
    """The host arrays on ``xp``'s device: one copy of the int64 ones, one of the float64
    ones, each a view of its copy."""
    out = {}
    for dtype in (np.int64, np.float64):
        names = [k for k, v in arrays.items() if v.dtype == dtype]
        sizes = np.cumsum([0] + [arrays[k].size for k in names])
        flat = xp.asarray(np.concatenate([arrays[k].ravel() for k in names] +
                                         [np.zeros(0, dtype)]))
        out.update({k: flat[sizes[q]:sizes[q + 1]].reshape(arrays[k].shape)
                    for q, k in enumerate(names)})
    return out


def _host_truths(truth, batch, limit=None):
    """The truth table (B, K, 5) as host float64 and its live rows (before the first x == 0),
    K the longest image's live count (at least 1).  A table on the device is fetched here, once
    per loss: it is small (at most 90 rows an image), and the plan needs it on the host."""
    t = to_numpy(truth).reshape(batch, -1, 5)[:, :limit].astype(np.float64)
    live = np.cumsum(t[..., 0] == 0, axis=1) == 0
    keep = max(int(live.sum(axis=1).max(initial=0)), 1)
    return t[:, :keep], live[:, :keep]


def _rounds(key):
    """The order that puts each op (given in pj's order) into round r, r the number of earlier
    ops with its ``key``, and the rounds' bounds in that order."""
    by_key = np.argsort(key, kind="stable")
    ordered = key[by_key]
    starts = np.ones(key.size, bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    rank = np.empty(key.size, np.int64)
    rank[by_key] = np.arange(key.size) - np.maximum.accumulate(
        np.where(starts, np.arange(key.size), 0))
    order = np.argsort(rank, kind="stable")
    return order, np.searchsorted(rank[order], np.arange(rank.max(initial=-1) + 2))


def _cell_of(t, w, h):
    """pj's (int)(x * w), (int)(y * h), kept inside the grid."""
    xp = xp_of(t)
    return tuple(xp.clip(xp.trunc(t[..., k] * size), 0, size - 1).astype(xp.int64)
                 for k, size in ((1, h), (0, w)))


def _classes(t, n):
    """The truths' int(class), kept in [0, n)."""
    xp = xp_of(t)
    return xp.clip(xp.trunc(t[..., 4]), 0, max(n - 1, 0)).astype(xp.int64)


def _pred(o, i, j, aw, ah, w, h, units, new_coords=False):
    """Image-relative boxes of raw outputs o = (x, y, w, h) at cell (j, i), anchor (aw, ah);
    AlexeyAB's ``new_coords``: w = 4 o^2 anchor / U (ab get_yolo_box)."""
    xp = xp_of(o[0])
    if new_coords:
        return ((i + o[0]) / w, (j + o[1]) / h, o[2] * o[2] * 4 * aw / units[0],
                o[3] * o[3] * 4 * ah / units[1])
    return ((i + o[0]) / w, (j + o[1]) / h, xp.exp(o[2]) * aw / units[0],
            xp.exp(o[3]) * ah / units[1])


def _mse_target(t, i, j, aw, ah, w, h, units, new_coords=False):
    """pj delta_yolo_box's targets of truths t (columns) at cell (j, i), anchor (aw, ah);
    ``new_coords``: w's is sqrt(t_w U / (4 anchor)) (ab delta_yolo_box)."""
    xp = xp_of(t[0])
    if new_coords:
        return (t[0] * w - i, t[1] * h - j, xp.sqrt(t[2] * units[0] / (4 * aw)),
                xp.sqrt(t[3] * units[1] / (4 * ah)))
    return (t[0] * w - i, t[1] * h - j, xp.log(t[2] * units[0] / aw),
            xp.log(t[3] * units[1] / ah))


def _ignore(g, dev, units, pos, want_first, b, new_coords=False):
    """Per slot and cell the best IoU of its box with a live truth of its image (-inf without
    one), the first truth with it (``want_first``), and the IoUs at the flat places ``pos`` of
    the (B, n*H*W, K) matrix, the ops' IoUs with their truths (``b``: the ops' images, host).
    NumPy builds the matrix in blocks of images (``_blocks``)."""
    xp = g.xp
    if xp is not np:        # one kernel instead of the (slots x truths) matrix's ~30 launches
        return box_ignore(g.o, dev["truth"], dev["nlive"], dev["anchors"], units, pos,
                          want_first, new_coords)
    o, t = g.o, dev["truth"]
    blocks, by_image = _blocks(g, b, t.shape[1])
    # 0 for a live truth, -inf for the rows after its image's end marker
    bias = np.where(np.arange(t.shape[1]) < dev["nlive"][:, None], 0.0, -np.inf)[:, None]
    pred = _pred([o[:, :, k] for k in range(4)], dev["gi"], dev["gj"][:, None],
                 dev["anchors"][:, 0, None, None], dev["anchors"][:, 1, None, None],
                 g.w, g.h, units, new_coords)
    cols = [p.reshape(g.batch, -1, 1) for p in pred]
    size = cols[0].shape[1] * t.shape[1]
    best, first, iou_op = [], [], xp.empty(pos.shape) if len(blocks) > 1 else None
    for s, e, ops in blocks:
        iou = score([c[s:e] for c in cols], [t[s:e, None, :, k] for k in range(4)],
                    "iou") + bias[s:e]
        best.append(iou.max(axis=-1))
        if want_first:
            first.append(iou.argmax(axis=-1))
        if iou_op is None:
            iou_op = iou.reshape(-1)[pos]
        else:
            sel = by_image[ops]
            iou_op[sel] = iou.reshape(-1)[pos[sel] - s * size]
    shape = pred[0].shape
    return (xp.concatenate(best).reshape(shape),
            xp.concatenate(first).reshape(shape) if want_first else None, iou_op)


def _blocks(g, b, k):
    """The ignore mask's blocks of images (first, end, and the slice of the ops sorted by
    image that they hold) and that order of the ops (image b, in round order): a block's IoU
    matrix holds at most _BLOCK predictions x truths (``k`` an image)."""
    step = max(1, _BLOCK // (g.n * g.h * g.w * k))
    by_image = np.argsort(b, kind="stable")
    starts = list(range(0, g.batch, step))
    bounds = np.searchsorted(b[by_image], [*starts, g.batch])
    return [(s, min(s + step, g.batch), slice(bounds[q], bounds[q + 1]))
            for q, s in enumerate(starts)], by_image


def _ab_pred(o, i, j, aw, ah, w, h, units, new_coords):
    """AB get_yolo_box in float32 as AB's C: x = (i + o) / lw; w = exp(o) anchor / U in double
    rounded to float, or new_coords' o o 4 anchor / U in float (o, i, j, aw, ah float32)."""
    xp, f = xp_of(o[0]), np.float32
    x, y = (i + o[0]) / f(w), (j + o[1]) / f(h)
    if new_coords:
        return x, y, o[2] * o[2] * f(4) * aw / f(units[0]), o[3] * o[3] * f(4) * ah / f(units[1])
    return x, y, *((xp.exp(o[k].astype(xp.float64)) * a.astype(xp.float64) / u).astype(f)
                   for k, a, u in ((2, aw, units[0]), (3, ah, units[1])))


def _iou_box_delta(layer, o, t, i, j, aw, ah, weight, units):
    """AB delta_yolo_box's iou_loss deltas (AB:src/yolo_layer.c), float32 as AB's C: dx_box_iou
    of the box (a zero w or h taken as 1, "avoid nan in dx_box_iou"); dw, dh times exp(o_w),
    exp(o_h) (new_coords: by nothing, AB's 8 o factors are commented out); no 1/lw chain factor
    on dx, dy; times iou_normalizer x the class multiplier; NaN/inf -> 0; clipped to
    +-max_delta when set (AB's order)."""
    xp, f = xp_of(o[0]), np.float32
    new = getattr(layer, "new_coords", False)
    o, t = [v.astype(f) for v in o], [xp.asarray(v).astype(f) for v in t]
    i, j, aw, ah = (xp.asarray(v).astype(f) for v in (i, j, aw, ah))
    with np.errstate(all="ignore"):             # exp overflows: AB's fix_nan_inf below
        x, y, w, h = _ab_pred(o, i, j, aw, ah, layer.w, layer.h, units, new)
        w, h = xp.where(w == 0, f(1), w), xp.where(h == 0, f(1), h)
        d = list(dx_box_iou((x, y, w, h), t, layer.iou_loss))
        if not new:
            d[2], d[3] = ((d[k].astype(xp.float64) * xp.exp(o[k].astype(xp.float64))).astype(f)
                          for k in (2, 3))
        norm = f(layer.iou_normalizer) * xp.asarray(weight).astype(f)
        d = [v * norm for v in d]
    d = [xp.where(xp.isfinite(v), v, f(0)) for v in d]
    if layer.max_delta != math.inf:
        top = f(layer.max_delta)
        d = [xp.clip(v, -top, top) for v in d]
    return tuple(v.astype(xp.float64) for v in d)


def _box_delta(layer, o, t, i, j, aw, ah, scale, weight, units):
    """pj delta_yolo_box / delta_region_box (AlexeyAB's iou_loss, new_coords and max_delta) of
    raw outputs o = (x, y, w, h) at cell (j, i) with anchor (aw, ah) for truths t (columns)."""
    if layer.iou_loss != "mse":
        return _iou_box_delta(layer, o, t, i, j, aw, ah, weight, units)
    target = _mse_target(t, i, j, aw, ah, layer.w, layer.h, units,
                         getattr(layer, "new_coords", False))
    return tuple(scale * (target[k] - o[k]) for k in range(4))


def _yolo_classes(layer, p, hit, p_true, scale, weight):
    """pj delta_yolo_class's every-class write (classes on the last axis of p, ``hit`` the
    truth's class, ``p_true`` its p), with AlexeyAB's label_smooth_eps, counters_per_class
    ``weight`` and focal_loss."""
    xp = xp_of(p)
    if layer.focal_loss:
        # pt = p + 1e-15 in float32, as ab:src/yolo_layer.c delta_yolo_class
        pt = (p_true.astype(xp.float32) + xp.float32(1e-15)).astype(xp.float64)[..., None]
        grad = -(1 - pt) * (2 * pt * xp.log(pt) + pt - 1)
        return xp.where(hit, scale * (1 - p) * 0.5 * grad, scale * (0 - p) * 0.5 * grad)
    eps = layer.label_smooth_eps
    return xp.where(hit, scale * ((1 - eps + 0.5 * eps) - p) * weight[..., None],
                    scale * (0.5 * eps - p))


def _class_weights(multipliers, cls):
    """AlexeyAB's classes_multipliers of the classes (1 without counters_per_class)."""
    xp = xp_of(cls)
    return xp.ones(cls.shape) if multipliers is None else multipliers[cls]


def _truth_thresh(layer, g, dev, best, best_t, units):
    """pj's truth_thresh deltas, written where a box's best IoU exceeds it (before the truths'
    writes, which read the class deltas it leaves)."""
    xp, o, d = g.xp, g.o, g.d
    hit = best > layer.truth_thresh
    tb = dev["truth"][xp.arange(g.batch)[:, None, None, None], best_t]        # (B, n, H, W, 5)
    cls = _classes(tb, layer.classes)
    m = _class_weights(dev.get("multipliers"), cls)
    box = _box_delta(layer, [o[:, :, k] for k in range(4)], [tb[..., k] for k in range(4)],
                     dev["gi"], dev["gj"][:, None], dev["anchors"][:, 0, None, None],
                     dev["anchors"][:, 1, None, None],
                     (2 - tb[..., 2] * tb[..., 3]) * layer.iou_normalizer * m, m, units)
    for k in range(4):
        d[:, :, k] = xp.where(hit, box[k], 0)
    # objectness_smooth: AB's targets are best^2 for the objectness and the truth's class
    target = best * best if layer.objectness_smooth else 1
    d[:, :, 4] = xp.where(hit, layer.obj_normalizer * (target - o[:, :, 4]), d[:, :, 4])
    p = xp.moveaxis(o[:, :, 5:], 2, -1)
    p_true = xp.take_along_axis(p, cls[..., None], axis=-1)[..., 0]
    onehot = xp.arange(layer.classes) == cls[..., None]
    classes = _yolo_classes(layer, p, onehot, p_true, 1.0, m)
    if layer.objectness_smooth:
        classes = xp.where(onehot, (m * (target - p_true))[..., None], classes)
    d[:, :, 5:] = xp.where(hit[:, :, None], xp.moveaxis(classes, -1, 2), 0)


def _write_ops(g, dev, bounds, box_obj, every, single, fresh, always_every, keep_obj=False):
    """Writes the ops' deltas round by round: box and objectness (planes 0-4), then the
    classes by pj's rule (see the module docstring); ``fresh``: no earlier write touched the
    class deltas; ``keep_obj`` (AB's objectness_smooth): the objectness only where its delta
    is still 0.  Returns which ops wrote every class (None: all did)."""
    xp, idx, full = g.xp, dev["idx"], None
    for r in range(len(bounds) - 1):
        s, e = bounds[r], bounds[r + 1]
        if keep_obj:
            now = g.d_flat[idx[s:e, 4]]
            g.d_flat[idx[s:e, :4]] = box_obj[s:e, :4]
            g.d_flat[idx[s:e, 4]] = xp.where(now == 0, box_obj[s:e, 4], now)
        else:
            g.d_flat[idx[s:e, :5]] = box_obj[s:e]
        cells = idx[s:e, 5:]
        if always_every or (fresh and r == 0):      # the class-0 delta is 0 here
            g.d_flat[cells] = every[s:e]
            continue
        now = g.d_flat[cells]
        zero = now[:, :1] == 0
        g.d_flat[cells] = xp.where(zero, every[s:e], xp.where(dev["hit"][s:e],
                                                             single[s:e, None], now))
        if full is None:
            full = xp.ones(idx.shape[0], bool)
        full[s:e] = zero[:, 0]
    return full


def _yolo_plan(layer, g, t, live, anchors):
    """Each truth's ops (pj's order: image, truth, anchor): its best anchor and, with
    iou_thresh, every anchor that passes, at the anchor's first slot in the mask."""
    j, i = _cell_of(t, g.w, g.h)
    shape = (0, 0, anchors[:, 0] / layer.net_w, anchors[:, 1] / layer.net_h)
    truth = (0, 0, t[..., 2, None], t[..., 3, None])
    iou = score(shape, truth, "iou")                                    # (B, K, anchors)
    passes = iou
    if layer.iou_thresh_kind in ("giou", "ciou"):    # diou's centre term is 0 here
        passes = np.where(iou > 0, score(shape, truth, layer.iou_thresh_kind), iou)
    # argmax: the first best anchor, 0 when none overlaps (pj's best_n = 0)
    chosen = (np.arange(len(anchors)) == iou.argmax(axis=-1)[..., None]) | \
        (passes > layer.iou_thresh)
    first = np.asarray([layer.mask.index(a) == s for s, a in enumerate(layer.mask)])
    b, k, a = np.nonzero(live[..., None] & chosen[..., layer.mask] & first)
    j, i = j[b, k], i[b, k]
    place = g.place(b, a, j, i)
    order, bounds = _rounds(place)
    return [v[order] for v in (b, k, a, j, i, place)], bounds


def yolo_loss(layer, output, truth):
    """pj forward_yolo_layer's deltas (negative gradients; ``output``'s shape and dtype) and
    ``STATS`` (float64) of one mini-batch, on ``output``'s device."""
    nc = layer.classes
    g = _Grid(output, layer.n, 5 + nc, layer.h, layer.w)
    xp, o, d = g.xp, g.o, g.d
    anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)
    units = (layer.net_w, layer.net_h)
    t, live = _host_truths(truth, g.batch)
    eps = layer.label_smooth_eps
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        (b, k, a, j, i, place), bounds = _yolo_plan(layer, g, t, live, anchors)
        t_op, anchor = t[b, k], anchors[np.asarray(layer.mask)[a]]
        cls = _classes(t_op, nc)
        multipliers = layer.class_multipliers
        m = _class_weights(None if multipliers is None else
                           np.asarray(multipliers, np.float64), cls)
        thresh = layer.truth_thresh < 1                 # an IoU never exceeds 1
        size = g.n * g.h * g.w * t.shape[1]
        host = dict(
            truth=t, nlive=live.sum(axis=1), gi=np.arange(g.w, dtype=float),
            gj=np.arange(g.h, dtype=float), anchors=anchors[np.asarray(layer.mask)],
            idx=g.planes_at(place),
            pos=b * size + ((a * g.h + j) * g.w + i) * t.shape[1] + k,
            p_at=np.arange(len(b)) * g.planes + 5 + cls, cls=cls, classes=np.arange(nc),
            box_scale=(2 - t_op[:, 2] * t_op[:, 3]) * layer.iou_normalizer * m,
            obj_scale=m * layer.obj_normalizer, m=m, count=np.array([float(len(b))]))
        if layer.iou_loss == "mse":
            host["target"] = np.stack(_mse_target(t_op.T, i, j, anchor[:, 0], anchor[:, 1],
                                                  g.w, g.h, units, layer.new_coords), axis=1)
        else:
            host.update(t_op=t_op[:, :4].T.copy(), i=i.astype(float), j=j.astype(float),
                        aw=anchor[:, 0].copy(), ah=anchor[:, 1].copy())
        if multipliers is not None:
            host["multipliers"] = np.asarray(multipliers, np.float64)
        dev = _upload(xp, host)

        best, best_t, iou = _ignore(g, dev, units, dev["pos"], thresh, b, layer.new_coords)
        no_obj = -layer.obj_normalizer * o[:, :, 4]
        if layer.objectness_smooth:
            # AB: the IoU counts where the cell predicts some class above 0.25
            # (compare_yolo_class), and then is the objectness target if that is more
            match = xp.where((o[:, :, 5:] > 0.25).any(axis=2), best, 0)
            smooth = layer.obj_normalizer * (match - o[:, :, 4])
            d[:, :, 4] = xp.where(match > layer.ignore_thresh, xp.maximum(no_obj, smooth),
                                  no_obj)
        else:
            d[:, :, 4] = xp.where(best > layer.ignore_thresh, 0, no_obj)
        if thresh:
            _truth_thresh(layer, g, dev, best, best_t, units)

        ops = g.o_flat[dev["idx"]]                       # (ops, C): every plane of each op
        if layer.iou_loss == "mse":     # _box_delta's mse, the target from the host
            box = dev["box_scale"][:, None] * (dev["target"] - ops[:, :4])
        else:
            box = xp.stack(_box_delta(layer, [ops[:, q] for q in range(4)], dev["t_op"],
                                      dev["i"], dev["j"], dev["aw"], dev["ah"], None, dev["m"],
                                      units), axis=1)
        box_obj = xp.concatenate((box, (dev["obj_scale"] * (1 - ops[:, 4]))[:, None]), axis=1)
        p_true = ops.reshape(-1)[dev["p_at"]]
        dev["hit"] = dev["classes"] == dev["cls"][:, None]
        every = _yolo_classes(layer, ops[:, 5:], dev["hit"], p_true, layer.cls_normalizer,
                              dev["m"])
        single = layer.cls_normalizer * ((1 - eps + 0.5 * eps) - p_true) * dev["m"]
        _write_ops(g, dev, bounds, box_obj, every, single, not thresh, False,
                   keep_obj=layer.objectness_smooth)
        return g.finish(output, iou, p_true, ops[:, 4], dev["count"])


def region_loss(layer, output, truth, seen):
    """pj forward_region_layer's deltas (negative gradients; ``output``'s shape and dtype) and
    ``STATS`` (float64) of one mini-batch, on ``output``'s device; ``seen``: images seen,
    this mini-batch's included."""
    n, nc, h, w, c = layer.n, layer.classes, layer.h, layer.w, layer.coords
    g = _Grid(output, n, c + 1 + nc, h, w)
    xp, o, d = g.xp, g.o, g.d
    anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)     # grid units
    units = (w, h)
    t, live = _host_truths(truth, g.batch, 30)      # pj's region loops stop at 30 truths
    tree = getattr(layer, "softmax_tree", None)
    if tree is not None:            # pj's onlyclass images take no box truth (regiontree.py)
        co_images, co_rows = class_only_images(t, live)
        live = live.copy()
        live[co_images] = False
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        b, k = np.nonzero(live)
        j, i = _cell_of(t[b, k], w, h)
        t_op = t[b, k]
        if layer.bias_match:
            a = score((0, 0, anchors[:, 0] / w, anchors[:, 1] / h),
                      (0, 0, t_op[:, 2, None], t_op[:, 3, None]), "iou").argmax(-1)
        else:       # the device picks the slot (below): rounds by the image's cell
            a = np.zeros_like(b)
        order, bounds = _rounds(g.place(b, a, j, i))
        b, k, a, j, i, t_op = (v[order] for v in (b, k, a, j, i, t_op))
        size, hw = n * h * w * t.shape[1], h * w
        prior = np.zeros((4, h, w))         # the anchor at the cell's centre: x, y targets
        prior[0] += ((np.arange(w) + .5) / w) * w - np.arange(w)
        prior[1] += (((np.arange(h) + .5) / h) * h - np.arange(h))[:, None]
        host = dict(
            truth=t, nlive=live.sum(axis=1), gi=np.arange(w, dtype=float),
            gj=np.arange(h, dtype=float), anchors=anchors,
            idx=g.planes_at(g.place(b, a, j, i)), cls=_region_classes(layer, t_op),
            classes=np.arange(nc),
            pos=b * size + ((a * h + j) * w + i) * t.shape[1] + k, prior=prior,
            box_scale=layer.coord_scale * (2 - t_op[:, 2] * t_op[:, 3]),
            count=np.array([float(len(b))]))
        if tree is not None:
            host.update(write_plan(tree, host["cls"], "h_"), co_images=co_images,
                        **write_plan(tree, _tree_classes(t[co_images, co_rows, 4], nc), "co_"))
            start = host.pop("h_start")
            del host["co_start"]
        if layer.bias_match:
            host["target"] = np.stack(_mse_target(t_op.T, i, j, anchors[a, 0], anchors[a, 1],
                                                  w, h, units), axis=1)
        else:
            host.update(shapes=g.planes_at(g.place(b[:, None], np.arange(n), j[:, None],
                                                   i[:, None]))[..., 2:4],
                        units=np.array(units, float), t_op=t_op[:, :4].T.copy(),
                        i=i.astype(float), j=j.astype(float),
                        step=np.array([g.planes * hw, hw * t.shape[1]]))
        dev = _upload(xp, host)

        if not layer.bias_match:        # the shapes the truth's cell predicts, per anchor
            s = xp.exp(g.o_flat[dev["shapes"]]) * dev["anchors"] / dev["units"]
            t_op = dev["t_op"]
            a = score((0, 0, s[..., 0], s[..., 1]), (0, 0, t_op[2][:, None], t_op[3][:, None]),
                      "iou").argmax(-1)
            dev["idx"] = dev["idx"] + (a * dev["step"][0])[:, None]
            dev["pos"] = dev["pos"] + a * dev["step"][1]
            anchor = dev["anchors"][a]
            dev["target"] = xp.stack(_mse_target(t_op, dev["i"], dev["j"], anchor[:, 0],
                                                 anchor[:, 1], w, h, units), axis=1)
        best, _, iou = _ignore(g, dev, units, dev["pos"], False, b)
        background = 1 if layer.background else 0
        d[:, :, c] = xp.where(best > layer.thresh, 0,
                              layer.noobject_scale * (background - o[:, :, c]))
        if seen < 12800:
            d[:, :, :4] = .01 * (dev["prior"] - o[:, :, :4])

        ops = g.o_flat[dev["idx"]]                       # (ops, C): every plane of each op
        box = dev["box_scale"][:, None] * (dev["target"] - ops[:, :4])
        obj_target = 0 if layer.background else (iou if layer.rescore else 1)
        box_obj = xp.concatenate(
            (box, (layer.object_scale * (obj_target - ops[:, c]))[:, None]), axis=1)
        if tree is not None:
            p_cls = hier_writes(layer, g, dev, bounds, box_obj, start)
            return _class_only_finish(layer, g, dev, output, iou, p_cls, ops[:, c])
        p, cs = ops[:, c + 1:], layer.class_scale
        dev["hit"] = dev["classes"] == dev["cls"][:, None]
        p_true = xp.where(dev["hit"], p, 0).sum(axis=1)      # 0 with classes=0
        every = xp.where(dev["hit"], -cs * p + cs, -cs * p)
        full = _write_ops(g, dev, bounds, box_obj, every, cs * (1 - p_true), True,
                          bool(layer.softmax))
        # pj adds the class probability to the statistics only on an every-class write
        p_cls = p_true if full is None else xp.where(full, p_true, 0)
        return g.finish(output, iou, p_cls, ops[:, c], dev["count"])


def _region_classes(layer, t_op):
    """The truths' classes, through the layer's ``map=`` when it has one (pj: class =
    l.map[class]; a class past the map's end is taken as its last line); with a tree a
    class < 0 stays -1 (regiontree.py)."""
    table = getattr(layer, "map", None)
    if getattr(layer, "softmax_tree", None) is not None:
        raw = np.trunc(t_op[:, 4]).astype(np.int64)
        if table is not None:
            raw = np.asarray(table)[np.clip(raw, 0, len(table) - 1)]
        return _tree_classes(raw, layer.classes)
    if table is None:
        return _classes(t_op, layer.classes)
    return np.clip(np.asarray(table)[_classes(t_op, len(table))], 0, layer.classes - 1)


def _tree_classes(raw, n):
    """int(class) for a tree: -1 below 0 (no class write), at most n - 1."""
    raw = np.trunc(raw).astype(np.int64)
    return np.where(raw < 0, -1, np.minimum(raw, n - 1))


def _class_only_finish(layer, g, dev, output, iou, p_cls, p_obj):
    """g.finish after pj's onlyclass images' deltas (regiontree.class_only): their class
    product joins the report's class figure, their cells leave its No Obj average."""
    xp, images = g.xp, dev["co_images"]
    if not len(images):
        return g.finish(output, iou, p_cls, p_obj, dev["count"])
    prob = class_only(layer, g, dev)
    delta, stats = g.finish(output, iou, p_cls, p_obj, dev["count"])
    zero = xp.zeros(1)
    fix = xp.concatenate((zero, zero, prob.sum()[None], zero,
                          -g.o[images, :, layer.coords].sum()[None], zero, zero, zero))
    return delta, stats + fix


def fetch_stats(totals, cells):
    """The cost and Darknet's report statistics from a ``STATS`` array (one device fetch)."""
    v = dict(zip(STATS, to_numpy(totals).tolist()))
    stats = {k: v[k] for k in ("iou", "cls", "obj", "anyobj")}
    stats.update({k: int(v[k]) for k in ("recall", "recall75", "count")}, cells=cells)
    return v["cost"], stats
