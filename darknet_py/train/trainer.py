"""Classifier training, Darknet's loop (pj:examples/classifier.c train_classifier), kinder.

Each iteration runs ``subdivisions`` mini-batches (forward, backward; every layer's ``update``
after the last), so one iteration is one weight update of ``batch`` images.  Printed and logged:
loss (per image), ``avg_loss = 0.9 avg + 0.1 loss``, the learning rate, images/s.  After each
epoch: top-1/top-k on the ``valid`` set.  Into the ``backup`` folder, all written atomically:
``<cfg>_last.weights`` (every ``backup_every`` iterations, at each epoch and on Ctrl-C),
``<cfg>_best.weights`` (best top-1), ``<cfg>_final.weights``, ``<cfg>_N.weights`` snapshots
(AlexeyAB's ``saveweights`` rule), ``<cfg>_last.state.npz`` (momentum buffers and counters, so
``--resume`` continues exactly), ``chart.png`` and ``<cfg>.log.jsonl``.  ``<cfg>`` is Darknet's
``basecfg``: the cfg's file name up to its first dot.

Reproducible: with ``--seed`` the data order and dropout masks are functions of (seed,
iteration), so an interrupted and resumed run ends with the same weights as one that was not.
"""

import io
import json
import math
import os
import signal
import sys
import time

import numpy as np

from ..nn.backend import to_numpy
from ..data.datacfg import DataCfg, class_names
from ..data.datasets import Batches, epoch_order, load_classification
from ..errors import DarknetError
from ..nn.network import Network
from .parallel import allreduce_gradients, snapshot
from ..atomic import atomic_write

DEFAULT_BACKUP_EVERY = 100


def basecfg(path):
    """Darknet's basecfg: the file name without folders, cut at its first dot
    (``cfg/yolov3.tiny.cfg`` -> ``yolov3``); backup files are named after it."""
    name = os.path.basename(path)
    return name.split(".", 1)[0] or name


def snapshot_every(max_batches, data):
    """AlexeyAB's numbered snapshots ``<cfg>_N.weights``: every ``saveweights=`` iterations
    of the .data file, else every 1000 when max_batches < 10000 and every 10000 above."""
    return data.int("saveweights", 1000 if max_batches < 10000 else 10000)


class _Interrupt:
    """Ctrl-C sets a flag; the loop stops after the iteration in progress (a second one quits)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if hasattr(signal, "SIGINT"):
            try:
                self._old = signal.signal(signal.SIGINT, self._handle)
            except ValueError:          # not the main thread: leave Ctrl-C alone
                self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this iteration and saving (Ctrl-C again to quit now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


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


class Trainer:
    """Darknet's training loop; the classifier and detector trainers supply the head's parts:
    ``_setup_head`` (classes, checks), ``_setup_data``, ``_make(k)`` (mini-batch k as
    (x, truth)), ``_evaluate(k)`` (the validation metric) and optionally ``_train_net(k)``."""

    metric = "top-1"

    def __init__(self, cfg, data, weights=None, device="auto", gpu_index=0, max_batches=None,
                 clear=False, resume=False, seed=None, backup_every=DEFAULT_BACKUP_EVERY,
                 darknet_lines=False, progress=True, out=sys.stdout, map=True, comm=None,
                 save_weights_every=None, chart=None, map_epochs=4, show_imgs=False,
                 loader_processes=0):
        from .parallel import communicator_from_env
        self.comm = comm if comm is not None else communicator_from_env()
        self.rank, self.world = self.comm.rank, self.comm.world_size
        self.out = out if self.rank == 0 else open(os.devnull, "w")
        self.evaluate_during_training = map
        self.backup_every = max(1, backup_every)
        self.darknet_lines = darknet_lines
        self.progress = progress
        self.data = DataCfg(data)
        self.net = Network.from_cfg(cfg, device=device, device_index=gpu_index, seed=seed)
        net = self.net
        net.world_size = self.world
        self.images_per_iteration = net.update_batch     # over every replica
        self._setup_head()
        self.base = basecfg(cfg)
        self.backup = self.data.get("backup", "backup")     # an output folder: from the cwd
        os.makedirs(self.backup, exist_ok=True)
        self.paths = {kind: os.path.join(self.backup, f"{self.base}_{kind}.weights")
                      for kind in ("last", "best", "final")}
        self.state_path = os.path.join(self.backup, f"{self.base}_last.state.npz")
        self.log_path = os.path.join(self.backup, f"{self.base}.log.jsonl")
        self.chart_path = chart or os.path.join(self.backup, "chart.png")
        try:                            # fail now, not after the training
            os.makedirs(os.path.dirname(os.path.abspath(self.chart_path)), exist_ok=True)
        except OSError as e:
            raise DarknetError(f"cannot create the chart's folder: {e.strerror}",
                               self.chart_path) from None
        self.map_epochs = map_epochs
        self.show_imgs = show_imgs
        self.loader_processes = loader_processes
        self.seed = int(np.random.SeedSequence().entropy % (2 ** 31)) if seed is None else seed
        self.avg_loss = -1.0
        self.best = -1.0
        self.accuracy = []           # (iteration, metric, secondary metric)
        self.losses = []             # (iteration, loss, avg_loss)
        if resume:
            self._resume()
        else:
            if os.path.exists(self.log_path) and self.rank == 0:
                os.remove(self.log_path)
            if weights:
                filled = net.load_weights(weights, partial=True)
                print(f"Loaded {filled} of {len(net.layers)} layers from {weights}", file=out)
        if clear:
            net.seen = 0
        self.max_batches = max_batches if max_batches is not None else net.options.max_batches
        if self.max_batches <= 0:
            raise DarknetError("max_batches is 0: set max_batches= in [net] or pass "
                               "--max-batches N", net.path, net.options.section.line)
        if self.iteration >= self.max_batches:
            # Darknet would save _final at once and stop, which looks like a crash
            done = self.paths["last"] if resume else weights
            hint = "raise max_batches (or --max-batches) to train on" if resume else \
                "add -clear to count from 0 (fine-tuning on new data), or raise max_batches"
            raise DarknetError(f"the weights are already at iteration {self.iteration}, not "
                               f"below max_batches={self.max_batches}: nothing to train; {hint}",
                               done)
        self.save_weights_every = save_weights_every or snapshot_every(self.max_batches,
                                                                       self.data)
        if self.save_weights_every < 1:
            raise DarknetError("saveweights must be at least 1", self.data.path,
                               self.data.lines.get("saveweights"))
        self._setup_data()
        self.per_epoch = max(1, len(self.train_set) // self.images_per_iteration)
        self.eval_every = self._eval_every()

    def _eval_every(self):
        return self.per_epoch

    def _train_net(self, k):
        return self.net

    def _shard(self, indexes):
        """This replica's part of a mini-batch drawn for all of them (deterministic by rank)."""
        b = self.net.batch
        return indexes[self.rank * b:(self.rank + 1) * b]


    # -- state -----------------------------------------------------------------------------
    @property
    def iteration(self):
        """Completed weight updates (Darknet's get_current_batch)."""
        return self.net.seen // self.images_per_iteration

    def _resume(self):
        if not os.path.exists(self.paths["last"]):
            raise DarknetError(f"--resume: {self.paths['last']} does not exist (nothing to "
                               "resume; train without --resume first)")
        self.net.load_weights(self.paths["last"])
        restored = False
        if os.path.exists(self.state_path):
            with np.load(self.state_path, allow_pickle=False) as state:
                meta = json.loads(str(state["meta"]))
                if meta["seen"] == self.net.seen:
                    for layer in self.net.layers:
                        for name in layer.arrays():
                            key = f"{layer.index}/{name}"
                            if key in state and not name.startswith(("weights", "biases",
                                                                      "scales", "rolling")):
                                setattr(layer, name, self.net.xp.asarray(state[key]))
                    self.net.t = meta["t"]
                    self.seed = meta["seed"]
                    self.avg_loss = meta["avg_loss"]
                    self.best = meta["best"]
                    self.accuracy = [tuple(a) for a in meta["accuracy"]]
                    restored = True
        if os.path.exists(self.log_path):
            with open(self.log_path) as f:
                kept = [line for line in f
                        if json.loads(line)["iteration"] <= self.iteration]
            if self.rank == 0:
                atomic_write(self.log_path, [line.encode() for line in kept])
            for line in kept:
                rec = json.loads(line)
                self.losses.append((rec["iteration"], rec["loss"], rec["avg_loss"]))
        how = "with its momentum and counters" if restored else \
            "without a matching state file: momentum starts from zero"
        print(f"Resuming from {self.paths['last']} at iteration {self.iteration} ({how})",
              file=self.out)

    def save_last(self):
        if self.rank != 0:
            return
        net = self.net
        net.save_weights(self.paths["last"])
        arrays = {f"{layer.index}/{name}": to_numpy(getattr(layer, name))
                  for layer in net.layers for name in layer.arrays()
                  if name.endswith("_updates") or name.endswith(("_m", "_v"))}
        meta = dict(seen=net.seen, t=net.t, seed=self.seed, avg_loss=self.avg_loss,
                    best=self.best, accuracy=self.accuracy)
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
        atomic_write(self.state_path, [buf.getvalue()])

    # -- the loop --------------------------------------------------------------------------
    def _reseed(self, k, s):
        """Dropout and crop draw from net.rng; make their draws a function of the iteration."""
        for net in {id(self.net): self.net, id(self._train_net(k)): self._train_net(k)}.values():
            net.rng.bit_generator.state = np.random.default_rng(
                [self.seed, k, s]).bit_generator.state

    def _validate(self, k):
        if self.valid_set is None or not self.evaluate_during_training or self.rank != 0:
            return None
        value, second, line = self._evaluate(k)
        self.accuracy.append((k, value, second))
        self._say(line)
        if value > self.best:
            self.best = value
            self.net.save_weights(self.paths["best"])
        return value

    def _say(self, line):
        """Print a line to ``out`` without tearing the progress bar."""
        if self._bar is not None and self.out is sys.stdout:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, file=self.out, flush=True)

    _bar = None

    def _chart(self):
        if self.rank != 0:
            return
        from .chart import draw_chart
        series = {"loss": [(k, l) for k, l, _ in self.losses],
                  "avg loss": [(k, a) for k, _, a in self.losses]}
        right = {self.metric: [(k, a) for k, a, _ in self.accuracy]} if self.accuracy else None
        draw_chart(self.chart_path, series, title=f"{self.base}: training", right_series=right)

    def run(self):
        net = self.net
        o = net.options
        print(f"{self.base}: {len(self.train_set)} training images, "
              f"{len(self.valid_set) if self.valid_set else 0} validation images, "
              f"{self.classes} classes, batch {net.batch} x {net.subdivisions} subdivisions"
              f"{f' x {self.world} GPUs' if self.world > 1 else ''} = "
              f"{self.images_per_iteration} images per update, "
              f"{self.per_epoch} iterations per epoch, device "
              f"{'gpu' if net.xp.__name__ == 'cupy' else 'cpu'}", file=self.out)
        print(f"Learning Rate: {o.learning_rate:g}, Momentum: {o.momentum:g}, "
              f"Decay: {o.decay:g}", file=self.out, flush=True)
        if self.rank == 0:
            sections = [("net", o.unimplemented)] + [(layer.section_name, layer.unimplemented)
                                                      for layer in net.layers]
            for name, found in sections:
                for key, value, line in found:
                    print(f"{net.path}:{line}: warning: {key}={value} in [{name}]: darknet_py's "
                          "training does not implement it and trains without it",
                          file=sys.stderr)
        start_k = self.iteration
        batches = Batches(self._make, start=net.seen // net.batch)
        bar = None
        if self.progress and not self.darknet_lines:
            from tqdm import tqdm
            bar = tqdm(total=self.max_batches, initial=start_k, unit="it", file=sys.stderr,
                       dynamic_ncols=True, desc=self.base)
        self._bar = bar
        status = 0
        try:
            log_target = self.log_path if self.rank == 0 else os.devnull
            with _Interrupt() as interrupt, open(log_target, "a") as log, \
                    np.errstate(all="ignore"):      # a diverging loss is reported below
                while self.iteration < self.max_batches:
                    k = self.iteration
                    t0 = time.perf_counter()
                    loss = 0.0
                    step_net = self._train_net(k)     # a resized copy when multi-scale
                    step_net.seen, step_net.t = net.seen, net.t
                    step_net.world_size = self.world
                    before = snapshot(step_net) if self.world > 1 else None
                    for s in range(net.subdivisions):
                        try:
                            x, truth = batches.next()
                        except DarknetError:      # e.g. a corrupt image: keep the work done
                            self._stopped_by_data_error(k, clean=s == 0)
                            raise
                        self._reseed(k, s)
                        try:
                            loss += step_net.train_step(x, truth, update=False)
                        except MemoryError:       # NumPy's, or CuPy's OutOfMemoryError
                            raise self._out_of_memory(k, step_net) from None
                        if self.darknet_lines:
                            for layer in step_net.layers:
                                if hasattr(layer, "report") and layer.report():
                                    print(layer.report(), file=self.out)
                    if before is not None:        # sum the replicas' gradients
                        allreduce_gradients(step_net, self.comm, before)
                    step_net.update()
                    net.seen, net.t = step_net.seen, step_net.t
                    loss /= net.subdivisions
                    k += 1
                    seconds = time.perf_counter() - t0
                    if not math.isfinite(loss):
                        print(f"\nloss became {loss} at iteration {k} (learning rate "
                              f"{net.current_rate():g}); stopping. The last good weights are "
                              f"in {self.paths['last']} (iteration "
                              f"{self._saved_iteration()}). Try a lower learning_rate or a "
                              "longer burn_in.", file=sys.stderr)
                        return 1
                    self.avg_loss = loss if self.avg_loss < 0 else \
                        0.9 * self.avg_loss + 0.1 * loss
                    rate = net.current_rate()
                    ips = self.images_per_iteration / seconds
                    self.losses.append((k, loss, self.avg_loss))
                    log.write(json.dumps({"iteration": k, "loss": loss,
                                          "avg_loss": self.avg_loss, "rate": rate,
                                          "seen": net.seen, "seconds": seconds,
                                          "images_per_s": ips}) + "\n")
                    if self.darknet_lines:
                        print(f"{k}, {net.seen / len(self.train_set):.3f}: {loss:f}, "
                              f"{self.avg_loss:f} avg, {rate:f} rate, {seconds:f} seconds, "
                              f"{net.seen} images", file=self.out, flush=True)
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4f}", avg=f"{self.avg_loss:.4f}",
                                        lr=f"{rate:.2g}", img_s=f"{ips:.0f}", refresh=False)
                        bar.update(1)
                    epoch_end = k % self.per_epoch == 0
                    if k % self.eval_every == 0 or k == self.max_batches:
                        log.flush()
                        self._validate(k)
                        self._chart()
                    if epoch_end or k % self.backup_every == 0 or interrupt.requested:
                        log.flush()
                        self.save_last()
                    if k % self.save_weights_every == 0 and self.rank == 0:
                        net.save_weights(os.path.join(self.backup, f"{self.base}_{k}.weights"))
                    if interrupt.requested:
                        self._say(f"Stopped at iteration {k}; saved {self.paths['last']}. "
                                  "Continue with --resume.")
                        status = 130
                        break
                else:
                    self.save_last()
                    if self.rank == 0:
                        net.save_weights(self.paths["final"])
                    self._chart()
                    self._say(f"Saved {self.paths['final']}")
        finally:
            batches.close()
            if bar is not None:
                bar.close()
            self._bar = None
        return status

    def _out_of_memory(self, k, step_net):
        """The one-line answer to Darknet users' most frequent problem (a CUDA out-of-memory
        at the first iterations): make each mini-batch smaller."""
        net = self.net
        _, h, w = step_net.input_shape
        where = "host" if net.xp is np else "GPU"
        hint = f"raise subdivisions (now {net.subdivisions}) in [net] so that each mini-batch " \
               f"of batch/subdivisions images is smaller"
        if getattr(self, "random", False):
            hint += f", or set random=0 in the [yolo] layers (multi-scale reaches {w}x{h})"
        last = self._saved_iteration()
        return DarknetError(f"out of {where} memory at iteration {k + 1} with a mini-batch of "
                            f"{net.batch} images at {w}x{h}: {hint}; the last backup is "
                            f"{self.paths['last']} (iteration {last})", net.path,
                            net.options.section.line_of("subdivisions"))

    def _stopped_by_data_error(self, k, clean):
        """Save before a data error ends training, when the state is whole (no sub-batch of
        iteration k+1 accumulated yet); otherwise point at the last backup."""
        if clean and self.rank == 0:
            self.save_last()
            where = f"saved {self.paths['last']} at iteration {k}"
        else:
            where = (f"the last backup is {self.paths['last']} (iteration "
                     f"{self._saved_iteration()})")
        print(f"\nTraining stopped by a data error; {where}. Fix the data and continue "
              "with --resume.", file=sys.stderr)

    def _saved_iteration(self):
        from ..nn.weights import read_weights_file
        try:
            header, _ = read_weights_file(self.paths["last"])
        except DarknetError:
            return "none yet"
        return header.seen // self.images_per_iteration


class ClassifierTrainer(Trainer):
    def _setup_head(self):
        net = self.net
        self.classes = self.data.int("classes", 2)
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
            from ..data.classaug import ClassifierAugment
            self.augment = ClassifierAugment.from_section(o.section, o.width)
        else:
            from ..nn.network import NET_CLASSIFIER_KEYS
            for key in NET_CLASSIFIER_KEYS:
                if o.section.has(key) and self.rank == 0:
                    print(f"{self.net.path}:{o.section.line_of(key)}: warning: {key} in [net]: "
                          "IDX images are used as they are (the crop augmentation is for "
                          "image files)", file=sys.stderr)

    def _make(self, k):
        idx = self._shard(epoch_order(len(self.train_set), self.net.batch * self.world,
                                      self.seed, k))
        rng = np.random.default_rng([self.seed, k, 5, self.rank])
        return self.train_set.batch(idx, self.net.input_shape, self.augment, rng)

    def _evaluate(self, k):
        top1, topk = evaluate(self.net, self.valid_set, self.top)
        return top1, topk, f"{k}: top 1: {top1:f}, top {self.top}: {topk:f}"


def progress_bar(total, what):
    """A tqdm bar on stderr for the long commands, shown only on a terminal (logs stay clean)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())


def detections_for_map(net, dataset, thresh=0.005, nms=0.45, batch=16, progress=False):
    """Per valid image: the (class, prob, x, y, w, h) detections and the truths, as AB's map."""
    from ..detection.detect import (get_network_boxes, letterbox, load_image_color, network_nms,
                         network_size, resize_image, uses_letterbox)
    net_w, net_h = network_size(net)
    fit = letterbox if uses_letterbox(net.options) else resize_image
    detections, truths = [], []
    bar = progress_bar(len(dataset), "mAP") if progress else None
    for start in range(0, len(dataset), batch):
        idx = range(start, min(start + batch, len(dataset)))
        images = [load_image_color(dataset.paths[i]) for i in idx]
        x = np.stack([fit(im, net_w, net_h) for im in images])
        net.forward(x, train=False)
        for b, (i, im) in enumerate(zip(idx, images)):
            dets = get_network_boxes(net, im.shape[2], im.shape[1], thresh, 0.5, 1,
                                     batch_index=b)
            network_nms(net, dets, nms)
            rows = [(c, d.prob[c], d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h)
                    for d in dets for c in range(dataset.classes) if d.prob[c] > thresh]
            detections.append(rows)
            truths.append([(int(r[0]), r[1], r[2], r[3], r[4]) for r in dataset.boxes[i]])
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return detections, truths


class DetectorTrainer(Trainer):
    """YOLO training (pj train_detector): augmentation as load_data_detection, multi-scale with
    ``random=1`` every 10 iterations (AlexeyAB's rule: a random scale in [1/1.4, 1.4] of the cfg
    size, rounded to 32; the cfg size in the first and the last 100 iterations), mAP@0.5 on
    ``valid`` after each epoch (best -> ``_best.weights``)."""

    metric = "mAP@0.5"

    def _setup_head(self):
        net = self.net
        heads = [l for l in net.layers if l.type in ("yolo", "region")]
        if not heads:
            raise DarknetError("no [yolo] or [region] layer: this cfg is not a detector",
                               net.path)
        last = heads[-1]
        self.classes = last.classes
        data_classes = self.data.int("classes", self.classes)
        if data_classes != self.classes:
            raise DarknetError(f"classes={data_classes} here but the cfg's detection layers have "
                               f"classes={self.classes} ({last.path}:{last.line})",
                               self.data.path, self.data.lines.get("classes"))
        for head in heads:
            if head.classes != self.classes:
                raise DarknetError(f"[{head.type}] classes={head.classes} differs from the "
                                   f"last head's {self.classes}", head.path, head.line)
        self.heads = heads
        self.random = bool(last.random)
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
        self._nets = {}
        from ..detection.detect import uses_letterbox
        self.letterbox = uses_letterbox(net.options)

    def _setup_data(self):
        from ..data.detaug import DetectionSet
        self.names = class_names(self.data, self.classes)
        names_file = self.data.file("names")
        if names_file and os.path.exists(names_file):
            from ..data.datacfg import read_lines
            count = len(read_lines(names_file, "names file"))
            if count != self.classes:
                raise DarknetError(f"{names_file} has {count} names but classes={self.classes}",
                                   self.data.path, self.data.lines.get("names"))
        self.train_set = DetectionSet(self.data.file("train", required=True), self.classes,
                                      self.max_boxes)
        self.valid_set = DetectionSet(self.data.file("valid"), self.classes, self.max_boxes) \
            if "valid" in self.data else None

    def _eval_every(self):
        # mAP like AlexeyAB's -map: every -mAP_epochs (4) epochs, at least 100 iterations apart
        return max(self.map_epochs * self.per_epoch, 100)

    def _size_for(self, k):
        o = self.net.options
        if not self.random or k == 0 or k >= self.max_batches - 100:
            return o.width, o.height
        from ..data.detaug import rand_scale
        r = rand_scale(np.random.default_rng([self.seed, k // 10, 11]), 1.4)
        return tuple(max(32, int(round(r * v / 32)) * 32) for v in (o.width, o.height))

    def _train_net(self, k):
        size = self._size_for(k)
        if size == (self.net.options.width, self.net.options.height):
            return self.net
        if size not in self._nets:
            self._nets[size] = self.net.resized(*size)
        return self._nets[size]

    def _make(self, k):
        c = self.net.options.channels
        w, h = self._size_for(k // self.net.subdivisions)
        idx = self._shard(epoch_order(len(self.train_set), self.net.batch * self.world,
                                      self.seed, k))
        rng = np.random.default_rng([self.seed, k, 3, self.rank])
        x, truth = self.train_set.batch(idx, (c, h, w), rng, self.jitter, self.hue,
                                        self.saturation, self.exposure, flip=self.flip,
                                        letterbox=self.letterbox, mosaic=self.mosaic,
                                        mixup=self.mixup, processes=self.loader_processes)
        if self.show_imgs and self.rank == 0:
            self.show_imgs = False                # the first mini-batch of this run only
            self._save_augmented(k, x, truth)
        return x, truth

    def _save_augmented(self, k, x, truth, limit=16):
        """-show_imgs: mini-batch k as the network sees it, with its truth boxes drawn
        (``aug_<k>_<i>.jpg`` in the backup folder) -- the way to check labels."""
        from ..detection.detect import Box, Detection, draw_detections
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
        from ..detection.mapeval import evaluate_map
        dets, truths = detections_for_map(self.net, self.valid_set)
        result = evaluate_map(dets, truths, self.classes, iou_thresh=0.5)
        m = result["map"]
        return m, None, f"{k}: mean average precision (mAP@0.50) = {m:f}, or {m * 100:.2f} %"
