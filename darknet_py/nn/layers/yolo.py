"""``[yolo]`` (pj:src/yolo_layer.c) and ``[region]`` (pj:src/region_layer.c).

Memory per image and anchor slot: (coords, obj, classes) planes of w*h each.
yolo:   logistic on x, y, obj and the classes; w, h stay raw.
region: logistic on x, y and obj (unless ``background``); the classes get a softmax per cell
        (``softmax=1``) or a logistic.

[yolo] training (pj forward_yolo_layer), truth = per image rows (x, y, w, h, class), ending at
the first x == 0:
* every cell/anchor: obj delta = 0 - obj, or 0 when its box overlaps a truth by more than
  ``ignore_thresh`` (and the full truth deltas when above ``truth_thresh``);
* every truth: the best of ALL anchors by centred IoU; if that anchor is in this layer's mask,
  at cell (int(x*W), int(y*H)): box deltas scale*(target - output) with scale = 2 - w*h
  (tx = x*W - i, tw = log(w*net_w/anchor_w)), obj delta 1 - obj, class deltas [c == cls] - p;
* cost = sum of delta^2; backward adds delta to the input delta with no logistic derivative.
[region] training (pj forward_region_layer): no-object deltas with noobject_scale, zeroed above
``thresh``; while fewer than 12800 images were seen every box is pulled toward its anchor (0.01);
each truth goes to the anchor of its cell with the best shape IoU, with coord_scale*(2 - w*h) box
deltas, object_scale obj delta (iou with rescore), class_scale class deltas.  Its backward applies
the logistic derivative to x, y and obj (pj's GPU; pj's CPU backward is empty).
"""

import math

import numpy as np

from ..activations import activate
from ..backend import to_numpy
from ...box import NMS_KINDS, score, score_gradient
from ...errors import CfgError, DarknetError, NotSupportedError
from .base import Layer, unimplemented_in


class _DetectionHead(Layer):
    needs_image = True
    # what [region] (pj's box deltas) has of the [yolo] options its box deltas read
    iou_loss = "mse"
    max_delta = math.inf             # AlexeyAB's FLT_MAX: no clipping

    @classmethod
    def check_options(cls, sec):
        """The head's options must describe anchors that exist."""
        least = 0 if cls.type == "region" else 1
        sec.int("classes", 20, minimum=least)
        num = sec.int("num", 1, minimum=1)
        for key in ("ignore_thresh", "thresh"):
            if sec.has(key) and key in cls.cfg_keys and not 0 <= sec.float(key) <= 1:
                raise CfgError(f"{key}={sec.str(key)} in [{sec.name}] must be in [0, 1]",
                               sec.path, sec.line_of(key))
        if sec.has("jitter") and not 0 <= sec.float("jitter") < 1:
            raise CfgError(f"jitter={sec.str('jitter')} in [{sec.name}] must be in [0, 1) "
                           "(usually .3)", sec.path, sec.line_of("jitter"))
        sec.int("max", 90, minimum=1)
        if cls.type == "region":
            sec.int("coords", 4, minimum=1)
        anchors = sec.float_list("anchors")
        if cls.type != "region":
            mask = sec.int_list("mask")
            if mask is not None and not mask:
                raise CfgError(f"mask= in [{sec.name}] is empty", sec.path, sec.line_of("mask"))
            bad = [m for m in mask or () if not 0 <= m < num]
            if bad:
                pairs = len(anchors) // 2 if anchors else 0
                fix = (f"set num={pairs} (the anchors give {pairs} pairs)"
                       if max(mask) < pairs and min(mask) >= 0 else f"use indices 0..{num - 1}")
                raise CfgError(f"mask={','.join(map(str, mask))} in [{sec.name}] uses anchor "
                               f"{bad[0]} but num={num} (anchors are numbered 0..{num - 1}): "
                               f"{fix}", sec.path, sec.line_of("mask"))
        if anchors is not None:
            if len(anchors) != 2 * num:
                fix = ("an odd count means a width or height is missing" if len(anchors) % 2
                       else f"set num={len(anchors) // 2} or give {2 * num} values")
                raise CfgError(f"anchors in [{sec.name}] has {len(anchors)} values but num={num} "
                               f"needs 2*num = {2 * num} (w,h pairs): {fix}", sec.path,
                               sec.line_of("anchors"))
            if any(a <= 0 for a in anchors):
                raise CfgError(f"anchors in [{sec.name}] must all be > 0 (w,h pairs)", sec.path,
                               sec.line_of("anchors"))

    def _shape_check(self, section, expected, formula):
        if self.c != expected:
            raise CfgError(f"[{section.name}] expects {expected} input channels "
                           f"({formula}) but the previous layer gives {self.c}: set filters="
                           f"{expected} in the [convolutional] before it",
                           section.path, section.line)
        self.out_c, self.out_h, self.out_w = self.c, self.h, self.w

    def _planes(self, x):
        n = x.shape[0]
        return x.reshape(n, self.n, self.coords + 1 + self.classes, self.h, self.w)

    # -- shared by the [yolo] and [region] losses ---------------------------------------------
    @property
    def anchor_units(self):
        """What anchors are measured in: network pixels for yolo, grid cells for region."""
        return (self.net_w, self.net_h) if self.type == "yolo" else (self.w, self.h)

    @staticmethod
    def _truth_rows(rows):
        """An image's truth rows up to the first with x == 0 (Darknet's end marker)."""
        ends = np.nonzero(rows[:, 0] == 0)[0]
        return rows[:ends[0]] if ends.size else rows

    def _pred_boxes(self, o, anchors):
        """Image-relative (x, y, w, h) of every anchor slot and cell; ``anchors`` per slot."""
        jj, ii = np.meshgrid(np.arange(self.h), np.arange(self.w), indexing="ij")
        uw, uh = self.anchor_units
        return ((ii + o[:, 0]) / self.w, (jj + o[:, 1]) / self.h,
                np.exp(o[:, 2]) * anchors[:, 0, None, None] / uw,
                np.exp(o[:, 3]) * anchors[:, 1, None, None] / uh)

    def _box_delta(self, t, o, d, anchor, a, j, i, scale, weight=1.0):
        """pj delta_yolo_box / delta_region_box: scale * (target - output) for x, y, w, h of
        slot ``a`` at cell (j, i) with anchor ``anchor``; returns the predicted box's IoU."""
        uw, uh = self.anchor_units
        aw, ah = self.anchors[2 * anchor], self.anchors[2 * anchor + 1]
        px, py = (i + o[a, 0, j, i]) / self.w, (j + o[a, 1, j, i]) / self.h
        pw = math.exp(o[a, 2, j, i]) * aw / uw
        ph = math.exp(o[a, 3, j, i]) * ah / uh
        iou = float(score((px, py, pw, ph), tuple(t[:4]), "iou"))
        kind = self.iou_loss
        if kind != "mse":
            # loss = 1 - score(pred, truth): delta = +d score / d output, times iou_normalizer;
            # x = (i + sx)/W gives 1/W, w = exp(tw) anchor/net_w gives w (darknet_py.box)
            gx, gy, gw, gh = score_gradient((px, py, pw, ph), tuple(t[:4]), kind)
            n = self.iou_normalizer * weight      # weight: AB's counters_per_class multiplier
            deltas = (n * gx / self.w, n * gy / self.h, n * gw * pw, n * gh * ph)
            limit = self.max_delta
            if limit != math.inf:             # AlexeyAB's max_delta: NaN/inf -> 0, then clip
                deltas = tuple(min(max(v if math.isfinite(v) else 0.0, -limit), limit)
                               for v in deltas)
            d[a, 0, j, i], d[a, 1, j, i], d[a, 2, j, i], d[a, 3, j, i] = deltas
            return iou
        target = (t[0] * self.w - i, t[1] * self.h - j, math.log(t[2] * uw / aw),
                  math.log(t[3] * uh / ah))
        for k in range(4):
            d[a, k, j, i] = scale * (target[k] - o[a, k, j, i])
        return iou

    def report(self):
        """Darknet's per-layer training line (counts of 0 print n/a instead of -nan)."""
        s = self.stats
        if not s:
            return ""
        c = s["count"]
        f = (lambda v: f"{v / c:f}") if c else (lambda v: "n/a")
        return (f"Region {self.index} Avg IOU: {f(s['iou'])}, Class: {f(s['cls'])}, "
                f"Obj: {f(s['obj'])}, No Obj: {s['anyobj'] / max(s['cells'], 1):f}, "
                f".5R: {f(s['recall'])}, .75R: {f(s['recall75'])},  count: {c}")


def _new_stats():
    return dict(iou=0.0, cls=0.0, obj=0.0, anyobj=0.0, recall=0, recall75=0, count=0)


class YoloLayer(_DetectionHead):
    type = "yolo"
    cfg_keys = frozenset((
        "classes num mask anchors max jitter ignore_thresh truth_thresh random "
        "map scale_x_y iou_loss iou_normalizer cls_normalizer obj_normalizer "
        "iou_thresh delta_normalizer beta_nms max_delta resize "
        "label_smooth_eps objectness_smooth iou_thresh_kind nms_kind "
        "counters_per_class focal_loss show_details"
    ).split())
    training_unimplemented = {"objectness_smooth": 0, "delta_normalizer": 1, "resize": 1}
    unsupported = {"new_coords": (0, "")}
    coords = 4

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.classes = section.int("classes", 20)
        layer.total = section.int("num", 1)
        layer.mask = section.int_list("mask", list(range(layer.total)))
        layer.n = len(layer.mask)
        layer.anchors = section.float_list("anchors", [0.5] * (2 * layer.total))
        layer.max_boxes = section.int("max", 90)
        layer.jitter = section.float("jitter", 0.2)
        layer.ignore_thresh = section.float("ignore_thresh", 0.5)
        layer.truth_thresh = section.float("truth_thresh", 1.0)
        layer.random = section.float("random", 0.0)
        layer.map = section.str("map")
        # AlexeyAB's options.  Defaults keep pj's behaviour (AB's own iou_normalizer default
        # is 0.75; cfgs written for AB set it explicitly).
        layer.scale_x_y = section.float("scale_x_y", 1.0)
        layer.iou_loss = section.str("iou_loss", "mse")
        if layer.iou_loss not in ("mse", "giou", "diou", "ciou"):
            layer.iou_loss = "iou"            # AlexeyAB: any other value is plain IoU
        layer.iou_normalizer = section.float("iou_normalizer", 1.0)
        layer.cls_normalizer = section.float("cls_normalizer", 1.0)
        layer.obj_normalizer = section.float("obj_normalizer", 1.0)
        layer.iou_thresh = section.float("iou_thresh", 1.0)
        # clips the iou_loss box deltas (not mse's), as AlexeyAB's delta_yolo_box
        layer.max_delta = section.float("max_delta", math.inf)
        layer.label_smooth_eps = section.float("label_smooth_eps", 0.0)
        layer.focal_loss = section.bool("focal_loss")
        counts = section.int_list("counters_per_class")
        layer.class_multipliers = None
        if counts is not None:
            if len(counts) != layer.classes:
                raise CfgError(f"[{section.name}] counters_per_class has {len(counts)} values "
                               f"but classes={layer.classes}", section.path,
                               section.line_of("counters_per_class"))
            counts = np.maximum(np.asarray(counts, np.float32), 1)
            layer.class_multipliers = np.minimum(counts.max() / counts, layer.max_delta)
        layer.iou_thresh_kind = section.str("iou_thresh_kind", "iou")   # AB: unknown -> iou
        # AlexeyAB's NMS for this detector (detect.network_nms)
        layer.nms_kind = section.choice("nms_kind", "default", NMS_KINDS)
        layer.beta_nms = section.float("beta_nms", 0.6)
        # AlexeyAB's training options darknet_py does not implement: named when training
        layer.unimplemented = unimplemented_in(section, cls.training_unimplemented)
        section.int("show_details", 1)
        layer.net_w, layer.net_h = ctx.net.width, ctx.net.height
        layer.net_options = ctx.net
        layer._shape_check(section, layer.n * (layer.classes + 5),
                           f"len(mask)={layer.n} x (classes={layer.classes} + 5)")
        layer.cost = 0.0
        layer.stats = {}
        return layer

    def forward(self, net):
        x = self.input_image(net.input)
        p = self._planes(x).copy()
        p[:, :, 0:2] = activate(p[:, :, 0:2], "logistic")
        if self.scale_x_y != 1:          # AB: x' = s*sigmoid(x) - (s-1)/2, the same for y
            p[:, :, 0:2] = p[:, :, 0:2] * self.scale_x_y - 0.5 * (self.scale_x_y - 1)
        p[:, :, 4:] = activate(p[:, :, 4:], "logistic")
        self.output = p.reshape(x.shape)
        self.cost = 0.0
        if net.train:
            if net.truth is None:
                raise DarknetError(f"layer {self.index} [yolo] trains on box truths; none given",
                                   self.path, self.line)
            delta = self._loss(to_numpy(self.output), to_numpy(net.truth))
            self.delta = net.xp.asarray(delta)

    def backward(self, net):
        if net.delta is not None:
            net.delta += self.delta.reshape(net.delta.shape)

    def _loss(self, output, truth):
        """Darknet's deltas (negative gradients) and cost for one mini-batch (NumPy, float64)."""
        B = output.shape[0]
        n, hh, ww, nc = self.n, self.h, self.w, self.classes
        out = output.reshape(B, n, 5 + nc, hh, ww).astype(np.float64)
        delta = np.zeros_like(out)
        anchors = np.asarray(self.anchors, np.float64).reshape(-1, 2)
        mask = np.asarray(self.mask)
        truth = truth.reshape(B, -1, 5).astype(np.float64)
        stats = _new_stats()
        for b in range(B):
            rows = self._truth_rows(truth[b])
            o = out[b]
            px, py, pw, ph = self._pred_boxes(o, anchors[mask])
            stats["anyobj"] += o[:, 4].sum()
            delta[b, :, 4] = -o[:, 4]
            if len(rows):
                ious = score((px[..., None], py[..., None], pw[..., None], ph[..., None]),
                             tuple(rows[:, :4].T), "iou")
                best = ious.max(axis=-1)
                best_t = ious.argmax(axis=-1)
                delta[b, :, 4][best > self.ignore_thresh] = 0
                for a, j, i in zip(*np.nonzero(best > self.truth_thresh)):
                    t = rows[best_t[a, j, i]]
                    m = self._class_weight(int(t[4]))
                    delta[b, a, 4, j, i] = 1 - o[a, 4, j, i]
                    self._class_delta(o, delta[b], a, j, i, int(t[4]), None,
                                      smooth=self.label_smooth_eps, focal=self.focal_loss,
                                      weight=m)
                    self._box_delta(t, o, delta[b], mask[a], a, j, i, (2 - t[2] * t[3]) * m, m)
            for t in rows:
                i, j = int(t[0] * ww), int(t[1] * hh)
                shape_iou = score((0, 0, anchors[:, 0] / self.net_w, anchors[:, 1] / self.net_h),
                                  (0, 0, t[2], t[3]), "iou")
                best_n = int(np.argmax(shape_iou)) if shape_iou.max() > 0 else 0
                # the best anchor; with AB's iou_thresh < 1 also every other anchor of this
                # layer whose shape IoU exceeds it
                chosen = [best_n] + [k for k in range(len(anchors)) if k != best_n
                                     and self._thresh_score(shape_iou[k], anchors[k], t)
                                     > self.iou_thresh]
                for anchor in chosen:
                    hits = np.nonzero(mask == anchor)[0]
                    if not hits.size:
                        continue
                    a = int(hits[0])
                    m = self._class_weight(int(t[4]))   # AB's counters_per_class, else 1
                    iou = self._box_delta(t, o, delta[b], anchor, a, j, i,
                                          (2 - t[2] * t[3]) * self.iou_normalizer * m, m)

                    stats["obj"] += o[a, 4, j, i]
                    delta[b, a, 4, j, i] = m * self.obj_normalizer * (1 - o[a, 4, j, i])
                    stats["cls"] += self._class_delta(o, delta[b], a, j, i, int(t[4]), True,
                                                      self.cls_normalizer,
                                                      self.label_smooth_eps, self.focal_loss,
                                                      m)
                    stats["count"] += 1
                    stats["iou"] += iou
                    stats["recall"] += iou > .5
                    stats["recall75"] += iou > .75
        self.cost = float((delta * delta).sum())
        stats["cells"] = B * n * hh * ww
        self.stats = stats
        return delta.reshape(output.shape).astype(output.dtype)

    def _thresh_score(self, iou, anchor, t):
        """AlexeyAB's box_iou_kind of the anchor's and the truth's shapes (same centre) for the
        iou_thresh test: giou and ciou differ from the IoU there, diou (d = 0) does not."""
        kind = self.iou_thresh_kind
        if kind not in ("giou", "ciou") or iou <= 0:
            return iou
        return score((0.0, 0.0, anchor[0] / self.net_w, anchor[1] / self.net_h),
                     (0.0, 0.0, float(t[2]), float(t[3])), kind)

    def _class_weight(self, cls):
        """AlexeyAB's classes_multipliers: max count / count of the class (counts under 1
        count as 1), at most max_delta; 1 without counters_per_class."""
        m = self.class_multipliers
        return 1.0 if m is None or not 0 <= cls < len(m) else float(m[cls])

    @staticmethod
    def _class_delta(o, d, a, j, i, cls, count, scale=1.0, smooth=0.0, focal=False,
                     weight=1.0):
        """pj delta_yolo_class: if the cell already has class deltas only the truth's is set
        (AB: times cls_normalizer).  AB's label_smooth_eps makes the targets
        y * (1 - eps) + eps / 2 instead of 1 and 0; AB's focal_loss=1 scales the (unsmoothed)
        deltas by alpha * grad, alpha = 0.5, grad = -(1 - pt)(2 pt log pt + pt - 1), pt the
        truth class's probability."""
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

    def describe(self):
        return "yolo"


class RegionLayer(_DetectionHead):
    type = "region"
    cfg_keys = frozenset((
        "coords classes num softmax background anchors log sqrt max "
        "rescore classfix absolute random bias_match jitter thresh coord_scale "
        "object_scale noobject_scale mask_scale class_scale map"
    ).split())
    unsupported = {"tree": (None, "YOLO9000")}

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.coords = section.int("coords", 4)
        layer.classes = section.int("classes", 20)
        layer.n = section.int("num", 1)
        layer.softmax = section.bool("softmax")
        layer.background = section.bool("background")
        layer.anchors = section.float_list("anchors", [0.5] * (2 * layer.n))
        for key, default in (("log", 0), ("sqrt", 0), ("max", 30), ("rescore", 0),
                             ("classfix", 0), ("absolute", 0), ("random", 0), ("bias_match", 0)):
            setattr(layer, key, section.int(key, default))
        for key, default in (("jitter", 0.2), ("thresh", 0.5), ("coord_scale", 1.0),
                             ("object_scale", 1.0), ("noobject_scale", 1.0), ("mask_scale", 1.0),
                             ("class_scale", 1.0)):
            setattr(layer, key, section.float(key, default))
        section.str("map")
        layer._shape_check(section, layer.n * (layer.classes + layer.coords + 1),
                           f"num={layer.n} x (classes={layer.classes} + coords={layer.coords} + 1)")
        layer.max_boxes = 30        # pj's region loops are fixed at 30 truths per image
        layer.net_options = ctx.net
        layer.cost = 0.0
        layer.stats = {}
        return layer

    def forward(self, net):
        xp = net.xp
        x = self.input_image(net.input)
        p = self._planes(x).copy()
        p[:, :, 0:2] = activate(p[:, :, 0:2], "logistic")
        c = self.coords
        if not self.background:
            p[:, :, c] = activate(p[:, :, c], "logistic")
        if self.softmax:
            first = c + (0 if self.background else 1)
            z = p[:, :, first:]
            e = xp.exp(z - z.max(axis=2, keepdims=True))
            p[:, :, first:] = e / e.sum(axis=2, keepdims=True)
        else:
            p[:, :, c + 1:] = activate(p[:, :, c + 1:], "logistic")
        self.output = p.reshape(x.shape)
        self.cost = 0.0
        if net.train:
            if net.truth is None:
                raise DarknetError(f"layer {self.index} [region] trains on box truths; none "
                                   "given", self.path, self.line)
            delta = self._loss(to_numpy(self.output), to_numpy(net.truth), net.seen)
            self.delta = net.xp.asarray(delta)

    def backward(self, net):
        """The deltas of the logistic outputs (x, y and obj) get the logistic's derivative, as
        pj's GPU backward does (its CPU backward is empty); softmax class deltas are already
        gradients of the cross-entropy with respect to the logits."""
        if net.delta is None:
            return
        d = self._planes(self.delta).copy()
        y = self._planes(self.output)
        d[:, :, 0:2] *= y[:, :, 0:2] * (1 - y[:, :, 0:2])
        if not self.background:
            c = self.coords
            d[:, :, c] *= y[:, :, c] * (1 - y[:, :, c])
        net.delta += d.reshape(net.delta.shape)

    def _loss(self, output, truth, seen):
        """pj forward_region_layer's deltas (negative gradients) and cost (NumPy, float64)."""
        if self.coords != 4:
            raise NotSupportedError(f"training a [region] with coords={self.coords} is not "
                                    "supported (coords=4 is)", self.path, self.line)
        B = output.shape[0]
        n, hh, ww, nc, c = self.n, self.h, self.w, self.classes, self.coords
        out = output.reshape(B, n, c + 1 + nc, hh, ww).astype(np.float64)
        delta = np.zeros_like(out)
        anchors = np.asarray(self.anchors, np.float64).reshape(-1, 2)    # grid units
        truth = truth.reshape(B, -1, c + 1).astype(np.float64)[:, :30]
        jj, ii = np.meshgrid(np.arange(hh), np.arange(ww), indexing="ij")
        stats = _new_stats()
        for b in range(B):
            rows = self._truth_rows(truth[b])
            o = out[b]
            px, py, pw, ph = self._pred_boxes(o, anchors)
            stats["anyobj"] += o[:, c].sum()
            delta[b, :, c] = self.noobject_scale * ((1 if self.background else 0) - o[:, c])
            if len(rows):
                best = score((px[..., None], py[..., None], pw[..., None], ph[..., None]),
                             tuple(rows[:, :4].T), "iou").max(axis=-1)
                delta[b, :, c][best > self.thresh] = 0
            if seen < 12800:          # pull every box toward its anchor at the cell centre
                for a in range(n):
                    t = ((ii + .5) / ww, (jj + .5) / hh, anchors[a, 0] / ww, anchors[a, 1] / hh)
                    target = (t[0] * ww - ii, t[1] * hh - jj, np.zeros_like(px[a]),
                              np.zeros_like(px[a]))
                    for k in range(4):
                        delta[b, a, k] = .01 * (target[k] - o[a, k])
            for t in rows:
                i, j = int(t[0] * ww), int(t[1] * hh)
                if self.bias_match:
                    sw, sh = anchors[:, 0] / ww, anchors[:, 1] / hh
                else:
                    sw = np.exp(o[:, 2, j, i]) * anchors[:, 0] / ww
                    sh = np.exp(o[:, 3, j, i]) * anchors[:, 1] / hh
                shape_iou = score((0, 0, sw, sh), (0, 0, t[2], t[3]), "iou")
                a = int(np.argmax(shape_iou)) if shape_iou.max() > 0 else 0
                iou = self._box_delta(t, o, delta[b], a, a, j, i,
                                      self.coord_scale * (2 - t[2] * t[3]))
                stats["recall"] += iou > .5
                stats["recall75"] += iou > .75
                stats["iou"] += iou
                stats["obj"] += o[a, c, j, i]
                target = 0 if self.background else (iou if self.rescore else 1)
                delta[b, a, c, j, i] = self.object_scale * (target - o[a, c, j, i])
                cls = int(t[4])
                first = c + 1
                if delta[b, a, first, j, i] and not self.softmax:
                    delta[b, a, first + cls, j, i] = self.class_scale * (
                        1 - o[a, first + cls, j, i])
                else:
                    delta[b, a, first:, j, i] = -self.class_scale * o[a, first:, j, i]
                    delta[b, a, first + cls, j, i] += self.class_scale
                    stats["cls"] += o[a, first + cls, j, i]
                stats["count"] += 1
        self.cost = float((delta * delta).sum())
        stats["cells"] = B * n * hh * ww
        self.stats = stats
        return delta.reshape(output.shape).astype(output.dtype)

    def describe(self):
        return "detection"
