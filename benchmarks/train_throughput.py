"""Training throughput end to end, next to the training step alone.

    python benchmarks/train_throughput.py CFG DATA [--batch B] [--size S] [--iterations N]
        [--warmup W] [--steps K] [--device auto|cpu|gpu] [--validate] [--profile]
        [--loader-processes P]

Two JSON lines.  ``"what": "step"``: images/s of the network's training step (forward with its
real loss, backward, update) repeated on one batch that stays in memory, timed as ``python -m
darknet_py.bench`` times it (bench.time_ms: CUDA events around each step, the median of K).
``"what": "train"``: images/s of N iterations of real training after W of warm-up -- the
trainer with its loader and augmentation, loss, update, log, chart and checkpoints as ``train``
writes them (``_last`` every ``savelast=`` iterations, 100; a classifier's at each epoch too),
and with ``--validate`` the validation (the detector's -map) -- timed from outside, the device
synchronised at both ends only; ``ratio`` is train / step, the share of the step's speed that
the whole loop keeps; the step is timed at the cfg's size.  With multi-scale training
(random=1) the step line also has ``ms_at_sizes``, the step alone at the sizes the N
iterations trained at (each size timed, weighted by its iterations), and the train line
``ratio_at_sizes`` against it.  ``--profile`` adds the --profile table of the same N
iterations (its synchronisations slow the GPU a little).

The cfg's batch (subdivisions=1) and size can be set here; multi-scale (random=1) stays on, and
the cfg's max_batches keeps its schedule (the cfg size in the first and last 100 iterations).
The .data file's lists are used as they are; what training writes goes to a temporary folder.
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from darknet_py.bench import device_name, time_ms  # noqa: E402
from darknet_py.cfg.edit import CfgDocument  # noqa: E402
from darknet_py.data.datacfg import DataCfg  # noqa: E402
from darknet_py.data.datasets import Batches  # noqa: E402
from darknet_py.nn.precision import PRECISIONS  # noqa: E402
from darknet_py.data.threads import blas_threads, limit_blas  # noqa: E402
from darknet_py.nn.backend import to_numpy  # noqa: E402
from darknet_py.train.classifier import ClassifierTrainer  # noqa: E402
from darknet_py.train.detector import DetectorTrainer  # noqa: E402
from darknet_py.train.options import TrainOptions  # noqa: E402

PATH_KEYS = ("train", "valid", "names", "labels")


def prepare(cfg, data, batch, size, folder):
    """The cfg with this batch and size and a .data whose backup folder is ``folder``: their
    paths, and whether the cfg is a detector."""
    doc = CfgDocument.load(cfg)
    doc.net.set("subdivisions", 1)
    if batch:
        doc.net.set("batch", batch)
    if size:
        doc.net.set("width", size)
        doc.net.set("height", size)
    cfg_out = doc.save(os.path.join(folder, os.path.basename(cfg)))
    options = DataCfg(data)
    lines = [f"{key}={os.path.abspath(options.file(key)) if key in PATH_KEYS else value}"
             for key, value in options.items() if key != "backup"]
    data_out = os.path.join(folder, os.path.basename(data))
    with open(data_out, "w") as f:
        f.write("\n".join(lines + [f"backup={os.path.join(folder, 'backup')}"]) + "\n")
    detector = any(section.type in ("yolo", "region") for section in doc.layers)
    return cfg_out, data_out, detector


def synchronizer(device):
    return device.xp.cuda.Device(device.index).synchronize if device.on_gpu else (lambda: None)


def end_to_end(cls, cfg, data, options, warmup, iterations):
    """The trainer after ``warmup + iterations`` iterations, and the seconds of the last
    ``iterations`` (each ends after its log, validation and checkpoints)."""
    marks = {}
    stop = warmup + iterations

    class Timed(cls):
        def _after_iteration(self, k, log, interrupt):
            stopped = super()._after_iteration(k, log, interrupt)
            if k in (warmup, stop):
                sync()
                marks[k] = time.perf_counter()
            return stopped or k >= stop

    trainer = Timed(cfg, data, options=options, out=open(os.devnull, "w"))
    sync = synchronizer(trainer.net.device)
    if trainer.max_batches < stop:
        raise SystemExit(f"max_batches={trainer.max_batches} is fewer than --warmup + "
                         "--iterations")
    if trainer.run() == 1:
        raise SystemExit("the loss diverged")
    return trainer, marks[stop] - marks[warmup]


def step_alone(trainer, warmup, steps, net=None, minibatch=0):
    """Median ms of ``net`` (the trainer's) training on the run's mini-batch ``minibatch``,
    kept on the device: forward with the loss, backward, update; with the BLAS threads
    training uses."""
    net = trainer.net if net is None else net
    # staged as training stages it (on the GPU, raw batches are finished there), then copied
    # out of the loader's buffers, which close() hands back
    batches = Batches(trainer._make, start=minibatch, device=net.device)
    try:
        x, truth = batches.next()
        x, truth = net.xp.array(x), np.array(to_numpy(truth))
    finally:
        batches.close()

    def step():
        net.train_step(x, truth)
    with limit_blas(blas_threads(trainer.loader_processes)):
        return time_ms(step, warmup, steps, net.device)


def first_at(trainer, size, iterations):
    """The first of ``iterations`` that trains at ``size`` (None: none of them)."""
    return next((k for k in iterations if trainer._size_for(k) == size), None)


def at_cfg_size(trainer):
    """The first iteration drawn at the cfg's size (multi-scale starts at the largest)."""
    o = trainer.net.options
    k = first_at(trainer, (o.width, o.height), range(trainer.max_batches))
    if k is None:
        raise SystemExit(f"no iteration of the run trains at the cfg's {o.width}x{o.height}")
    return k


def step_at_sizes(trainer, first, stop, warmup, steps):
    """Multi-scale: the mean ms of the step alone over iterations ``first``..``stop - 1`` at
    the sizes they trained at (each size timed once, weighted by its iterations)."""
    sizes = collections.Counter(trainer._size_for(k) for k in range(first, stop))
    total = 0.0
    for size, count in sizes.items():
        k = first_at(trainer, size, range(first, stop))
        net = trainer._train_net(k)
        total += count * step_alone(trainer, warmup, steps, net, k * net.subdivisions)
    return total / (stop - first)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cfg")
    ap.add_argument("data")
    ap.add_argument("--batch", type=int, default=0, help="images per iteration (default: "
                    "the cfg's batch)")
    ap.add_argument("--size", type=int, default=0, help="width = height (default: the cfg's)")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20, help="step-alone repeats")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--validate", action="store_true",
                    help="with the validation training does (top-k each epoch, -map)")
    ap.add_argument("--profile", action="store_true", help="add the --profile table")
    ap.add_argument("--loader-processes", type=int, help="as train's --loader-processes")
    ap.add_argument("--precision", choices=PRECISIONS, help="as train's --precision")
    ap.add_argument("--no-graphs", dest="no_graphs", action="store_true",
                    help="as train's --no-graphs (the step alone too)")
    a = ap.parse_args(argv)
    if a.warmup < 1 or a.iterations < 1:
        ap.error("--warmup and --iterations must be at least 1")
    with tempfile.TemporaryDirectory(prefix="darknet_py-throughput-") as folder:
        cfg, data, detector = prepare(a.cfg, a.data, a.batch, a.size, folder)
        extra = {} if a.loader_processes is None else {"loader_processes": a.loader_processes}
        options = TrainOptions(device=a.device, seed=a.seed, progress=False, map=a.validate,
                               profile=a.iterations if a.profile else 0,
                               profile_warmup=a.warmup, precision=a.precision,
                               graphs=not a.no_graphs, **extra)
        cls = DetectorTrainer if detector else ClassifierTrainer
        trainer, seconds = end_to_end(cls, cfg, data, options, a.warmup, a.iterations)
        step_ms = step_alone(trainer, min(a.warmup, 5), a.steps,
                             minibatch=at_cfg_size(trainer) * trainer.net.subdivisions)
        sizes_ms = step_at_sizes(trainer, a.warmup, a.warmup + a.iterations,
                                 min(a.warmup, 5), a.steps) if trainer.random else None
        profile = None
        if a.profile:
            with open(trainer.log_path) as log:
                profile = next(json.loads(line)["profile"] for line in log
                               if '"profile"' in line)
    net = trainer.net
    images = trainer.images_per_iteration
    common = {"bench": "train_throughput", "cfg": a.cfg, "data": a.data,
              "device": device_name(net.device), "batch": images,
              "size": list(net.input_shape[1:]), "precision": net.precision.name,
              "graphs": net.step_graphs is not None and net.step_graphs.refusal is None}
    step_ips = images / step_ms * 1e3
    train_ips = images * a.iterations / seconds
    step = {**common, "what": "step", "ms": round(step_ms, 3),
            "images_per_s": round(step_ips, 1)}
    if sizes_ms is not None:
        step["ms_at_sizes"] = round(sizes_ms, 3)
    print(json.dumps(step), flush=True)
    train = {**common, "what": "train", "iterations": a.iterations, "warmup": a.warmup,
             "multi_scale": trainer.random, "validation": a.validate,
             "ms_per_iteration": round(seconds / a.iterations * 1e3, 3),
             "images_per_s": round(train_ips, 1), "ratio": round(train_ips / step_ips, 3)}
    if sizes_ms is not None:          # against the step at the sizes these iterations had
        train["ratio_at_sizes"] = round(train_ips / (images / sizes_ms * 1e3), 3)
    if profile is not None:
        train["profile"] = profile
    print(json.dumps(train), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
