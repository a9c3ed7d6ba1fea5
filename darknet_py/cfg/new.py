"""A ready-to-train cfg from a shipped template: the values that depend on the class count.

    doc = new_cfg("yolov3-tiny", classes=3)                  # or a path to any .cfg
    doc = new_cfg("yolov3-tiny", 3, size=(608, 608), anchors=[(10, 14), ..., (344, 319)])
    doc.save("my-yolov3-tiny.cfg")

What changes (each edited line follows a ``# why`` line: Darknet's parser would read an inline
comment as part of the value, pj:src/option_list.c read_option; nothing else moves):

* ``[yolo]``: ``classes=N`` and, in the ``[convolutional]`` right before it,
  ``filters = len(mask) * (N + 5)`` (``N + 9`` for ``[Gaussian_yolo]``).
* ``[region]``: ``classes=N`` and the conv before it ``filters = num * (coords + 1 + N)``.
* a classifier (its last layer is ``[softmax]``): the last ``[connected]`` ``output=N`` or, when
  the last learned layer is a conv, its ``filters=N``.
* ``[net]``, detectors only: ``max_batches = max(2000 * N, 6000)`` (AlexeyAB's rule, which is
  for detectors: a classifier keeps its template's schedule); ``steps`` at 80% and 90% of it
  (policy ``steps``); a detector template left in testing mode (``batch=1``) gets its training batch
  and subdivisions back (from its ``# batch=64`` / ``# subdivisions=2`` comments, else 64/16).
* ``size=(w, h)``: ``width``/``height``; a yolo/region network needs multiples of its stride (32).
* ``anchors=[(w, h), ...]`` (network-input pixels, e.g. from k-means): sorted by area and split
  evenly over the ``[yolo]`` layers, largest to the coarsest one (as yolov3-tiny does), with
  ``anchors``, ``num``, ``mask`` and ``filters`` kept consistent.  A ``[region]`` layer stores
  anchors in grid cells, so the pixels are divided by its stride.
"""

import importlib.resources
import numbers
import os
import re

from .check import layer_geometry
from .edit import CfgDocument, format_value

__all__ = ["new_cfg", "template_path", "TEMPLATES", "template_dir"]

TEMPLATES = {
    "yolov3-tiny": "yolov3-tiny.cfg",
    "yolov2-tiny": "yolov2-tiny.cfg",
    "yolov4-tiny": "yolov4-tiny.cfg",        # AlexeyAB's
    "yolov7-tiny": "yolov7-tiny.cfg",        # AlexeyAB's, [yolo] new_coords=1
    "mnist": "mnist.cfg",
}
DETECTOR_MIN_MAX_BATCHES = 6000
BATCHES_PER_CLASS = 2000
YOLO_TYPES = ("yolo", "gaussian_yolo")


def template_dir():
    """The folder of the templates shipped inside the package as package data (setup.cfg
    [options.package_data]; the repository's ``cfg/`` links to it), found through
    importlib.resources, so that an installed copy (``pip install .``, not ``-e``) reads its
    own."""
    return os.fspath(importlib.resources.files("darknet_py.cfg") / "templates")


def template_path(template):
    """A template name (``yolov3-tiny``, ``yolov2-tiny``, ``mnist``, or any ``NAME`` with a
    ``cfg/NAME.cfg``) or a path to a cfg file -> the file's path."""
    template = os.fspath(template)
    folder = template_dir()
    if template in TEMPLATES:
        path = os.path.join(folder, TEMPLATES[template])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"template '{template}' should be {path}, which is missing "
                                    "(is darknet_py installed without its templates?)")
        return path
    if os.path.isfile(template):
        return template
    path = os.path.join(folder, template + ".cfg")
    if os.sep not in template and "/" not in template and os.path.isfile(path):
        return path
    raise ValueError(f"unknown template '{template}': use one of {', '.join(TEMPLATES)} "
                     "or a path to a .cfg file")


# -- helpers -----------------------------------------------------------------------------------
def _set(sec, key, value, why):
    """Set ``key`` and say why, unless it already has that value (then leave the line alone)."""
    old = sec.get(key)
    new = format_value(value)
    if old is not None and _same(old, new):
        return False
    if old is not None and len(old) > 40:
        old = old[:37] + "..."
    was = f"; was {old}" if old is not None else ""
    sec.set(key, value, comment=why + was)
    return True


def _same(old, new):
    if old == new:
        return True
    try:
        a = [float(v) for v in old.rstrip(",").split(",")]
        b = [float(v) for v in new.split(",")]
    except ValueError:
        return False
    return a == b


def _where(doc, sec):
    return f"{doc.path or '<cfg>'}:{sec.line}: [{sec.name}]"


def _strides(doc):
    """Each layer's downsampling factor relative to the network input (the layer classes'
    rules, as ``cfg check`` walks them)."""
    return [float(field.jump[0]) if field is not None and field.jump else 1.0
            for _, field in layer_geometry(doc.text(), doc.path or "<cfg>")]


def _parse_size(size):
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", size)
        if not m:
            raise ValueError(f"size '{size}' is not WxH (for example 416x416)")
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
    elif isinstance(size, numbers.Integral) and not isinstance(size, bool):
        w = h = int(size)
    else:
        try:
            w, h = size
        except (TypeError, ValueError):
            raise ValueError(f"size must be (width, height), an int or 'WxH', not {size!r}") \
                from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (w, h)):
            raise ValueError(f"size must be whole pixels, not {size!r}")
        w, h = int(w), int(h)
    if w <= 0 or h <= 0:
        raise ValueError(f"size {w}x{h}: width and height must be positive")
    return w, h


def _parse_anchors(anchors):
    items = list(anchors.tolist() if hasattr(anchors, "tolist") else anchors)
    if items and all(isinstance(v, numbers.Real) for v in items):    # flat w,h,w,h,...
        if len(items) % 2:
            raise ValueError(f"anchors: {len(items)} numbers do not make (w, h) pairs")
        items = [items[i:i + 2] for i in range(0, len(items), 2)]
    pairs = []
    for item in items:
        try:
            w, h = item
            w, h = float(w), float(h)
        except (TypeError, ValueError):
            raise ValueError(f"anchors must be (w, h) pairs, got {item!r}") from None
        if not (w > 0 and h > 0) or w == float("inf") or h == float("inf"):
            raise ValueError(f"anchor ({w:g}, {h:g}): width and height must be positive")
        pairs.append((_tidy(item[0]), _tidy(item[1])))
    if not pairs:
        raise ValueError("anchors: the list is empty")
    return pairs


def _tidy(v):
    f = float(v)
    return int(f) if f.is_integer() else f


def _prev_conv(doc, sec, what):
    sections = doc.sections
    pos = sections.index(sec)
    prev = sections[pos - 1] if pos > 0 else None
    if prev is None or prev.type != "convolutional":
        found = f"[{prev.name}]" if prev is not None else "nothing"
        raise ValueError(f"{_where(doc, sec)} must come right after the [convolutional] that "
                         f"feeds it ({what}), found {found}")
    return prev


def _steps_comment(max_batches):
    return f"80%, 90% of max_batches={max_batches}"


# -- the recipe --------------------------------------------------------------------------------
def new_cfg(template, classes, size=None, anchors=None):
    """A :class:`CfgDocument` ready to train ``classes`` classes, from a template name or path.

    Raises ValueError for a class count below 1, a size that is not a multiple of the detector's
    stride, anchors that cannot be split over the yolo layers, or a template of a kind this does
    not know (not yolo, region or softmax classifier).  ``doc.path`` is None: ``doc.save(out)``.
    """
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"classes must be a whole number >= 1, not {classes!r}")
    classes = int(classes)
    path = template_path(template)
    doc = CfgDocument.load(path)
    net = doc.net
    if net is None:
        raise ValueError(f"{path}: the template has no [net] section")
    yolos = [s for s in doc.sections if s.type in YOLO_TYPES]
    regions = doc.find("region")
    layers = [s for s in doc.layers if s.type != "cost"]
    if doc.find("detection"):
        raise ValueError(f"{path}: YOLOv1 [detection] templates are not supported")
    if yolos and regions:
        raise ValueError(f"{path}: a template with both [yolo] and [region] layers is not "
                         "supported")
    detector = bool(yolos or regions)
    classifier = not detector and bool(layers) and layers[-1].type == "softmax"
    if not detector and not classifier:
        raise ValueError(f"{path}: cannot tell what this template is: it has no [yolo] or "
                         "[region] layer and does not end in [softmax]")
    if classifier and classes < 2:
        raise ValueError(f"{path}: a softmax classifier needs at least 2 classes (one softmax "
                         "output is always 1.0)")
    strides = _strides(doc) if detector else []

    # -- size --------------------------------------------------------------------------------
    if size is not None:
        w, h = _parse_size(size)
        reason = f"size={w}x{h}"
        if detector:
            head_strides = [strides[s.index] for s in yolos + regions]
            stride = int(max([32.0] + head_strides))
            if w % stride or h % stride:
                near = lambda v: max(stride, int(round(v / stride)) * stride)  # noqa: E731
                raise ValueError(f"size {w}x{h}: width and height must be multiples of {stride} "
                                 f"for a {'yolo' if yolos else 'region'} network (its stride), "
                                 f"for example {near(w)}x{near(h)}")
            reason += f" (a multiple of the network stride {stride})"
        _set(net, "width", w, reason)
        _set(net, "height", h, reason)

    # -- anchors -----------------------------------------------------------------------------
    masks = {}          # yolo section -> its new mask (only when anchors are given)
    if anchors is not None:
        if classifier:
            raise ValueError(f"{path}: anchors only apply to [yolo] or [region] detectors")
        pairs = sorted(_parse_anchors(anchors), key=lambda p: p[0] * p[1])
        k = len(pairs)
        if yolos:
            nl = len(yolos)
            if k % nl:
                raise ValueError(f"{k} anchors cannot be split evenly over the {nl} [yolo] "
                                 f"layers of {os.path.basename(path)}: pass a multiple of {nl} "
                                 f"(it ships with {yolos[0].get('num', '?')})")
            per = k // nl
            # finest grid (smallest stride) first; among equals keep the template's own order
            order = sorted(yolos, key=lambda s: (strides[s.index],
                                                 max(s.get("mask", [0], list) or [0])))
            for j, sec in enumerate(order):
                masks[sec] = list(range(j * per, (j + 1) * per))
            for sec in yolos:
                m = masks[sec]
                size_word = ("largest" if m[-1] == k - 1 else "smallest" if m[0] == 0
                             else "middle")
                _set(sec, "anchors", pairs, f"{k} anchors (pixels) sorted by area")
                _set(sec, "num", k, f"{k} anchors")
                _set(sec, "mask", m, f"anchors {m[0]}-{m[-1]} (the {size_word}) for this "
                                     f"stride-{int(strides[sec.index])} layer")
        else:
            for sec in regions:
                stride = strides[sec.index]
                grid = [(round(w / stride, 6), round(h / stride, 6)) for w, h in pairs]
                _set(sec, "anchors", grid, f"{k} anchors: pixels / stride {int(stride)} "
                                           "(region anchors are in grid cells)")
                _set(sec, "num", k, f"{k} anchors")

    # -- classes -----------------------------------------------------------------------------
    for sec in yolos:
        _set(sec, "classes", classes, f"{classes} classes")
        n = len(masks[sec]) if sec in masks else len(
            sec.get("mask", None, list) or range(sec.get("num", 1, int)))
        extra = 9 if sec.type == "gaussian_yolo" else 5
        conv = _prev_conv(doc, sec, f"filters = len(mask) * (classes + {extra})")
        _set(conv, "filters", n * (classes + extra),
             f"classes={classes}: filters = {n} * ({classes} + {extra})")
    for sec in regions:
        _set(sec, "classes", classes, f"{classes} classes")
        num = sec.get("num", 1, int)
        coords = sec.get("coords", 4, int)
        conv = _prev_conv(doc, sec, "filters = num * (coords + 1 + classes)")
        _set(conv, "filters", num * (coords + 1 + classes),
             f"classes={classes}: filters = {num} * ({coords} + 1 + {classes})")
    if classifier:
        learned = [s for s in layers if s.type in ("connected", "convolutional")]
        if not learned:
            raise ValueError(f"{path}: the classifier has no [connected] or [convolutional] "
                             "layer to give one output per class")
        last = learned[-1]
        key = "output" if last.type == "connected" else "filters"
        _set(last, key, classes, f"classes={classes}: one output per class")

    # -- schedule ----------------------------------------------------------------------------
    if detector:
        max_batches = max(BATCHES_PER_CLASS * classes, DETECTOR_MIN_MAX_BATCHES)
        why = (f"classes={classes}: max(2000 * classes, {DETECTOR_MIN_MAX_BATCHES}) for a "
               "detector (AlexeyAB's rule)")
        _set(net, "max_batches", max_batches, why)
    policy = net.get("policy", "constant")
    if detector and (policy == "steps" or "steps" in net):
        steps = [max_batches * 8 // 10, max_batches * 9 // 10]
        _set(net, "steps", steps, _steps_comment(max_batches))
        scales = net.get("scales", None, list)
        if policy == "steps" and (not scales or len(scales) != len(steps)):
            _set(net, "scales", [0.1, 0.1], "one scale per step")

    # -- training batch ----------------------------------------------------------------------
    if detector and net.get("batch", 1, int) == 1:
        batch, subdivisions = _training_batch(net)
        _set(net, "batch", batch, "training batch; the template had the testing value")
        _set(net, "subdivisions", subdivisions,
             f"{batch}/{subdivisions} = {batch // subdivisions} images per step; "
             "raise it if the GPU runs out of memory")

    source = template if os.fspath(template) in TEMPLATES else os.path.basename(path)
    extra = ""
    if size is not None:
        extra += " --size {}x{}".format(*_parse_size(size))
    if anchors is not None:
        extra += f" --anchors ({len(pairs)} given)"
    doc.prepend_comment(f"darknet_py cfg new --from {source} --classes {classes}{extra}: "
                        "each edited line follows a '# why' line")
    doc.path = None
    return doc


def _training_batch(net):
    """The training batch/subdivisions a testing-mode template notes in comments
    (``# batch=64``, ``# subdivisions=2``), else AlexeyAB's 64/16."""
    found = {}
    for line in net._lines[1:]:
        m = re.fullmatch(r"\s*[#;]\s*(batch|subdivisions)\s*=\s*(\d+)\s*", line.text)
        if m and m.group(1) not in found:
            found[m.group(1)] = int(m.group(2))
    batch = found.get("batch", 64)
    subdivisions = found.get("subdivisions", 16)
    if batch < 1 or subdivisions < 1 or subdivisions > batch:
        batch, subdivisions = 64, 16
    return batch, subdivisions
