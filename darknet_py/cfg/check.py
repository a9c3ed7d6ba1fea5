"""``darknet_py check CFG [DATA]``: every problem in a Darknet ``.cfg`` (and ``.data``) at once.

    findings = check_cfg("cfg/yolov3-tiny.cfg", "data/coco.data")
    for f in findings:
        print(f)    # cfg/x.cfg:128: error: filters=255 but the [yolo] ... set filters=24

Unlike :class:`darknet_py.nn.network.Network`, which stops at the first problem, the checker reads
the whole file tolerantly and keeps going: each finding names the file, the line of the mistake,
what was expected and the fix.  It never allocates weights: shapes are propagated with Darknet's
rules (each layer class's ``output_shape``, the rule Network builds with) by a light (c, h, w) walk, so broken and very large cfgs are checked
in milliseconds.

Levels
------
``error``
    Darknet (pjreddie or AlexeyAB) or darknet_py would refuse, crash or assert on the cfg; or a
    setting is silently lost (an unparsable value, an unknown activation/policy, a misspelt key
    whose intended option then takes its default); or valid Darknet that darknet_py cannot
    build ([rnn], [gru], [local], [detection], [softmax] ``tree=``, ``reorg extra=``, an AlexeyAB
    activation it lacks...) unless ``darknet_only`` says the cfg is meant for Darknet alone;
    or a training option set that darknet_py's training does not implement (AlexeyAB's
    ``dynamic_minibatch``, ``embedding_layer``, ``blur``...: the layers'
    ``training_unimplemented``);
    or the training schedule contradicts itself
    (``max_batches`` below ``burn_in`` or the last of ``steps``, steps that do not increase,
    fewer ``scales`` than ``steps``); or the cfg, the ``.data`` and the ``.names`` disagree on
    the number of classes.
``warning``
    The cfg runs as written but probably not as meant: a duplicate key (the first wins), an
    unknown key with no near match, batch norm or a non-linear activation in the conv feeding a
    detection head, ``batch`` not a multiple of ``subdivisions``, a mini-batch below 4 images
    with batch norm, an inline comment after a list value (Darknet reads its commas as more
    items), AlexeyAB-only options darknet_py ignores, and with ``darknet_only`` what darknet_py
    cannot build (the cfg is a correct Darknet cfg).
``info`` (``notes=True``; ``cfg check`` prints them, they never fail)
    An AlexeyAB-only feature pjreddie's Darknet would not run as written: an activation it
    replaces by relu, an option it ignores, a section type it does not know.

``strict=True`` reports every warning as an error (as ``Network(strict=True)`` does).

Choices worth knowing
---------------------
* Known keys are pjreddie's and AlexeyAB's together (``KNOWN_KEYS``, pj:src/parser.c
  and ab:src/parser.c); the common layer keys of both count in every layer section.  A misspelt key
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

import sys

from ..data.datacfg import DataCfg
from ..errors import CfgError, DarknetError
from ..nn.layers import REGISTRY, SHAPE_ONLY
from ..nn.layers.base import (Field, asks_for_something, next_field, resolve_refs,
                              unimplemented_message)
from ..nn.netoptions import COMMON_KEYS as DP_COMMON_KEYS
from ..nn.netoptions import NetOptions
from .keys import DP_KEYS, KNOWN_KEYS, ORIGIN, PJ_SECTIONS, closest, plural
from .parser import SECTION_TYPES, Option, Section, scan_cfg
from .rules import HEAD_TYPES, HeadRules, NetRules, ValueRules

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


#: every section type the checker can walk: the layers darknet_py runs and the shape-only ones
LAYER_CLASSES = {**REGISTRY, **SHAPE_ONLY}
# layers whose make function never sets out_w/out_h/out_c: a flat output (pj:src/parser.c)
_FLAT_TYPES = ("softmax", "cost", "detection", "rnn", "gru", "lstm")


INT_MAX = 2 ** 31 - 1


class _Layer:
    """One layer section with its parsed options and the output shape the walk gave it."""

    def __init__(self, index, sec, opts, vals):
        self.index, self.sec, self.type = index, sec, sec.type
        self.opts = opts            # key -> first Option
        self.vals = vals            # key -> parsed value (only the ones that parsed)
        self.shape = None           # Shape, or None when unknown (after an error)
        self.field = None           # Field (receptive field and stride), None when unknown
        self.flat_cause = None      # the route whose mismatched sizes made the output flat

    def reader(self):
        """A Section of the options that parsed (first of each key), for the shape rules."""
        sec = Section(self.sec.name, self.sec.line, self.sec.path)
        sec.options = [Option(k, self.opts[k].value, self.opts[k].line) for k in self.vals]
        sec.index = self.index
        return sec

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


class _Checker(ValueRules, NetRules, HeadRules):
    def __init__(self, path, darknet_only=False):
        self.path = path
        self.darknet_only = darknet_only
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

    def unsupported(self, line, message):
        """Valid Darknet that darknet_py cannot build: an error, unless the cfg is meant for
        Darknet alone (``darknet_only``)."""
        if self.darknet_only:
            self.warn(line, message)
        else:
            self.error(line, message + " (cfg check --darknet-only if the cfg is meant for "
                                       "Darknet alone)")

    def note(self, line, message):
        """An AlexeyAB-only feature: fine for darknet_py and AlexeyAB, not for pjreddie."""
        self.findings.append(Finding(self.path, line, "info", message))

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

    def section_values(self, sec):
        """Check every option of a section (known key, type); returns (opts, vals)."""
        opts = self.options(sec)
        vals = {}
        known = KNOWN_KEYS.get(sec.type, {})
        dp = DP_KEYS.get(sec.type)
        if dp is not None and sec.type != "net":
            dp = dp | set(DP_COMMON_KEYS)
        reader = NetOptions if sec.type == "net" else REGISTRY.get(sec.type)
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
                origin = ORIGIN[sec.type].get(key, "Darknet")
                self.warn(opt.line, f"option '{key}' in [{sec.name}] ({origin}) is not "
                                    "supported by darknet_py, which ignores it")
            elif key in unimplemented and asks_for_something(opt.value, unimplemented[key]):
                self.error(opt.line, unimplemented_message(key, opt.value, sec.name))
            if ORIGIN[sec.type].get(key) == "AlexeyAB" and sec.type in PJ_SECTIONS:
                # pj:src/option_list.c option_unused; a section pj lacks has its own note
                self.note(opt.line, f"option '{key}' in [{sec.name}] is AlexeyAB's: pjreddie's "
                                    "Darknet ignores it ('Unused field')")
        return opts, vals

    def unknown_key(self, sec, key, opt, opts, known):
        near = closest(key, known)
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
        owners = sorted((ORIGIN[t][key] != "pjreddie", t) for t, keys in KNOWN_KEYS.items()
                        if key in keys)
        owners = [t for _, t in owners]
        if owners:
            self.warn(opt.line, f"option '{key}' is not read by [{sec.name}] (it is an option "
                                f"of [{owners[0]}]); Darknet ignores it here")
        else:
            self.warn(opt.line, f"unknown option '{key}' in [{sec.name}]; Darknet ignores it")

    # -- layers ---------------------------------------------------------------------------
    def walk(self, sections):
        prev = None
        extent = max(self.input.w, self.input.h, 1) if self.input is not None else 1
        for index, sec in enumerate(sections):
            if sec.type is None or sec.type == "net":
                if sec.type == "net":
                    self.error(sec.line, f"[{sec.name}] may only be the first section")
                else:
                    guess = closest(sec.name, SECTION_TYPES, 0.6)
                    hint = f" (did you mean [{guess}]?)" if guess else ""
                    self.error(sec.line, f"unknown section [{sec.name}]{hint}: Darknet says "
                                         "'Type not recognized' and makes an empty layer")
                layer = _Layer(index, sec, {}, {})
            else:
                opts, vals = self.section_values(sec)
                layer = _Layer(index, sec, opts, vals)
                if sec.type not in PJ_SECTIONS:            # pj:src/parser.c
                    self.note(sec.line, f"[{sec.name}] is AlexeyAB's: pjreddie's Darknet "
                                        "says 'Type not recognized'")
                if sec.type in SHAPE_ONLY:
                    self.unsupported(sec.line, f"[{sec.name}] is a valid Darknet layer but is "
                                               "not supported by darknet_py (it cannot build "
                                               "this cfg)")
                else:
                    for _key, _value, line, message in \
                            REGISTRY[sec.type].unsupported_in(layer.reader()):
                        self.unsupported(line, message)
            self.layers.append(layer)
            cls = LAYER_CLASSES.get(layer.type)
            if cls is not None:
                try:
                    self.place(layer, cls, prev, extent)
                except _Stop:
                    layer.shape = layer.field = None
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

    def check_counts(self, layer, inp):
        """Darknet keeps a layer's weight and output counts in C ints (pj:src/
        convolutional_layer.c l.nweights, l.outputs * l.batch): over 2^31 - 1 they overflow,
        and darknet_py would try to allocate that many floats.  An error here, not at build."""
        batch = max(1, self.net_vals.get("batch", 1) // max(1, self.net_vals.get("subdivisions",
                                                                                   1)))
        counts = [("outputs for a mini-batch", layer.shape.size * batch, None)]
        if layer.type in ("convolutional", "deconvolutional") and inp is not None:
            counts.append(("weights", inp.c // max(1, layer.v("groups", 1)) *
                           layer.v("filters", 1) * layer.v("size", 1) ** 2, "filters"))
        elif layer.type == "connected" and inp is not None:
            counts.append(("weights", inp.size * layer.v("output", 1), "output"))
        for what, n, key in reversed(counts):
            if n > INT_MAX:
                self.error(layer.line(key), f"[{layer.name}] would have {n:,} {what}: over "
                           "2^31 - 1, where Darknet's int counts overflow (and gigabytes to "
                           "allocate); make it smaller")
                raise _Stop

    def place(self, layer, cls, prev, extent):
        """The layer's output Shape and Field, by its class's rules (the ones Network builds
        with).  Raises _Stop when they cannot be known (a problem is reported, or was)."""
        inp = self.input if prev is None else prev.shape
        field = Field.input() if prev is None else prev.field
        sec = layer.reader()
        try:
            cls.check_options(sec)
        except CfgError as e:
            self.error(e.line, e.message)
            raise _Stop from None
        if cls.refs_key is not None and cls.refs_key in layer.opts \
                and cls.refs_key not in layer.vals:
            raise _Stop                                 # unparsable: already reported
        try:
            refs = [self.layers[i] for i in resolve_refs(sec, cls.refs_key, cls.refs_doc)] \
                if cls.refs_key is not None else []
        except CfgError as e:
            self.error(e.line, e.message)
            raise _Stop from None
        if cls.needs_image:
            inp = self.image_input(layer, inp, prev)
        elif inp is None and cls.needs_input:
            raise _Stop
        if any(r.shape is None for r in refs):
            raise _Stop
        try:
            layer.shape = cls.output_shape(sec, inp, [(r.index, r.shape) for r in refs])
        except CfgError as e:
            self.error(e.line, e.message)
            raise _Stop from None
        if layer.shape is None:
            raise _Stop
        self.check_counts(layer, inp)
        if field is None or any(r.field is None for r in refs):
            layer.field = None
        else:
            layer.field = next_field(cls, sec, layer.shape, field, [r.field for r in refs],
                                     extent)
        if layer.type == "route" and layer.shape.flat:
            first = refs[0]
            odd = [r for r in refs[1:] if r.shape.flat or first.shape.flat
                   or (r.shape.w, r.shape.h) != (first.shape.w, first.shape.h)]
            other = odd[0] if odd else first
            layer.flat_cause = layer
            layer.mismatch = (f"layers={layer.raw('layers')} in [{layer.name}] joins layer "
                              f"{first.index} ({first.shape}) and layer {other.index} "
                              f"({other.shape}), which differ in size")

    def image_input(self, layer, inp, prev):
        """Darknet: 'Layer before X layer must output image'.  Raises _Stop when not."""
        if inp is None:
            raise _Stop
        if not inp.flat and inp.size > 0:
            if prev is not None and prev.type == "connected":
                self.unsupported(layer.sec.line, f"[{layer.name}] after a [connected]: Darknet "
                                 f"reads its output as a 1x1x{inp.c} image, but darknet_py "
                                 "treats it as flat and cannot build this")
                raise _Stop
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
            extra = (f" ({plural(blank, 'empty line')}; Darknet counts every line, one class "
                     "per line)")
        source = "the cfg" if cfg_classes is not None else "classes="
        chk.error(line, f"{key}={value} has {plural(len(rows), 'line')} but {source} "
                        f"{'needs' if cfg_classes else 'says'} {want} classes{extra}: give "
                        "exactly one name per class, line i = class i", data_path)


# -- entry points ---------------------------------------------------------------------------
def check_cfg(cfg_path, data_path=None, strict=False, darknet_only=False, notes=False):
    """Every problem in ``cfg_path`` (and ``data_path``, a .data file, with its names file).

    Returns a list of :class:`Finding` sorted by file (cfg first) and line.  ``strict=True``
    reports warnings as errors.  What darknet_py cannot build is an error unless
    ``darknet_only`` (the cfg is meant for Darknet alone: then a warning).  ``notes=True``
    adds "info" findings: the AlexeyAB-only features pjreddie's Darknet would not run.
    """
    cfg_path = str(cfg_path)
    chk = _Checker(cfg_path, darknet_only)
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
    findings = [f for f in chk.findings if notes or f.level != "info"]
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
        near = closest(first.name, ("net", "network"), 0.5)
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


def layer_geometry(text, path="<cfg>"):
    """(Shape, Field) of each layer section of a cfg's ``text`` (None where not known), by the
    layer classes' rules, without building anything."""
    chk = _Checker(path)
    _check_text(chk, text)
    return [(L.shape, L.field) for L in chk.layers]


def main_check(cfg, data=None, strict=False, out=sys.stdout, darknet_only=False):
    """Print every finding and a summary; 1 when there are errors (or warnings, strict).
    Info lines (AlexeyAB-only features) never fail."""
    findings = check_cfg(cfg, data, strict=strict, darknet_only=darknet_only, notes=True)
    for f in findings:
        print(f, file=out)
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    infos = len(findings) - errors - warnings
    what = f"{cfg}" + (f" + {data}" if data is not None else "")
    notes = f" ({plural(infos, 'note')} on pjreddie's Darknet)" if infos else ""
    if not errors and not warnings:
        print(f"{what}: OK, no problems found{notes}", file=out)
    else:
        print(f"{what}: {plural(errors, 'error')}, {plural(warnings, 'warning')}{notes}",
              file=out)
    return 1 if errors or (strict and warnings) else 0
