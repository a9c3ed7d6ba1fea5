"""Darknet ``.weights`` files (pj:src/parser.c save_weights_upto, load_weights_upto).

Header: int32 major, minor, revision, then ``seen`` -- a uint64 when major*10+minor >= 2 and both
are below 1000, otherwise a uint32.  ``major > 1000 or minor > 1000`` marks very old files whose
connected weights are stored transposed.  Then each layer's arrays (float32, native little-endian)
in layer order, as each layer's ``weight_record()`` lists them.  Files are written atomically:
a temporary file in the same folder, then a rename.  Loading and saving a network's arrays
(``Network.load_weights``/``save_weights``) is done here too.
"""

import struct

import numpy as np

from ..errors import WeightsError
from .backend import host_copies


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


# -- a network's weights (pj:src/parser.c load_weights_upto, save_weights_upto) -------------
_BN_ARRAYS = ("scales", "rolling_mean", "rolling_variance")


def read_weights_into(net, path, partial, cutoff):
    """Fills ``net``'s layers (the first ``cutoff``) from the file at ``path``, in layer order,
    each layer's ``weight_record()`` (without its batch norm's with ``dontloadscales``, none
    with ``dontload``); sets ``seen``, ``t``, ``version`` and ``nonfinite`` (the arrays that
    came with NaN/inf: (layer index, type, array, count)).  Returns the layers filled.  A file
    that ends early is an error naming the layer unless ``partial`` (a *.conv.N backbone), and
    then only where it ends between two layers' records: one that ends inside a record, or
    that has floats left over once every layer is filled, was written for another cfg (its
    records would land in the wrong arrays), partial or not."""
    path = str(path)
    header, payload = read_weights_file(path)
    if header.seen_is_64bit:
        net.version = (header.major, header.minor, header.revision)
    net.seen = header.seen
    net.t = net.seen // (net.batch * net.subdivisions)
    pos = filled = 0
    net.nonfinite = []
    layers = net.layers if cutoff is None else net.layers[:cutoff]
    for layer in layers:
        if layer.dontload:
            continue
        names = layer.weight_record()
        if layer.dontloadscales:
            names = [n for n in names if n not in _BN_ARRAYS]
        need = sum(getattr(layer, n).size for n in names)
        if not names:
            filled += 1
            continue
        if pos + need > payload.size:
            if partial and pos == payload.size:     # a backbone ends between two layers
                return filled
            raise WeightsError(
                f"file ends in layer {layer.index} ({layer.type}): it needs {need} more "
                f"floats but only {payload.size - pos} are left; the file does not match "
                "the cfg" + ("" if partial else
                             " (use a partial load for a *.conv.N backbone)"), path)
        for name in names:
            target = getattr(layer, name)
            values = _orient(layer, name, payload[pos:pos + target.size], header.transpose)
            pos += target.size
            bad = count_nonfinite(values)
            if bad:
                net.nonfinite.append((layer.index, layer.type, name, bad))
            setattr(layer, name, net.xp.asarray(values.reshape(target.shape),
                                                dtype=net.dtype).copy())
        filled += 1
    if pos < payload.size and len(layers) == len(net.layers):
        raise WeightsError(f"file has {payload.size - pos} floats more than the cfg's "
                           f"{len(net.layers)} layers use; the file does not match the cfg"
                           + (" (its first layers: `darknet_py partial CFG WEIGHTS OUT N`)"
                              if partial else ""), path)
    return filled


def _orient(layer, name, values, transpose):
    """A record's values as the layer holds them: old files' connected weights transposed,
    AlexeyAB's flipped conv weights (``flipped=1``) transposed."""
    part, sep, own = name.partition("__")
    if sep:         # a recurrent layer's part (layers/recurrent.py): oriented as itself
        return _orient(getattr(layer, part), own, values, transpose)
    if name != "weights":
        return values
    if layer.type == "connected" and transpose:
        return values.reshape(layer.inputs, layer.out_c).T
    if layer.type == "convolutional" and getattr(layer, "flipped", False):
        return values.reshape(-1, layer.n).T
    return values


def weights_file_chunks(net, layers, arrays, refuse):
    """The bytes of a .weights file of ``layers`` as they are now: the header (``net``'s seen
    and version), then each layer's record, ``arrays(layer, name)`` each (not with
    ``dontsave``).  ``refuse``: the path the bytes are for, NonFiniteWeights naming it when
    an array holds NaN or inf."""
    named = _saved_names(layers)
    # read at once (tobytes below): host arrays need no copy of their own
    values = host_copies([arrays(layer, name) for layer, name in named], copy=False)
    if refuse is not None:
        found = _nonfinite_of(named, values, np)
        if found:
            raise NonFiniteWeights(f"refusing to write weights holding "
                                   f"{nonfinite_summary(found)}", refuse)
    return [header_bytes(net.seen, net.version)] + [
        np.ascontiguousarray(v, dtype="<f4").tobytes() for v in values]


def nonfinite_arrays(layers, arrays, xp):
    """[(layer index, type, array name, count)] of the saved arrays holding NaN or inf."""
    named = _saved_names(layers)
    return _nonfinite_of(named, [arrays(layer, name) for layer, name in named], xp)


def _saved_names(layers):
    """(layer, array name) of what a weights file holds, in its order (not ``dontsave``)."""
    return [(layer, name) for layer in layers if not layer.dontsave
            for name in layer.weight_record()]


def _nonfinite_of(named, values, xp):
    """The (layer index, type, name, count) of the ``named`` arrays whose ``values`` hold NaN
    or inf."""
    return [(layer.index, layer.type, name, bad)
            for (layer, name), v in zip(named, values) if (bad := count_nonfinite(v, xp))]
