"""The ``[net]`` section (pj:src/parser.c parse_net_options): its typed options with Darknet's
defaults, and the tables of keys that say what darknet_py does with each."""

from ..errors import CfgError
from .layers import SHAPE_ONLY
from .layers.base import ADAM_B1, ADAM_B2, ADAM_EPS, unimplemented_in
from .policies import POLICIES
from .precision import PRECISIONS

# Keys every layer section accepts (pj parse_network_cfg), read quietly.
COMMON_KEYS = frozenset(("truth", "onlyforward", "stopbackward", "dontsave", "dontload",
                         "dontloadscales", "learning_rate", "smooth"))
# [net] keys that only the training/data code reads (detection augmentation and the input
# placement).
NET_DATA_KEYS = {"saturation": float, "exposure": float, "hue": float, "letter_box": int,
                 "flip": int, "mosaic": int, "mixup": int, "mosaic_bound": int}
# Darknet's other [net] training keys, with the value that leaves training as darknet_py does
# it (None: any value asks for something).  darknet_py does not implement them: `cfg check`
# and the start of a training run refuse each one set otherwise (an error at its line), instead
# of training silently without.  AB:src/parser.c parse_net_options reads them;
# dynamic_minibatch (AB:src/detector.c), blur / gaussian_noise
# (AB:src/image_opencv.cpp image_data_augmentation, OpenCV's GaussianBlur), cutmix and the
# contrastive / adversarial / attention training each change what is computed.
NET_UNIMPLEMENTED = {
    "random": 0, "notruth": 0, "cutmix": 0,
    "blur": 0, "gaussian_noise": 0, "label_smooth_eps": 0, "resize_step": 32,
    "dynamic_minibatch": 0, "sequential_subdivisions": 0, "adversarial_lr": 0,
    "seq_scales": None, "contrastive": 0, "unsupervised": 0, "contrastive_jit_flip": 0,
    "contrastive_color": 0, "attention": 0, "adversarial": 0,
}
#: what ema_alpha= may be (cfg check says the same)
EMA_RANGE = ("must be in [0, 1), the weight of the old average in AlexeyAB's EMA of the "
             "weights (0: off; AlexeyAB's cfgs use 0.9998)")
# The classifier's crop augmentation (darknet_py/classaug.py reads them when training).
NET_CLASSIFIER_KEYS = ("max_crop", "min_crop", "max_ratio", "min_ratio", "center", "angle",
                       "aspect")
# Darknet [net] keys about its own machinery (fp16 loss scaling, workspace, chart, ...): no
# effect on what darknet_py computes, accepted quietly.
NET_MACHINERY_KEYS = ("loss_scale", "try_fix_nan", "optimized_memory", "workspace_size_limit_MB",
                      "max_chart_loss", "track", "augment_speed")


#: the sections Darknet runs and darknet_py cannot (yet): their shape rules only
UNSUPPORTED_SECTIONS = frozenset(SHAPE_ONLY)


class NetOptions:
    """The typed ``[net]`` options with Darknet's defaults (pj parse_net_options)."""

    training_unimplemented = NET_UNIMPLEMENTED

    cfg_keys = frozenset((
        "batch subdivisions time_steps learning_rate momentum decay adam B1 B2 eps clip height "
        "width channels inputs policy burn_in power step scale gamma max_batches "
        "learning_rate_min sgdr_cycle sgdr_mult steps scales precision ema_alpha").split()) | \
        frozenset(NET_DATA_KEYS) | frozenset(NET_UNIMPLEMENTED) | frozenset(NET_MACHINERY_KEYS) | \
        frozenset(NET_CLASSIFIER_KEYS)

    def __init__(self, sec):
        self.section = sec
        sec.reads = self.cfg_keys
        self.cfg_batch = sec.int("batch", 1, minimum=1)
        self.subdivisions = sec.int("subdivisions", 1, minimum=1)
        self.time_steps = sec.int("time_steps", 1, minimum=1)
        # darknet_py's own (Darknet picks half by build and GPU): nn/precision.py
        self.precision = sec.choice("precision", "fp32", PRECISIONS)
        if self.cfg_batch < self.subdivisions:
            raise CfgError(f"[net] batch={self.cfg_batch} is smaller than subdivisions="
                           f"{self.subdivisions}; the mini-batch would be empty",
                           sec.path, sec.line_of("batch"))
        self.batch = self.cfg_batch // self.subdivisions * self.time_steps
        self.learning_rate = sec.float("learning_rate", 0.001)
        self.momentum = sec.float("momentum", 0.9)
        self.decay = sec.float("decay", 0.0001)
        self.adam = sec.bool("adam")
        self.b1 = sec.float("B1", ADAM_B1)
        self.b2 = sec.float("B2", ADAM_B2)
        self.eps = sec.float("eps", ADAM_EPS)
        self.clip = sec.float("clip", 0.0)
        self.height = sec.int("height", 0, minimum=0)
        self.width = sec.int("width", 0, minimum=0)
        self.channels = sec.int("channels", 0, minimum=0)
        self.inputs = sec.int("inputs", self.height * self.width * self.channels, minimum=0)
        if self.inputs == 0:
            raise CfgError("[net] gives no input size: set width, height and channels",
                           sec.path, sec.line)
        self.policy = sec.choice("policy", "constant", POLICIES)
        self.burn_in = sec.int("burn_in", 0, minimum=0)
        self.power = sec.float("power", 4.0)
        self.step = sec.int("step", 1)
        self.scale = sec.float("scale", 1.0)
        self.gamma = sec.float("gamma", 1.0)
        self.max_batches = sec.int("max_batches", 0, minimum=0)
        self.learning_rate_min = sec.float("learning_rate_min", 1e-5)
        self.sgdr_cycle = sec.int("sgdr_cycle", self.max_batches or 1, minimum=1)
        self.sgdr_mult = sec.int("sgdr_mult", 2, minimum=1)
        # AlexeyAB's EMA of the conv parameters (train/ema.py); 0: none
        self.ema_alpha = sec.float("ema_alpha", 0.0)
        if not 0 <= self.ema_alpha < 1:
            raise CfgError(f"ema_alpha={sec.str('ema_alpha')} in [net] {EMA_RANGE}", sec.path,
                           sec.line_of("ema_alpha"))
        self.steps = sec.int_list("steps", [])
        self.scales = sec.float_list("scales", [])
        if self.policy == "steps":
            if not self.steps or not self.scales:
                raise CfgError("[net] policy=steps needs both steps= and scales=", sec.path,
                               sec.line_of("policy"))
            if len(self.scales) < len(self.steps):
                raise CfgError(f"[net] steps has {len(self.steps)} values but scales has "
                               f"{len(self.scales)}", sec.path, sec.line_of("scales"))
        self.data = {key: (sec.float(key, 0.0) if kind is float else
                           sec.int(key, 0) if kind is int else sec.str(key))
                     for key, kind in NET_DATA_KEYS.items() if sec.has(key)}
        # (key, value, line) of the training options darknet_py does not implement
        self.unimplemented = unimplemented_in(sec, NET_UNIMPLEMENTED)
        for key in NET_MACHINERY_KEYS + NET_CLASSIFIER_KEYS:     # read where they are used
            sec.find(key)

    @property
    def input_shape(self):
        if self.height * self.width * self.channels == self.inputs:
            return (self.channels, self.height, self.width)
        return (self.inputs, 1, 1)
