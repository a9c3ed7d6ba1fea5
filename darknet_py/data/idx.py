"""IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

Layout: a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32 dimensions,
then the data, C order, big-endian.  MNIST uses TYPE 0x08 (unsigned byte): images are
``0x00000803`` (N, rows, cols), labels ``0x00000801`` (N,).  The other IDX types (int8, int16,
int32, float32, float64) are read and written too.

Files are read whole (gzip or plain, told apart by their first two bytes, not by their name) and
turned into arrays without copying pixel by pixel.  Writes are atomic (a temporary file in the
same folder, then ``os.replace``), and ``.gz`` output has a zero timestamp so that the same array
always gives the same bytes.

    images, labels = load_images_labels("data/mnist/train-images-idx3-ubyte.gz",
                                        "data/mnist/train-labels-idx1-ubyte.gz")
    find_idx_pairs("/usr/share/datasets/fashion-mnist")
    # {'t10k': (.../t10k-images-idx3-ubyte.gz, .../t10k-labels-idx1-ubyte.gz), 'train': (...)}
"""

import gzip
import os
import re
import struct
import zlib

import numpy as np

from ..atomic import atomic_open
from ..errors import DarknetError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# IDX type code -> big-endian NumPy dtype
_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _TYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DarknetError(f"cannot read IDX file: {e.strerror or e}", path) from None
    if data[:2] == _GZIP_MAGIC:
        try:
            # One call for the whole file (several gzip members are allowed, as gzip(1) does).
            data = gzip.decompress(data)
        except EOFError:
            raise DarknetError("truncated gzip data (the download or copy did not finish?)",
                               path) from None
        except (gzip.BadGzipFile, zlib.error) as e:
            raise DarknetError(f"corrupt gzip data: {e}", path) from None
    return data


def _parse(data, path):
    if len(data) < 4:
        raise DarknetError(f"truncated IDX file: {len(data)} bytes, shorter than the 4-byte "
                           "magic number", path)
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise DarknetError(f"not an IDX file: magic number 0x{magic:08x} (expected 0x{IMAGES_MAGIC:08x} "
                           f"for images or 0x{LABELS_MAGIC:08x} for labels)", path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DarknetError(f"truncated IDX file: {len(data)} bytes, shorter than the {header}-byte "
                           f"header of a {ndim}-dimensional array", path)
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _TYPES[code]
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have < want:
        raise DarknetError(f"truncated IDX file: shape {'x'.join(map(str, shape))} needs {want} data "
                           f"bytes after the header, found {have}", path)
    if have > want:
        raise DarknetError(f"IDX file has {have - want} bytes of trailing garbage after the "
                           f"{'x'.join(map(str, shape))} array", path)
    arr = np.frombuffer(data, dtype=dtype, count=want // dtype.itemsize, offset=header)
    return magic, arr.reshape(shape)


def read_idx(path, expect_magic=None):
    """The array stored in an IDX file (gzip or plain), e.g. uint8 (N, 28, 28) for MNIST images.

    The result is a writable native-endian array.  ``expect_magic`` (e.g. ``IMAGES_MAGIC``)
    makes any other magic number an error.  Errors are a one-line ``DarknetError`` naming the file.
    """
    path = os.fspath(path)
    magic, arr = _parse(_read_bytes(path), path)
    if expect_magic is not None and magic != expect_magic:
        what = {IMAGES_MAGIC: "images (idx3-ubyte)", LABELS_MAGIC: "labels (idx1-ubyte)"}
        raise DarknetError(f"magic number 0x{magic:08x} where {what.get(expect_magic, 'an IDX file')} "
                           f"should have 0x{expect_magic:08x}", path)
    # frombuffer over bytes is read-only; native byte order is what the rest of the code expects.
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def write_idx(path, array):
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends with ``.gz``.

    uint8 arrays get the MNIST magic numbers (0x00000801 for 1-D, 0x00000803 for 3-D).  The file
    appears atomically (temporary file + ``os.replace``) and gzip output is reproducible
    (mtime 0, the stored name is the file name without ``.gz``).
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    if key not in _CODES:
        raise DarknetError(f"IDX files cannot hold {arr.dtype} arrays "
                           "(uint8, int8, int16, int32, float32, float64 only)", path)
    if not 1 <= arr.ndim <= 255:
        raise DarknetError(f"IDX files hold arrays of 1 to 255 dimensions, not {arr.ndim}", path)
    if any(n >= 2**32 for n in arr.shape):
        raise DarknetError(f"dimension too large for IDX: shape {arr.shape}", path)
    code = _CODES[key]
    header = struct.pack(f">HBB{arr.ndim}I", 0, code, arr.ndim, *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes()

    with atomic_open(path) as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename=os.path.basename(path)[:-3], mode="wb", fileobj=raw,
                               mtime=0, compresslevel=9) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            raw.write(header)
            raw.write(payload)


def load_images_labels(images_path, labels_path):
    """``(images uint8 (N, H, W), labels uint8 (N,))`` from an MNIST-style pair of IDX files."""
    images = read_idx(images_path, expect_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expect_magic=LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DarknetError(f"{images.shape[0]} images in {os.fspath(images_path)} but "
                           f"{labels.shape[0]} labels here", os.fspath(labels_path))
    return images, labels


# train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte, also "train-images.idx3-ubyte" (a common
# re-packaging) and prefixed names such as emnist-digits-train-images-idx3-ubyte.gz.
_PAIR_RE = re.compile(r"^(?P<split>.+)-(?P<kind>images|labels)[-.](?P<idx>idx3|idx1)-ubyte(?P<gz>\.gz)?$")


def find_idx_pairs(folder):
    """``{split: (images_path, labels_path)}`` for the MNIST-named IDX files in ``folder``.

    ``train-images-idx3-ubyte[.gz]`` + ``train-labels-idx1-ubyte[.gz]`` give ``"train"``,
    ``t10k-...`` gives ``"t10k"`` (the layout of MNIST, Fashion-MNIST and KMNIST).  When both a
    plain and a ``.gz`` copy exist the plain one is used.  Splits missing either file are left out.
    Paths are returned, not arrays: pass them to :func:`load_images_labels`.
    """
    folder = os.fspath(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise DarknetError(f"cannot list IDX folder: {e.strerror or e}", folder) from None
    found = {}
    for name in names:
        m = _PAIR_RE.match(name)
        if not m or (m["kind"] == "images") != (m["idx"] == "idx3"):
            continue
        if not os.path.isfile(os.path.join(folder, name)):
            continue
        slot = found.setdefault(m["split"], {})
        prev = slot.get(m["kind"])
        if prev is None or (prev.endswith(".gz") and not m["gz"]):
            slot[m["kind"]] = name
    return {split: (os.path.join(folder, s["images"]), os.path.join(folder, s["labels"]))
            for split, s in sorted(found.items()) if "images" in s and "labels" in s}


def labels_path_for(images_path):
    """The labels file that goes with an MNIST-named images file (``.gz`` or plain, whichever exists).

    ``data/mnist/train-images-idx3-ubyte.gz`` -> ``data/mnist/train-labels-idx1-ubyte.gz``.
    """
    images_path = os.fspath(images_path)
    folder, name = os.path.split(images_path)
    m = _PAIR_RE.match(name)
    if not m or m["kind"] != "images":
        raise DarknetError("not an MNIST-style images file name (expected "
                           "<split>-images-idx3-ubyte[.gz])", images_path)
    sep = name[m.end("kind")]
    stem = f"{m['split']}-labels{sep}idx1-ubyte"
    candidates = [stem + ".gz", stem] if m["gz"] else [stem, stem + ".gz"]
    for cand in candidates:
        if os.path.isfile(os.path.join(folder, cand)):
            return os.path.join(folder, cand)
    raise DarknetError(f"no labels file next to it ({' or '.join(candidates)})", images_path)
