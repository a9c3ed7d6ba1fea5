"""Pre-flight check of a detection dataset and its cfg, before hours of training find a bad
line: every image of the train= and valid= lists must open and have a label file whose rows
read (pj:src/data.c fill_truth_detection clips boxes and drops degenerate ones without a word);
each list is summarised, objects per class and box sizes at the network's resolution.

    from darknet_py.data.check import check_dataset
    report = check_dataset("obj.data", "yolo-obj.cfg")
    report.errors, report.problems, report.splits
"""

import os
from dataclasses import dataclass, field

import numpy as np

from ..cfg.check import check_cfg
from ..cfg.parser import read_cfg
from ..errors import DarknetError
from ..image import open_image
from .datacfg import DataCfg, class_names, names_problem, read_lines
from .labels import label_path_for, read_labels


class SplitReport:
    """What the check says of a train/valid list: images without objects, objects per
    class, box sizes in network pixels (Darknet drops boxes under 1 pixel when training)."""

    def __init__(self, key, classes, net_w=None, net_h=None):
        self.key, self.classes, self.net_w, self.net_h = key, classes, net_w, net_h
        self.images = self.negatives = self.tiny = 0
        self.first_tiny = None      # the first label file with a box under 1 network pixel
        self.per_class = np.zeros(classes, np.int64)
        self.sizes = []             # (w, h) relative, one row per box

    def add(self, rows, label):
        """The rows read from one label file (``label``): class, x, y, w, h."""
        if not len(rows):
            self.negatives += 1
            return
        ids = rows[:, 0].astype(np.int64)
        np.add.at(self.per_class, ids[(ids >= 0) & (ids < self.classes)], 1)
        self.sizes.append(rows[:, 3:5])
        if self.net_w and self.net_h:
            tiny = int(((rows[:, 3] * self.net_w < 1) | (rows[:, 4] * self.net_h < 1)).sum())
            if tiny and self.first_tiny is None:
                self.first_tiny = label
            self.tiny += tiny

    def warnings(self):
        """(level, text) problems of the list as a whole."""
        if not self.tiny:
            return []
        return [("warning", f"{self.first_tiny}: warning: {self.tiny} box(es) of the {self.key} "
                            f"set are under 1 pixel at the network's {self.net_w}x{self.net_h} "
                            "and are dropped in training; raise width/height or remove them")]

    def summary(self, names):
        """A line (two with the network size) for the user; ``names`` None: class numbers."""
        wh = np.concatenate(self.sizes) if self.sizes else np.zeros((0, 2), np.float32)
        counts = ", ".join(f"{names[j] if names else j} {int(c)}"
                           for j, c in enumerate(self.per_class))
        line = (f"{self.key}: {self.images} images ({self.negatives} without objects), "
                f"{len(wh)} objects: {counts}")
        if len(wh) and self.net_w and self.net_h:
            px = wh * np.array([self.net_w, self.net_h], np.float32)
            med, low = np.median(px, axis=0), px[np.argmin(px.prod(axis=1))]
            line += (f"\n  boxes at the network's {self.net_w}x{self.net_h}: median "
                     f"{med[0]:.0f}x{med[1]:.0f} px, smallest {low[0]:.1f}x{low[1]:.1f} px, "
                     f"{int(((px[:, 0] < 16) | (px[:, 1] < 16)).sum())} under 16 px")
        return line


@dataclass
class DatasetCheck:
    """The findings of :func:`check_dataset`.  ``problems``: (level, text) with level "error"
    or "warning" and text ``file:line: level: ...``, in the order found (the cfg's first);
    ``splits``: a :class:`SplitReport` per list; ``names``: the class names, None without a
    names= line."""
    images: int = 0
    problems: list = field(default_factory=list)
    splits: list = field(default_factory=list)
    names: list | None = None

    @property
    def errors(self):
        return sum(1 for level, _ in self.problems if level == "error")

    @property
    def warnings(self):
        return len(self.problems) - self.errors


def _network_size_of(cfg_path):
    """The cfg's (width, height), (None, None) when it does not parse (check_cfg says why)."""
    try:
        net = read_cfg(cfg_path).net
        return net.int("width", 0) or None, net.int("height", 0) or None
    except DarknetError:
        return None, None


def _check_image(path, where, problems):
    """Whether the image at ``path`` decodes as training will decode it (image.open_image: its
    size policy, a truncated file); else a problem at ``where`` (list:line).  A JPEG is decoded
    at 1/8 scale (Pillow's draft mode): the whole stream is still read, so a cut file is found,
    in a fraction of the time."""
    try:
        with open_image(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except DarknetError as e:
        problems.append(("error", f"{where}: error: image {path}: {e.message}"))
        return False
    return True


def _check_list(lst, report, classes, problems):
    """Every image of the list file ``lst`` and its label file, into ``report``/``problems``."""
    for n, path in enumerate(read_lines(lst, f"{report.key} list"), start=1):
        report.images += 1
        if not _check_image(path, f"{lst}:{n}", problems):
            continue
        label = label_path_for(path)
        if not os.path.exists(label):
            problems.append(("error", f"{lst}:{n}: error: no label file for {path} "
                                      f"(looked for {label}; an empty file marks an image "
                                      "without objects)"))
            continue
        rows, label_problems = read_labels(label, classes)
        report.add(rows, label)
        for p in label_problems:
            # a box that sticks out of the image is clipped in training: a warning
            level = "warning" if getattr(p, "kind", "") == "outside" else "error"
            problems.append((level, str(p).replace(": ", f": {level}: ", 1)
                             if f": {level}: " not in str(p) else str(p)))


def check_dataset(data_path, cfg_path=None):
    """Check the .data file ``data_path`` (its train= and valid= lists, their images and
    labels) and, given, the cfg ``cfg_path`` against it: a :class:`DatasetCheck`.  Raises
    :class:`DarknetError` only where the .data file itself (or its names file) cannot be read."""
    data = DataCfg(data_path)
    classes = data.int("classes", 1, minimum=1)
    result = DatasetCheck()
    if cfg_path:
        result.problems += [(f.level, str(f)) for f in check_cfg(cfg_path, data_path)]
    net_w, net_h = _network_size_of(cfg_path) if cfg_path else (None, None)
    for key in ("train", "valid"):
        if key not in data:
            continue
        lst = data.file(key)
        if not os.path.exists(lst):
            result.problems.append(("error", f"{data.path}:{data.lines[key]}: error: "
                                             f"{key}={data[key]}: no such file"))
            continue
        report = SplitReport(key, classes, net_w, net_h)
        result.splits.append(report)
        _check_list(lst, report, classes, result.problems)
    result.images = sum(report.images for report in result.splits)
    result.names = class_names(data, classes) if "names" in data else None
    problem = names_problem(data, classes) if "names" in data else None
    if problem:
        result.problems.append(("warning", f"{data.path}:{problem[0]}: warning: {problem[1]}"))
    for report in result.splits:
        result.problems += report.warnings()
    return result
