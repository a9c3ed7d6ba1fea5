"""Darknet's ``.data`` files (pj:src/option_list.c read_data_cfg, option_find) and the list and
names files they point to.

A ``.data`` file is ``key=value`` lines (``classes``, ``train``, ``valid``, ``labels``, ``names``,
``backup``, ``top``, ...); training, inference and ``cfg check`` all read it through
:class:`DataCfg`, so they agree on what it says (a repeated key: the first line wins, as
``option_find``).
"""

import os
import sys

from ..errors import DarknetError


class DataCfg(dict):
    """The options of a .data file, with where each came from."""

    def __init__(self, path, lenient=False):
        """Read ``path``.  A line that is not ``key=value`` is an error, or with ``lenient=True``
        (``cfg check``) one of the ``problems`` (line, message) as Darknet only prints it."""
        super().__init__()
        self.path = str(path)
        self.lines = {}
        self.resolved = set()      # keys found relative to the .data file, not the cwd
        self.problems = []         # (line, message): lines Darknet skips, repeated keys
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or "not a UTF-8 text file"
            raise DarknetError(f"cannot read data file: {reason}", self.path) from None
        for lineno, raw in enumerate(text.split("\n"), start=1):
            if "\0" in raw:      # UTF-16 without a byte-order mark, or a binary file
                raise DarknetError("not a text .data file (NUL bytes; UTF-16?): expected UTF-8 "
                                   "key=value lines", self.path, lineno)
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if "=" not in line:
                if not lenient:
                    raise DarknetError(f"'{line}' is not key=value", self.path, lineno)
                self.problems.append((lineno, f"'{line}' is not key=value; Darknet ignores it"))
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if key in self:
                # pj option_find walks the list from the top: the first line wins
                self.problems.append((lineno, f"duplicate '{key}': line {self.lines[key]} sets "
                                              "it first and wins"))
                continue
            self[key] = value
            self.lines[key] = lineno

    def int(self, key, default, minimum=None):
        """``key`` as a whole number (``default`` when absent); below ``minimum`` is an error
        at its line (``classes=-1`` would otherwise fail deep inside with a traceback)."""
        if key not in self:
            return default
        try:
            value = int(self[key])
        except ValueError:
            value = None
        if value is None or (minimum is not None and value < minimum):
            at_least = f" >= {minimum}" if minimum is not None else ""
            raise DarknetError(f"{key}={self[key]}: expected a whole number{at_least}",
                               self.path, self.lines[key])
        return value

    def file(self, key, default=None, required=False):
        """A path option, resolved from the working directory, else from the .data file's place."""
        if key not in self:
            if required:
                raise DarknetError(f"no '{key}=' line: it must name a file", self.path)
            return default
        value = self[key]
        found = self.resolve(value)
        if found != value and key not in self.resolved:   # say it once: Darknet would not
            self.resolved.add(key)
            print(f"{self.path}:{self.lines[key]}: note: {key}={value} is not under the "
                  f"working directory; using {found}", file=sys.stderr)
        return found

    def resolve(self, value):
        """A path as Darknet finds it (the working directory), else next to the .data file or in
        one of its parents, so `darknet_py train cfg/x.cfg /elsewhere/repo/data/x.data` works."""
        if os.path.exists(value) or os.path.isabs(value):
            return value
        folder = os.path.dirname(os.path.abspath(self.path))
        while True:
            candidate = os.path.join(folder, value)
            if os.path.exists(candidate):
                return candidate
            parent = os.path.dirname(folder)
            if parent == folder:
                return value
            folder = parent

    def where(self, key):
        return self.path, self.lines.get(key)


def read_lines(path, what):
    """The non-blank lines of a list or names file, stripped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DarknetError(f"cannot read {what}: {e.strerror}", path) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DarknetError(f"cannot read {what}: not a UTF-8 text file", path,
                           data[:e.start].count(b"\n") + 1) from None
    if "\0" in text:
        raise DarknetError(f"cannot read {what}: not a text file (NUL bytes; UTF-16?)", path,
                           text[:text.index("\0")].count("\n") + 1)
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def class_names(data, classes, say=False):
    """The ``classes`` names of the .data file's ``names=`` (else ``labels=``) file; class
    numbers where there is no such line, no such file or too few lines.  ``say``: print the
    problem (``names_problem``) as a warning at its line -- pj would stop on a missing names
    file (get_labels), and printing class numbers without a word hides the mistake."""
    key = "names" if "names" in data else "labels" if "labels" in data else None
    problem = names_problem(data, classes)
    if problem and say:
        print(f"{data.path}:{problem[0]}: warning: {problem[1]}", file=sys.stderr)
    if key is not None:
        path = data.file(key)
        if os.path.isfile(path):
            names = read_lines(path, "names file")
            if len(names) >= classes:
                return names[:classes]
    return [str(i) for i in range(classes)]


def names_problem(data, classes):
    """(line, message) when the names file is missing or its count differs from ``classes``,
    else None."""
    key = "names" if "names" in data else "labels" if "labels" in data else None
    if key is None:
        return None
    path = data.file(key)
    if not os.path.isfile(path):
        return data.lines[key], f"{key}={data[key]}: no such file; classes are shown by number"
    count = len(read_lines(path, "names file"))
    if count == classes:
        return None
    shown = "the first ones are used" if count > classes else "classes are shown by number"
    return data.lines[key], f"{path} has {count} names but there are {classes} classes; {shown}"
