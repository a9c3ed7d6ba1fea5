"""Darknet ``.cfg`` parser (pj:src/parser.c read_cfg, src/option_list.c).

The grammar is Darknet's: ``[section]`` headers, ``key=value`` options, ``#`` and ``;`` comment
lines, comma-separated lists.  Like Darknet, every space and tab inside a line is removed, so
``anchors = 10, 13`` reads ``10,13``; unlike Darknet, ``\\r`` (CRLF files) is removed too, an inline
``# comment`` after a value is dropped instead of becoming part of it, and every value is checked
against its type (``filters=32.7`` is an error, not 32).

Each option remembers its line; lookups mark it used, so what a layer never read is reported as
``file:line: warning: unused option`` (an error with ``strict=True``).  The first of duplicate keys
wins, as in Darknet, and the later one is reported.
"""

import difflib
import math
import warnings

from ..errors import CfgError

# Every section name pj knows, with its aliases (pj:src/parser.c string_to_layer_type), plus the
# AlexeyAB names users meet in newer cfgs.  Value: the canonical layer type.
SECTION_TYPES = {
    "net": "net", "network": "net",
    "conv": "convolutional", "convolutional": "convolutional",
    "deconv": "deconvolutional", "deconvolutional": "deconvolutional",
    "conn": "connected", "connected": "connected",
    "max": "maxpool", "maxpool": "maxpool",
    "avg": "avgpool", "avgpool": "avgpool",
    "soft": "softmax", "softmax": "softmax",
    "dropout": "dropout",
    "route": "route",
    "shortcut": "shortcut",
    "upsample": "upsample",
    "yolo": "yolo",
    "region": "region",
    "detection": "detection",
    "iseg": "iseg",
    "cost": "cost",
    "batchnorm": "batchnorm",
    "crop": "crop",
    "reorg": "reorg",
    "local": "local",
    "l2norm": "l2norm",
    "logistic": "logistic",
    "activation": "activation",
    "lrn": "normalization", "normalization": "normalization",
    "rnn": "rnn", "gru": "gru", "lstm": "lstm", "crnn": "crnn",
    # AlexeyAB additions
    "reorg3d": "reorg3d",
    "scale_channels": "scale_channels",
    "sam": "sam",
    "Gaussian_yolo": "gaussian_yolo",
    "conv_lstm": "conv_lstm",
    "history": "history",
    "local_avg": "local_avgpool", "local_avgpool": "local_avgpool",
    "contrastive": "contrastive",
    "empty": "empty", "silence": "empty",
    "implicit": "implicit",
}


def _strip(line):
    """Darknet's strip(), plus ``\\r``: remove every whitespace character anywhere in the line."""
    return "".join(line.split())


class Option:
    __slots__ = ("key", "value", "line", "used")

    def __init__(self, key, value, line):
        self.key, self.value, self.line, self.used = key, value, line, False

    def __repr__(self):
        return f"Option({self.key!r}, {self.value!r}, line={self.line})"


class Section:
    """One ``[type]`` block: its options in file order, with typed, usage-tracked lookups."""

    def __init__(self, name, line, path):
        self.name = name                       # as written, without brackets
        self.type = SECTION_TYPES.get(name)    # canonical type, None when unknown
        self.line = line
        self.path = path
        self.options = []
        # the keys its reader declares (a layer's cfg_keys); None: any key may be looked up
        self.reads = None
        self.index = None      # the layer's position, set by whoever walks the layers

    def __repr__(self):
        return f"Section([{self.name}] at {self.path}:{self.line}, {len(self.options)} options)"

    # -- lookups ---------------------------------------------------------------------------
    def find(self, key):
        """The first option named ``key`` (Darknet: first wins), marked used; None if absent."""
        if self.reads is not None and key not in self.reads:
            raise AssertionError(f"darknet_py reads '{key}' from [{self.type}] without declaring "
                                 "it (add it to the layer's cfg_keys)")
        hit = None
        for opt in self.options:
            if opt.key == key:
                if hit is None:
                    hit = opt
                    opt.used = True
        return hit

    def has(self, key):
        return any(o.key == key for o in self.options)

    def _error(self, opt, expected):
        raise CfgError(f"[{self.name}] option '{opt.key}={opt.value}': expected {expected}",
                       self.path, opt.line)

    def _below(self, opt, minimum):
        raise CfgError(f"{opt.key}={opt.value} in [{self.name}] must be >= {minimum}",
                       self.path, opt.line)

    def str(self, key, default=None):
        opt = self.find(key)
        return default if opt is None else opt.value

    def int(self, key, default=0, minimum=None):
        opt = self.find(key)
        if opt is None:
            return default
        try:
            value = int(opt.value, 10)
        except ValueError:
            self._error(opt, "an integer")
        if minimum is not None and value < minimum:
            self._below(opt, minimum)
        return value

    def bool(self, key, default=False):
        """A Darknet 0/1 flag (any integer; nonzero is true)."""
        return self.int(key, int(default)) != 0

    def float(self, key, default=0.0, minimum=None):
        opt = self.find(key)
        if opt is None:
            return default
        try:
            value = float(opt.value)
        except ValueError:
            self._error(opt, "a number")
        if not math.isfinite(value):
            self._error(opt, "a finite number")
        if minimum is not None and value < minimum:
            self._below(opt, minimum)
        return value

    def _list(self, key, convert, expected):
        opt = self.find(key)
        if opt is None:
            return None
        items = opt.value.split(",")
        if items and items[-1] == "":        # Darknet would add a 0 for a trailing comma
            items = items[:-1]
        try:
            return [convert(v) for v in items]
        except ValueError:
            self._error(opt, f"a comma-separated list of {expected}")

    def int_list(self, key, default=None):
        got = self._list(key, lambda v: int(v, 10), "integers")
        return default if got is None else got

    def float_list(self, key, default=None):
        got = self._list(key, float, "numbers")
        return default if got is None else got

    def choice(self, key, default, choices):
        """A string option that must be one of ``choices`` (Darknet silently falls back)."""
        opt = self.find(key)
        if opt is None:
            return default
        if opt.value not in choices:
            near = difflib.get_close_matches(opt.value, list(choices), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            self._error(opt, "one of " + ", ".join(sorted(choices)) + hint)
        return opt.value

    def line_of(self, key):
        for opt in self.options:
            if opt.key == key:
                return opt.line
        return self.line

    def unused(self):
        """Options no lookup touched: unknown keys, and later duplicates of a key."""
        return [o for o in self.options if not o.used]


class CfgFile:
    """A parsed .cfg: the ``[net]`` section, the layer sections and the parse diagnostics."""

    def __init__(self, path, sections, diagnostics):
        self.path = path
        self.sections = sections
        self.diagnostics = diagnostics   # list of (level, line, message)

    @property
    def net(self):
        return self.sections[0]

    @property
    def layers(self):
        return self.sections[1:]


def scan_cfg(text):
    """Darknet's line grammar, shared by the parser (which stops at the first error) and
    ``cfg check`` (which reports them all).  Yields, for each line that is not blank or a
    comment, ``(lineno, kind, a, b)``:

    - ``("section", name, rest)``: a ``[name]`` header; ``rest`` is the text after ``]``
      (None when the ``]`` is missing, and then ``name`` is everything after ``[``);
    - ``("option", key, value, comment)``: ``key=value`` with an inline comment cut off
      (``comment`` is that text, or None); ``key`` or ``value`` may be empty;
    - ``("text", line)``: a line that is not ``key=value``.
    """
    for lineno, raw in enumerate(text.split("\n"), start=1):   # fgetl: "\n" only
        line = _strip(raw)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            end = line.find("]")
            if end < 0:
                yield lineno, "section", line[1:], None
            else:
                yield lineno, "section", line[1:end], line[end + 1:]
            continue
        comment = None
        for mark in "#;":
            cut = line.find(mark)
            if cut > 0:
                comment, line = line[cut:], line[:cut]
        if "=" not in line:
            yield lineno, "text", line, None
            continue
        key, value = line.split("=", 1)
        yield lineno, "option", (key, value), comment


def parse_cfg_text(text, path="<cfg>"):
    """Parse cfg text.  Raises CfgError on what Darknet itself cannot read."""
    sections = []
    diagnostics = []
    current = None
    for lineno, kind, a, b in scan_cfg(text):
        if kind == "section":
            if b is None:
                raise CfgError(f"section header '[{a}' has no closing ']'", path, lineno)
            if b and b[0] not in "#;":
                raise CfgError(f"unexpected text '{b}' after section header [{a}]",
                               path, lineno)
            current = Section(a, lineno, path)
            sections.append(current)
            continue
        # An inline comment ends the value (Darknet would keep it as part of the value).
        line = a if kind == "text" else "=".join(a)
        if current is None:
            raise CfgError(f"option '{line}' appears before any [section]; "
                           "the file must start with [net]", path, lineno)
        if kind == "text":
            diagnostics.append(("warning", lineno, f"'{line}' is not key=value; ignored"))
            continue
        key, value = a
        if not key:
            raise CfgError(f"'{line}' has no key before '='", path, lineno)
        if value == "":
            diagnostics.append(("warning", lineno,
                                f"option '{key}' has an empty value; the default is used"))
            continue
        current.options.append(Option(key, value, lineno))

    if not sections:
        raise CfgError("config file has no sections; it must start with [net]", path, 1)
    first = sections[0]
    if first.type != "net":
        raise CfgError(f"first section must be [net] or [network], found [{first.name}]",
                       path, first.line)
    for sec in sections[1:]:
        if sec.type == "net":
            raise CfgError(f"[{sec.name}] may only be the first section", path, sec.line)
        if sec.type is None:
            near = difflib.get_close_matches(sec.name, list(SECTION_TYPES), n=1)
            hint = f" (did you mean [{near[0]}]?)" if near else ""
            diagnostics.append(("error", sec.line, f"unknown section [{sec.name}]{hint}"))
    return CfgFile(path, sections, diagnostics)


def read_cfg(path):
    """Read and parse a .cfg file.  A missing or unreadable file is a one-line CfgError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CfgError(f"cannot read cfg file: {e.strerror}", str(path)) from None
    try:
        text = data.decode("utf-8-sig")     # Notepad writes a byte-order mark
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise CfgError("not a text file (invalid UTF-8); expected a Darknet .cfg", str(path),
                       line) from None
    return parse_cfg_text(text, str(path))


class Diagnostics:
    """Collects warnings found while building a network; strict mode turns them into errors."""

    def __init__(self, path, strict=False, echo=True):
        self.path, self.strict, self.echo = path, strict, echo
        self.items = []

    def warn(self, line, message):
        if self.strict:
            raise CfgError(message + " (strict mode)", self.path, line)
        self.items.append((line, message))
        if self.echo:
            warnings.warn(CfgWarning(f"{self.path}:{line}: warning: {message}"), stacklevel=2)

    def report_unused(self, section):
        for opt in section.unused():
            first = next(o for o in section.options if o.key == opt.key)
            if first is not opt:
                msg = (f"duplicate option '{opt.key}' in [{section.name}] is ignored; "
                       f"line {first.line} sets it first")
            else:
                msg = f"unused option '{opt.key}={opt.value}' in [{section.name}]"
            self.warn(opt.line, msg)


class CfgWarning(UserWarning):
    """A cfg problem Darknet tolerates (unused option, empty value, ...)."""
