"""YOLO detection label files: where Darknet looks for them, and reading them with checks.

Image path -> label path (pj:src/data.c, ab:src/utils.c)
-------------------------------------------------------
* :func:`pj_label_path` is pjreddie/darknet's rule (``src/data.c::fill_truth_detection``): a chain
  of *first-occurrence substring* replacements anywhere in the path -- ``images``->``labels``,
  ``JPEGImages``->``labels``, ``raw``->``labels``, then ``.jpg``, ``.png``, ``.JPG``, ``.JPEG`` ->
  ``.txt``.  Its traps are reproduced on purpose: ``/data/my_images/x.jpg`` becomes
  ``/data/my_labels/x.txt``, ``x.jpeg`` / ``x.bmp`` keep their extension (so the "label" path is
  the image itself).
* :func:`ab_label_path` is AlexeyAB/darknet's rule (``src/utils.c::replace_image_to_label``): only
  the directory patterns ``/images/train2014/``, ``/images/val2014/``, ``/images/train2017/``,
  ``/images/val2017/`` and ``/JPEGImages/`` (and their backslash forms) are rewritten to
  ``labels``; otherwise the label sits next to the image.  The extension (jpg, jpeg, png, bmp, ppm,
  tiff in lower or upper case) is replaced only at the end of the path.
* :func:`label_path_for` is what darknet_py uses: it tries, in order, the PJ path, the AB path,
  ``images``/``JPEGImages``->``labels`` as a *whole path component* (nearest the file first), and
  the file next to the image -- each with a case-insensitive extension swap at the end -- and
  returns the first that exists.  A candidate equal to the image itself, or not ending in
  ``.txt``, is never returned.  When none exists it returns the PJ path (or, when the PJ rule
  cannot produce a ``.txt`` path, the first sensible candidate) so errors can name it;
  :func:`label_path_candidates` lists everything that was tried.

Reading labels
--------------
:func:`read_labels` returns ``(array (n, 5) float32 [class, x, y, w, h], problems)``.  Each
problem is a :class:`LabelProblem` (``path``, ``line``, ``kind``, ``message``, ``dropped``) whose
``str()`` reads ``path:line: message``.  An empty file (or one with only blank lines) is a valid
negative sample: an empty ``(0, 5)`` array and no problems.  Windows line ends, a UTF-8 BOM, tabs
and trailing blank lines are accepted silently.

Kinds: ``missing`` (file cannot be read; line None), ``malformed`` (not five fields, a field that is
not a number, a non-integer class id, NaN/inf), ``class`` (class id < 0 or >= classes), ``center``
(x or y outside [0, 1]), ``size`` (w or h <= 0 or > 1), ``outside`` (the box's edges extend past
[0, 1] by more than ``tolerance``).  Lines with ``missing``/``malformed``/``class``/``center``/
``size`` problems are dropped from the array (AB skips such boxes too); ``outside`` boxes are kept
(``dropped=False``) because Darknet clips them during training.
"""

import math
import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS", "LabelProblem", "ab_label_path", "label_path_candidates",
    "label_path_for", "pj_label_path", "read_labels",
]

#: extensions darknet_py treats as images (compared case-insensitively)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp",
                    ".gif")


def _find_replace(s, orig, rep):
    """Darknet's find_replace: replace the first occurrence of ``orig`` anywhere in ``s``."""
    i = s.find(orig)
    if i < 0:
        return s
    return s[:i] + rep + s[i + len(orig):]


def _find_replace_extension(s, orig, rep):
    """AB's find_replace_extension: the *first* occurrence of ``orig``, only if it ends ``s``."""
    i = s.find(orig)
    if i < 0 or len(s) - i != len(orig):
        return s
    return s[:i] + rep


_PJ_RULES = {
    # fill_truth_detection (DETECTION_DATA: yolov2/v3 training, detector valid/map-style loaders)
    "detector": (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"),
                 (".jpg", ".txt"), (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt")),
    # validate_detector_recall
    "recall": (("images", "labels"), ("JPEGImages", "labels"), (".jpg", ".txt"),
               (".JPEG", ".txt")),
    # fill_truth_region (REGION_DATA, YOLOv1)
    "region": (("images", "labels"), ("JPEGImages", "labels"), (".jpg", ".txt"),
               (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt")),
}


def pj_label_path(image_path, variant="detector"):
    """pjreddie/darknet's label path for ``image_path`` (first-occurrence substring rewrites).

    ``variant`` is ``"detector"`` (training, the default), ``"recall"`` (``detector recall``) or
    ``"region"`` (the YOLOv1 loader).  The result may not end in ``.txt`` (``.jpeg``, ``.bmp``...):
    that is what Darknet would try to open.
    """
    path = str(image_path)
    for orig, rep in _PJ_RULES[variant]:
        path = _find_replace(path, orig, rep)
    return path


_AB_DIRS = (
    ("/images/train2017/", "/labels/train2017/"), ("/images/val2017/", "/labels/val2017/"),
    ("/JPEGImages/", "/labels/"),
    ("\\images\\train2017\\", "\\labels\\train2017\\"),
    ("\\images\\val2017\\", "\\labels\\val2017\\"),
    ("\\images\\train2014\\", "\\labels\\train2014\\"),
    ("\\images\\val2014\\", "\\labels\\val2014\\"),
    ("/images/train2014/", "/labels/train2014/"), ("/images/val2014/", "/labels/val2014/"),
    ("\\JPEGImages\\", "\\labels\\"),
)
_AB_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM",
                  ".tiff", ".TIFF")


def ab_label_path(image_path):
    """AlexeyAB/darknet's label path for ``image_path`` (COCO/VOC directory patterns, else next
    to the image; the extension replaced only at the end).  May not end in ``.txt`` for an
    unsupported extension (AB then prints ``Failed to infer label file name``)."""
    path = str(image_path)
    for orig, rep in _AB_DIRS:
        path = _find_replace(path, orig, rep)
    path = path.strip(" \t")
    for ext in _AB_EXTENSIONS:
        path = _find_replace_extension(path, ext, ".txt")
    return path


def _swap_extension(path):
    """``path`` with its image extension (any case) replaced by ``.txt``; None if it has none."""
    root, ext = os.path.splitext(path)
    if ext.lower() in IMAGE_EXTENSIONS:
        return root + ".txt"
    return None


def _component_candidates(path):
    """``images``/``JPEGImages`` -> ``labels`` as a whole path component, nearest the file first."""
    seps = "/\\"
    parts, start = [], 0
    for i, ch in enumerate(path):
        if ch in seps:
            parts.append((start, i))
            start = i + 1
    out = []
    for a, b in reversed(parts):           # directories only (the last part is the file name)
        if path[a:b] in ("images", "JPEGImages"):
            out.append(path[:a] + "labels" + path[b:])
    return out


def label_path_candidates(image_path):
    """Every label path darknet_py would try for ``image_path``, in order, without duplicates
    (only ``.txt`` paths different from the image itself)."""
    image_path = str(image_path)
    raw = [pj_label_path(image_path), ab_label_path(image_path)]
    for p in _component_candidates(image_path):
        raw.append(_swap_extension(p))
    raw.append(_swap_extension(image_path))
    out = []
    for p in raw:
        if p and p != image_path and p.endswith(".txt") and p not in out:
            out.append(p)
    return out


def label_path_for(image_path, exists=os.path.exists):
    """The label file for ``image_path``: the first of :func:`label_path_candidates` that
    ``exists``; else the PJ path (or, where the PJ rule gives no ``.txt`` path, the first
    candidate)."""
    candidates = label_path_candidates(image_path)
    for p in candidates:
        if exists(p):
            return p
    pj = pj_label_path(str(image_path))
    if pj.endswith(".txt") and pj != str(image_path):
        return pj
    return candidates[0] if candidates else pj


@dataclass(frozen=True)
class LabelProblem:
    """One problem found in a label file; ``str()`` gives ``path:line: message``."""
    path: str
    line: int | None
    kind: str          # missing | malformed | class | center | size | outside
    message: str
    dropped: bool = True

    def __str__(self):
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        return f"{where}: {self.message}"


def _fmt(v):
    return f"{v:.6g}"


def read_labels(path, classes=None, tolerance=1e-4):
    """Read a YOLO label file: ``(ndarray (n, 5) float32, [LabelProblem, ...])``.

    Columns are ``class_id, x_center, y_center, width, height`` (relative to the image).
    ``classes`` (optional) enables the class-id range check.  ``tolerance`` is how far box edges
    may stick out of [0, 1] before an ``outside`` problem is reported.  See the module docstring
    for which lines are kept.
    """
    path = str(path)
    problems = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        problems.append(LabelProblem(path, None, "missing",
                                     f"cannot open label file: {e.strerror or e}"))
        return np.zeros((0, 5), np.float32), problems
    text = data.decode("utf-8-sig", errors="replace")
    rows = []
    # lines end at '\n' only (pj's fscanf, and the user's editor): splitlines() would also
    # break at a form feed or U+2028 and shift the line numbers the problems name
    for lineno, raw in enumerate(text.split("\n"), start=1):
        fields = raw.split()
        if not fields:
            continue
        line = " ".join(fields)          # shown in messages: one line, whatever the spaces

        def bad(kind, message, dropped=True):
            problems.append(LabelProblem(path, lineno, kind, message, dropped))

        if len(fields) != 5:
            bad("malformed", f"expected 5 fields 'class x y w h', found {len(fields)}: "
                             f"'{line}'")
            continue
        try:
            cls = int(fields[0])
        except ValueError:
            bad("malformed", f"class id '{fields[0]}' is not an integer")
            continue
        try:
            x, y, w, h = (float(v) for v in fields[1:])
        except ValueError:
            bad("malformed", f"a coordinate is not a number: '{line}'")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            bad("malformed", f"a coordinate is NaN or infinite: '{line}'")
            continue
        if cls < 0 or (classes is not None and cls >= classes):
            upper = f"{classes - 1}" if classes is not None else "classes-1"
            bad("class", f"class_id = {cls} is out of range: it must be from 0 to {upper}")
            continue
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            bad("center", f"box centre x = {_fmt(x)}, y = {_fmt(y)} is outside [0, 1] "
                          "(coordinates must be relative to the image size)")
            continue
        if not (0.0 < w <= 1.0 and 0.0 < h <= 1.0):
            bad("size", f"box size w = {_fmt(w)}, h = {_fmt(h)} must be in (0, 1]")
            continue
        left, right, top, bottom = x - w / 2, x + w / 2, y - h / 2, y + h / 2
        if left < -tolerance or top < -tolerance or right > 1 + tolerance \
                or bottom > 1 + tolerance:
            bad("outside", f"box [{_fmt(left)}, {_fmt(top)}, {_fmt(right)}, {_fmt(bottom)}] "
                           "(left, top, right, bottom) extends outside the image [0, 1]",
                dropped=False)
        rows.append((cls, x, y, w, h))
    arr = np.array(rows, dtype=np.float32).reshape(-1, 5)
    return arr, problems
