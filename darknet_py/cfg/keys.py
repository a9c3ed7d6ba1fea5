"""What Darknet knows about each section's options, as data: pjreddie's and AlexeyAB's keys with
their kinds (pj:src/parser.c, ab:src/parser.c parse_*), where each comes from, and what
darknet_py itself reads (each layer class's ``cfg_keys``).  ``cfg check`` reads cfgs with these.
"""

import difflib

from ..box import NMS_KINDS
from ..nn.layers import REGISTRY as LAYER_REGISTRY
from ..nn.layers.cost import COST_TYPES
from ..nn.netoptions import NetOptions
from ..nn.policies import POLICIES
from .parser import SECTION_TYPES

# What Darknet knows.  Kinds: i int, f float, b 0/1 flag (any int), s string, il / fl list of
# ints / floats, a activation; a tuple is a string that must be one of its values.
# pj = pjreddie/darknet src/parser.c, ab = AlexeyAB/darknet src/parser.c.

DARKNET_ACTIVATIONS = ("logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky",
                       "elu", "loggy", "stair", "hardtan", "lhtan", "selu",           # pj
                       "relu6", "swish", "mish", "hard_mish", "gelu", "revleaky",      # ab
                       "normalize_channels", "normalize_channels_softmax",
                       "normalize_channels_softmax_maxval")
#: the activations pj's get_activation knows (pj:src/activations.c); any other one makes it
#: print "Couldn't find activation" and use relu
PJ_ACTIVATIONS = DARKNET_ACTIVATIONS[:14]
#: the section types pj's string_to_layer_type knows (pj:src/parser.c); any other one is
#: "Type not recognized"
PJ_SECTIONS = ("net", "convolutional", "deconvolutional", "connected", "maxpool", "avgpool",
               "softmax", "dropout", "route", "shortcut", "upsample", "yolo", "region",
               "detection", "iseg", "cost", "batchnorm", "crop", "reorg", "local", "l2norm",
               "logistic", "activation", "normalization", "rnn", "gru", "lstm", "crnn")
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

CHOICES = {
    "policy": POLICIES, "cost": COST_TYPES, "iou": IOU_KINDS,
    "nms": NMS_KINDS,
    "wtype": ("none", "per_feature", "per_layer", "per_channel"),
    "wnorm": ("none", "relu", "avg_relu", "softmax"),
}

#: canonical section type -> {key: kind}, pj and ab together (the common layer keys included)
KNOWN_KEYS = {}
#: canonical section type -> {key: "pjreddie" | "AlexeyAB"} (where a key comes from)
ORIGIN = {}
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
    KNOWN_KEYS[_t], ORIGIN[_t] = _keys, _orig

# What darknet_py itself reads: each layer class's cfg_keys (the [net] options' for [net]).
# A Darknet key outside them is "not supported by darknet_py".  Section lookups refuse
# undeclared keys, so the declarations cannot fall behind the code that reads them.
DP_KEYS = {"net": set(NetOptions.cfg_keys),
           **{t: set(cls.cfg_keys) | set(cls.unsupported) for t, cls in LAYER_REGISTRY.items()}}


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def closest(word, candidates, cutoff=0.7):
    got = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    if not got:       # keys are case-sensitive in Darknet: 'Filters' is not 'filters'
        low = {c.lower(): c for c in candidates}
        got = [low[word.lower()]] if word.lower() in low else []
    return got[0] if got else None
