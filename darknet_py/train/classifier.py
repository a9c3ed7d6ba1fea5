"""Classifier training (pj:examples/classifier.c train_classifier): a [softmax], [cost] or
[logistic] head, IDX or image-file datasets (image files get pj's crops, flips and HSV
changes), top-1/top-k on the ``valid`` set after each epoch (best -> ``_best.weights``)."""

import sys

import numpy as np

from ..data.classaug import ClassifierAugment
from ..data.datacfg import class_names
from ..data.datasets import (ResidentBatches, ResidentSet, epoch_order, load_classification,
                             minibatches_per_epoch)
from ..errors import DarknetError
from ..nn.kernels import idx_batch
from ..nn.netoptions import NET_CLASSIFIER_KEYS
from .topk import TopK
from .trainer import Trainer, progress_bar

#: the largest in-memory training set kept on the GPU (MNIST's 60,000 images: 47 MB)
RESIDENT_BYTES = 1 << 30


def evaluate(net, dataset, top=1, batch=256, progress=False, gather=None):
    """(top-1, top-k) accuracy of ``net`` in inference mode (train/topk.py: pj's count,
    read once at the end).  ``gather(idx)``: images ``idx`` and their labels where the network
    runs (data.datasets.ResidentSet, a set kept on the GPU); by default the dataset's batches
    made on the host."""
    hits = TopK(net.xp, top)
    bar = progress_bar(len(dataset), "valid") if progress else None
    for start in range(0, len(dataset), batch):
        idx = np.arange(start, min(start + batch, len(dataset)))
        if gather is None:
            x, _ = dataset.batch(idx, net.input_shape, validation=True)
            labels = net.xp.asarray(dataset.labels[idx])
        else:
            x, labels = gather(idx)
        hits.add(net.forward(x, train=False).reshape(len(idx), -1), labels)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    n = max(len(dataset), 1)
    hits1, hitsk = hits.counts()
    return hits1 / n, hitsk / n


class ClassifierTrainer(Trainer):
    _valid_gather = None    # the validation set's ResidentSet, made at the first validation

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

    def _resident(self, dataset):
        """Whether ``dataset`` is kept on the device: on the GPU, an in-memory set (IDX) of
        the network's size, at most RESIDENT_BYTES."""
        return self.net.device.on_gpu and dataset.fits(self.net.input_shape) and \
            dataset.images.nbytes <= RESIDENT_BYTES

    def _batches(self, start):
        """A resident training set's mini-batches are gathered on the device
        (data.datasets.ResidentBatches: the values ``_make`` gives); the host's work for a
        batch and its copy were most of a small network's iteration."""
        if self._resident(self.train_set):
            return ResidentBatches(ResidentSet(self.train_set, self.net.xp, idx_batch),
                                   self._indexes, self._per_epoch_minibatches(), start)
        return super()._batches(start)

    def _per_epoch_minibatches(self):
        """epoch_order's mini-batches per epoch (the mini-batch counter k's epochs)."""
        return minibatches_per_epoch(len(self.train_set), self.net.batch * self.world)

    def _evaluate(self, k):
        if self._valid_gather is None and self._resident(self.valid_set):
            self._valid_gather = ResidentSet(self.valid_set, self.net.xp, idx_batch)
        top1, topk = evaluate(self.net, self.valid_set, self.top, gather=self._valid_gather)
        return top1, topk, f"{k}: top 1: {top1:f}, top {self.top}: {topk:f}"
