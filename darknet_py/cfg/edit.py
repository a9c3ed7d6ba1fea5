"""Edit and build Darknet ``.cfg`` files without disturbing what you did not touch.

``darknet_py.cfg.parser`` reads a cfg into typed options and forgets its layout.  This module keeps the
layout: every line is kept as written (comments, blank lines, CRLF or LF, trailing spaces, the
spacing around ``=``, a byte-order mark, a missing final newline), so loading and saving a file
without edits gives the same bytes, and an edit changes only the lines it names::

    doc = CfgDocument.load("cfg/yolov3-tiny.cfg")
    for yolo in doc.find("yolo"):
        yolo.set("classes", 3, comment="3 classes")
    doc.net.set("max_batches", 6000)
    doc.save("my.cfg")                      # temp file + os.replace: never half a file

    doc = CfgDocument.new()                 # or build one from scratch
    doc.append("net", batch=64, subdivisions=1, width=28, height=28, channels=1)
    doc.append("convolutional", filters=16, size=3, stride=1, pad=1, batch_normalize=1,
               activation="leaky")
    doc.append("shortcut", from_=-3)        # a trailing _ escapes Python keywords
    print(doc.text())

Lines are read the way ``darknet_py.cfg.parser.parse_cfg_text`` reads them (split at ``\\n`` only, all
whitespace removed, ``#``/``;`` lines are comments, an inline ``#``/``;`` ends the value, the first
of duplicate keys wins), so what a :class:`SectionDoc` reports is what the parser will see.
"""

import keyword
import math
import numbers
import os

from ..atomic import atomic_open
from .parser import SECTION_TYPES, _strip, parse_cfg_text
from ..errors import CfgError

__all__ = ["CfgDocument", "SectionDoc", "CfgValueError", "format_value"]

BOM = "\ufeff"


class CfgValueError(CfgError, ValueError):
    """An option value that does not convert to the type asked for (file:line in the message)."""


# -- values ------------------------------------------------------------------------------------
def _format_number(value):
    """Shortest text that reads back as the same number: 0.001, 1e-05, 0.5, 3 (not 3.0)."""
    try:
        # numpy float32(0.1) prints as "0.1" although float() of it is 0.10000000149011612
        f = float(value) if type(value) is float else float(str(value))
    except ValueError:
        f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"cfg values must be finite numbers, not {value!r}")
    if f.is_integer() and abs(f) < 1e16:
        return str(int(f))
    return repr(f)


def _check_text(text, what):
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} must be on one line")
    for mark in "#;":
        if mark in text:
            raise ValueError(f"{what} {text!r} contains '{mark}', which starts a comment in a "
                             "Darknet cfg")


def format_value(value):
    """The cfg text of a Python value: ints, floats without needless zeros, bools as 0/1,
    lists as ``a,b,c`` and a list of pairs (anchors) as ``10,14,  23,27``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _format_number(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("an empty value would be ignored by Darknet; use remove() instead")
        _check_text(text, "value")
        return text
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):   # numpy arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("an empty list would be ignored by Darknet; use remove() instead")
        nested = any(isinstance(v, (list, tuple)) for v in value)
        if nested:
            return ",  ".join(",".join(format_value(x) for x in v)
                              if isinstance(v, (list, tuple)) else format_value(v)
                              for v in value)
        return ",".join(format_value(v) for v in value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a cfg value")


def _check_key(key):
    if not isinstance(key, str) or not key:
        raise ValueError(f"option key must be a non-empty string, not {key!r}")
    if any(c.isspace() for c in key) or any(c in key for c in "=#;") or key[0] == "[":
        raise ValueError(f"invalid option key {key!r}")


def _option_key(name):
    """``from_=-3`` -> ``from``: a trailing underscore escapes a Python keyword."""
    if name.endswith("_") and keyword.iskeyword(name[:-1]):
        return name[:-1]
    return name


def _clean_comment(comment):
    text = " ".join(str(comment).split())
    while text.startswith(("#", ";")):
        text = text[1:].lstrip()
    return text


# -- lines -------------------------------------------------------------------------------------
class _Line:
    __slots__ = ("text", "eol")

    def __init__(self, text, eol=""):
        self.text = text      # without the line ending
        self.eol = eol        # "\n", "\r\n", or "" (the last line of a file without one)

    def copy(self):
        return _Line(self.text, self.eol)

    def __repr__(self):
        return f"_Line({self.text!r}, {self.eol!r})"


class _Scan:
    """An option line, as parse_cfg_text reads it, with where its value sits in the raw text."""
    __slots__ = ("key", "value", "eq", "start", "end", "cut")

    def __init__(self, key, value, eq, start, end, cut):
        self.key, self.value, self.eq, self.start, self.end, self.cut = \
            key, value, eq, start, end, cut


def _header_name(text):
    """The section name of a ``[name]`` line, None for any other line."""
    stripped = _strip(text)
    if not stripped.startswith("["):
        return None
    end = stripped.find("]")
    return stripped[1:end] if end >= 0 else stripped[1:]


def _scan_option(text):
    stripped = _strip(text)
    if not stripped or stripped[0] in "#;[":
        return None
    cut = len(text)                      # an inline comment ends the value
    for mark in "#;":
        i = text.find(mark)
        if 0 <= i < cut:
            cut = i
    eq = text.find("=", 0, cut)
    if eq < 0:
        return None
    key = _strip(text[:eq])
    if not key:
        return None
    start, end = eq + 1, cut
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return _Scan(key, _strip(text[start:end]), eq, start, end, cut)


def _split_lines(text):
    """Lines as ``fgetl`` sees them (split at \\n only), each with its own ending."""
    lines = []
    pos, n = 0, len(text)
    while pos < n:
        nl = text.find("\n", pos)
        if nl < 0:
            lines.append(_Line(text[pos:], ""))
            break
        if nl > pos and text[nl - 1] == "\r":
            lines.append(_Line(text[pos:nl - 1], "\r\n"))
        else:
            lines.append(_Line(text[pos:nl], "\n"))
        pos = nl + 1
    return lines


def _is_blank(line):
    return not line.text.strip()


# -- sections ----------------------------------------------------------------------------------
class SectionDoc:
    """One ``[name]`` block of a :class:`CfgDocument`: its header line and every line after it
    up to the next header (options, comments, blank lines)."""

    def __init__(self, doc, lines):
        self._doc = doc
        self._lines = lines          # _lines[0] is the header

    # -- identity ----------------------------------------------------------------------------
    @property
    def name(self):
        """The section name as written (``conv``, ``convolutional``, ...)."""
        return _header_name(self._lines[0].text)

    @property
    def type(self):
        """The canonical layer type (``darknet_py.cfg.parser.SECTION_TYPES``); None when unknown."""
        return SECTION_TYPES.get(self.name)

    @property
    def doc(self):
        return self._doc

    @property
    def index(self):
        """The layer index Darknet gives this section ([net] is -1); None when detached."""
        if self._doc is None:
            return None
        return self._doc._layer_index(self)

    @property
    def line(self):
        """1-based line number of the ``[name]`` header in ``doc.text()``; None when detached."""
        if self._doc is None:
            return None
        return self._doc._line_number(self)

    def __repr__(self):
        where = f" line {self.line}" if self._doc is not None else " (detached)"
        return f"SectionDoc([{self.name}] index={self.index}{where})"

    # -- reading -----------------------------------------------------------------------------
    def _scans(self):
        for i in range(1, len(self._lines)):
            scan = _scan_option(self._lines[i].text)
            if scan is not None:
                yield i, scan

    def _find(self, key):
        """(line position, scan) of the option the parser reads for ``key`` (the first with a
        value; Darknet skips empty ones), else the first empty one, else None."""
        empty = None
        for i, scan in self._scans():
            if scan.key == key:
                if scan.value:
                    return i, scan
                if empty is None:
                    empty = (i, scan)
        return empty

    def _option_line(self, pos):
        doc = self._doc
        return None if doc is None else doc._line_number(self) + pos

    def get(self, key, default=None, type=str):
        """The value of ``key`` as ``type`` (str, int, float, bool or list), else ``default``.

        ``list`` splits at commas and converts each item to int, else float, else keeps it as
        text.  A value that does not convert raises :class:`CfgValueError` (a ValueError) with
        file:line."""
        hit = self._find(key)
        if hit is None or not hit[1].value:
            return default
        pos, scan = hit
        raw = scan.value
        try:
            if type is str:
                return raw
            if type is int:
                return int(raw, 10)
            if type is float:
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError
                return value
            if type is bool:
                return int(raw, 10) != 0
            if type is list:
                items = raw.split(",")
                if items and items[-1] == "":
                    items = items[:-1]
                return [_auto(item) for item in items]
            return type(raw)
        except ValueError:
            name = getattr(type, "__name__", str(type))
            path = self._doc.path if self._doc is not None else None
            raise CfgValueError(f"[{self.name}] option '{key}={raw}' is not a valid {name}",
                                path, self._option_line(pos)) from None

    def __getitem__(self, key):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key):
        hit = self._find(key)
        return hit is not None and bool(hit[1].value)

    def keys(self):
        """The keys the parser sees, in file order (each once; empty values skipped)."""
        seen = []
        for _, scan in self._scans():
            if scan.value and scan.key not in seen:
                seen.append(scan.key)
        return seen

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def __bool__(self):          # a section without options is still a section
        return True

    def items(self):
        """(key, value text) pairs for :meth:`keys`."""
        return [(key, self.get(key)) for key in self.keys()]

    def to_dict(self):
        return dict(self.items())

    # -- editing -----------------------------------------------------------------------------
    def set(self, key, value, comment=None):
        """Set ``key`` to ``value``.  An existing line is edited in place (its spacing and any
        trailing comment stay); otherwise ``key=value`` is added after the section's last
        option.  ``comment`` goes on its own ``# comment`` line right above the option: pj's
        read_option (pj:src/option_list.c) keeps everything after the ``=``, an inline comment
        included, so ``steps=4800,5400  # 80%, 90%`` reads as four steps.  Returns self."""
        key = _option_key(key)
        _check_key(key)
        text = format_value(value)
        note = _clean_comment(comment) if comment is not None else ""
        hit = self._find(key)
        if hit is not None:
            pos, scan = hit
            line = self._lines[pos]
            raw = line.text
            start, end = scan.start, scan.end
            if start == end:            # "key=" or "key = ": write right after the '='
                start = end = scan.eq + 1
                if raw[scan.eq + 1:scan.eq + 2] in (" ", "\t") and raw[scan.eq - 1:scan.eq] \
                        in (" ", "\t"):
                    start = end = scan.eq + 2
                if raw[end:end + 1] in ("#", ";"):
                    text += " "
            line.text = raw[:start] + text + raw[end:]
        else:
            pos = self._option_end()
            raw = f"{key}={text}"
            self._lines.insert(pos, _Line(raw, ""))
        above = self._lines[pos - 1].text
        indent = raw[:len(raw) - len(raw.lstrip())]
        if note and _strip(above) != _strip("#" + note):
            self._lines.insert(pos, _Line(f"{indent}# {note}", ""))
        return self

    __setitem__ = set

    def _option_end(self):
        """Where a new option goes: after the last option line (or the header)."""
        last = 0
        for i, _ in self._scans():
            last = i
        return last + 1

    def update(self, _options=None, /, **options):
        """Set several options: ``sec.update(filters=24, activation="linear")``."""
        for key, value in _merge_options(_options, options):
            self.set(key, value)
        return self

    def remove(self, key):
        """Remove every ``key=`` line of this section.  Returns how many lines went (0 when
        the key was absent)."""
        key = _option_key(key)
        drop = [i for i, scan in self._scans() if scan.key == key]
        for i in reversed(drop):
            del self._lines[i]
        return len(drop)

    def __delitem__(self, key):
        if not self.remove(key):
            raise KeyError(key)

    def copy(self):
        """A detached copy (insert it into any document)."""
        return SectionDoc(None, [line.copy() for line in self._lines])


def _auto(item):
    for convert in (lambda v: int(v, 10), float):
        try:
            return convert(item)
        except ValueError:
            pass
    return item


def _merge_options(mapping, options):
    merged = list((mapping or {}).items()) + list(options.items())
    return [(_option_key(k), v) for k, v in merged]


# -- documents ---------------------------------------------------------------------------------
class CfgDocument:
    """A Darknet cfg kept line for line.  ``load``/``parse`` then ``save``/``text`` with no edits
    reproduce the input exactly."""

    def __init__(self, text="", path=None):
        self.path = path
        self.bom = text.startswith(BOM)
        if self.bom:
            text = text[len(BOM):]
        lines = _split_lines(text)
        crlf = sum(1 for line in lines if line.eol == "\r\n")
        lf = sum(1 for line in lines if line.eol == "\n")
        self.newline = "\r\n" if crlf > lf else "\n"     # for lines this document adds
        self.final_newline = not lines or lines[-1].eol != ""
        self._pre = []          # lines before the first section header
        self._sections = []
        for line in lines:
            if _header_name(line.text) is not None:
                self._sections.append(SectionDoc(self, [line]))
            elif self._sections:
                self._sections[-1]._lines.append(line)
            else:
                self._pre.append(line)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def new(cls, path=None):
        """An empty document; add sections with :meth:`append`."""
        return cls("", path)

    @classmethod
    def parse(cls, text, path=None):
        return cls(text, path)

    @classmethod
    def load(cls, path):
        """Read a cfg file.  Bytes that are not UTF-8 are kept as they are (surrogateescape)."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise CfgError(f"cannot read cfg file: {e.strerror}", path) from None
        return cls(data.decode("utf-8", "surrogateescape"), path)

    def copy(self):
        return CfgDocument(self.text(), self.path)

    # -- output ------------------------------------------------------------------------------
    def _all_lines(self):
        lines = list(self._pre)
        for sec in self._sections:
            lines.extend(sec._lines)
        return lines

    def text(self):
        """The document as text (with its byte-order mark when it had one)."""
        lines = self._all_lines()
        out = [BOM] if self.bom else []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            eol = line.eol
            if i < last:
                eol = eol or self.newline
            elif self.final_newline:
                eol = eol or self.newline
            else:
                eol = ""
            out.append(line.text)
            out.append(eol)
        return "".join(out)

    __str__ = text

    def to_bytes(self):
        return self.text().encode("utf-8", "surrogateescape")

    def save(self, path=None):
        """Write the document (atomically: a temporary file, then ``os.replace``).  A symlink
        target is written through; an existing file keeps its permissions.  Returns the path."""
        if path is None:
            path = self.path
        if path is None:
            raise ValueError("this document has no path yet: save(path)")
        path = os.fspath(path)
        with atomic_open(path, ".cfg") as f:
            f.write(self.to_bytes())
        self.path = path
        return path

    def cfg(self):
        """The document parsed by ``darknet_py.cfg.parser.parse_cfg_text`` (a CfgFile)."""
        return parse_cfg_text(self.text()[len(BOM) if self.bom else 0:], self.path or "<cfg>")

    # -- sections ----------------------------------------------------------------------------
    @property
    def sections(self):
        return list(self._sections)

    def __iter__(self):
        return iter(list(self._sections))

    def __len__(self):
        return len(self._sections)

    @property
    def net(self):
        """The [net] / [network] section (None when there is none)."""
        for sec in self._sections:
            if sec.type == "net":
                return sec
        return None

    @property
    def layers(self):
        """The sections after [net], in layer order."""
        if self._sections and self._sections[0].type == "net":
            return self._sections[1:]
        return list(self._sections)

    def layer(self, index):
        """The section of layer ``index`` (negative counts from the end, as in Python)."""
        return self.layers[index]

    def find(self, type):
        """The sections of one canonical type (an alias such as ``conv`` works too)."""
        canonical = SECTION_TYPES.get(type, type)
        return [s for s in self._sections if s.type == canonical]

    def _layer_index(self, sec):
        pos = self._sections.index(sec)
        offset = 1 if self._sections and self._sections[0].type == "net" else 0
        return pos - offset

    def _line_number(self, sec):
        n = len(self._pre) + 1
        for other in self._sections:
            if other is sec:
                return n
            n += len(other._lines)
        raise ValueError("section is not in this document")

    def _position(self, index):
        n = len(self._sections)
        if isinstance(index, SectionDoc):
            if index._doc is not self:
                raise ValueError("that section is not in this document")
            return self._sections.index(index)
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise TypeError(f"insert position must be an int or a SectionDoc, not {index!r}")
        index = int(index)
        if index < 0:
            index = max(0, index + n)
        return min(index, n)

    def _tail(self, pos):
        """The line list that ends just before section ``pos`` (the preamble for 0)."""
        return self._sections[pos - 1]._lines if pos > 0 else self._pre

    def insert(self, index, section_or_name, _options=None, /, **options):
        """Insert a section before ``doc.sections[index]`` (list.insert positions; a SectionDoc
        means "before that section").  ``section_or_name`` is a name such as
        ``"convolutional"`` or a SectionDoc (copied).  Options go in keyword order; a dict
        works for keys that are not identifiers, and ``from_=-3`` writes ``from=-3``.
        Returns the new SectionDoc."""
        if isinstance(section_or_name, SectionDoc):
            lines = [line.copy() for line in section_or_name._lines]
            for line in lines:
                line.eol = ""           # take this document's line endings
            while len(lines) > 1 and _is_blank(lines[-1]):
                lines.pop()
        else:
            name = str(section_or_name).strip()
            if name.startswith("[") and name.endswith("]"):
                name = name[1:-1].strip()
            if name not in SECTION_TYPES:
                import difflib
                near = difflib.get_close_matches(name, list(SECTION_TYPES), n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise ValueError(f"unknown section type [{name}]{hint}")
            lines = [_Line(f"[{name}]", "")]
        sec = SectionDoc(self, lines)
        for key, value in _merge_options(_options, options):
            sec.set(key, value)
        pos = self._position(index)
        tail = self._tail(pos)
        has_before = bool(self._pre) or pos > 0
        if has_before and not _is_blank(tail[-1]):
            tail.append(_Line("", ""))            # a blank line between sections
        if pos < len(self._sections):
            lines.append(_Line("", ""))           # and one before the next section
        self._sections.insert(pos, sec)
        return sec

    def append(self, section_or_name, _options=None, /, **options):
        """Add a section at the end; see :meth:`insert`."""
        return self.insert(len(self._sections), section_or_name, _options, **options)

    def remove(self, section):
        """Remove a section (a SectionDoc or its position in ``sections``) with its lines up
        to the next header.  Returns the removed, now detached, SectionDoc."""
        if isinstance(section, SectionDoc):
            if section._doc is not self:
                raise ValueError("that section is not in this document")
            pos = self._sections.index(section)
        else:
            pos = section + len(self._sections) if section < 0 else section
        sec = self._sections.pop(pos)
        sec._doc = None
        if pos == len(self._sections):                      # it was the last one:
            tail = self._sections[-1]._lines if self._sections else self._pre
            while len(tail) > (1 if self._sections else 0) and _is_blank(tail[-1]):
                tail.pop()                                  # no blank lines left at the end
        return sec

    def prepend_comment(self, text):
        """Add ``# text`` line(s) at the very top of the file."""
        new = [_Line("# " + _clean_comment(t), "") for t in str(text).splitlines()]
        self._pre[0:0] = new
        return self
