"""Darknet ``.data`` files and classification datasets (pj:src/option_list.c read_data_cfg,
src/data.c).

A ``.data`` file is ``key=value`` lines (``classes``, ``train``, ``valid``, ``labels``, ``names``,
``backup``, ``top``).  ``train``/``valid`` name either a list file of image paths (Darknet's way:
the class of an image is the label that appears in its path) or an IDX image file
(``*-idx3-ubyte[.gz]``, MNIST's format, read directly with its ``*-idx1-ubyte`` labels).

Images are float32 NCHW in [0, 1], like Darknet's; a 1-channel cfg gets grey images.
"""

import collections
import functools
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
            x = idx_input(self.images[indexes])
            if x.shape[1:] != (c, h, w):
                x = np.stack([resize_array(img, shape) for img in x])
        else:
            x = np.stack([load_image(self.paths[i], shape) for i in indexes])
        return x, one_hot(self.labels[indexes], self.classes)

    def fits(self, shape):
        """True when the images are in memory with the (c, h, w) ``shape`` of a network's
        input: their batches are ``idx_input`` of them as they are."""
        if self.images is None:
            return False
        c = 1 if self.images.ndim == 3 else self.images.shape[3]
        return (c, *self.images.shape[1:3]) == tuple(shape)


def idx_input(images):
    """uint8 images (n, h, w) or (n, h, w, c) as the float32 (n, c, h, w) network input in
    [0, 1]: a float32 division by 255 (IEEE, so nn/kernels.py idx_batch's is bit-equal)."""
    x = images.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def one_hot(labels, classes):
    """The truth of images with integer ``labels``: float32 (n, classes), 1 at each label."""
    truth = np.zeros((len(labels), classes), np.float32)
    truth[np.arange(len(labels)), labels] = 1
    return truth


def host_batch(images, labels, classes, indexes):
    """Images ``indexes`` of an in-memory set of the network's size and their truth, as
    ClassificationSet.batch gives them (ResidentBatches' gather on the host)."""
    return idx_input(images[indexes]), one_hot(labels[indexes], classes)


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
    if not paths:
        raise DarknetError(f"the {key} list is empty: it must name at least one image, one "
                           "path a line", path)
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
    """The dataset indexes of mini-batch ``k``: epoch e is a permutation from (seed, e).  A
    mini-batch larger than the dataset is filled with further permutations (pj draws its
    images with replacement, get_random_paths), so it always holds ``batch`` images."""
    epoch, j = divmod(k, minibatches_per_epoch(n, batch))
    return _epoch_permutation(n, batch, seed, epoch)[j * batch:(j + 1) * batch]


def minibatches_per_epoch(n, batch):
    """The mini-batches of ``batch`` images in an epoch of ``n`` (epoch_order's; at least 1)."""
    return max(1, n // batch)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n, batch, seed, epoch):
    """Epoch ``epoch``'s order of the ``n`` images (read-only), drawn once: each of its
    mini-batches is a slice (drawing it per batch costs ~1 ms for COCO's 118k images)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    if batch > n:
        order = np.concatenate([order] + [np.random.default_rng([seed, epoch, r]).permutation(n)
                                          for r in range(1, -(-batch // n))])
    order.flags.writeable = False
    return order


class ResidentSet:
    """An in-memory set of the network's size kept on the device (``xp``): its images and
    labels copied there once, batches gathered there (``gather``: nn/kernels.py idx_batch, the
    values ClassificationSet.batch gives; NumPy's host_batch is the same on the host) -- no
    host work or copy per batch.  ``batch(indexes)``: the input and one-hot truth (training);
    called with indexes: the input and the labels (classifier validation on the GPU)."""

    def __init__(self, dataset, xp, gather):
        self.xp, self.gather, self.classes = xp, gather, dataset.classes
        self.images = xp.asarray(dataset.images)
        self.labels = xp.asarray(dataset.labels, dtype=np.int32)

    def batch(self, indexes):
        return self.gather(self.images, self.labels, self.classes, indexes)

    def __call__(self, indexes):
        indexes = self.xp.asarray(indexes, dtype=np.int64)
        return self.batch(indexes)[0], self.labels[indexes]


class ResidentBatches:
    """Batches' ``next()`` and ``close()`` for a ResidentSet (ClassifierTrainer on the GPU):
    the mini-batch indexes ``indexes(k)`` go to the device once for every ``chunk``
    mini-batches (an epoch), and mini-batch k is gathered there when asked (one kernel queued
    before the pass that reads it) -- no loader thread, where a small network's step is
    shorter than the host's work for a batch."""

    def __init__(self, resident, indexes, chunk, start):
        self.resident, self.indexes, self.chunk = resident, indexes, chunk
        self._k, self._first, self._order = start, None, None

    def next(self):
        k, self._k = self._k, self._k + 1
        first, j = k - k % self.chunk, k % self.chunk
        if first != self._first:
            self._order = self.resident.xp.asarray(np.stack([self.indexes(first + i)
                                                             for i in range(self.chunk)]))
            self._first = first
        return self.resident.batch(self._order[j])

    def close(self):
        self.resident = self._order = None


class Batches:
    """Mini-batches ``make(k)`` for k = start, start+1, ..., prepared ahead by a background
    thread (pj:examples/detector.c train_detector loads the next batch while one trains).

    ``make`` must be a function of k alone (the trainers derive data order and augmentation
    from (seed, k)), so a resumed run sees exactly the batches an uninterrupted one would.  It
    returns (x, truth), or a pending batch (``result()`` -> (x, truth), ``release()``; see
    data/workers.py): then ``ahead`` of them are in preparation at once, so that the workers
    never wait for the slowest image of one batch.  What ``next()`` returns is valid until the
    following ``next()`` or ``close()``, which hand its buffers back for reuse.  With
    ``device`` on the GPU, x and truth arrive there, copied from pinned memory on a stream of
    their own (data/staging.py); on the CPU they are the loader's arrays.
    """

    def __init__(self, make, start, prefetch=3, ahead=1, device=None):
        self.make = make
        self.ahead = max(1, int(ahead))
        self._queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._current = None
        self._stage = None
        if device is not None and device.on_gpu:
            from .staging import DeviceStaging
            # a device buffer per batch that can be alive at once: those queued, the one
            # waiting to be queued, the consumer's, and one being staged
            self._stage = DeviceStaging(device.index, prefetch + 3, self._stop)
        self._thread = threading.Thread(target=self._work, args=(start,), daemon=True,
                                        name="darknet_py-batches")
        self._thread.start()

    def _work(self, k):
        pending = collections.deque()
        try:
            while not self._stop.is_set():
                while len(pending) < self.ahead and not _failed(pending):
                    try:
                        pending.append(self.make(k))
                    except BaseException as e:    # in its turn, after the batches before it
                        pending.append(e)
                    k += 1
                made = pending.popleft()
                if isinstance(made, BaseException):
                    raise made
                item = _Delivery(made, self._stage)
                if not self._put(item):
                    item.release()
        except BaseException as e:  # surfaced in the training thread
            self._put(e)
        finally:
            for made in pending:
                _release(made)

    def _put(self, item):
        """Queue ``item`` unless stopped first; True when queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self):
        self._release_current()
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        self._current = item
        return item.take()

    def _release_current(self):
        if self._current is not None:
            self._current.release()
            self._current = None

    def close(self):
        self._stop.set()
        self._release_current()
        self._thread.join(timeout=2)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, BaseException):
                item.release()
        if self._stage is not None and not self._thread.is_alive():
            self._stage.close()


def _failed(pending):
    return bool(pending) and isinstance(pending[-1], BaseException)


def _release(made):
    if not isinstance(made, (tuple, BaseException)):
        made.release()


class _Delivery:
    """A finished batch on its way to the consumer: ``take()`` gives (x, truth), ``release()``
    frees its buffers (the loader's slot, or the device buffer it was staged into)."""

    def __init__(self, made, stage):
        if isinstance(made, tuple):
            x, truth = made
        else:
            try:
                x, truth = made.result()
            except BaseException:
                made.release()
                raise
        self._made, self._staged, self._batch = made, None, (x, truth)
        if stage is not None:
            try:
                self._staged = stage.put(x, truth)      # copied to pinned memory here
            finally:
                _release(made)                         # so the host slot is free again
            self._made = self._batch = None

    def take(self):
        return self._staged.take() if self._staged is not None else self._batch

    def release(self):
        if self._staged is not None:
            self._staged.release()
        elif self._made is not None:
            _release(self._made)
        self._made = self._staged = None
