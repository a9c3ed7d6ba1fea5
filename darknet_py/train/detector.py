"""YOLO training (pj:examples/detector.c train_detector): augmentation as
load_data_detection, multi-scale with ``random=`` every 10 iterations (AlexeyAB's rule: a
random scale in [1/f, f] of the cfg size, f = 1.4 for random=1, rounded up a step of 32; the
largest size in the first 10 and the last 100 iterations), mAP@0.5 on ``valid`` every few
epochs (best -> ``_best.weights``)."""

import collections
import functools
import gc
import math
import os

import numpy as np

from ..data.datacfg import class_names, read_lines
from ..data.datasets import epoch_order
from ..data.threads import batches_ahead, default_loader_processes
from ..box import Box, Detection
from ..data.detaug import DetectionSet
from ..data.rawimages import RawImages
from ..detection.detect import uses_letterbox
from ..detection.evaluate import detections_for_map
from ..detection.mapeval import evaluate_map
from ..errors import CfgError, DarknetError
from ..image import draw_detections, rand_scale
from ..nn.layers.yolo import resize_needs_ab_placement
from .trainer import Trainer


#: multi-scale training on a GPU keeps a network per size while the memory a new size's copy
#: will take is free: its input pixels x the most a copy has taken per pixel (measured: the
#: pool's growth from a copy's making to the next size, over its passes and graph captures;
#: the largest size trains first, AB's "check if enough memory") x ROOM_SLACK; before any
#: copy is measured (a run resumed mid-way), this part of the GPU's memory
GPU_HEADROOM = 0.25
ROOM_SLACK = 1.25


#: AlexeyAB's multi-scale steps (``resize_step``; another value is refused: nn/netoptions.py)
RESIZE_STEP = 32


def _ab_side(scale, side):
    """round(scale side / step + 1) step, in float32 with C's roundl (halves away from zero),
    as AB's train_detector sizes a side (ab:src/detector.c dim_w, max_dim_w)."""
    f = np.float32
    return int(math.floor(float(f(scale) * f(side) / f(RESIZE_STEP) + f(1)) + 0.5)) * RESIZE_STEP


def _largest_size(width, height, coef):
    """Multi-scale's largest size: each side scaled by the factor itself."""
    return _ab_side(coef, width), _ab_side(coef, height)


@functools.lru_cache(maxsize=64)
def _random_size(seed, block, width, height, coef):
    """Multi-scale's size for the 10 iterations of ``block``, as AlexeyAB's train_detector
    (ab:src/detector.c) draws it: r = rand_scale(coef); each side round(r side / step + 1)
    step (in float32, as AB's C); the cfg's size where r < 1 would make a side larger; at least
    one step.  Drawn once: the trainer asks for an iteration's size several times."""
    r = np.float32(rand_scale(np.random.default_rng([seed, block, 11]),
                              float(np.float32(coef))))
    w, h = _ab_side(r, width), _ab_side(r, height)
    if r < 1 and (w > width or h > height):
        w, h = width, height
    return max(w, RESIZE_STEP), max(h, RESIZE_STEP)


class DetectorTrainer(Trainer):
    metric = "mAP@0.5"
    # _last every savelast= iterations (100) only, as AlexeyAB's train_detector
    # (ab:src/detector.c): at each epoch of a 1,000-image set, yolov3-tiny's backups took
    # 7 % of its iterations on the H200
    backup_each_epoch = False

    def _setup_head(self):
        net = self.net
        heads = [l for l in net.layers if l.type in ("yolo", "region")]
        if not heads:
            raise DarknetError("no [yolo] or [region] layer: this cfg is not a detector",
                               net.path)
        last = heads[-1]
        self.classes = last.classes
        data_classes = self.data.int("classes", self.classes, minimum=1)
        if data_classes != self.classes:
            raise DarknetError(f"classes={data_classes} here but the cfg's detection layers have "
                               f"classes={self.classes} ({last.path}:{last.line})",
                               self.data.path, self.data.lines.get("classes"))
        for head in heads:
            if head.classes != self.classes:
                raise DarknetError(f"[{head.type}] classes={head.classes} differs from the "
                                   f"last head's {self.classes}", head.path, head.line)
        self.heads = heads
        # multi-scale's rand_scale factor: random= itself, 1.4 for random=1, 0 off (AB)
        self.random = 0.0 if not last.random else 1.4 if last.random == 1 else last.random
        self.jitter = last.jitter
        self.max_boxes = last.max_boxes
        aug = net.options.data
        self.hue = aug.get("hue", 0.0)
        self.saturation = aug.get("saturation", 1.0) or 1.0
        self.exposure = aug.get("exposure", 1.0) or 1.0
        self.flip = aug.get("flip", 1) != 0          # AlexeyAB's flip=0 (e.g. text, arrows)
        self.mosaic = aug.get("mosaic", 0) != 0
        # AB's mixup=1; with mosaic=1 set too, AB's parser makes it a mosaic
        self.mixup = aug.get("mixup", 0) != 0 and not self.mosaic
        self._nets = collections.OrderedDict()      # multi-scale: a network per size
        self._bytes_per_pixel = 0.0     # the most a size's copy took per input pixel (GPU)
        self._growing = None            # (size, pool bytes in use) when its copy was made
        # AlexeyAB's letter_box=1: its stretch crop widened to the network's aspect (pj's
        # placement is what runs without the key); mosaic_bound: see detaug.mosaic_of
        self.keep_aspect = aug.get("letter_box") == 1
        self.letterbox = uses_letterbox(net.options) and not self.keep_aspect
        self.mosaic_bound = aug.get("mosaic_bound", 1) != 0
        # AB's [yolo] resize, read from the last layer as AB:src/detector.c does
        self.resize = getattr(net.layers[-1], "resize", 1.0)
        if self.resize != 1 and self.letterbox:
            last = net.layers[-1]
            raise CfgError(resize_needs_ab_placement(self.resize, last.section_name), last.path,
                           last.resize_line)
        if self.keep_aspect and self.mosaic:
            sec = net.options.section      # AB:src/data.c refuses the pair too
            raise CfgError("letter_box=1 with mosaic=1 in [net]: AlexeyAB's training does not "
                           "support the pair; remove one of them", sec.path,
                           sec.line_of("letter_box"))

    def _setup_data(self):
        self.names = class_names(self.data, self.classes)
        names_file = self.data.file("names")
        if names_file and os.path.exists(names_file):
            count = len(read_lines(names_file, "names file"))
            if count != self.classes:
                raise DarknetError(f"{names_file} has {count} names but classes={self.classes}",
                                   self.data.path, self.data.lines.get("names"))
        self.train_set = DetectionSet(self.data.file("train", required=True), self.classes,
                                      self.max_boxes)
        self.valid_set = DetectionSet(self.data.file("valid"), self.classes, self.max_boxes) \
            if "valid" in self.data else None
        chosen = self.options.loader_processes
        self.loader_processes = default_loader_processes(self.net.device.on_gpu) \
            if chosen is None else chosen
        self.loader_ahead = batches_ahead(self.loader_processes, self.net.batch)

    def _eval_every(self):
        # mAP like AlexeyAB's -map: every -mAP_epochs (4) epochs, at least 100 iterations apart
        return max(self.options.map_epochs * self.per_epoch, 100)

    def _size_for(self, k):
        """The input size of iteration k + 1 (k done): a new size every 10 iterations, the
        largest for the first 10 (AB: "check if enough memory") and in the last 100 (AB: the
        rolling statistics at the largest size).  AB counts its 10-iteration blocks from each
        process's start and sizes its first block the largest; darknet_py counts them from
        iteration 0, so that --resume trains the sizes an uninterrupted run would."""
        o = self.net.options
        if not self.random:
            return o.width, o.height
        start = k // 10 * 10
        if start == 0 or start > self.max_batches - 100:
            return _largest_size(o.width, o.height, self.random)
        return _random_size(self.seed, k // 10, o.width, o.height, self.random)

    def _train_net(self, k):
        size = self._size_for(k)
        on_gpu = self.net.device.on_gpu
        if on_gpu and self._growing is not None and self._growing[0] != size:
            (w, h), before = self._growing       # the newest copy's passes and captures ran
            self._growing = None
            grown = self.net.xp.get_default_memory_pool().used_bytes() - before
            self._bytes_per_pixel = max(self._bytes_per_pixel, grown / (w * h))
        if size == (self.net.options.width, self.net.options.height):
            return self.net
        net = self._nets.get(size)
        if net is None:                           # only a new copy takes memory
            if on_gpu:
                self._make_room(size)
                self._growing = (size, self.net.xp.get_default_memory_pool().used_bytes())
            net = self._nets[size] = self.net.resized(*size)
            self._count("multi-scale copies made")
        self._nets.move_to_end(size)              # the least recently used first
        return net

    def _make_room(self, size):
        """Drops the copies of the sizes used least recently (their arrays and graphs; the
        weights are the network's own) until the memory ``size``'s new copy will take is free
        (GPU_HEADROOM, ROOM_SLACK): multi-scale training would otherwise keep every size's
        arrays and graphs at once.  A size met again is rebuilt (its cuDNN plans stay cached),
        so the blocks CuPy's pool keeps for reuse are given back first: the driver counts them
        as used."""
        cp = self.net.xp
        pool = cp.get_default_memory_pool()

        def enough():
            free, total = cp.cuda.runtime.memGetInfo()
            need = self._bytes_per_pixel * size[0] * size[1] * ROOM_SLACK \
                if self._bytes_per_pixel > 0 else GPU_HEADROOM * total
            return free >= need
        others = [s for s in self._nets if s != size]
        if not others or enough():
            return
        pool.free_all_blocks()
        for other in others:
            if enough():
                return
            del self._nets[other]
            self._count("multi-scale copies dropped")
            gc.collect()                          # a network and its graphs refer to each other
            pool.free_all_blocks()

    def _make(self, k):
        c = self.net.options.channels
        w, h = self._size_for(k // self.net.subdivisions)
        idx = self._shard(epoch_order(len(self.train_set), self.net.batch * self.world,
                                      self.seed, k))
        rng = np.random.default_rng([self.seed, k, 3, self.rank])
        # a pending batch: worker processes or threads prepare it while Batches hands over
        # the ones before it
        batch = self.train_set.submit(idx, (c, h, w), rng, self.jitter, self.hue,
                                      self.saturation, self.exposure, flip=self.flip,
                                      letterbox=self.letterbox, mosaic=self.mosaic,
                                      mixup=self.mixup, processes=self.loader_processes,
                                      keep_aspect=self.keep_aspect,
                                      mosaic_bound=self.mosaic_bound, resize=self.resize,
                                      raw=self.net.device.on_gpu)
        if self.show_imgs and self.rank == 0:
            self.show_imgs = False                # the first mini-batch of this run only
            self._save_augmented(k, *batch.result())
        return batch

    def _save_augmented(self, k, x, truth, limit=16):
        """-show_imgs: mini-batch k as the network sees it, with its truth boxes drawn
        (``aug_<k>_<i>.jpg`` in the backup folder) -- the way to check labels."""
        if isinstance(x, RawImages):              # bytes for the GPU: finished here alike
            x = x.finish()
        onehot = np.eye(self.classes, dtype=np.float32)
        for i in range(min(len(x), limit)):
            rows = truth[i].reshape(-1, 5)
            rows = rows[rows[:, 2] > 0]           # x, y, w, h, class; w = 0 ends the list
            dets = [Detection(Box(*map(float, r[:4])), 1.0, onehot[int(r[4])], self.classes)
                    for r in rows]
            draw_detections(x[i], dets, self.names, 0.5,
                            os.path.join(self.backup, f"aug_{k}_{i}.jpg"), classes=self.classes)
        self._say(f"-show_imgs: {min(len(x), limit)} augmented training images with their "
                  f"truth boxes in {self.backup}/aug_{k}_*.jpg")

    def _evaluate(self, k):
        dets, truths = detections_for_map(self.net, self.valid_set)
        result = evaluate_map(dets, truths, self.classes, iou_thresh=0.5)
        m = result["map"]
        return m, None, f"{k}: mean average precision (mAP@0.50) = {m:f}, or {m * 100:.2f} %"
