"""Darknet's training loop (pj:examples/classifier.c train_classifier, detector.c train_detector),
kinder; ``ClassifierTrainer`` (train/classifier.py) and ``DetectorTrainer`` (train/detector.py)
supply the head's parts.

Each iteration runs ``subdivisions`` mini-batches (forward, backward; every layer's ``update``
after the last), so one iteration is one weight update of ``batch`` images.  Printed and logged:
loss (per image), ``avg_loss = 0.9 avg + 0.1 loss``, the learning rate, images/s.  After each
epoch: the validation metric.  Into the ``backup`` folder, all written atomically:
``<cfg>_last.weights`` (every ``backup_every`` iterations -- AlexeyAB's ``savelast=``, 100 --
and on Ctrl-C; a classifier's also at each epoch, where it validates),
``<cfg>_best.weights`` (best metric), ``<cfg>_final.weights``, ``<cfg>_N.weights`` snapshots
(AlexeyAB's ``saveweights`` rule), ``<cfg>_ema.weights`` beside ``_last`` with ``ema_alpha``
(train/ema.py), ``<cfg>_last.state.npz`` (what the .weights file does not
hold: momentum buffers, Adam's moments, counters; train/checkpoint.py) so that ``--resume``
continues exactly, ``chart_<cfg>.png`` and ``<cfg>.log.jsonl``.  ``<cfg>`` is Darknet's ``basecfg``:
the cfg's file name up to its first dot.

An iteration's loss is read (which waits for the GPU) after the next iteration is queued, so
the CPU prepares iteration k+1 while the GPU finishes k; it is read at once when what follows
the iteration needs it (validation, a backup, the end, a stop, --profile, Darknet's lines).

The backups are written by a thread of their own (checkpoint.py BackgroundWriter) from host
copies taken when due, in order; a failed write stops the run at the next iteration, and
``run`` returns only when every file is on disk.

Nothing in the backup folder changes before :meth:`Trainer.run` starts (a start that fails
its checks leaves the earlier run's log and weights as they were), and ``run`` holds
``<cfg>.lock`` there so that a second training of the same cfg into it is refused.

Reproducible: with ``--seed`` the data order and dropout masks are functions of (seed,
iteration), so an interrupted and resumed run ends with the same weights as one that was not.
"""

import functools
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from ..atomic import atomic_write
from ..data.datacfg import DataCfg
from ..data.datasets import Batches
from ..data.threads import blas_threads, limit_blas
from ..cfg.check import check_cfg
from ..errors import CfgError, DarknetError, WeightsError
from ..nn.layers.base import refuse_unimplemented
from ..nn.network import Network
from ..nn.weights import NonFiniteWeights, WeightsWarning, nonfinite_summary
from . import chart
from .ema import Ema
from .checkpoint import (BackgroundWriter, BackupLock, basecfg, read_log, remove_cut_writes,
                         restore_state, saved_iteration, snapshot_every, state_snapshot,
                         write_backup)
from .interrupt import Interrupt
from .options import DEFAULT_BACKUP_EVERY, TrainOptions
from .parallel import allreduce_gradients, communicator_from_env, snapshot
from .profile import Profiler, profile_table


def progress_bar(total, what):
    """A tqdm bar on stderr for the long commands, shown only on a terminal (logs stay clean)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())


class Trainer:
    """Darknet's training loop; the classifier and detector trainers supply the head's parts:
    ``_setup_head`` (classes, checks), ``_setup_data``, ``_make(k)`` (mini-batch k as
    (x, truth)), ``_evaluate(k)`` (the validation metric) and optionally ``_train_net(k)``.

    ``Trainer(cfg, data, weights, TrainOptions(...))``; ``comm`` is the data-parallel
    communicator (default: from the environment), ``out`` where rank 0 prints."""

    metric = "top-1"
    random = False          # multi-scale training (the detector's random=1)
    loader_processes = 0    # worker processes preparing the data (the detector's; 0: threads)
    loader_ahead = 1        # batches in preparation at once (data.datasets.Batches)
    backup_each_epoch = True    # _last at each epoch too (the classifier validates there)
    _bar = None
    _last_at = None         # the iteration _last was last saved at
    _prof = None            # the profiler while it times the iteration in progress
    _writer = None          # the BackgroundWriter of the backups while run() runs

    def __init__(self, cfg, data, weights=None, options=None, out=sys.stdout, comm=None):
        self.options = o = options if options is not None else TrainOptions()
        self.comm = comm if comm is not None else communicator_from_env()
        self.rank, self.world = self.comm.rank, self.comm.world_size
        self.out = out if self.rank == 0 else open(os.devnull, "w")
        self.show_imgs = o.show_imgs        # still to do: cleared after the first mini-batch
        self.data = DataCfg(data)
        self.backup_every = max(1, o.backup_every) if o.backup_every is not None else \
            self.data.int("savelast", DEFAULT_BACKUP_EVERY, minimum=1)
        try:
            self.net = Network.from_cfg(cfg, device=o.device, device_index=o.gpu_index,
                                        seed=o.seed, precision=o.precision)
        except CfgError:        # a size off the stride fails later layers obscurely: say it
            finding = stride_finding(cfg)
            if finding is None:
                raise
            raise CfgError(finding.message, finding.path, finding.line) from None
        refuse_unimplemented(self.net)       # before any file or data is touched
        finding = stride_finding(cfg)
        if finding is not None and self.rank == 0:    # it builds, but boxes will be off
            print(f"{finding.path}:{finding.line}: warning: {finding.message}", file=sys.stderr)
        self.net.world_size = self.world
        if o.graphs:
            self.net.enable_graphs()          # a no-op on the CPU
        self.ema = Ema.for_net(self.net)      # its arrays in the state --resume restores
        self.images_per_iteration = self.net.update_batch     # over every replica
        self._setup_head()
        self._setup_files(cfg)
        self.seed = int(np.random.SeedSequence().entropy % (2 ** 31)) if o.seed is None \
            else o.seed
        self.avg_loss = -1.0
        self.best = -1.0
        self.accuracy = []           # (iteration, metric, secondary metric)
        self.losses = []             # (iteration, loss, avg_loss)
        self._chart_at = -math.inf   # when the last chart was asked for (time.monotonic)
        self._log_lines = []         # the log as the run starts it (--resume: the kept part)
        self._start_from(weights)
        self._setup_schedule(weights)
        self._setup_data()
        self._say_if_batch_exceeds_data()
        self.per_epoch = max(1, len(self.train_set) // self.images_per_iteration)
        self.eval_every = self._eval_every()
        self.profiler = Profiler.for_run(self.net.device, o.profile, self.iteration,
                                         self.max_batches, o.profile_warmup) \
            if o.profile else None

    # -- setup -----------------------------------------------------------------------------
    def _say_if_batch_exceeds_data(self):
        """A mini-batch bigger than the training set repeats images in every batch (epoch_order):
        fine for a smoke test, a mistake otherwise -- say it once."""
        n, mini = len(self.train_set), self.net.batch * self.world
        if n < mini and self.rank == 0:
            print(f"{self.net.path}:{self.net.options.section.line_of('batch')}: warning: a "
                  f"mini-batch of {mini} images (batch/subdivisions) is more than the {n} "
                  f"training images of {self.data.get('train')}: each batch repeats some of "
                  "them", file=sys.stderr)

    def _setup_files(self, cfg):
        self.base = basecfg(cfg)
        self.backup = self.data.get("backup", "backup")     # an output folder: from the cwd
        try:
            os.makedirs(self.backup, exist_ok=True)
        except OSError as e:     # a file of that name (FileExistsError), no permission, ...
            what = "a file, not a folder" if os.path.exists(self.backup) else e.strerror
            raise DarknetError(f"backup={self.backup}: {what}; backup= names the folder "
                               "where the weights are saved", *self.data.where("backup")) \
                from None
        self.paths = {kind: os.path.join(self.backup, f"{self.base}_{kind}.weights")
                      for kind in ("last", "best", "final", "ema")}
        self.state_path = os.path.join(self.backup, f"{self.base}_last.state.npz")
        self.log_path = os.path.join(self.backup, f"{self.base}.log.jsonl")
        # AlexeyAB's chart_<cfg>.png: two cfgs training into one backup/ keep their own charts
        self.chart_path = self.options.chart or os.path.join(self.backup, f"chart_{self.base}.png")
        try:                            # fail now, not after the training
            os.makedirs(os.path.dirname(os.path.abspath(self.chart_path)), exist_ok=True)
        except OSError as e:
            raise DarknetError(f"cannot create the chart's folder: {e.strerror}",
                               self.chart_path) from None

    def _load_finite(self, path, partial=True):
        """Load ``path``; weights holding NaN/inf are refused (no training starts from them)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WeightsWarning)
            filled = self.net.load_weights(path, partial=partial)
        if self.net.nonfinite:
            raise WeightsError(f"the weights hold {nonfinite_summary(self.net.nonfinite)}: "
                               "training cannot start from them", path)
        return filled

    def _start_from(self, weights):
        """--resume, or the start weights (a fresh log); -clear counts from iteration 0."""
        if self.options.resume:
            self._resume()
        else:
            if weights:
                filled = self._load_finite(weights)
                print(f"Loaded {filled} of {len(self.net.layers)} layers from {weights}",
                      file=self.out)
        if self.options.clear:
            self.net.seen = 0

    def _setup_schedule(self, weights):
        net, o = self.net, self.options
        self.max_batches = o.max_batches if o.max_batches is not None else \
            net.options.max_batches
        if self.max_batches <= 0:
            raise DarknetError("max_batches is 0: set max_batches= in [net] or pass "
                               "--max-batches N", net.path, net.options.section.line)
        if self.iteration == self.max_batches and o.resume and \
                self._saved_iteration(self.paths["final"]) != self.iteration:
            # stopped (Ctrl-C, kill) after its last iteration but before _final was written
            print(f"{self.paths['last']} is at max_batches={self.max_batches}: writing "
                  f"{self.paths['final']}", file=self.out)
        elif self.iteration >= self.max_batches:
            # Darknet would save _final at once and stop, which looks like a crash
            done = self.paths["last"] if o.resume else weights
            hint = "raise max_batches (or --max-batches) to train on" if o.resume else \
                "add -clear to count from 0 (fine-tuning on new data), or raise max_batches"
            raise DarknetError(f"the weights are already at iteration {self.iteration}, not "
                               f"below max_batches={self.max_batches}: nothing to train; {hint}",
                               done)
        self.save_weights_every = o.save_weights_every or snapshot_every(self.max_batches,
                                                                         self.data)
        if self.save_weights_every < 1:
            raise DarknetError("saveweights must be at least 1", self.data.path,
                               self.data.lines.get("saveweights"))

    def _eval_every(self):
        return self.per_epoch

    def _train_net(self, k):
        return self.net

    def _shard(self, indexes):
        """This replica's part of a mini-batch drawn for all of them (deterministic by rank)."""
        b = self.net.batch
        return indexes[self.rank * b:(self.rank + 1) * b]

    # -- checkpoints -----------------------------------------------------------------------
    @property
    def iteration(self):
        """Completed weight updates (Darknet's get_current_batch)."""
        return self.net.seen // self.images_per_iteration

    def save_last(self):
        """``<cfg>_last.weights`` and its state file (rank 0)."""
        if self.rank != 0:
            return
        self._last_at = self.iteration
        # the state first: it is whole on its own (checkpoint.py), so a kill between the two
        # writes still resumes exactly; NaN weights are refused before either is written
        state = state_snapshot(self.net, dict(seed=self.seed, avg_loss=self.avg_loss,
                                              best=self.best, accuracy=list(self.accuracy)))
        kept = state[1]             # the weights file's arrays too: fetched from the device once

        def saved(layer, name):
            host = kept.get(f"{layer.index}/{name}")
            return getattr(layer, name) if host is None else host
        files = [(self.paths["last"], self.net.weights_chunks(arrays=saved,
                                                              refuse=self.paths["last"]))]
        if self.ema is not None and self.ema.initialized():      # ab:src/detector.c
            files.append((self.paths["ema"], self.net.weights_chunks(
                arrays=self.ema.stored, refuse=self.paths["ema"])))
        self._write(write_backup, self.state_path, state, files)

    def _save_weights(self, path):
        """``net.save_weights(path)``, written by the backup thread (NaN/inf refused here)."""
        self._write(write_backup, None, None, [(path, self.net.weights_chunks(refuse=path))])

    def _write(self, fn, *args):
        """``fn(*args)`` in the backup thread while training runs, else now."""
        if self._writer is None:
            fn(*args)
        else:
            self._writer.submit(fn, *args)

    def _written(self):
        """Wait until every backup asked for is on disk."""
        if self._writer is not None:
            self._writer.wait()

    def _resume(self):
        if not os.path.exists(self.paths["last"]):
            raise DarknetError(f"--resume: {self.paths['last']} does not exist (nothing to "
                               "resume; train without --resume first)")
        self._load_finite(self.paths["last"], partial=False)
        meta, missing = restore_state(self.net, self.state_path)
        if meta is None:
            how = "without a matching state file: momentum starts from zero"
        else:
            self.seed, self.avg_loss, self.best = meta["seed"], meta["avg_loss"], meta["best"]
            self.accuracy = [tuple(a) for a in meta["accuracy"]]
            how = "with its momentum and counters"
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            how = (f"with its counters, but {self.state_path} has no {missing[0]}{more}: they "
                   "start from zero, so the run will not match an uninterrupted one")
        self._log_lines, self.losses = read_log(self.log_path, self.iteration,
                                                say=self.rank == 0)
        print(f"Resuming from {self.paths['last']} at iteration {self.iteration} ({how})",
              file=self.out)

    def _saved_iteration(self, path=None):
        self._written()
        return saved_iteration(path or self.paths["last"], self.images_per_iteration)

    # -- the loop --------------------------------------------------------------------------
    def run(self):
        """Train to max_batches; returns 0 when done, 130 when stopped by Ctrl-C (saved for
        --resume) and 1 when the loss diverged."""
        lock = BackupLock(self.backup, self.base)
        if self.rank == 0:
            lock.acquire()
            remove_cut_writes(self.backup, self.base)
            self._writer = BackgroundWriter()
        try:
            return self._run()
        finally:
            writer, self._writer = self._writer, None
            try:
                if writer is not None:
                    writer.close()      # every backup on disk before the lock goes
            finally:
                lock.release()

    def _run(self):
        self._announce()
        if self.rank == 0:      # the run has started: now the earlier log may be replaced
            atomic_write(self.log_path, [line.encode() for line in self._log_lines])
        batches = self._batches(self.net.seen // self.net.batch)
        self._bar = self._progress()
        try:
            log_target = self.log_path if self.rank == 0 else os.devnull
            with Interrupt() as interrupt, open(log_target, "a") as log, \
                    limit_blas(blas_threads(self.loader_processes)), \
                    np.errstate(all="ignore"):      # a diverging loss is reported below
                try:
                    # an iteration's loss is read after the next one is queued (reading waits
                    # for the GPU), unless what follows it needs the loss (_work_due)
                    pending = None
                    while self.iteration < self.max_batches:
                        k, parts, t0 = self._train_iteration(batches)
                        if pending is not None and self._complete(pending, log, t0):
                            return 1
                        pending = (k, parts, self.net.seen, self.net.current_rate())
                        requested = interrupt.requested
                        if self._work_due(k, requested):
                            if self._complete(pending, log, t0):
                                return 1
                            pending = None
                        if self._after_iteration(k, log, requested):
                            return 130
                    if pending is not None and self._complete(pending, log, t0):
                        return 1
                    self._finish()
                except NonFiniteWeights as e:     # a finite loss, but an update gave NaN/inf
                    self._diverged(self.iteration, f"the weights became NaN/inf "
                                                   f"({e.message}; {e.path} not written)")
                    return 1
                return 0
        finally:
            batches.close()
            if self._bar is not None:
                self._bar.close()
            self._bar = None

    def _announce(self):
        """The run's summary lines."""
        net = self.net
        cfg = net.options
        print(f"{self.base}: {len(self.train_set)} training images, "
              f"{len(self.valid_set) if self.valid_set else 0} validation images, "
              f"{self.classes} classes, batch {net.batch} x {net.subdivisions} subdivisions"
              f"{f' x {self.world} GPUs' if self.world > 1 else ''} = "
              f"{self.images_per_iteration} images per update, "
              f"{self.per_epoch} iterations per epoch, device {net.device.kind}", file=self.out)
        print(f"Learning Rate: {cfg.learning_rate:g}, Momentum: {cfg.momentum:g}, "
              f"Decay: {cfg.decay:g}", file=self.out, flush=True)

    def _progress(self):
        if not self.options.progress or self.options.darknet_lines:
            return None
        from tqdm import tqdm
        return tqdm(total=self.max_batches, initial=self.iteration, unit="it", file=sys.stderr,
                    dynamic_ncols=True, desc=self.base)

    def _batches(self, start):
        """The mini-batches ``_make(k)`` for k = start, ... (a loader thread ahead of the
        training, data.datasets.Batches)."""
        return Batches(self._make, start=start, ahead=self.loader_ahead, device=self.net.device)

    def _train_iteration(self, batches):
        """One weight update: ``subdivisions`` mini-batches, the replicas' gradients summed,
        the update.  Returns (the iteration reached, its mini-batches' (PendingCost, images),
        the time it started): ``_complete`` reads the loss."""
        net = self.net
        k = self.iteration
        prof = self._prof = self._profiling(k)
        t0 = time.perf_counter()
        step_net = self._train_net(k)     # a resized copy when multi-scale
        step_net.seen, step_net.t = net.seen, net.t
        step_net.world_size = self.world
        before = snapshot(step_net) if self.world > 1 else None
        if prof is not None:              # the passes mark their parts (not validation's)
            step_net.profiler = prof
            prof.lap("other")
        parts = []
        for s in range(net.subdivisions):
            n = self._train_minibatch(step_net, batches, k, s)
            if s + 1 < net.subdivisions:
                parts.append((step_net.pending_cost(), n))
        if before is not None:            # sum the replicas' gradients
            allreduce_gradients(step_net, self.comm, before)
            if prof is not None:
                prof.lap("allreduce")
        if not step_net.update():
            self._say(f"iteration {k}: fp16 gradients overflowed; update skipped, loss scale "
                      f"now {step_net.precision.loss_scale:g}")
        if self.ema is not None:
            self._ema_step(k + 1)
        parts.append((step_net.pending_cost(), n))      # the last mini-batch's, after the update
        if prof is not None:
            step_net.profiler = None
        net.seen, net.t = step_net.seen, step_net.t
        return k + 1, parts, t0

    def _complete(self, pending, log, since):
        """Read iteration k's loss per image (waiting for the GPU) and record it with the
        seconds since ``since``, the start of the iteration read with it (k's own, or in the
        steady state of deferred reads k + 1's: one iteration's wall time); True when the loss
        is not finite (the run then stops, saving nothing)."""
        k, parts, seen, rate = pending
        loss = 0.0
        for cost, n in parts:
            loss += cost.value() / n
        loss /= self.net.subdivisions
        seconds = time.perf_counter() - since
        if not math.isfinite(loss):
            self._diverged(k, f"loss became {loss}")
            return True
        self._record(k, loss, seconds, log, seen, rate)
        return False

    def _evaluation_due(self, k):
        return k % self.eval_every == 0 or k == self.max_batches

    def _backup_due(self, k, requested):
        return (self.backup_each_epoch and k % self.per_epoch == 0) or \
            k % self.backup_every == 0 or requested

    def _work_due(self, k, requested):
        """Whether what follows iteration k needs its loss now: validation and the chart, a
        backup (its state holds avg_loss), the end, a stop, --profile, and Darknet's lines
        (each iteration's line right after its [yolo] lines, as Darknet prints them)."""
        return (self._evaluation_due(k) or self._backup_due(k, requested)
                or k == self.max_batches or self._prof is not None
                or self.options.darknet_lines)

    def _ema_step(self, k):
        """AlexeyAB's EMA after the update that completed iteration ``k`` (train/ema.py)."""
        done = self.ema.after_update(k)
        if self._prof is not None:
            self._prof.lap("update")
        if done and done != ["updated"]:
            self._say(f"iteration {k}: EMA of the conv weights {' and '.join(done)}"
                      + (" (the weights are the EMA now)" if "applied" in done else ""))

    def _train_minibatch(self, step_net, batches, k, s):
        """Forward and backward of mini-batch ``s`` of iteration ``k``; returns its images
        (the loss waits in ``step_net.cost``)."""
        try:
            x, truth = batches.next()
        except DarknetError:      # e.g. a corrupt image: keep the work done
            self._stopped_by_data_error(k, clean=s == 0)
            raise
        self._reseed(k, s)
        if self._prof is not None:
            self._prof.lap("data")
        try:
            step_net.train_pass(x, truth)
        except MemoryError:       # NumPy's, or CuPy's OutOfMemoryError
            raise self._out_of_memory(k, step_net) from None
        if self.options.darknet_lines:
            for layer in step_net.layers:
                if hasattr(layer, "report") and layer.report():
                    print(layer.report(), file=self.out)
            if self._prof is not None:
                self._prof.lap("log")
        return len(x)

    def _profiling(self, k):
        """The profiler when the iteration after ``k`` is one it times, else None."""
        prof = self.profiler
        if prof is None or not prof.covers(k):
            return None
        prof.begin()
        return prof

    def _count(self, event):
        """--profile: count ``event`` when the iteration in progress is timed."""
        if self._prof is not None:
            self._prof.tally(event)

    def _reseed(self, k, s):
        """Dropout and crop draw from net.rng (they hold it); make their draws a function of
        the iteration.  A network without them is left alone (a reseed costs ~40 us, about a
        tenth of a small GPU step)."""
        step_net = self._train_net(k)
        for net in {id(self.net): self.net, id(step_net): step_net}.values():
            if any(getattr(layer, "rng", None) is net.rng for layer in net.layers):
                net.rng.bit_generator.state = np.random.default_rng(
                    [self.seed, k, s]).bit_generator.state

    def _record(self, k, loss, seconds, log, seen, rate):
        """The running average, the log record and the printed line of iteration ``k`` (after
        which the network had seen ``seen`` images and the learning rate was ``rate``)."""
        self.avg_loss = loss if self.avg_loss < 0 else 0.9 * self.avg_loss + 0.1 * loss
        ips = self.images_per_iteration / seconds
        self.losses.append((k, loss, self.avg_loss))
        log.write(json.dumps({"iteration": k, "loss": loss, "avg_loss": self.avg_loss,
                              "rate": rate, "seen": seen, "seconds": seconds,
                              "images_per_s": ips}) + "\n")
        if self.options.darknet_lines:
            print(f"{k}, {seen / len(self.train_set):.3f}: {loss:f}, "
                  f"{self.avg_loss:f} avg, {rate:f} rate, {seconds:f} seconds, "
                  f"{seen} images", file=self.out, flush=True)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", avg=f"{self.avg_loss:.4f}",
                                  lr=f"{rate:.2g}", img_s=f"{ips:.0f}", refresh=False)
            self._bar.update(1)
        if self._prof is not None:
            self._prof.lap("log")

    def _after_iteration(self, k, log, requested):
        """Validation, chart, backups and snapshots due after iteration ``k``; True when
        Ctrl-C asked to stop (``requested``; saved).  After the last iteration Ctrl-C does not
        stop the run: only _final is left to write."""
        if self._evaluation_due(k):
            log.flush()
            self._validate(k)
            if self._prof is not None:
                self._prof.lap("validate")
            self._chart()
        if self._backup_due(k, requested):
            log.flush()
            self.save_last()
        if k % self.save_weights_every == 0 and self.rank == 0:
            self._save_weights(os.path.join(self.backup, f"{self.base}_{k}.weights"))
        stop = requested and k < self.max_batches
        if stop:
            self._written()
            self._say(f"Stopped at iteration {k}; saved {self.paths['last']}. "
                      "Continue with --resume.")
        if self._prof is not None:
            self._profiled(k, log, stop)
        return stop

    def _profiled(self, k, log, stopping):
        """End a timed iteration; after the last one (or when the run stops) print the profile
        and log it as one record."""
        prof, self._prof = self._prof, None
        if not prof.end() and not stopping:
            return
        self.profiler = None
        report = prof.report(self.images_per_iteration)
        log.write(json.dumps({"iteration": k, "profile": report}) + "\n")
        log.flush()
        for line in profile_table(report):
            self._say(line)

    def _finish(self):
        # _final is the run's last file: a kill before it leaves a resumable run, whose start
        # removes any write the kill cut (a chart drawn after it would be left half-written)
        if self._last_at != self.iteration:     # not just written by _after_iteration
            self.save_last()
        self._chart(last=True)
        if self.rank == 0:
            self._save_weights(self.paths["final"])
        self._written()
        self._say(f"Saved {self.paths['final']}")

    def _validate(self, k):
        if self.valid_set is None or not self.options.map or self.rank != 0:
            return None
        value, second, line = self._evaluate(k)
        self.accuracy.append((k, value, second))
        self._say(line)
        if value > self.best:
            self.best = value
            self._save_weights(self.paths["best"])
        return value

    def _say(self, line):
        """Print a line to ``out`` without tearing the progress bar."""
        if self._bar is not None and self.out is sys.stdout:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, file=self.out, flush=True)

    def _chart(self, last=False):
        """Redraw the chart (in the backup thread), at most every CHART_SECONDS of wall time
        and at the end: it holds Python's lock ~20 ms, which at each epoch of a small network
        on the GPU was a tenth of the run (every point is in the next chart anyway)."""
        now = time.monotonic()
        if self.rank != 0 or (not last and now < self._chart_at + chart.CHART_SECONDS):
            return
        self._chart_at = now
        series = {"loss": [(k, l) for k, l, _ in self.losses],
                  "avg loss": [(k, a) for k, _, a in self.losses]}
        right = {self.metric: [(k, a) for k, a, _ in self.accuracy]} if self.accuracy else None
        self._write(functools.partial(chart.draw_chart, self.chart_path, series,
                                      title=f"{self.base}: training", right_series=right))

    # -- what stops a run ------------------------------------------------------------------
    def _diverged(self, k, what):
        """Nothing is saved: every save refuses NaN/inf weights (Network.save_weights), and the
        last backup stays as it was."""
        print(f"\n{what} at iteration {k} (learning rate "
              f"{self.net.current_rate():g}); stopping. The last good weights are "
              f"in {self.paths['last']} (iteration {self._saved_iteration()}). Try a lower "
              "learning_rate or a longer burn_in.", file=sys.stderr)

    def _out_of_memory(self, k, step_net):
        """The one-line answer to Darknet users' most frequent problem (a CUDA out-of-memory
        at the first iterations): make each mini-batch smaller."""
        net = self.net
        _, h, w = step_net.input_shape
        where = "GPU" if net.device.on_gpu else "host"
        hint = f"raise subdivisions (now {net.subdivisions}) in [net] so that each mini-batch " \
               f"of batch/subdivisions images is smaller"
        if self.random:
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
            self._written()
            where = f"saved {self.paths['last']} at iteration {k}"
        else:
            where = (f"the last backup is {self.paths['last']} (iteration "
                     f"{self._saved_iteration()})")
        print(f"\nTraining stopped by a data error; {where}. Fix the data and continue "
              "with --resume.", file=sys.stderr)


def stride_finding(cfg):
    """``cfg check``'s finding that width or height is not a multiple of the network's total
    stride (AlexeyAB warns too: "must be divisible by 32"), or None."""
    for finding in check_cfg(cfg):
        if finding.level == "error" and "the network's total stride" in finding.message:
            return finding
    return None

