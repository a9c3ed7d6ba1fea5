"""Darknet ``.data`` files and classification datasets (pj:src/option_list.c read_data_cfg,
src/data.c).

A ``.data`` file is ``key=value`` lines (``classes``, ``train``, ``valid``, ``labels``, ``names``,
``backup``, ``top``).  ``train``/``valid`` name either a list file of image paths (Darknet's way:
the class of an image is the label that appears in its path) or an IDX image file
(``*-idx3-ubyte[.gz]``, MNIST's format, read directly with its ``*-idx1-ubyte`` labels).

Images are float32 NCHW in [0, 1], like Darknet's; a 1-channel cfg gets grey images.
"""

import os
import queue
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import DarknetError
from ..image import load_image, resize_array
from .classaug import validation_crop
from .datacfg import read_lines
from .idx import labels_path_for, load_images_labels


def is_idx(path):
    name = os.path.basename(path)
    return "idx3-ubyte" in name or "idx3" in name


class ClassificationSet:
    """Images (uint8, N x H x W [x C]) or image paths, with integer labels."""

    def __init__(self, images, labels, classes, source, paths=None):
        self.images, self.labels, self.classes = images, labels, classes
        self.source, self.paths = source, paths

    def __len__(self):
        return len(self.labels)

    def batch(self, indexes, shape, augment=None, rng=None, validation=False):
        """float32 (n, c, h, w) in [0, 1] and one-hot truth (n, classes).  ``augment`` (a
        classaug.ClassifierAugment, with ``rng``) crops image files the way pj's classifier
        training does, ``validation`` the way its ``classifier valid`` does (the shorter side
        resized to the network, the centre cropped); otherwise they are resized to it."""
        c, h, w = shape
        if self.images is None and validation:
            x = np.stack([validation_crop(load_image(self.paths[i], (c, None, None)), w, h)
                          for i in indexes])
        elif self.images is None and augment is not None:
            seeds = rng.integers(0, 2 ** 63, len(indexes))

            def one(k):
                img = load_image(self.paths[indexes[k]], (c, None, None))
                return augment(img, np.random.default_rng(seeds[k]))
            x = np.stack(list(thread_pool().map(one, range(len(indexes)))))
        elif self.images is not None:
            x = self.images[indexes].astype(np.float32) / 255.0
            if x.ndim == 3:
                x = x[:, None]
            else:
                x = x.transpose(0, 3, 1, 2)
            if x.shape[1:] != (c, h, w):
                x = np.stack([resize_array(img, shape) for img in x])
        else:
            x = np.stack([load_image(self.paths[i], shape) for i in indexes])
        truth = np.zeros((len(indexes), self.classes), np.float32)
        truth[np.arange(len(indexes)), self.labels[indexes]] = 1
        return x, truth


_POOL = None


def thread_pool():
    """Threads for image decoding and resizing (Pillow releases the GIL for both)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                   thread_name_prefix="darknet_py-data")
    return _POOL


def match_labels(paths, labels, list_path):
    """Darknet's rule (a label that appears in the path), stricter: the label must be a whole
    component of the path or the file name's stem, or a ``_``/``-``/``.``-separated word of it;
    the longest match wins.  Images with no or several equally good matches are reported."""
    out = np.zeros(len(paths), np.int64)
    none, several = [], []
    for i, p in enumerate(paths):
        words = set()
        for part in re.split(r"[\\/]", p):
            stem = os.path.splitext(part)[0]
            words.update([part, stem], re.split(r"[_\-. ]", stem))
        hits = [k for k, lab in enumerate(labels) if lab in words]
        if not hits:
            none.append(p)
            continue
        best = max(len(labels[k]) for k in hits)
        hits = [k for k in hits if len(labels[k]) == best]
        if len(hits) > 1:
            several.append(p)
        out[i] = hits[0]
    if none or several:
        parts = []
        if none:
            parts.append(f"{len(none)} image(s) match no label (first: {none[0]})")
        if several:
            parts.append(f"{len(several)} match several labels (first: {several[0]})")
        raise DarknetError("; ".join(parts) + ". A label must be a folder or a word of the file "
                           "name, e.g. data/train/cat/1.png or 1_cat.png", list_path)
    return out


def load_classification(data, key, classes):
    """The ``train`` or ``valid`` set of a .data file."""
    path = data.file(key, required=True)
    if not os.path.exists(path):
        file, line = data.where(key)
        raise DarknetError(f"{key}={data[key]}: no such file", file, line)
    if is_idx(path):
        labels_path = labels_path_for(path)
        images, labels = load_images_labels(path, labels_path)
        labels = labels.astype(np.int64)
        if labels.max(initial=0) >= classes:
            raise DarknetError(f"labels go up to {labels.max()} but classes={classes}",
                               data.path, data.lines.get("classes"))
        return ClassificationSet(images, labels, classes, path)
    paths = read_lines(path, f"{key} list")
    label_file = data.file("labels") or data.file("names")
    if label_file is None:
        raise DarknetError("a list-file dataset needs labels= (or names=): the class names "
                           "that appear in the image paths", data.path)
    names = read_lines(label_file, "labels file")
    if len(names) != classes:
        raise DarknetError(f"{label_file} has {len(names)} labels but classes={classes}",
                           data.path, data.lines.get("classes"))
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise DarknetError(f"{len(missing)} image(s) listed do not exist (first: {missing[0]})",
                           path)
    return ClassificationSet(None, match_labels(paths, names, path), classes, path, paths)


def epoch_order(n, batch, seed, k):
    """The dataset indexes of mini-batch ``k``: epoch e is a permutation from (seed, e)."""
    per_epoch = max(1, n // batch)
    epoch, j = divmod(k, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[j * batch:(j + 1) * batch]


class Batches:
    """Mini-batches ``make(k)`` for k = start, start+1, ..., prepared by a background thread.

    ``make`` must be a function of k alone (the trainers derive data order and augmentation
    from (seed, k)), so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, make, start, prefetch=3):
        self.make = make
        self._queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(start,), daemon=True)
        self._thread.start()

    def _work(self, k):
        try:
            while not self._stop.is_set():
                item = self.make(k)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                k += 1
        except BaseException as e:  # surfaced in the training thread
            self._queue.put(e)

    def next(self):
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
