"""Classifier training (pj:examples/classifier.c train_classifier): a [softmax], [cost] or
[logistic] head, IDX or image-file datasets (image files get pj's crops, flips and HSV
changes), top-1/top-k on the ``valid`` set after each epoch (best -> ``_best.weights``)."""

import sys

import numpy as np

from ..data.classaug import ClassifierAugment
from ..data.datacfg import class_names
from ..data.datasets import (ResidentBatches, epoch_order, load_classification,
                             minibatches_per_epoch)
from ..errors import DarknetError
from ..nn.backend import to_numpy
from ..nn.kernels import idx_batch
from ..nn.netoptions import NET_CLASSIFIER_KEYS
from .trainer import Trainer, progress_bar

#: the largest in-memory training set kept on the GPU (MNIST's 60,000 images: 47 MB)
RESIDENT_BYTES = 1 << 30


def evaluate(net, dataset, top=1, batch=256, progress=False):
    """(top-1, top-k) accuracy of ``net`` in inference mode."""
    hits1 = hitsk = 0
    bar = progress_bar(len(dataset), "valid") if progress else None
    for start in range(0, len(dataset), batch):
        idx = np.arange(start, min(start + batch, len(dataset)))
        x, _ = dataset.batch(idx, net.input_shape, validation=True)
        probs = to_numpy(net.forward(x, train=False)).reshape(len(idx), -1)
        order = np.argsort(-probs, axis=1)
        labels = dataset.labels[idx]
        hits1 += int((order[:, 0] == labels).sum())
        hitsk += int((order[:, :top] == labels[:, None]).any(axis=1).sum())
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    n = max(len(dataset), 1)
    return hits1 / n, hitsk / n


class ClassifierTrainer(Trainer):
    def _setup_head(self):
        net = self.net
        self.classes = self.data.int("classes", 2, minimum=1)
        self.top = max(1, self.data.int("top", 1))
        last = net.layers[-1]
        if last.type not in ("softmax", "cost", "logistic"):
            raise DarknetError(f"the last layer is [{last.section_name}], not a classifier head "
                               "([softmax], [cost] or [logistic])", last.path, last.line)
        if last.outputs != self.classes:
            maker = next((l for l in reversed(net.layers)
                          if l.type in ("connected", "convolutional")), last)
            key = "output" if maker.type == "connected" else "filters"
            says = f"says classes={self.classes}" if "classes" in self.data else \
                f"sets no classes= (Darknet's default is {self.classes})"
            raise DarknetError(f"the network ends with {last.outputs} outputs but "
                               f"{self.data.path} {says}: set {key}="
                               f"{self.classes} in this [{maker.section_name}]",
                               maker.path, maker.line)

    def _setup_data(self):
        self.train_set = load_classification(self.data, "train", self.classes)
        self.valid_set = load_classification(self.data, "valid", self.classes) \
            if "valid" in self.data else None
        self.names = class_names(self.data, self.classes)
        o = self.net.options
        self.augment = None
        if self.train_set.paths is not None:     # image files: pj's crops, flips, HSV
            self.augment = ClassifierAugment.from_section(o.section, o.width)
        else:
            for key in NET_CLASSIFIER_KEYS:
                if o.section.has(key) and self.rank == 0:
                    print(f"{self.net.path}:{o.section.line_of(key)}: warning: {key} in [net]: "
                          "IDX images are used as they are (the crop augmentation is for "
                          "image files)", file=sys.stderr)

    def _indexes(self, k):
        """The images of this replica's part of mini-batch ``k``."""
        return self._shard(epoch_order(len(self.train_set), self.net.batch * self.world,
                                       self.seed, k))

    def _make(self, k):
        idx = self._indexes(k)
        # only the augmentation draws (image files); in-memory images are used as they are
        rng = np.random.default_rng([self.seed, k, 5, self.rank]) \
            if self.augment is not None else None
        return self.train_set.batch(idx, self.net.input_shape, self.augment, rng)

    def _batches(self, start):
        """On the GPU, an in-memory set (IDX) of the network's size is kept on the device and
        each mini-batch gathered there (data.datasets.ResidentBatches: the values ``_make``
        gives); the host's work for a batch and its copy were most of a small network's
        iteration."""
        s = self.train_set
        if self.net.device.on_gpu and s.fits(self.net.input_shape) and \
                s.images.nbytes <= RESIDENT_BYTES:
            return ResidentBatches(s, self._indexes, self._per_epoch_minibatches(), start,
                                   self.net.xp, idx_batch)
        return super()._batches(start)

    def _per_epoch_minibatches(self):
        """epoch_order's mini-batches per epoch (the mini-batch counter k's epochs)."""
        return minibatches_per_epoch(len(self.train_set), self.net.batch * self.world)

    def _evaluate(self, k):
        top1, topk = evaluate(self.net, self.valid_set, self.top)
        return top1, topk, f"{k}: top 1: {top1:f}, top {self.top}: {topk:f}"
