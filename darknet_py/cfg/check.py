"""``darknet_py check CFG [DATA]``: every problem in a Darknet ``.cfg`` (and ``.data``) at once.

    findings = check_cfg("cfg/yolov3-tiny.cfg", "data/coco.data")
    for f in findings:
        print(f)    # cfg/x.cfg:128: error: filters=255 but the [yolo] ... set filters=24

Unlike :class:`darknet_py.nn.network.Network`, which stops at the first problem, the checker reads
the whole file tolerantly and keeps going: each finding names the file, the line of the mistake,
what was expected and the fix.  It never allocates weights: shapes are propagated with Darknet's
rules (spec darknet-core §2) by a light (c, h, w) walk, so broken and very large cfgs are checked
in milliseconds.

Levels
------
``error``
    Darknet (pjreddie or AlexeyAB) or darknet_py would refuse, crash or assert on the cfg; or a
    setting is silently lost (an unparsable value, an unknown activation/policy, a misspelt key
    whose intended option then takes its default); or the training schedule contradicts itself
    (``max_batches`` below ``burn_in`` or the last of ``steps``, steps that do not increase,
    fewer ``scales`` than ``steps``); or the cfg, the ``.data`` and the ``.names`` disagree on
    the number of classes.
``warning``
    The cfg runs as written but probably not as meant: a duplicate key (the first wins), an
    unknown key with no near match, batch norm or a non-linear activation in the conv feeding a
    detection head, ``batch`` not a multiple of ``subdivisions``, a mini-batch below 4 images
    with batch norm, and everything that is valid Darknet but **not supported by darknet_py**
    ([rnn], [gru], [local], [detection], ``tree=``, ``reorg extra=``, AlexeyAB-only options...).
    Those are warnings, not errors, because the cfg is a correct Darknet cfg.

``strict=True`` reports every warning as an error (as ``Network(strict=True)`` does).

Choices worth knowing
---------------------
* Known keys are pjreddie's and AlexeyAB's together (``KNOWN_KEYS``, spec darknet-core §2 and
  ab:src/parser.c); the common layer keys of both count in every layer section.  A misspelt key
  is an error only when its near match is not set (``filter=24`` without ``filters=``).
* The mini-batch warning skips ``batch=1`` (the "Testing" setting shipped cfgs use).
* ``[shortcut]`` sizes must be equal or integer multiples (26 and 13, not 27 and 13 or 7 and 4),
  stricter than pjreddie's assert, which then adds only the overlapping part.  Different
  channel counts are fine (pjreddie's ResNet cfgs rely on it).
* A ``[route]`` of maps with different sizes is flat in Darknet; the error is reported at the
  route's ``layers=`` line when an image layer follows (a warning when none does).
* ``[connected]`` gives a 1x1xN image, as in Darknet (darknet_py's layer calls it flat: an image
  layer after it is a "not supported by darknet_py" warning).
* width/height must be multiples of the total stride (the largest downsampling of any layer)
  only in nets with a detection head, as AlexeyAB warns; classifiers such as alexnet (227) are
  fine with the floor.
"""

import collections
import difflib
import math
import os
import sys
from fractions import Fraction

from ..data.datacfg import DataCfg
from ..errors import DarknetError
from ..nn.activations import ACTIVATIONS as DP_ACTIVATIONS
from .parser import SECTION_TYPES, Option, Section, scan_cfg
from ..nn.layers import REGISTRY as LAYER_REGISTRY
from ..nn.network import COMMON_KEYS as DP_COMMON_KEYS
from ..nn.network import UNSUPPORTED_SECTIONS, NetOptions, asks_for_something
from ..nn.policies import POLICIES

__all__ = ["Finding", "check_cfg", "main_check", "KNOWN_KEYS"]


class Finding:
    """One problem: ``str(f) == f"{path}:{line}: {level}: {message}"``."""

    __slots__ = ("path", "line", "level", "message")

    def __init__(self, path, line, level, message):
        self.path, self.line, self.level, self.message = path, line, level, message

    def __str__(self):
        if self.line is None:            # the file as a whole (e.g. it cannot be read)
            return f"{self.path}: {self.level}: {self.message}"
        return f"{self.path}:{self.line}: {self.level}: {self.message}"

    def __repr__(self):
        return (f"Finding({self.path!r}, {self.line!r}, {self.level!r}, "
                f"{self.message!r})")

    def __eq__(self, other):
        return isinstance(other, Finding) and (self.path, self.line, self.level, self.message) \
            == (other.path, other.line, other.level, other.message)

    def __hash__(self):
        return hash((self.path, self.line, self.level, self.message))


# --------------------------------------------------------------------------------------------
# What Darknet knows.  Kinds: i int, f float, b 0/1 flag (any int), s string, il / fl list of
# ints / floats, a activation; a tuple is a string that must be one of its values.
# pj = pjreddie/darknet src/parser.c, ab = AlexeyAB/darknet src/parser.c (spec darknet-core §2).

DARKNET_ACTIVATIONS = ("logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky",
                       "elu", "loggy", "stair", "hardtan", "lhtan", "selu",           # pj
                       "relu6", "swish", "mish", "hard_mish", "gelu", "revleaky",      # ab
                       "normalize_channels", "normalize_channels_softmax",
                       "normalize_channels_softmax_maxval")
COST_TYPES = ("sse", "seg", "masked", "smooth", "L1", "wgan")
IOU_KINDS = ("mse", "iou", "giou", "diou", "ciou")


def _table(spec):
    out = {}
    for item in spec.split():
        key, kind = item.split(":")
        out[key] = kind
    return out


_PJ = {
    "net": "batch:i subdivisions:i time_steps:i learning_rate:f momentum:f decay:f adam:b B1:f "
           "B2:f eps:f clip:f notruth:b height:i width:i channels:i inputs:i max_crop:i "
           "min_crop:i max_ratio:f min_ratio:f center:b angle:f aspect:f saturation:f "
           "exposure:f hue:f random:f policy:policy burn_in:i power:f step:i scale:f steps:il "
           "scales:fl gamma:f max_batches:i",
    "convolutional": "filters:i size:i stride:i pad:b padding:i groups:i activation:a "
                     "batch_normalize:b binary:b xnor:b flipped:b dot:f",
    "deconvolutional": "filters:i size:i stride:i activation:a batch_normalize:b pad:b "
                       "padding:i",
    "connected": "output:i activation:a batch_normalize:b",
    "maxpool": "stride:i size:i padding:i",
    "avgpool": "",
    "softmax": "groups:i temperature:f tree:s spatial:f noloss:b",
    "dropout": "probability:f",
    "route": "layers:il",
    "shortcut": "from:il activation:a alpha:f beta:f",
    "upsample": "stride:i scale:f",
    "yolo": "classes:i num:i mask:il max:i jitter:f ignore_thresh:f truth_thresh:f random:f "
            "map:s anchors:fl",
    "region": "coords:i classes:i num:i log:b sqrt:b softmax:b background:b max:i jitter:f "
              "rescore:b thresh:f classfix:i absolute:b random:f coord_scale:f object_scale:f "
              "noobject_scale:f mask_scale:f class_scale:f bias_match:b tree:s map:s "
              "anchors:fl",
    "detection": "coords:i classes:i rescore:b num:i side:i softmax:b sqrt:b max:i "
                 "coord_scale:f forced:b object_scale:f noobject_scale:f class_scale:f "
                 "jitter:f random:f reorg:b",
    "iseg": "classes:i ids:i",
    "cost": "type:cost scale:f ratio:f noobj:f thresh:f",
    "batchnorm": "",
    "crop": "crop_height:i crop_width:i flip:b angle:f saturation:f exposure:f shift:f "
            "noadjust:b",
    "reorg": "stride:i reverse:b flatten:b extra:i",
    "local": "filters:i size:i stride:i pad:b activation:a",
    "l2norm": "",
    "logistic": "",
    "activation": "activation:a",
    "normalization": "alpha:f beta:f kappa:f size:i",
    "rnn": "output:i hidden:i activation:a batch_normalize:b shortcut:b",
    "gru": "output:i batch_normalize:b tanh:b",
    "lstm": "output:i batch_normalize:b",
    "crnn": "output_filters:i hidden_filters:i activation:a batch_normalize:b shortcut:b",
}
_PJ_COMMON = "truth:b onlyforward:b stopbackward:b dontsave:b dontload:b numload:i " \
             "dontloadscales:b learning_rate:f smooth:f"

_YOLO_AB = ("show_details:b max_delta:f counters_per_class:il label_smooth_eps:f scale_x_y:f "
            "objectness_smooth:b new_coords:b iou_normalizer:f obj_normalizer:f "
            "cls_normalizer:f delta_normalizer:f iou_loss:iou iou_thresh_kind:iou beta_nms:f "
            "nms_kind:nms resize:f focal_loss:b iou_thresh:f track_history_size:i sim_thresh:f "
            "dets_for_track:i dets_for_show:i track_ciou_norm:f embedding_layer:i")
_AB = {
    "net": "learning_rate_min:f sgdr_cycle:i sgdr_mult:i track:i augment_speed:i "
           "sequential_subdivisions:i try_fix_nan:b weights_reject_freq:i equidistant_point:i "
           "badlabels_rejection_percentage:f num_sigmas_reject_badlabels:f ema_alpha:f "
           "use_cuda_graph:b loss_scale:f dynamic_minibatch:b optimized_memory:i "
           "workspace_size_limit_MB:f flip:b blur:i gaussian_noise:i mixup:i cutmix:b mosaic:b "
           "letter_box:b mosaic_bound:b contrastive:b contrastive_jit_flip:b "
           "contrastive_color:b unsupervised:b label_smooth_eps:f resize_step:f attention:b "
           "adversarial_lr:f adversarial:b max_chart_loss:f seq_scales:fl "
           "show_receptive_field:b",
    "convolutional": "stride_x:i stride_y:i dilation:i antialiasing:i assisted_excitation:f "
                     "share_index:i cbn:b bin_output:b sway:b rotate:b stretch:b "
                     "stretch_sway:b angle:f grad_centr:b reverse:f coordconv:b stream:i "
                     "wait_stream:i",
    "maxpool": "stride_x:i stride_y:i maxpool_depth:b out_channels:i antialiasing:i "
               "maxpool_zero_nonmax:b",
    "local_avgpool": "stride:i stride_x:i stride_y:i size:i padding:i",
    "dropout": "dropblock:b dropblock_size_rel:f dropblock_size_abs:f",
    "route": "groups:i group_id:i stream:i wait_stream:i",
    "shortcut": "weights_type:wtype weights_normalization:wnorm",
    "yolo": _YOLO_AB,
    "gaussian_yolo": "classes:i num:i mask:il max:i jitter:f ignore_thresh:f truth_thresh:f "
                     "random:f map:s anchors:fl uc_normalizer:f yolo_point:s " + _YOLO_AB,
    "region": "focal_loss:b resize:f",
    "detection": "resize:f",
    "reorg3d": "stride:i reverse:b",
    "rnn": "logistic:b",
    "crnn": "output:i hidden:i size:i stride:i dilation:i pad:b padding:i groups:i xnor:b",
    "conv_lstm": "size:i stride:i dilation:i pad:b padding:i output:i groups:i activation:a "
                 "batch_normalize:b xnor:b peephole:b bottleneck:b state_constrain:i "
                 "shortcut:b lstm_activation:a time_normalizer:f",
    "history": "history_size:i",
    "scale_channels": "from:i scale_wh:b activation:a",
    "sam": "from:i activation:a",
    "implicit": "mean:f std:f filters:i atoms:i",
    "contrastive": "classes:i yolo_layer:i temperature:f cls_normalizer:f max_delta:f "
                   "contrastive_neg_max:i",
    "empty": "",
}
_AB_COMMON = "clip:f onlyforward:b dont_update:b burnin_update:b stopbackward:b " \
             "train_only_bn:b dontload:b dontloadscales:b learning_rate:f"

_CHOICES = {
    "policy": POLICIES, "cost": COST_TYPES, "iou": IOU_KINDS,
    "nms": ("default", "greedynms", "diounms", "cornersnms"),
    "wtype": ("none", "per_feature", "per_layer", "per_channel"),
    "wnorm": ("none", "relu", "avg_relu", "softmax"),
}

#: canonical section type -> {key: kind}, pj and ab together (the common layer keys included)
KNOWN_KEYS = {}
#: canonical section type -> {key: "pjreddie" | "AlexeyAB"} (where a key comes from)
_ORIGIN = {}
for _t in set(SECTION_TYPES.values()):
    _keys, _orig = {}, {}
    if _t != "net":
        for _k, _v in _table(_AB_COMMON).items():
            _keys[_k], _orig[_k] = _v, "AlexeyAB"
        for _k, _v in _table(_PJ_COMMON).items():
            _keys[_k], _orig[_k] = _v, "pjreddie"
    for _k, _v in _table(_AB.get(_t, "")).items():
        _keys[_k], _orig[_k] = _v, "AlexeyAB"
    for _k, _v in _table(_PJ.get(_t, "")).items():
        _keys[_k], _orig[_k] = _v, "pjreddie"
    KNOWN_KEYS[_t], _ORIGIN[_t] = _keys, _orig

# What darknet_py itself reads: each layer class's cfg_keys (the [net] options' for [net]).
# A Darknet key outside them is "not supported by darknet_py".  Section lookups refuse
# undeclared keys, so the declarations cannot fall behind the code that reads them.
DP_KEYS = {"net": set(NetOptions.cfg_keys),
           **{t: set(cls.cfg_keys) for t, cls in LAYER_REGISTRY.items()}}

HEAD_TYPES = ("yolo", "region", "gaussian_yolo", "detection")
# layers whose make function never sets out_w/out_h/out_c: a flat output (spec darknet-core §2.2)
_FLAT_TYPES = ("softmax", "cost", "detection", "rnn", "gru", "lstm")

def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def _near(word, candidates, cutoff=0.7):
    got = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    if not got:       # keys are case-sensitive in Darknet: 'Filters' is not 'filters'
        low = {c.lower(): c for c in candidates}
        got = [low[word.lower()]] if word.lower() in low else []
    return got[0] if got else None


class _Shape:
    """A layer's output as Darknet sees it: c x h x w, or a flat vector of ``c`` values."""

    __slots__ = ("c", "h", "w", "flat")

    def __init__(self, c, h, w, flat=False):
        self.c, self.h, self.w, self.flat = c, h, w, flat

    @property
    def size(self):
        return self.c * self.h * self.w

    def __str__(self):
        if self.flat:
            return f"a flat vector of {self.c} values"
        return f"{self.w}x{self.h}x{self.c}"


class _Layer:
    """One layer section with its parsed options and the output shape the walk gave it."""

    def __init__(self, index, sec, opts, vals):
        self.index, self.sec, self.type = index, sec, sec.type
        self.opts = opts            # key -> first Option
        self.vals = vals            # key -> parsed value (only the ones that parsed)
        self.shape = None           # _Shape, or None when unknown (after an error)
        self.scale = None           # (fx, fy): how much smaller than the input, None: n/a
        self.flat_cause = None      # the route whose mismatched sizes made the output flat

    def v(self, key, default=None):
        return self.vals.get(key, default)

    def has(self, key):
        return key in self.vals

    def raw(self, key):
        """The value as written (for messages: 'momentum=9', not 9.0)."""
        return self.opts[key].value if key in self.opts else str(self.vals.get(key))

    def line(self, key=None):
        opt = self.opts.get(key) if key else None
        return opt.line if opt is not None else self.sec.line

    @property
    def name(self):
        return self.sec.name

    def what(self):
        return f"layer {self.index} ([{self.sec.name}] at line {self.sec.line})"


class _Checker:
    def __init__(self, path):
        self.path = path
        self.findings = []
        self.layers = []
        self.net = None
        self.net_vals = {}
        self.net_opts = {}
        self.input = None
        self.reported_routes = set()
        self.head_ref = None
        self.comments = {}          # line -> inline comment cut from that line

    # -- findings -------------------------------------------------------------------------
    def error(self, line, message, path=None):
        self.findings.append(Finding(path or self.path, line, "error", message))

    def warn(self, line, message, path=None):
        self.findings.append(Finding(path or self.path, line, "warning", message))

    # -- reading --------------------------------------------------------------------------
    def parse(self, text):
        """Darknet's grammar (darknet_py.cfg.parser.scan_cfg, as the parser reads it), never stopping."""
        sections = []
        current = None
        for lineno, kind, a, b in scan_cfg(text):
            if kind == "section":
                name, rest = a, b
                if rest is None:
                    self.error(lineno, f"section header '[{name}' has no closing ']': "
                                       f"write [{name}]")
                elif rest and rest[0] not in "#;":
                    self.error(lineno, f"unexpected text '{rest}' after [{name}]: Darknet "
                                       f"reads the section type as '[{name}]{rest}'; put it "
                                       "on its own line")
                elif rest:
                    self.warn(lineno, f"comment after [{name}]: Darknet does not allow it "
                                      f"(it reads the type '[{name}]{rest}', 'Type not "
                                      "recognized'); put the comment on its own line")
                current = Section(name, lineno, self.path)
                sections.append(current)
                continue
            line = a if kind == "text" else "=".join(a)
            if current is None:
                self.error(lineno, f"option '{line}' comes before any [section]: the file must "
                                   "start with [net]")
                continue
            if kind == "text":
                self.warn(lineno, f"'{line}' is not key=value; Darknet ignores it")
                continue
            key, value = a
            if not key:
                self.error(lineno, f"'{line}' has no key before '='")
                continue
            if value == "":
                self.error(lineno, f"option '{key}=' has no value: Darknet rejects the line "
                                   "('could parse') and uses the default; give a value or "
                                   "delete the line")
                continue
            if b is not None:   # checked with the key's kind (parse_value)
                self.comments[lineno] = b
            current.options.append(Option(key, value, lineno))
        return sections

    def options(self, sec):
        """First occurrence of each key (Darknet: first wins); later ones are warned about."""
        first = {}
        for opt in sec.options:
            prev = first.get(opt.key)
            if prev is not None:
                if prev.value == opt.value:
                    tail = "the same value; delete this line"
                else:
                    tail = (f"Darknet uses {opt.key}={prev.value} and ignores "
                            f"{opt.key}={opt.value}; delete the one you do not mean")
                self.warn(opt.line, f"duplicate option '{opt.key}' in [{sec.name}]: line "
                                    f"{prev.line} already sets it ({tail})")
                continue
            first[opt.key] = opt
        return first

    def parse_value(self, sec, opt, kind):
        """The typed value of an option, or None (after an error) when it does not parse."""
        v = opt.value
        where = f"{opt.key}={v} in [{sec.name}]"
        comment = self.comments.get(opt.line)
        if comment is not None and (kind in ("s", "a") or kind in _CHOICES):
            self.warn(opt.line, f"inline comment after {opt.key}={v}: Darknet keeps it as part "
                                f"of the value ('{v}{comment}'); put the comment on its own line")
        try:
            if kind in ("i", "b"):
                value = int(v, 10)
            elif kind == "f":
                value = float(v)
                if not math.isfinite(value):
                    raise ValueError
            elif kind in ("il", "fl"):
                items = v.split(",")
                if items[-1] == "":
                    items = items[:-1]
                    self.warn(opt.line, f"trailing comma in {opt.key}={v}: Darknet reads an "
                                        f"extra 0 there ({opt.key}={v}0); remove the comma")
                conv = (lambda s: int(s, 10)) if kind == "il" else float
                value = [conv(s) for s in items]
                if kind == "fl" and not all(math.isfinite(x) for x in value):
                    raise ValueError
            else:
                value = v
        except ValueError:
            expected = {"i": "an integer", "b": "0 or 1", "f": "a number",
                        "il": "a comma-separated list of integers",
                        "fl": "a comma-separated list of numbers"}[kind]
            hint = ""
            if kind in ("i", "b"):
                try:
                    hint = f" (Darknet's atoi would read {int(float(v))})"
                except (ValueError, OverflowError):
                    hint = " (Darknet's atoi would read 0)"
            self.error(opt.line, f"{where}: expected {expected}{hint}")
            return None
        if kind == "b" and value not in (0, 1):
            self.warn(opt.line, f"{where}: expected 0 or 1 (Darknet treats any non-zero "
                                "value as 1)")
        if kind == "a":
            if value not in DARKNET_ACTIVATIONS:
                near = _near(value, DARKNET_ACTIVATIONS, 0.6)
                hint = f"did you mean '{near}'? " if near else ""
                self.error(opt.line, f"{where}: unknown activation ({hint}Darknet prints "
                                     "\"Couldn't find activation\" and uses relu); valid: "
                                     + ", ".join(DARKNET_ACTIVATIONS[:14]))
                return None
            if value not in DP_ACTIVATIONS:
                self.warn(opt.line, f"{where}: activation '{value}' (AlexeyAB) is not "
                                    "supported by darknet_py")
        elif kind in _CHOICES:
            choices = _CHOICES[kind]
            if value not in choices:
                near = _near(value, choices, 0.6)
                hint = f" (did you mean '{near}'?)" if near else ""
                fallback = {"policy": "constant", "cost": "sse"}.get(kind)
                fb = f"; Darknet falls back to {fallback}" if fallback else ""
                self.error(opt.line, f"{where}: expected one of {', '.join(choices)}{hint}{fb}")
                return None
        return value

    def section_values(self, sec):
        """Check every option of a section (known key, type); returns (opts, vals)."""
        opts = self.options(sec)
        vals = {}
        known = KNOWN_KEYS.get(sec.type, {})
        dp = DP_KEYS.get(sec.type)
        if dp is not None and sec.type != "net":
            dp = dp | set(DP_COMMON_KEYS)
        reader = NetOptions if sec.type == "net" else LAYER_REGISTRY.get(sec.type)
        unimplemented = getattr(reader, "training_unimplemented", {})
        for key, opt in opts.items():
            kind = known.get(key)
            if kind is None:
                self.unknown_key(sec, key, opt, opts, known)
                continue
            value = self.parse_value(sec, opt, kind)
            if value is not None:
                vals[key] = value
            if dp is not None and key not in dp:
                origin = _ORIGIN[sec.type].get(key, "Darknet")
                self.warn(opt.line, f"option '{key}' in [{sec.name}] ({origin}) is not "
                                    "supported by darknet_py, which ignores it")
            elif key in unimplemented and asks_for_something(opt.value, unimplemented[key]):
                self.warn(opt.line, f"{key}={opt.value} in [{sec.name}]: darknet_py's training "
                                    "does not implement it and trains without it")
        return opts, vals

    def unknown_key(self, sec, key, opt, opts, known):
        near = _near(key, known)
        if near is not None and near not in opts:
            self.error(opt.line, f"unknown option '{key}' in [{sec.name}] (did you mean "
                                 f"'{near}'? '{near}' is not set, so Darknet uses its default): "
                                 f"rename it to {near}={opt.value}")
            return
        if near is not None:
            self.warn(opt.line, f"unknown option '{key}' in [{sec.name}] (did you mean '{near}'? "
                                f"it is already set on line {opts[near].line}); Darknet ignores "
                                "this line: delete it")
            return
        owners = sorted((_ORIGIN[t][key] != "pjreddie", t) for t, keys in KNOWN_KEYS.items()
                        if key in keys)
        owners = [t for _, t in owners]
        if owners:
            self.warn(opt.line, f"option '{key}' is not read by [{sec.name}] (it is an option "
                                f"of [{owners[0]}]); Darknet ignores it here")
        else:
            self.warn(opt.line, f"unknown option '{key}' in [{sec.name}]; Darknet ignores it")

    # -- [net] ----------------------------------------------------------------------------
    def check_net(self, sec):
        opts, v = self.section_values(sec)
        self.net, self.net_opts, self.net_vals = sec, opts, v

        def line(key):
            return opts[key].line if key in opts else sec.line

        def raw(key):
            return opts[key].value

        def at_least(key, minimum, default):
            value = v.get(key, default)
            if value < minimum:
                self.error(line(key), f"{key}={value} in [net] must be >= {minimum}")
                return None
            return value

        batch = at_least("batch", 1, 1)
        subdiv = at_least("subdivisions", 1, 1)
        at_least("time_steps", 1, 1)
        for key in ("width", "height", "channels", "inputs", "max_batches", "burn_in"):
            at_least(key, 0, 0)
        if batch and subdiv:
            if batch < subdiv:
                self.error(line("subdivisions"), f"subdivisions={subdiv} is larger than "
                           f"batch={batch}: the mini-batch (batch/subdivisions) would be empty; "
                           f"set subdivisions <= {batch}")
            elif batch % subdiv:
                lo = batch // subdiv
                self.warn(line("subdivisions"), f"batch={batch} is not a multiple of "
                          f"subdivisions={subdiv}: each mini-batch has {lo} images and an "
                          f"update uses {lo * subdiv}, not {batch}; set batch={lo * subdiv} or "
                          "a subdivisions that divides it")
        lr = v.get("learning_rate")
        if lr is not None and lr < 0:
            self.error(line("learning_rate"), f"learning_rate={raw('learning_rate')} must not be "
                       "negative")
        mom = v.get("momentum")
        if mom is not None and not 0 <= mom < 1:
            self.error(line("momentum"), f"momentum={raw('momentum')} must be in [0, 1) "
                       "(usually 0.9)")
        decay = v.get("decay")
        if decay is not None and decay < 0:
            self.error(line("decay"), f"decay={raw('decay')} must not be negative (usually 0.0005)")
        for key in ("saturation", "exposure"):
            if key in v and v[key] <= 0:
                self.error(line(key), f"{key}={raw(key)} must be > 0 (1 means no change)")
        if "hue" in v and not 0 <= v["hue"] <= 1:
            self.error(line("hue"), f"hue={raw('hue')} must be in [0, 1] (usually .1)")

        w, h, c = (max(0, v.get(k, 0)) for k in ("width", "height", "channels"))
        inputs = v.get("inputs", w * h * c)
        if w * h * c:
            self.input = _Shape(c, h, w)
        elif inputs > 0:
            self.input = _Shape(inputs, 1, 1, flat=True)
        elif all(v.get(k, 0) >= 0 for k in ("width", "height", "channels", "inputs")):
            missing = [k for k in ("width", "height", "channels") if not v.get(k)]
            self.error(sec.line, "[net] gives no input size (Darknet: 'No input parameters "
                       f"supplied'): set {', '.join(missing)}")
        self.check_schedule(v, line)

    def check_schedule(self, v, line):
        policy = v.get("policy", None if "policy" in self.net_opts else "constant")
        steps, scales = v.get("steps"), v.get("scales")
        max_batches = v.get("max_batches", 0)
        burn_in = v.get("burn_in", 0)
        if policy == "steps":
            if steps is None or scales is None:
                missing = " and ".join(k + "=" for k, x in (("steps", steps), ("scales", scales))
                                       if x is None and k not in self.net_opts)
                if missing:
                    self.error(line("policy"), f"policy=steps needs {missing} (Darknet: 'STEPS "
                               "policy must have steps and scales in cfg file'), e.g. "
                               "steps=400000,450000 scales=.1,.1")
        elif policy not in ("sgdr", None):
            for key, val in (("steps", steps), ("scales", scales)):
                if val is not None:
                    self.warn(line(key), f"{key}= is ignored because policy={policy}; set "
                                         "policy=steps to use it")
        if steps:
            for a, b in zip(steps, steps[1:]):
                if b <= a:
                    self.error(line("steps"), f"steps={','.join(map(str, steps))} must increase: "
                               f"{b} comes after {a} (Darknet stops at the first step not yet "
                               "reached, so later ones apply late)")
                    break
            if policy == "steps" and scales is not None:
                if len(scales) < len(steps):
                    self.error(line("scales"), f"scales has {len(scales)} values but steps has "
                               f"{len(steps)}: give one scale per step (Darknet reads past the "
                               "end of scales)")
                elif len(scales) > len(steps):
                    self.warn(line("scales"), f"scales has {len(scales)} values but steps has "
                              f"{len(steps)}: the extra scales are ignored")
        if max_batches > 0:
            if burn_in > max_batches:
                self.error(line("max_batches"), f"max_batches={max_batches} is smaller than "
                           f"burn_in={burn_in}: training ends during the burn-in; raise "
                           f"max_batches or lower burn_in")
            if policy == "steps" and steps and steps[-1] > max_batches:
                self.error(line("max_batches"), f"max_batches={max_batches} is smaller than the "
                           f"last of steps ({steps[-1]}), which is never reached: raise "
                           f"max_batches above {steps[-1]} or lower steps")

    # -- layers ---------------------------------------------------------------------------
    def walk(self, sections):
        prev = None
        for index, sec in enumerate(sections):
            if sec.type is None or sec.type == "net":
                if sec.type == "net":
                    self.error(sec.line, f"[{sec.name}] may only be the first section")
                else:
                    near = _near(sec.name, SECTION_TYPES, 0.6)
                    hint = f" (did you mean [{near}]?)" if near else ""
                    self.error(sec.line, f"unknown section [{sec.name}]{hint}: Darknet says "
                                         "'Type not recognized' and makes an empty layer")
                layer = _Layer(index, sec, {}, {})
            else:
                opts, vals = self.section_values(sec)
                layer = _Layer(index, sec, opts, vals)
                if sec.type in UNSUPPORTED_SECTIONS:
                    self.warn(sec.line, f"[{sec.name}] is a valid Darknet layer but is not "
                                        "supported by darknet_py (it cannot build this cfg)")
            self.layers.append(layer)
            inp = self.input if prev is None else prev.shape
            scale = (Fraction(1), Fraction(1)) if prev is None else prev.scale
            handler = getattr(self, "_l_" + (layer.type or "unknown"), None)
            if handler is not None:
                try:
                    handler(layer, inp, scale, prev)
                except _Stop:
                    layer.shape = layer.scale = None
            if layer.shape is not None and layer.shape.flat and layer.flat_cause is None \
                    and prev is not None and prev.shape is not None and prev.shape.flat \
                    and layer.type not in _FLAT_TYPES and layer.type != "route":
                layer.flat_cause = prev.flat_cause
            prev = layer
        for route in self.layers:
            if route.type == "route" and route.shape is not None and route.shape.flat \
                    and route.index not in self.reported_routes and route.flat_cause is route:
                self.warn(route.line("layers"), route.mismatch + ": the route's output is a "
                          "flat vector, which only [connected]/[softmax]-like layers can use")

    def image_input(self, layer, inp, prev):
        """Darknet: 'Layer before X layer must output image'.  Raises _Stop when not."""
        if inp is None:
            raise _Stop
        if not inp.flat and inp.size > 0:
            if prev is not None and prev.type == "connected":
                self.warn(layer.sec.line, f"[{layer.name}] after a [connected]: Darknet reads its "
                          f"output as a 1x1x{inp.c} image, but darknet_py treats it as flat "
                          "and does not support this")
            return inp
        cause = prev.flat_cause if prev is not None else None
        if cause is not None:
            if cause.index not in self.reported_routes:
                self.reported_routes.add(cause.index)
                self.error(cause.line("layers"), f"{cause.mismatch}: the route's output becomes "
                           f"a flat vector and the [{layer.name}] at line {layer.sec.line} needs "
                           "an image; route layers of the same width and height (check the "
                           "layers= indices, or the [upsample]/stride before them)")
            raise _Stop
        src = prev.what() if prev is not None else "[net] (inputs=)"
        self.error(layer.sec.line, f"[{layer.name}] needs an image (channels x height x width) "
                                   f"as input, but {src} gives {inp}")
        raise _Stop

    def positive(self, layer, key, default, minimum=1):
        value = layer.v(key, default)
        if value < minimum:
            self.error(layer.line(key), f"{key}={value} in [{layer.name}] must be >= {minimum}")
            raise _Stop
        return value

    def resolve(self, layer, key, values):
        """Darknet's layer references (negative: relative).  Errors for out-of-range ones."""
        out = []
        bad = False
        here = layer.index
        for v in values:
            i = here + v if v < 0 else v
            if i < 0:
                self.error(layer.line(key), f"{key}={v} in [{layer.name}] points at layer {i}, "
                           f"before the first layer: this is layer {here}, so relative indices "
                           f"go from -{here} to -1" if here else
                           f"{key}={v} in [{layer.name}]: this is layer 0, there is no earlier "
                           "layer to use")
                bad = True
            elif i >= here:
                self.error(layer.line(key), f"{key}={v} in [{layer.name}] points at layer {i}, "
                           f"which is not before this layer (layer {here}): only earlier layers "
                           f"can be used (0..{here - 1}, or -{here}..-1)" if here else
                           f"{key}={v} in [{layer.name}]: this is layer 0, there is no earlier "
                           "layer to use")
                bad = True
            else:
                out.append(i)
        if bad:
            raise _Stop
        return out

    def _l_convolutional(self, L, inp, scale, prev):
        n = self.positive(L, "filters", 1)
        size = self.positive(L, "size", 1)
        stride = self.positive(L, "stride", 1)
        sx = self.positive(L, "stride_x", stride) if L.has("stride_x") else stride
        sy = self.positive(L, "stride_y", stride) if L.has("stride_y") else stride
        padding = self.positive(L, "padding", 0, 0)
        if L.v("pad", 0):
            padding = size // 2
        groups = self.positive(L, "groups", 1)
        for key in ("binary", "xnor"):
            if L.v(key, 0):
                self.warn(L.line(key), f"{key}=1 in [{L.name}] is not supported by darknet_py")
        inp = self.image_input(L, inp, prev)
        if n % groups or inp.c % groups:
            self.error(L.line("groups"), f"groups={groups} in [{L.name}] must divide both the "
                       f"input channels ({inp.c}) and filters ({n})")
            raise _Stop
        oh = (inp.h + 2 * padding - size) // sy + 1
        ow = (inp.w + 2 * padding - size) // sx + 1
        if oh < 1 or ow < 1:
            self.error(L.line("size"), f"size={size} in [{L.name}] does not fit the "
                       f"{inp.w}x{inp.h} input (padding {padding}): the output would be empty")
            raise _Stop
        L.shape = _Shape(n, oh, ow)
        L.scale = scale and (scale[0] * sx, scale[1] * sy)

    def _l_deconvolutional(self, L, inp, scale, prev):
        n = self.positive(L, "filters", 1)
        size = self.positive(L, "size", 1)
        stride = self.positive(L, "stride", 1)
        padding = self.positive(L, "padding", 0, 0)
        if L.v("pad", 0):
            padding = size // 2
        inp = self.image_input(L, inp, prev)
        L.shape = _Shape(n, (inp.h - 1) * stride + size - 2 * padding,
                         (inp.w - 1) * stride + size - 2 * padding)
        L.scale = scale and (scale[0] / stride, scale[1] / stride)

    def _l_local(self, L, inp, scale, prev):
        n = self.positive(L, "filters", 1)
        size = self.positive(L, "size", 1)
        stride = self.positive(L, "stride", 1)
        pad = L.v("pad", 0)
        inp = self.image_input(L, inp, prev)
        oh = (inp.h - (1 if pad else size)) // stride + 1
        ow = (inp.w - (1 if pad else size)) // stride + 1
        if oh < 1 or ow < 1:
            self.error(L.line("size"), f"size={size} in [{L.name}] does not fit the "
                       f"{inp.w}x{inp.h} input")
            raise _Stop
        L.shape = _Shape(n, oh, ow)
        L.scale = scale and (scale[0] * stride, scale[1] * stride)

    def _l_maxpool(self, L, inp, scale, prev):
        stride = self.positive(L, "stride", 1)
        sx = self.positive(L, "stride_x", stride) if L.has("stride_x") else stride
        sy = self.positive(L, "stride_y", stride) if L.has("stride_y") else stride
        size = self.positive(L, "size", stride)
        padding = self.positive(L, "padding", size - 1, 0)
        inp = self.image_input(L, inp, prev)
        if L.v("maxpool_depth", 0):
            L.shape = _Shape(self.positive(L, "out_channels", 1), inp.h, inp.w)
            L.scale = scale
            return
        oh = (inp.h + padding - size) // sy + 1
        ow = (inp.w + padding - size) // sx + 1
        if oh < 1 or ow < 1:
            self.error(L.line("size"), f"size={size} in [{L.name}] does not fit the "
                       f"{inp.w}x{inp.h} input: the output would be empty")
            raise _Stop
        L.shape = _Shape(inp.c, oh, ow)
        L.scale = scale and (scale[0] * sx, scale[1] * sy)

    _l_local_avgpool = _l_maxpool

    def _l_avgpool(self, L, inp, scale, prev):
        inp = self.image_input(L, inp, prev)
        L.shape = _Shape(inp.c, 1, 1)

    def _l_connected(self, L, inp, scale, prev):
        n = self.positive(L, "output", 1)
        if inp is None:
            L.shape = _Shape(n, 1, 1)
            return
        if inp.size == 0:
            src = prev.what() if prev is not None else "[net]"
            self.error(L.sec.line, f"[{L.name}] gets no inputs from {src}")
            raise _Stop
        L.shape = _Shape(n, 1, 1)      # Darknet: a 1x1xN image (darknet_py marks it flat)

    def _same(self, L, inp, scale, prev):
        if inp is None:
            raise _Stop
        L.shape = _Shape(inp.c, inp.h, inp.w, inp.flat)
        L.scale = scale

    _l_batchnorm = _l_l2norm = _l_logistic = _l_activation = _l_empty = _same

    def _l_normalization(self, L, inp, scale, prev):
        self.positive(L, "size", 5)
        self.image_input(L, inp, prev)
        self._same(L, inp, scale, prev)

    def _l_dropout(self, L, inp, scale, prev):
        p = L.v("probability", 0.5)
        if not 0 <= p < 1:
            self.error(L.line("probability"), f"probability={L.raw('probability')} in "
                       f"[{L.name}] must be in "
                       "[0, 1) (the fraction of values dropped; 1 would drop everything)")
        self._same(L, inp, scale, prev)

    def _l_softmax(self, L, inp, scale, prev):
        groups = self.positive(L, "groups", 1)
        temperature = L.v("temperature", 1.0)
        if temperature <= 0:
            self.error(L.line("temperature"), f"temperature={L.raw('temperature')} in "
                       f"[{L.name}] must be "
                       "> 0")
        if L.has("tree"):
            self.warn(L.line("tree"), f"tree= in [{L.name}] (hierarchical softmax) is valid "
                      "Darknet but not supported by darknet_py")
        if inp is None:
            raise _Stop
        if inp.size % groups:
            self.error(L.line("groups"), f"groups={groups} in [{L.name}] must divide its "
                       f"{inp.size} inputs")
        L.shape = _Shape(inp.size, 1, 1, flat=True)

    def _l_cost(self, L, inp, scale, prev):
        if L.v("type") == "wgan":
            self.warn(L.line("type"), f"type=wgan in [{L.name}] is not supported by darknet_py")
        if inp is None:
            raise _Stop
        L.shape = _Shape(inp.size, 1, 1, flat=True)

    def _l_rnn(self, L, inp, scale, prev):
        L.shape = _Shape(self.positive(L, "output", 1), 1, 1, flat=True)

    _l_gru = _l_lstm = _l_rnn

    def _l_route(self, L, inp, scale, prev):
        values = L.v("layers")
        if not values:
            if "layers" not in L.opts:
                self.error(L.sec.line, f"[{L.name}] needs layers= (the layers to concatenate, "
                                       "e.g. layers=-1,8); Darknet crashes without it")
            raise _Stop
        srcs = [self.layers[i] for i in self.resolve(L, "layers", values)]
        groups = self.positive(L, "groups", 1)
        group_id = self.positive(L, "group_id", 0, 0)
        if group_id >= groups:
            self.error(L.line("group_id"), f"group_id={group_id} in [{L.name}] must be below "
                       f"groups={groups}")
            raise _Stop
        if any(s.shape is None for s in srcs):
            raise _Stop
        for s in srcs:
            if s.shape.c % groups:
                self.error(L.line("groups"), f"groups={groups} in [{L.name}] does not divide "
                           f"the {s.shape.c} channels of layer {s.index}")
                raise _Stop
        first = srcs[0]
        L.scale = first.scale
        odd = [s for s in srcs[1:] if s.shape.flat or first.shape.flat
               or (s.shape.w, s.shape.h) != (first.shape.w, first.shape.h)]
        if not odd and not first.shape.flat:
            L.shape = _Shape(sum(s.shape.c for s in srcs) // groups, first.shape.h,
                             first.shape.w)
            return
        total = sum(s.shape.size for s in srcs) // groups
        L.shape = _Shape(total, 1, 1, flat=True)
        L.scale = None
        L.flat_cause = L
        other = odd[0] if odd else first
        L.mismatch = (f"layers={','.join(map(str, values))} in [{L.name}] joins layer "
                      f"{first.index} ({first.shape}) and layer {other.index} ({other.shape}), "
                      "which differ in size")

    def _l_shortcut(self, L, inp, scale, prev):
        values = L.v("from")
        if not values:
            if "from" not in L.opts:
                self.error(L.sec.line, f"[{L.name}] needs from= (the layer to add, e.g. "
                                       "from=-3)")
            raise _Stop
        srcs = [self.layers[i] for i in self.resolve(L, "from", values)]
        inp = self.image_input(L, inp, prev)
        L.shape, L.scale = _Shape(inp.c, inp.h, inp.w), scale
        for s in srcs:
            if s.shape is None:
                continue
            a, b = s.shape, inp
            fits = not a.flat and a.size > 0 and (
                (a.w % b.w == 0 and a.h % b.h == 0 and a.w // b.w == a.h // b.h)
                or (b.w % a.w == 0 and b.h % a.h == 0 and b.w // a.w == b.h // a.h))
            if not fits:
                self.error(L.line("from"), f"from={','.join(map(str, values))} in [{L.name}]: "
                           f"layer {s.index} is {a} but the previous layer (layer "
                           f"{L.index - 1}) is {b}; a shortcut adds maps of equal width and "
                           "height (or sizes that differ by the same integer factor); point "
                           "from= at a layer of the same size")

    def _l_upsample(self, L, inp, scale, prev):
        stride = L.v("stride", 2)
        if stride == 0:
            self.error(L.line("stride"), f"stride=0 in [{L.name}]: use stride=2 (or a negative "
                       "stride to downsample)")
            raise _Stop
        inp = self.image_input(L, inp, prev)
        s = abs(stride)
        if stride > 0:
            L.shape = _Shape(inp.c, inp.h * s, inp.w * s)
            L.scale = scale and (scale[0] / s, scale[1] / s)
        else:
            if inp.h < s or inp.w < s:
                self.error(L.line("stride"), f"stride={stride} in [{L.name}] is larger than the "
                           f"{inp.w}x{inp.h} input")
                raise _Stop
            L.shape = _Shape(inp.c, inp.h // s, inp.w // s)
            L.scale = scale and (scale[0] * s, scale[1] * s)

    def _l_reorg(self, L, inp, scale, prev):
        s = self.positive(L, "stride", 1)
        for key in ("flatten", "extra"):
            if L.v(key, 0):
                self.warn(L.line(key), f"{key}={L.v(key)} in [{L.name}] is valid Darknet but not "
                          "supported by darknet_py")
        inp = self.image_input(L, inp, prev)
        if L.type == "reorg" and L.v("extra", 0):
            L.shape = _Shape(inp.size + L.v("extra"), 1, 1, flat=True)
            return
        if L.v("reverse", 0):
            if inp.c % (s * s):
                self.error(L.line("stride"), f"reverse [{L.name}] with stride={s} needs channels "
                           f"({inp.c}) divisible by stride*stride={s * s}")
                raise _Stop
            L.shape = _Shape(inp.c // (s * s), inp.h * s, inp.w * s)
            L.scale = scale and (scale[0] / s, scale[1] / s)
            return
        if inp.h % s or inp.w % s:
            self.error(L.line("stride"), f"stride={s} in [{L.name}] must divide the "
                       f"{inp.w}x{inp.h} input (a net width/height that is a multiple of the "
                       "total stride avoids this)")
            raise _Stop
        if L.type == "reorg" and inp.c % (s * s):
            self.error(L.line("stride"), f"[{L.name}] with stride={s}: Darknet's reorg reads the "
                       f"input as channels/{s * s} planes, so channels ({inp.c}) must be "
                       f"divisible by {s * s}")
            raise _Stop
        L.shape = _Shape(inp.c * s * s, inp.h // s, inp.w // s)
        L.scale = scale and (scale[0] * s, scale[1] * s)

    _l_reorg3d = _l_reorg

    def _l_crop(self, L, inp, scale, prev):
        ch = self.positive(L, "crop_height", 1)
        cw = self.positive(L, "crop_width", 1)
        inp = self.image_input(L, inp, prev)
        if ch > inp.h or cw > inp.w:
            self.error(L.sec.line, f"[{L.name}] crop {cw}x{ch} is larger than its "
                       f"{inp.w}x{inp.h} input")
            raise _Stop
        L.shape = _Shape(inp.c, ch, cw)

    def _head(self, L, inp, scale, prev):
        """yolo / region / Gaussian_yolo: shape checks come later (check_heads)."""
        classes = L.v("classes", 20)
        least = 0 if L.type == "region" else 1
        if classes < least:
            self.error(L.line("classes"), f"classes={classes} in [{L.name}] must be >= {least}")
            raise _Stop
        num = self.positive(L, "num", 1)
        if L.type == "yolo" and L.v("new_coords", 0):
            self.warn(L.line("new_coords"), f"new_coords=1 in [{L.name}] is not supported by "
                      "darknet_py")
        for key in ("ignore_thresh", "thresh"):
            if L.has(key) and not 0 <= L.v(key) <= 1:
                self.error(L.line(key), f"{key}={L.raw(key)} in [{L.name}] must be in [0, 1]")
        if L.has("jitter") and not 0 <= L.v("jitter") < 1:
            self.error(L.line("jitter"), f"jitter={L.raw('jitter')} in [{L.name}] must be in "
                       "[0, 1) (usually .3)")
        if L.has("max"):
            self.positive(L, "max", 90)
        if L.type == "region":
            self.positive(L, "coords", 4)
            if L.has("tree"):
                self.warn(L.line("tree"), f"tree= in [{L.name}] (YOLO9000) is valid Darknet but "
                          "not supported by darknet_py")
        mask = L.v("mask")
        if L.type != "region" and mask is not None:
            if not mask:
                self.error(L.line("mask"), f"mask= in [{L.name}] is empty")
            bad = [m for m in mask if not 0 <= m < num]
            if bad:
                anchors = L.v("anchors")
                pairs = len(anchors) // 2 if anchors else 0
                if max(mask) < pairs and min(mask) >= 0:
                    fix = f"set num={pairs} (the anchors give {pairs} pairs)"
                else:
                    fix = f"use indices 0..{num - 1}"
                self.error(L.line("mask"), f"mask={','.join(map(str, mask))} in [{L.name}] uses "
                           f"anchor {bad[0]} but num={num} (anchors are numbered 0..{num - 1}): "
                           f"{fix}")
        anchors = L.v("anchors")
        if anchors is not None:
            if len(anchors) != 2 * num:
                if len(anchors) % 2:
                    fix = "an odd count means a width or height is missing"
                else:
                    fix = (f"set num={len(anchors) // 2} or give {2 * num} values")
                self.error(L.line("anchors"), f"anchors in [{L.name}] has {len(anchors)} values "
                           f"but num={num} needs 2*num = {2 * num} (w,h pairs): {fix}")
            elif any(a <= 0 for a in anchors):
                self.error(L.line("anchors"), f"anchors in [{L.name}] must all be > 0 (w,h "
                           "pairs)")
        inp = self.image_input(L, inp, prev)
        L.shape, L.scale = _Shape(inp.c, inp.h, inp.w), scale

    _l_yolo = _l_region = _l_gaussian_yolo = _head

    def _l_detection(self, L, inp, scale, prev):
        for key, default in (("side", 7), ("num", 1), ("coords", 1)):
            self.positive(L, key, default)
        self.positive(L, "classes", 1, 0)
        if inp is None:
            raise _Stop
        L.shape = _Shape(inp.size, 1, 1, flat=True)

    def _l_iseg(self, L, inp, scale, prev):
        inp = self.image_input(L, inp, prev)
        want = L.v("classes", 20) + L.v("ids", 32)
        if inp.c != want:
            self.error(L.sec.line, f"[{L.name}] expects classes+ids = {want} input channels but "
                       f"gets {inp.c}: set filters={want} in the layer before it")
        L.shape, L.scale = _Shape(inp.c, inp.h, inp.w), scale

    def _l_crnn(self, L, inp, scale, prev):
        inp = self.image_input(L, inp, prev)
        out = L.v("output_filters", L.v("output", 1))
        L.shape, L.scale = _Shape(out, inp.h, inp.w), scale

    def _l_implicit(self, L, inp, scale, prev):
        L.shape = _Shape(self.positive(L, "filters", 128), 1, 1)

    def _from_layer(self, L, inp, scale, prev):
        if "from" not in L.vals:
            self.error(L.sec.line, f"[{L.name}] needs from=")
            raise _Stop
        src = self.layers[self.resolve(L, "from", [L.v("from")])[0]]
        if src.shape is None:
            raise _Stop
        L.shape, L.scale = src.shape, src.scale

    _l_scale_channels = _l_sam = _from_layer

    # -- detection heads, classes, input size -------------------------------------------
    @staticmethod
    def head_classes(L):
        return L.v("classes", 1 if L.type == "detection" else 20)

    def check_heads(self):
        heads = [L for L in self.layers if L.type in HEAD_TYPES]
        if not heads:
            return None
        # classes must agree across the heads: the most common value is taken as meant
        values = [self.head_classes(L) for L in heads]
        counts = collections.Counter(values)
        fits = collections.Counter(c for L, c in zip(heads, values)
                                   if self.head_input_fits(L, c))
        # most heads, then most heads whose input fits (filters= right), then the first
        ref = max(counts, key=lambda c: (counts[c], fits[c], -values.index(c)))
        ref_head = heads[values.index(ref)]
        for L, classes in zip(heads, values):
            if classes != ref:
                self.error(L.line("classes"), f"classes={classes} in [{L.name}] but the "
                           f"[{ref_head.name}] at line {ref_head.sec.line} has classes={ref}: "
                           f"every detection head must use the same classes; set classes={ref}")
        for L in heads:
            self.check_head_input(L, ref)
        return ref_head, ref

    def head_input_fits(self, L, classes):
        prev = self.layers[L.index - 1] if L.index > 0 else None
        if prev is None or prev.shape is None:
            return False
        return self.head_want(L, classes)[0] == (prev.shape.size if L.type == "detection"
                                                 else prev.shape.c)

    def head_want(self, L, classes):
        """(channels or inputs the head needs, the formula spelled out, the key that sets it)."""
        if L.type == "detection":
            side, num, coords = L.v("side", 7), L.v("num", 1), L.v("coords", 1)
            want = side * side * ((1 + coords) * num + classes)
            return want, (f"side*side*((1+coords)*num+classes) = {side}*{side}*((1+{coords})*"
                          f"{num}+{classes}) = {want}"), "output"
        if L.type == "region":
            num, coords = L.v("num", 1), L.v("coords", 4)
            want = num * (coords + 1 + classes)
            return want, f"num*(coords+1+classes) = {num}*({coords}+1+{classes}) = {want}", \
                "filters"
        extra = 9 if L.type == "gaussian_yolo" else 5
        mask = L.v("mask") or list(range(L.v("num", 1)))
        want = len(mask) * (classes + extra)
        return want, (f"len(mask)*(classes+{extra}) = {len(mask)}*({classes}+{extra}) "
                      f"= {want}"), "filters"

    def check_head_input(self, L, ref_classes):
        classes = self.head_classes(L)
        prev = self.layers[L.index - 1] if L.index > 0 else None
        hint = ""
        if classes != ref_classes:
            hint = f" (or set classes={ref_classes} here, as the other heads have)"
        want, formula, key = self.head_want(L, classes)
        if prev is None:
            return
        if prev.type == ("connected" if L.type == "detection" else "convolutional"):
            have = prev.v(key, 1)
            if key in prev.opts and key not in prev.vals:
                pass                            # unparsable filters=: already reported
            elif have != want and have >= 1:
                said = f"{key}={have}" if key in prev.opts else \
                    f"{key}= is not set (Darknet's default is {have})"
                if classes != ref_classes and self.head_want(L, ref_classes)[0] == have:
                    fix = (f"set classes={ref_classes} in the [{L.name}] as the other heads have "
                           f"({key}={have} fits that), or {key}={want}")
                else:
                    fix = f"set {key}={want}{hint}"
                self.error(prev.line(key), f"{said} but the [{L.name}] at line "
                           f"{L.sec.line} needs {formula}: {fix}")
            self.check_head_conv(prev, L)
        elif prev.shape is not None and L.type != "detection" and prev.shape.c != want:
            self.error(L.sec.line, f"[{L.name}] needs {formula} input channels but "
                       f"{prev.what()} gives {prev.shape.c}: end the head with a "
                       f"[convolutional] of filters={want}")
        elif prev.shape is not None and L.type == "detection" and prev.shape.size != want:
            self.error(L.sec.line, f"[{L.name}] needs {formula} inputs but {prev.what()} gives "
                       f"{prev.shape.size}")

    def check_head_conv(self, conv, head):
        expect = "linear"
        if head.type == "yolo" and head.v("new_coords", 0):
            expect = "logistic"                  # ab new_coords: the conv applies the sigmoid
        why = (f"the [{conv.name}] that feeds the [{head.name}] at line {head.sec.line}: "
               f"Darknet's detection heads expect raw outputs (batch_normalize=0, "
               f"activation={expect})")
        if conv.v("batch_normalize", 0):
            self.warn(conv.line("batch_normalize"), f"batch_normalize=1 on {why}; set "
                      "batch_normalize=0")
        if "activation" in conv.opts:
            act = conv.vals.get("activation")       # None: invalid, already reported
            if act is not None and act != expect:
                self.warn(conv.line("activation"), f"activation={act} on {why}; set "
                          f"activation={expect}")
        elif expect != "logistic":
            self.warn(conv.sec.line, f"no activation= (Darknet's default is logistic) on {why}; "
                      f"set activation={expect}")

    def check_input_size(self):
        """Detection nets: width/height must be multiples of the total stride."""
        if self.input is None or self.input.flat:
            return
        deepest = None
        for L in self.layers:
            if L.scale is None or L.shape is None or L.shape.flat:
                continue
            if deepest is None or L.scale[0] * L.scale[1] > deepest.scale[0] * deepest.scale[1]:
                deepest = L
        if deepest is None:
            return
        for key, size, f in (("width", self.input.w, deepest.scale[0]),
                             ("height", self.input.h, deepest.scale[1])):
            if f.denominator != 1 or f <= 1:
                continue
            f = int(f)
            if size % f:
                lo, hi = size // f * f, (size // f + 1) * f
                near = f"{lo} or {hi}" if lo else str(hi)
                line = self.net_opts[key].line if key in self.net_opts else self.net.line
                self.error(line, f"{key}={size} is not a multiple of {f}, the network's total "
                           f"stride (layer {deepest.index}, the [{deepest.name}] at line "
                           f"{deepest.sec.line}, works at 1/{f} of the input): use "
                           f"{key}={near}")

    def uses_batchnorm(self):
        return any(L.type == "batchnorm" or L.v("batch_normalize", 0) and
                   L.type in ("convolutional", "connected", "deconvolutional", "crnn", "rnn",
                              "gru", "lstm", "conv_lstm") for L in self.layers)

    def check_minibatch(self):
        v = self.net_vals
        batch, subdiv = v.get("batch", 1), v.get("subdivisions", 1)
        if batch < 1 or subdiv < 1 or batch < subdiv:
            return
        mini = batch // subdiv
        if batch > 1 and mini < 4 and self.uses_batchnorm():
            line = self.net_opts["subdivisions"].line if "subdivisions" in self.net_opts \
                else self.net.line
            fix = (f"use subdivisions <= {batch // 4} (a mini-batch of at least 4)"
                   if batch >= 4 else "raise batch to at least 4")
            self.warn(line, f"mini-batch = batch/subdivisions = {batch}/{subdiv} = {mini} "
                      f"image{'s' if mini != 1 else ''} with batch norm: statistics from so few "
                      f"images are noisy and training suffers; {fix}")

    def classifier_outputs(self):
        """(layer, number of outputs) of a classifier's last layer, else None."""
        for L in reversed(self.layers):
            if L.type == "cost":
                continue
            if L.type in ("softmax", "logistic") and L.shape is not None:
                if L.type == "softmax" and L.v("groups", 1) != 1:
                    return None
                return L, L.shape.size
            return None
        return None


class _Stop(Exception):
    """This layer's shape cannot be known (its error was reported); later layers skip it."""


# -- .data and .names -----------------------------------------------------------------------
def _check_data(chk, data_path, cfg_classes):
    """``cfg_classes``: (n, what, line) from the cfg, or None."""
    try:
        data = DataCfg(data_path, lenient=True)
    except DarknetError as e:
        chk.error(None, e.message, data_path)
        return
    for line, message in data.problems:
        chk.warn(line, message, data_path)
    entries = {key: (value, data.lines[key]) for key, value in data.items()}
    classes = None
    if "classes" in entries:
        value, line = entries["classes"]
        try:
            classes = int(value, 10)
            if classes < 1:
                chk.error(line, f"classes={classes} must be >= 1", data_path)
                classes = None
        except ValueError:
            chk.error(line, f"classes={value}: expected an integer", data_path)
    if classes is not None and cfg_classes is not None and classes != cfg_classes[0]:
        n, what = cfg_classes
        chk.error(entries["classes"][1], f"classes={classes} but {what}: set classes={n} here, "
                  "or change the cfg", data_path)
    want = cfg_classes[0] if cfg_classes is not None else classes
    for key in ("names", "labels"):
        if key not in entries:
            continue
        value, line = entries[key]
        path = data.resolve(value)
        try:
            with open(path, encoding="utf-8-sig") as f:
                names = f.read()
        except (OSError, UnicodeDecodeError) as e:
            chk.warn(line, f"{key}={value}: cannot read it ({getattr(e, 'strerror', None) or e};"
                           " looked in the working directory and next to the .data file)",
                     data_path)
            continue
        rows = names.split("\n")
        if rows and rows[-1] == "":
            rows = rows[:-1]                # fgetl: a final newline ends the last line
        if want is None or len(rows) == want:
            continue
        blank = sum(1 for r in rows if not r.strip())
        extra = ""
        if blank:
            extra = (f" ({_plural(blank, 'empty line')}; Darknet counts every line, one class "
                     "per line)")
        source = "the cfg" if cfg_classes is not None else "classes="
        chk.error(line, f"{key}={value} has {_plural(len(rows), 'line')} but {source} "
                        f"{'needs' if cfg_classes else 'says'} {want} classes{extra}: give "
                        "exactly one name per class, line i = class i", data_path)


# -- entry points ---------------------------------------------------------------------------
def check_cfg(cfg_path, data_path=None, strict=False):
    """Every problem in ``cfg_path`` (and ``data_path``, a .data file, with its names file).

    Returns a list of :class:`Finding` sorted by file (cfg first) and line.  ``strict=True``
    reports warnings as errors.
    """
    cfg_path = str(cfg_path)
    chk = _Checker(cfg_path)
    try:
        with open(cfg_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        chk.error(None, f"cannot read cfg file: {e.strerror}")
        raw = None
    if raw is not None:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            chk.error(raw[:e.start].count(b"\n") + 1, "not a text file (invalid UTF-8); "
                      "expected a Darknet .cfg")
            text = None
        if text is not None:
            _check_text(chk, text)
    cfg_classes = None
    if data_path is not None:
        if chk.layers:
            heads = [L for L in chk.layers if L.type in HEAD_TYPES]
            if heads and chk.head_ref is not None:
                head, n = chk.head_ref
                cfg_classes = (n, f"the cfg's [{head.name}] (line {head.line('classes')}) has "
                                  f"classes={n}")
            elif not heads:
                out = chk.classifier_outputs()
                if out is not None:
                    layer, n = out
                    cfg_classes = (n, f"the cfg's network outputs {n} values (its "
                                      f"[{layer.name}] at line {layer.sec.line})")
        _check_data(chk, str(data_path), cfg_classes)
    findings = chk.findings
    if strict:
        findings = [Finding(f.path, f.line, "error", f.message + " (strict mode)")
                    if f.level == "warning" else f for f in findings]
    rank = {cfg_path: 0}
    findings.sort(key=lambda f: (rank.get(f.path, 1), f.line or 0))
    return findings


def _check_text(chk, text):
    sections = chk.parse(text)
    if not sections:
        chk.error(1, "the file has no sections: a cfg starts with [net] (Darknet: 'Config "
                     "file has no sections')")
        return
    first = sections[0]
    if first.type == "net":
        chk.check_net(first)
        layers = sections[1:]
    elif first.type is None:
        # a misspelt [net] ([nett], [network1]): read it as the [net] it was meant to be
        near = _near(first.name, ("net", "network"), 0.5)
        hint = f" (did you mean [{near}]?)" if near else ""
        chk.error(first.line, f"the first section must be [net] or [network], found "
                              f"[{first.name}]{hint}")
        first.type = "net"
        chk.check_net(first)
        layers = sections[1:]
    else:
        chk.error(first.line, f"the first section must be [net] or [network], found "
                              f"[{first.name}]: add a [net] section with width, height, "
                              "channels and batch before it")
        chk.net = Section("net", first.line, chk.path)
        layers = sections
    if not layers:
        chk.error(first.line, "the cfg has a [net] section but no layers")
        return
    chk.walk(layers)
    ref = chk.check_heads()
    chk.head_ref = ref
    if ref is not None:
        chk.check_input_size()
    if chk.net_vals or first.type == "net":
        chk.check_minibatch()


def main_check(cfg, data=None, strict=False, out=sys.stdout):
    """Print every finding and a summary; 1 when there are errors (or warnings, strict)."""
    findings = check_cfg(cfg, data, strict=strict)
    for f in findings:
        print(f, file=out)
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    what = f"{cfg}" + (f" + {data}" if data is not None else "")
    if not findings:
        print(f"{what}: OK, no problems found", file=out)
    else:
        print(f"{what}: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}", file=out)
    return 1 if errors or (strict and warnings) else 0
