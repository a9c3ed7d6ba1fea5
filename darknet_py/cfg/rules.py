"""The rules of ``cfg check`` beyond each layer's own shape rule: option values of Darknet's
kinds, the [net] options and training schedule, and the detection heads (classes, the conv that feeds each head, the input size against the network's
stride).  Mixed into the checker (``darknet_py.cfg.check``), whose state they read: ``layers``
(each with its options, :class:`Shape` and :class:`Field`), ``net_vals``/``net_opts`` and
``input``.
"""

import collections
import math

from ..nn.layers.base import Shape
from ..nn.layers.yolo import resize_needs_ab_placement
from ..nn.netoptions import EMA_RANGE
from ..nn.activations import ACTIVATIONS as DP_ACTIVATIONS, CHANNEL_ACTIVATIONS
from .keys import CHOICES, DARKNET_ACTIVATIONS, PJ_ACTIVATIONS, closest

HEAD_TYPES = ("yolo", "region", "gaussian_yolo", "detection")


class ValueRules:
    def parse_value(self, sec, opt, kind):
        """The typed value of an option, or None (after an error) when it does not parse."""
        v = opt.value
        where = f"{opt.key}={v} in [{sec.name}]"
        comment = self.comments.get(opt.line)
        if comment is not None and kind in ("il", "fl"):
            # pj:src/option_list.c read_option keeps the comment in the value, and
            # pj:src/parser.c counts its commas as more items (steps= then reads past scales=)
            self.warn(opt.line, f"inline comment after the list {opt.key}={v}: Darknet misreads "
                                f"it (it reads '{v}{comment}', each comma one more item); put "
                                "the comment on its own line")
        elif comment is not None and (kind in ("s", "a") or kind in CHOICES):
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
                near = closest(value, DARKNET_ACTIVATIONS, 0.6)
                hint = f"did you mean '{near}'? " if near else ""
                self.error(opt.line, f"{where}: unknown activation ({hint}Darknet prints "
                                     "\"Couldn't find activation\" and uses relu); valid: "
                                     + ", ".join(DARKNET_ACTIVATIONS[:14]))
                return None
            if value in CHANNEL_ACTIVATIONS and sec.type != "convolutional":
                self.error(opt.line, f"{where}: '{value}' works in [convolutional] layers only "
                                     "(AlexeyAB's activate() gives 0 for it anywhere else)")
                return None
            if value not in DP_ACTIVATIONS + CHANNEL_ACTIVATIONS:
                self.unsupported(opt.line, f"{where}: activation '{value}' (AlexeyAB) is not "
                                           "supported by darknet_py")
            elif value not in PJ_ACTIVATIONS:       # pj:src/activations.c get_activation
                self.note(opt.line, f"{where}: '{value}' is AlexeyAB's: pjreddie's Darknet "
                                    "prints \"Couldn't find activation\" and uses relu")
        elif kind in CHOICES:
            choices = CHOICES[kind]
            if value not in choices:
                near = closest(value, choices, 0.6)
                hint = f" (did you mean '{near}'?)" if near else ""
                fallback = {"policy": "constant", "cost": "sse"}.get(kind)
                fb = f"; Darknet falls back to {fallback}" if fallback else ""
                self.error(opt.line, f"{where}: expected one of {', '.join(choices)}{hint}{fb}")
                return None
        return value


class NetRules:
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
        ema = v.get("ema_alpha")
        if ema is not None and not 0 <= ema < 1:
            self.error(line("ema_alpha"), f"ema_alpha={raw('ema_alpha')} in [net] {EMA_RANGE}")
        decay = v.get("decay")
        if decay is not None and decay < 0:
            self.error(line("decay"), f"decay={raw('decay')} must not be negative (usually 0.0005)")
        for key in ("saturation", "exposure"):
            if key in v and v[key] <= 0:
                self.error(line(key), f"{key}={raw(key)} must be > 0 (1 means no change)")
        if "hue" in v and not 0 <= v["hue"] <= 1:
            self.error(line("hue"), f"hue={raw('hue')} must be in [0, 1] (usually .1)")
        if v.get("letter_box") and v.get("mosaic"):      # AB:src/data.c refuses the pair
            self.error(line("letter_box"), "letter_box=1 with mosaic=1 in [net]: AlexeyAB's "
                       "training does not support the pair; remove one of them")

        w, h, c = (max(0, v.get(k, 0)) for k in ("width", "height", "channels"))
        inputs = v.get("inputs", w * h * c)
        if w * h * c:
            self.input = Shape(c, h, w)
        elif inputs > 0:
            self.input = Shape(inputs, 1, 1, True)
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



class HeadRules:
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
        last = self.layers[-1]          # AB:src/detector.c reads resize from the last layer
        if last.type in ("yolo", "gaussian_yolo") and last.v("resize", 1.0) != 1 and \
                "letter_box" not in self.net_vals:
            self.error(last.line("resize"), resize_needs_ab_placement(last.v("resize"), last.name))
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
        deepest = deepest_jump = None
        for L in self.layers:
            jump = L.field.jump if L.field is not None else None
            if jump is None or L.shape is None or L.shape.flat:
                continue
            if deepest is None or jump[0] * jump[1] > deepest_jump[0] * deepest_jump[1]:
                deepest, deepest_jump = L, jump
        if deepest is None:
            return
        for key, size, f in (("width", self.input.w, deepest_jump[0]),
                             ("height", self.input.h, deepest_jump[1])):
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
