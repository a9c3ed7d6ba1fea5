"""The ``[yolo]`` and ``[region]`` training losses, vectorised over the batch, the anchor slots
and the truths: one formula for NumPy and CuPy (``xp_of``), in float64, on the outputs' device.
Only the truth table travels (to the outputs); the cost and the report statistics come back as
one small array (``STATS``), read once by ``fetch_stats``.

Truth: per image rows (x, y, w, h, class) up to the first with x == 0 ([region]: of the first
30).  The box of anchor slot a at cell (j, i) is ((i + x)/W, (j + y)/H, exp(w) anchor_w / U_w,
exp(h) anchor_h / U_h), U the network's size ([yolo]: anchors in pixels) or the grid ([region]).
A truth is written at cell (int(y H), int(x W)).

[yolo] (pj:src/yolo_layer.c forward_yolo_layer, AlexeyAB's options as ab:src/yolo_layer.c):

* objectness -obj, or 0 where the box's best IoU with a truth of its image exceeds
  ignore_thresh; above truth_thresh the cell gets that truth's deltas (objectness 1 - obj, class
  scale 1, mse box scale (2 - w h) m);
* each truth takes the best of ALL anchors by the IoU of centred shapes, and every other anchor
  whose iou_thresh_kind score exceeds iou_thresh; those in the mask get, at their first slot:
  box (mse) (2 - w h) iou_normalizer m (target - o), target (x W - i, y H - j,
  log(w U_w / anchor_w), log(h U_h / anchor_h)); with iou_loss iou/giou/diou/ciou instead
  iou_normalizer m d score / d o (``darknet_py.box.score_gradient``), clipped to +-max_delta
  (NaN and inf -> 0) when max_delta is set; objectness m obj_normalizer (1 - obj); classes
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
  class_scale ([c == class] - p).

cost = the sum of the squared deltas.  Darknet writes the truths one after another; the
vectorised loss reproduces that order:

* box and objectness: of the ops (truth-to-cell writes) of one cell the last one wins;
* classes: pj's delta_yolo_class / delta_region_class write every class unless the cell's
  class-0 delta is already nonzero (``if (delta[index])``; [region]: and no softmax), and then
  only the truth's class.  Each op maps "the class-0 delta is 0" before it to after it; a
  segmented prefix scan of these maps over the ops sorted by (cell, truth) gives every op's
  branch in log2(T) steps.  A cell ends as the last every-class write left it plus the
  single-class writes of the ops after it (such a write depends only on the cell and the class);
* the writes of masked-out ops go to a spare slot row: every scatter has a fixed size and
  nothing is counted on the host.
"""

import math

import numpy as np

from ...box import score, score_gradient
from ..backend import to_numpy, xp_of

#: the order of the statistics array the losses return
STATS = ("cost", "iou", "cls", "obj", "anyobj", "recall", "recall75", "count")
_BLOCK = 1 << 22        # predictions x truths of one batched IoU block


class _Grid:
    """A head's output as float64 planes ``o`` (B*n + 1, C, H*W) and its deltas ``d`` (zeros, the
    same shape); row B*n is the spare row of the masked-out writes."""

    def __init__(self, output, n, planes, h, w):
        self.xp = xp = xp_of(output)
        self.batch, self.n, self.planes, self.h, self.w = output.shape[0], n, planes, h, w
        self.spare = self.batch * n
        self.o = xp.zeros((self.spare + 1, planes, h * w))
        self.o[:-1] = output.reshape(self.spare, planes, h * w)
        self.d = xp.zeros_like(self.o)

    def view(self, a):
        """o or d as (B, n, C, H, W), without the spare row."""
        return a[:-1].reshape(self.batch, self.n, self.planes, self.h, self.w)

    def _flat(self, row, plane, col):
        return (row * self.planes + plane) * (self.h * self.w) + col

    def get(self, row, plane, col):
        return self.o.reshape(-1)[self._flat(row, plane, col)]

    def put(self, where, row, plane, col, values):
        """d[row, plane, col] = values where ``where`` (distinct places there)."""
        row = self.xp.where(where, row, self.spare)
        self.d.reshape(-1)[self._flat(row, plane, col)] = values

    def finish(self, output, alive, iou, p_class, p_obj, obj_plane):
        """The deltas in ``output``'s shape and dtype, and the STATS array of the live ops'
        IoU, class and objectness probabilities."""
        xp = self.xp
        deltas = self.d[:-1]
        total = lambda v: xp.where(alive, v, 0).sum()          # noqa: E731
        stats = xp.stack([(deltas * deltas).sum(), total(iou), total(p_class), total(p_obj),
                          obj_plane.sum(), total(iou > .5), total(iou > .75), total(1.0)])
        return deltas.reshape(output.shape).astype(output.dtype), stats


class _Ops:
    """Truth-to-cell writes as flat arrays: ``row`` (b*n + a), ``col`` (j*W + i), ``cell``,
    ``order`` (the truth's index, < ``span``) and ``alive``."""

    def __init__(self, grid, b, a, j, i, order, alive, span):
        xp = grid.xp
        shape = np.broadcast_shapes(*(v.shape for v in (b, a, j, i, order, alive)))
        b, a, j, i, self.order, self.alive = (xp.broadcast_to(v, shape).reshape(-1)
                                              for v in (b, a, j, i, order, alive))
        self.row, self.col, self.i, self.j, self.span = b * grid.n + a, j * grid.w + i, i, j, span
        self.spare = grid.spare * grid.h * grid.w
        self.cell = self.row * (grid.h * grid.w) + self.col

    def key(self, mask):
        """The cell where ``mask``, else one spare cell past the last."""
        return xp_of(self.cell).where(mask, self.cell, self.spare)

    def last(self, mask):
        """Whether each op is, of the ops in ``mask``, the last (in truth order) of its cell."""
        xp = xp_of(self.cell)
        perm, cells = self.sorted(mask)
        return mask & _unsort(perm, xp.concatenate((cells[1:] != cells[:-1], xp.ones(1, bool))))

    def sorted(self, mask):
        """The permutation that sorts the ops by (cell, truth), those outside ``mask`` last, and
        the sorted cells."""
        key = self.key(mask)
        perm = xp_of(key).argsort(key * self.span + self.order)
        return perm, key[perm]

    def put_last(self, grid, planes):
        """Box and objectness: the last op of each cell writes {plane: op values}."""
        last = self.last(self.alive)
        for plane, values in planes.items():
            grid.put(last, self.row, plane, self.col, values)


def _unsort(perm, sorted_values):
    out = xp_of(perm).empty_like(sorted_values)
    out[perm] = sorted_values
    return out


def _writes_every_class(ops, zero_after_full, zero_after_single, zero_before):
    """Whether each op finds its cell's class-0 delta 0 and so writes every class.

    ``zero_before``: it is 0 before the cell's first op; ``zero_after_full`` /
    ``zero_after_single``: it is 0 after the op's every-class / single-class write (one of
    another class leaves it as it was: nonzero).  The op is the map z -> zero_after_full if z
    else zero_after_single; a segmented Hillis-Steele scan composes each cell's maps."""
    xp = xp_of(ops.cell)
    perm, cells = ops.sorted(ops.alive)
    if_zero, if_not, z0 = zero_after_full[perm], zero_after_single[perm], zero_before[perm]
    shift = 1
    while shift < ops.span:          # a cell holds at most one op per truth
        same = cells[shift:] == cells[:-shift]
        later_zero, later_not = if_zero[shift:], if_not[shift:]
        composed = (xp.where(if_zero[:-shift], later_zero, later_not),
                    xp.where(if_not[:-shift], later_zero, later_not))
        if_zero = xp.concatenate((if_zero[:shift], xp.where(same, composed[0], later_zero)))
        if_not = xp.concatenate((if_not[:shift], xp.where(same, composed[1], later_not)))
        shift *= 2
    first = cells[1:] != cells[:-1]
    before = xp.where(z0[1:], if_zero[:-1], if_not[:-1])     # the cell's ops so far, applied
    return _unsort(perm, xp.concatenate((z0[:1], xp.where(first, z0[1:], before))))


def _class_writes(grid, ops, first, cls, every, single, zero_before, always_every=False):
    """Writes the ops' class deltas in pj's order (classes from plane ``first``): ``every``
    (ops, classes) is an op's every-class write, ``single`` its write of the truth's class
    alone.  Returns which ops wrote every class."""
    xp = grid.xp
    full = ops.alive & (always_every | _writes_every_class(
        ops, every[:, 0] == 0, (cls == 0) & (single == 0), zero_before))
    last_full = ops.last(full)
    since = xp.full(ops.spare + 1, -1, ops.order.dtype)     # per cell: its last full write
    since[ops.key(last_full)] = xp.where(last_full, ops.order, -1)
    grid.put(last_full[:, None], ops.row[:, None], first + xp.arange(every.shape[1]),
             ops.col[:, None], every)
    grid.put(ops.alive & ~full & (ops.order > since[ops.cell]), ops.row, first + cls, ops.col,
             single)
    return full


def _truths(truth, xp, batch, limit=None):
    """The truth table (B, T, 5) as float64 on ``xp`` and its live rows (before the first
    x == 0).  NumPy cuts T after the longest image's truths; CuPy keeps the whole table, since
    knowing that length would be a fetch from the device."""
    t = xp.asarray(truth).reshape(batch, -1, 5)[:, :limit].astype(xp.float64)
    live = xp.cumsum(t[..., 0] == 0, axis=1) == 0
    if xp is np:
        keep = max(int(live.sum(axis=1).max(initial=0)), 1)
        t, live = t[:, :keep], live[:, :keep]
    return t, live


def _cell_of(t, w, h):
    """pj's (int)(x * w), (int)(y * h), kept inside the grid."""
    xp = xp_of(t)
    return tuple(xp.clip(xp.trunc(t[..., k] * size), 0, size - 1).astype(xp.int64)
                 for k, size in ((1, h), (0, w)))


def _classes(t, n):
    """The truths' int(class), kept in [0, n)."""
    xp = xp_of(t)
    return xp.clip(xp.trunc(t[..., 4]), 0, max(n - 1, 0)).astype(xp.int64)


def _pred(o, i, j, aw, ah, w, h, units):
    """Image-relative boxes of raw outputs o = (x, y, w, h) at cell (j, i), anchor (aw, ah)."""
    xp = xp_of(o[0])
    return ((i + o[0]) / w, (j + o[1]) / h, xp.exp(o[2]) * aw / units[0],
            xp.exp(o[3]) * ah / units[1])


def _best_truth(o, anchors, units, t, live):
    """Per slot and cell (o: B, n, C, H, W) the best IoU of its box with a live truth of its
    image (-inf without one) and the first truth with it; in blocks of images."""
    xp = xp_of(o)
    batch, _, _, h, w = o.shape
    pred = _pred([o[:, :, k] for k in range(4)], xp.arange(w), xp.arange(h)[:, None],
                 anchors[:, 0, None, None], anchors[:, 1, None, None], w, h, units)
    cols = [p.reshape(batch, -1, 1) for p in pred]
    step = max(1, _BLOCK // (cols[0].shape[1] * t.shape[1]))
    best, first = [], []
    for s in range(0, batch, step):
        b = slice(s, s + step)
        iou = xp.where(live[b, None], score([c[b] for c in cols],
                                            [t[b, None, :, k] for k in range(4)], "iou"),
                       -xp.inf)
        k = iou.argmax(axis=-1)
        first.append(k)
        best.append(xp.take_along_axis(iou, k[..., None], axis=-1)[..., 0])
    return xp.concatenate(best).reshape(pred[0].shape), \
        xp.concatenate(first).reshape(pred[0].shape)


def _box_delta(layer, o, t, i, j, aw, ah, scale, weight, units):
    """pj delta_yolo_box / delta_region_box (AlexeyAB's iou_loss and max_delta) of raw
    outputs o = (x, y, w, h) at cell (j, i) with anchor (aw, ah) for truths t: the four deltas
    and the box's IoU with the truth."""
    xp = xp_of(t)
    pred = _pred(o, i, j, aw, ah, layer.w, layer.h, units)
    truth = tuple(t[..., k] for k in range(4))
    iou = score(pred, truth, "iou")
    if layer.iou_loss != "mse":
        # the loss is 1 - score: delta = +d score / d o; x = (i + o)/W, w = exp(o) anchor / U
        g = score_gradient(pred, truth, layer.iou_loss)
        n = layer.iou_normalizer * weight
        deltas = (n * g[0] / layer.w, n * g[1] / layer.h, n * g[2] * pred[2], n * g[3] * pred[3])
        if layer.max_delta != math.inf:
            deltas = tuple(xp.clip(xp.where(xp.isfinite(v), v, 0), -layer.max_delta,
                                   layer.max_delta) for v in deltas)
        return deltas, iou
    target = (truth[0] * layer.w - i, truth[1] * layer.h - j,
              xp.log(truth[2] * units[0] / aw), xp.log(truth[3] * units[1] / ah))
    return tuple(scale * (target[k] - o[k]) for k in range(4)), iou


def _yolo_classes(layer, p, cls, scale, weight):
    """pj delta_yolo_class's every-class write (classes on the last axis of p), with
    AlexeyAB's label_smooth_eps, counters_per_class ``weight`` and focal_loss."""
    xp = xp_of(p)
    hit = xp.arange(p.shape[-1]) == cls[..., None]
    if layer.focal_loss:
        # pt = p + 1e-15 in float32, as ab:src/yolo_layer.c delta_yolo_class
        pt = (xp.take_along_axis(p, cls[..., None], axis=-1).astype(xp.float32)
              + xp.float32(1e-15)).astype(xp.float64)
        grad = -(1 - pt) * (2 * pt * xp.log(pt) + pt - 1)
        return xp.where(hit, scale * (1 - p) * 0.5 * grad, scale * (0 - p) * 0.5 * grad)
    eps = layer.label_smooth_eps
    return xp.where(hit, scale * ((1 - eps + 0.5 * eps) - p) * weight[..., None],
                    scale * (0.5 * eps - p))


def _class_weights(layer, cls):
    """AlexeyAB's classes_multipliers of the classes (1 without counters_per_class)."""
    xp = xp_of(cls)
    m = layer.class_multipliers
    return xp.ones(cls.shape) if m is None else xp.asarray(m, xp.float64)[cls]


def _truth_thresh(layer, g, t, best, best_t, anchors, units):
    """pj's truth_thresh deltas, written where a box's best IoU exceeds it; returns where the
    class-0 delta is 0 afterwards (pj's test for the truths' class writes)."""
    xp, o, d = g.xp, g.view(g.o), g.view(g.d)
    hit = best > layer.truth_thresh
    tb = t[xp.arange(g.batch)[:, None, None, None], best_t]        # (B, n, H, W, 5)
    cls = _classes(tb, layer.classes)
    m = _class_weights(layer, cls)
    box, _ = _box_delta(layer, [o[:, :, k] for k in range(4)], tb, xp.arange(g.w),
                        xp.arange(g.h)[:, None], anchors[:, 0, None, None],
                        anchors[:, 1, None, None], (2 - tb[..., 2] * tb[..., 3]) * m, m, units)
    for k in range(4):
        d[:, :, k] = xp.where(hit, box[k], 0)
    d[:, :, 4] = xp.where(hit, 1 - o[:, :, 4], d[:, :, 4])
    classes = _yolo_classes(layer, xp.moveaxis(o[:, :, 5:], 2, -1), cls, 1.0, m)
    d[:, :, 5:] = xp.where(hit[:, :, None], xp.moveaxis(classes, -1, 2), 0)
    return ~hit | (classes[..., 0] == 0)


def _yolo_ops(layer, g, t, live, anchors):
    """Each truth's ops: its best anchor and, with iou_thresh, every anchor that passes, at
    the anchor's first slot in the mask; with each op's anchor."""
    xp = g.xp
    j, i = _cell_of(t, g.w, g.h)
    shape = (0, 0, anchors[:, 0] / layer.net_w, anchors[:, 1] / layer.net_h)
    truth = (0, 0, t[..., 2, None], t[..., 3, None])
    iou = score(shape, truth, "iou")                                    # (B, T, anchors)
    passes = iou
    if layer.iou_thresh_kind in ("giou", "ciou"):    # diou's centre term is 0 here
        passes = xp.where(iou > 0, score(shape, truth, layer.iou_thresh_kind), iou)
    # argmax: the first best anchor, 0 when none overlaps (pj's best_n = 0)
    chosen = (xp.arange(len(anchors)) == iou.argmax(axis=-1)[..., None]) | \
        (passes > layer.iou_thresh)
    mask = xp.asarray(layer.mask)
    first = xp.asarray([layer.mask.index(a) == s for s, a in enumerate(layer.mask)])
    slots = xp.arange(g.n)
    ops = _Ops(g, xp.arange(g.batch)[:, None, None], slots, j[..., None], i[..., None],
               xp.arange(t.shape[1])[:, None], live[..., None] & chosen[..., mask] & first,
               t.shape[1])
    return ops, anchors[mask[ops.row % g.n]]


def yolo_loss(layer, output, truth):
    """pj forward_yolo_layer's deltas (negative gradients; ``output``'s shape and dtype) and
    ``STATS`` (float64) of one mini-batch, on ``output``'s device."""
    nc = layer.classes
    g = _Grid(output, layer.n, 5 + nc, layer.h, layer.w)
    xp, o, d = g.xp, g.view(g.o), g.view(g.d)
    anchors = xp.asarray(layer.anchors, xp.float64).reshape(-1, 2)
    units = (layer.net_w, layer.net_h)
    t, live = _truths(truth, xp, g.batch)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        layer_anchors = anchors[xp.asarray(layer.mask)]
        best, best_t = _best_truth(o, layer_anchors, units, t, live)
        d[:, :, 4] = xp.where(best > layer.ignore_thresh, 0, -o[:, :, 4])
        zero_class0 = _truth_thresh(layer, g, t, best, best_t, layer_anchors, units)

        ops, anchor = _yolo_ops(layer, g, t, live, anchors)
        t_op = xp.broadcast_to(t[:, :, None], (*t.shape[:2], g.n, 5)).reshape(-1, 5)
        cls = _classes(t_op, nc)
        m = _class_weights(layer, cls)
        o_op = [g.get(ops.row, k, ops.col) for k in range(5)]
        box, iou = _box_delta(layer, o_op[:4], t_op, ops.i, ops.j, anchor[:, 0], anchor[:, 1],
                              (2 - t_op[:, 2] * t_op[:, 3]) * layer.iou_normalizer * m, m,
                              units)
        ops.put_last(g, {**dict(enumerate(box)), 4: m * layer.obj_normalizer * (1 - o_op[4])})
        p = g.get(ops.row[:, None], 5 + xp.arange(nc), ops.col[:, None])
        p_true = xp.take_along_axis(p, cls[:, None], axis=-1)[:, 0]
        eps = layer.label_smooth_eps
        _class_writes(g, ops, 5, cls, _yolo_classes(layer, p, cls, layer.cls_normalizer, m),
                      layer.cls_normalizer * ((1 - eps + 0.5 * eps) - p_true) * m,
                      zero_class0.reshape(-1)[ops.cell])
        return g.finish(output, ops.alive, iou, p_true, o_op[4], o[:, :, 4])


def region_loss(layer, output, truth, seen):
    """pj forward_region_layer's deltas (negative gradients; ``output``'s shape and dtype) and
    ``STATS`` (float64) of one mini-batch, on ``output``'s device; ``seen``: images seen,
    this mini-batch's included."""
    n, nc, h, w, c = layer.n, layer.classes, layer.h, layer.w, layer.coords
    g = _Grid(output, n, c + 1 + nc, h, w)
    xp, o, d = g.xp, g.view(g.o), g.view(g.d)
    anchors = xp.asarray(layer.anchors, xp.float64).reshape(-1, 2)     # grid units
    units = (w, h)
    t, live = _truths(truth, xp, g.batch, 30)      # pj's region loops stop at 30 truths
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        best, _ = _best_truth(o, anchors, units, t, live)
        background = 1 if layer.background else 0
        d[:, :, c] = xp.where(best > layer.thresh, 0,
                              layer.noobject_scale * (background - o[:, :, c]))
        if seen < 12800:
            ii, jj = xp.arange(w), xp.arange(h)[:, None]
            d[:, :, 0] = .01 * ((((ii + .5) / w) * w - ii) - o[:, :, 0])
            d[:, :, 1] = .01 * ((((jj + .5) / h) * h - jj) - o[:, :, 1])
            d[:, :, 2] = .01 * (0 - o[:, :, 2])
            d[:, :, 3] = .01 * (0 - o[:, :, 3])

        j, i = _cell_of(t, w, h)
        b = xp.arange(g.batch)[:, None]
        if layer.bias_match:
            sw, sh = anchors[:, 0] / w, anchors[:, 1] / h
        else:                             # the shapes the truth's cell predicts
            row, col = b[..., None] * n + xp.arange(n), (j * w + i)[..., None]
            sw = xp.exp(g.get(row, 2, col)) * anchors[:, 0] / w
            sh = xp.exp(g.get(row, 3, col)) * anchors[:, 1] / h
        a = score((0, 0, sw, sh), (0, 0, t[..., 2, None], t[..., 3, None]), "iou").argmax(-1)
        ops = _Ops(g, b, a, j, i, xp.arange(t.shape[1]), live, t.shape[1])
        t_op, anchor = t.reshape(-1, 5), anchors[ops.row % n]
        o_op = [g.get(ops.row, k, ops.col) for k in range(c + 1)]
        box, iou = _box_delta(layer, o_op[:4], t_op, ops.i, ops.j, anchor[:, 0], anchor[:, 1],
                              layer.coord_scale * (2 - t_op[:, 2] * t_op[:, 3]), 1.0, units)
        target = 0 if layer.background else (iou if layer.rescore else 1)
        ops.put_last(g, {**dict(enumerate(box)), c: layer.object_scale * (target - o_op[c])})
        p_true, full = xp.zeros(iou.shape), ops.alive
        if nc:
            cls = _classes(t_op, nc)
            p = g.get(ops.row[:, None], c + 1 + xp.arange(nc), ops.col[:, None])
            p_true = xp.take_along_axis(p, cls[:, None], axis=-1)[:, 0]
            cs = layer.class_scale
            every = xp.where(xp.arange(nc) == cls[:, None], -cs * p + cs, -cs * p)
            full = _class_writes(g, ops, c + 1, cls, every, cs * (1 - p_true),
                                 xp.ones(ops.cell.shape, bool), bool(layer.softmax))
        # pj adds the class probability to the statistics only on an every-class write
        return g.finish(output, ops.alive, iou, xp.where(full, p_true, 0), o_op[c], o[:, :, c])


def fetch_stats(totals, cells):
    """The cost and Darknet's report statistics from a ``STATS`` array (one device fetch)."""
    v = dict(zip(STATS, to_numpy(totals).tolist()))
    stats = {k: v[k] for k in ("iou", "cls", "obj", "anyobj")}
    stats.update({k: int(v[k]) for k in ("recall", "recall75", "count")}, cells=cells)
    return v["cost"], stats
