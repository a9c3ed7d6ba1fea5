"""``[yolo]`` (pj:src/yolo_layer.c) and ``[region]`` (pj:src/region_layer.c).

Memory per image and anchor slot: (coords, obj, classes) planes of w*h each.
yolo:   logistic on x, y, obj and the classes; w, h stay raw.  AlexeyAB's ``new_coords=1``: no
        logistic at all (the conv before applies it, activation=logistic); x, y still get
        scale_x_y; the box is ((i + x)/lw, (j + y)/lh, 4 w^2 anchor_w / net_w, 4 h^2 ...)
        (ab:src/yolo_layer.c forward_yolo_layer, get_yolo_box).
region: logistic on x, y and obj (unless ``background``); the classes get a softmax per cell
        (``softmax=1``) or a logistic; with ``tree=`` (YOLO9000) a softmax per group of the
        tree (darknet_py.detection.tree), as pj's GPU forward (its CPU one runs the group
        softmax over the wrong entries, with a temperature of 0).

Training: the losses of darknet_py.nn.layers.yololoss (deltas, cost and the report line's
statistics, on the outputs' device); on the GPU through the kernels of yolokernel.py (the same
function with no host work, so a CUDA graph captures them; [region] with a tree plans on the
host).  [yolo]'s backward adds the delta (times AlexeyAB's ``delta_normalizer``) to the input
delta with no logistic derivative (pj); [region]'s applies the logistic derivative to x, y and
obj (pj's GPU; pj's CPU backward is empty).
"""

import math

import numpy as np

from ..activations import activate
from ...box import NMS_KINDS
from ...errors import CfgError, DarknetError, NotSupportedError
from ...detection.tree import read_map, read_tree, tree_softmax
from ..backend import on_gpu
from . import yolokernel
from .base import Layer, unimplemented_in
from .yololoss import STATS, fetch_stats, region_loss, yolo_loss

_COST = STATS.index("cost")     # where a loss's cost sits in its STATS totals


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
            sec.int("random", 0, minimum=0)
            sec.int("coords", 4, minimum=1)
        else:
            sec.float("random", 0.0, minimum=0.0)     # multi-scale's rand_scale factor (AB)
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

    def _learn(self, delta, totals):
        """Keeps a loss's deltas and, on their device, its cost and statistics (``STATS``)."""
        self.delta = delta
        self._totals, self._cells = totals, delta.shape[0] * self.n * self.h * self.w

    # The cost and the statistics are read from the device when first asked for, in one fetch
    # (see Layer.cost).
    def _fetch(self):
        if self.__dict__.get("_totals") is not None:
            self._cost, self._stats = fetch_stats(self._totals, self._cells)
            self._totals = None
        return self._cost

    @property
    def cost(self):
        return self._fetch()

    @cost.setter
    def cost(self, value):
        self._cost, self._totals = value, None

    def loss_state(self):
        return self._cost, self.__dict__.get("_totals"), getattr(self, "_cells", 0)

    def set_loss_state(self, state):
        self._cost, self._totals, self._cells = state

    def cost_now(self):
        totals = self.__dict__.get("_totals")
        return self._cost if totals is None else totals[_COST]

    @property
    def stats(self):
        self._fetch()
        return self._stats

    @stats.setter
    def stats(self, value):
        self._stats, self._totals = value, None

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


def resize_needs_ab_placement(value, section_name):
    """The error for AlexeyAB's [yolo] resize with pj's placement (no letter_box= in [net]):
    resize scales AB's crops, which pj's placement does not make (data/detaug.py)."""
    return (f"resize={value:g} in [{section_name}] scales AlexeyAB's training crops: set "
            "letter_box=0 (or 1) in [net] to train with AlexeyAB's placement, or remove resize= "
            "(pj's placement, without letter_box=, has its own random scale)")


def _host_first(net):
    """The truth table for the host-planned losses (yololoss): the pass's own on the CPU, else
    the host array the loader gave when there is one (a device copy would be fetched back)."""
    truth = net.truth
    if isinstance(truth, np.ndarray):
        return truth
    host = getattr(net, "truth_host", None)     # states built by hand (tests) have none
    return truth if host is None else host


class YoloLayer(_DetectionHead):
    type = "yolo"
    cfg_keys = frozenset((
        "classes num mask anchors max jitter ignore_thresh truth_thresh random "
        "map scale_x_y iou_loss iou_normalizer cls_normalizer obj_normalizer "
        "iou_thresh delta_normalizer beta_nms max_delta resize "
        "label_smooth_eps objectness_smooth iou_thresh_kind nms_kind "
        "counters_per_class focal_loss show_details new_coords embedding_layer"
    ).split())
    # refused when set (cfg check, training start): embedding_layer feeds AB's tracking and
    # contrastive training
    training_unimplemented = {"embedding_layer": None}
    coords = 4

    #: on the GPU the loss kernels (yolokernel) read the truths where they are
    capturable = True

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
        # the training crops' random scale (AB's placement only: data/detaug.py)
        layer.resize = section.float("resize", 1.0)
        layer.resize_line = section.line_of("resize")
        if layer.resize <= 0:
            raise CfgError(f"resize={section.str('resize')} in [{section.name}] must be > 0 "
                           "(1: no random scale)", section.path, section.line_of("resize"))
        layer.map = section.str("map")
        # AlexeyAB's options.  Defaults keep pj's behaviour (AB's own iou_normalizer default
        # is 0.75; cfgs written for AB set it explicitly).
        layer.scale_x_y = section.float("scale_x_y", 1.0)
        layer.new_coords = section.bool("new_coords")
        layer.iou_loss = section.str("iou_loss", "mse")
        if layer.iou_loss not in ("mse", "giou", "diou", "ciou"):
            layer.iou_loss = "iou"            # AlexeyAB: any other value is plain IoU
        layer.iou_normalizer = section.float("iou_normalizer", 1.0)
        layer.cls_normalizer = section.float("cls_normalizer", 1.0)
        layer.obj_normalizer = section.float("obj_normalizer", 1.0)
        layer.iou_thresh = section.float("iou_thresh", 1.0)
        # AB's IoU targets for the objectness (yololoss.py)
        layer.objectness_smooth = section.bool("objectness_smooth")
        # scales the delta handed back to the previous layer (AB's GPU backward_yolo_layer_gpu;
        # its CPU backward ignores it: darknet_py follows the GPU, see docs/notes.md)
        layer.delta_normalizer = section.float("delta_normalizer", 1.0)
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
        extra = layer.coords + 1
        layer._shape_check(section, layer.n * (layer.classes + extra),
                           f"len(mask)={layer.n} x (classes={layer.classes} + {extra})")
        layer.cost = 0.0
        layer.stats = {}
        return layer

    def forward(self, net):
        x = self.input_image(net.input)
        p = self._planes(x).copy()
        if not self.new_coords:          # new_coords: the conv before applied the logistic
            p[:, :, 0:2] = activate(p[:, :, 0:2], "logistic")
            p[:, :, 4:] = activate(p[:, :, 4:], "logistic")
        if self.scale_x_y != 1:          # AB: x' = s*sigmoid(x) - (s-1)/2, the same for y
            p[:, :, 0:2] = p[:, :, 0:2] * self.scale_x_y - 0.5 * (self.scale_x_y - 1)
        self.output = p.reshape(x.shape)
        self.cost = 0.0
        if net.train:
            if net.truth is None:
                raise DarknetError(f"layer {self.index} [yolo] trains on box truths; none given",
                                   self.path, self.line)
            if on_gpu(self.output):
                self._learn(*yolokernel.yolo_loss(self, self.output, net.truth))
            else:
                self._learn(*yolo_loss(self, self.output, _host_first(net)))

    def backward(self, net):
        if net.delta is None:
            return
        if self.delta_normalizer == 1:
            net.delta += self.delta.reshape(net.delta.shape)
        else:
            net.delta += self.delta_normalizer * self.delta.reshape(net.delta.shape)

    def describe(self):
        return "yolo"


class RegionLayer(_DetectionHead):
    type = "region"

    @property
    def capturable(self):
        """On the GPU the loss kernels (yolokernel) read the truths where they are; with a
        tree (YOLO9000) the loss plans on the host (yololoss, regiontree)."""
        return self.softmax_tree is None

    def pass_key(self, net):
        """pj's anchor prior deltas while fewer than 12800 images are seen: a captured pass
        holds one or the other."""
        return net.seen < 12800
    cfg_keys = frozenset((
        "coords classes num softmax background anchors log sqrt max "
        "rescore classfix absolute random bias_match jitter thresh coord_scale "
        "object_scale noobject_scale mask_scale class_scale map tree"
    ).split())

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
        layer.softmax_tree = layer.map = None
        if section.has("tree"):         # pj parse_region: read_tree, relative to the cwd
            tree = layer.softmax_tree = read_tree(section.str("tree"), section.path,
                                                  section.line_of("tree"))
            if tree.n != layer.classes:
                raise CfgError(f"tree={tree.path} has {tree.n} classes but [{section.name}] "
                               f"has classes={layer.classes}: they must be equal", section.path,
                               section.line_of("tree"))
        if section.has("map"):          # pj parse_region: read_map (training classes)
            layer.map = read_map(section.str("map"), section.path, section.line_of("map"),
                                 layer.classes)
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
        if self.softmax_tree is not None:       # pj forward_region_layer_gpu's softmax_tree
            p[:, :, c + 1:] = tree_softmax(self.softmax_tree, p[:, :, c + 1:], 2)
        elif self.softmax:
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
            if self.coords != 4:
                raise NotSupportedError(f"training a [region] with coords={self.coords} is not "
                                        "supported (coords=4 is)", self.path, self.line)
            if on_gpu(self.output) and self.softmax_tree is None:
                self._learn(*yolokernel.region_loss(self, self.output, net.truth, net.seen))
            else:
                self._learn(*region_loss(self, self.output, _host_first(net), net.seen))

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

    def describe(self):
        return "detection"
