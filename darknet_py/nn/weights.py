"""Darknet ``.weights`` files (pj:src/parser.c save_weights_upto, load_weights_upto).

Header: int32 major, minor, revision, then ``seen`` -- a uint64 when major*10+minor >= 2 and both
are below 1000, otherwise a uint32.  ``major > 1000 or minor > 1000`` marks very old files whose
connected weights are stored transposed.  Then each layer's arrays (float32, native little-endian)
in layer order, as each layer's ``weight_record()`` lists them.  Files are written atomically:
a temporary file in the same folder, then a rename.
"""

import struct

import numpy as np

from ..errors import WeightsError


class NonFiniteWeights(WeightsError):
    """Weights holding NaN or inf: refused where they would be written (a diverged training's
    weights must not replace good ones)."""


class WeightsWarning(UserWarning):
    """A .weights file that loads but is suspect (NaN/inf values); ``path: warning: ...``."""


def nonfinite_summary(found):
    """``found``: [(layer index, layer type, array name, count)] -> one clause for a message."""
    total = sum(n for *_, n in found)
    index, kind, name, n = found[0]
    more = f"; {len(found) - 1} more array(s) too" if len(found) > 1 else ""
    return (f"{total} NaN/inf value(s): layer {index} ({kind}) {name} has {n} of them{more}")


def count_nonfinite(array, xp=np):
    """How many values of ``array`` (NumPy or CuPy) are NaN or inf."""
    return int(array.size - int(xp.count_nonzero(xp.isfinite(array))))

DEFAULT_VERSION = (0, 2, 0)


class Header:
    def __init__(self, major, minor, revision, seen):
        self.major, self.minor, self.revision, self.seen = major, minor, revision, seen

    @property
    def seen_is_64bit(self):
        return (self.major * 10 + self.minor) >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def transpose(self):
        return self.major > 1000 or self.minor > 1000

    @property
    def size(self):
        return 20 if self.seen_is_64bit else 16


def parse_header(data, path):
    if len(data) < 16:
        raise WeightsError(f"file is {len(data)} bytes, shorter than a .weights header", path)
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    header = Header(major, minor, revision, 0)
    if header.seen_is_64bit:
        if len(data) < 20:
            raise WeightsError("file ends inside the .weights header", path)
        header.seen = struct.unpack_from("<Q", data, 12)[0]
    else:
        header.seen = struct.unpack_from("<I", data, 12)[0]
    return header


def header_bytes(seen, version=DEFAULT_VERSION):
    major, minor, revision = version
    if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000:
        return struct.pack("<3iQ", major, minor, revision, seen)
    return struct.pack("<3iI", major, minor, revision, seen & 0xFFFFFFFF)


def read_weights_file(path):
    """(header, float32 payload) of a .weights file, with one-line errors."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError(f"cannot read weights file: {e.strerror}", str(path)) from None
    header = parse_header(data, str(path))
    body = data[header.size:]
    if len(body) % 4:
        raise WeightsError(f"payload is {len(body)} bytes, not a whole number of float32 values",
                           str(path))
    return header, np.frombuffer(body, dtype="<f4")
