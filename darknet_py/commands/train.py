"""``darknet_py train CFG DATA [WEIGHTS]`` (classifier or detector, from the cfg's last layer) and
the training flags and runner that ``classifier train`` and ``detector train`` share."""

import argparse
import os
import socket
import subprocess
import sys

from ..cfg.parser import read_cfg
from ..errors import DarknetError
from ..nn.backend import resolve_device
from ..train.classifier import ClassifierTrainer
from ..train.detector import DetectorTrainer
from ..train.options import TrainOptions
from ..train.profile import DEFAULT_ITERATIONS, WARMUP
from .common import at_least, check_argument_order, device, device_flags, dont_show


def train_flags(p):
    device_flags(p)
    p.add_argument("--max-batches", type=at_least(1), metavar="N",
                   help="stop after N iterations (default: max_batches from the cfg)")
    p.add_argument("-clear", "--clear", action="store_true",
                   help="reset the seen-images counter of the loaded weights")
    p.add_argument("--resume", action="store_true",
                   help="continue from backup/<cfg>_last.weights with the same schedule")
    p.add_argument("--seed", type=at_least(0), metavar="N",
                   help="seed for initialisation, data order and dropout")
    p.add_argument("--backup-every", type=at_least(1), metavar="N",
                   help="write backup/<cfg>_last.weights every N iterations (default: "
                        "savelast= of the .data file, else 100)")
    p.add_argument("--darknet-lines", action="store_true",
                   help="print Darknet's per-iteration lines instead of a progress bar")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-gpus", "--gpus", metavar="0,1,...", type=gpu_list,
                   help="data-parallel training, one process per GPU (NCCL); the learning rate "
                        "is not multiplied, the effective batch is batch x GPUs")
    p.add_argument("-map", "--map", action="store_true",
                   help="detectors: mAP@0.5 on valid= every 4 epochs (at least 100 iterations) "
                        "and at the end; the best goes to _best.weights and the chart")
    p.add_argument("-mAP_epochs", "--map-epochs", dest="map_epochs", type=at_least(1),
                   default=4, metavar="N", help="with -map: every N epochs (default 4)")
    p.add_argument("-saveweights", "--save-weights-every", dest="saveweights",
                   type=at_least(1), metavar="N",
                   help="write backup/<cfg>_N.weights every N iterations (default: saveweights= "
                        "of the .data file, else 1000, or 10000 when max_batches >= 10000)")
    p.add_argument("-chart", "--chart", metavar="PATH", help="where to draw the chart "
                   "(default backup/chart_<cfg>.png)")
    p.add_argument("-show_imgs", "--show-imgs", dest="show_imgs", action="store_true",
                   help="detectors: save the first mini-batch as trained on, with its truth "
                        "boxes (backup/aug_*.jpg), to check the labels")
    p.add_argument("--loader-processes", type=at_least(0), default=None, metavar="N",
                   help="detectors: prepare the images in N worker processes (0: threads; "
                        "default: cores - 2 processes when training on a GPU of a machine with "
                        "8 or more cores, else threads; the batches are the same either way)")
    p.add_argument("--profile", nargs="?", type=at_least(1), const=DEFAULT_ITERATIONS,
                   default=0, metavar="N",
                   help=f"after {WARMUP} warm-up iterations, time N (default "
                        f"{DEFAULT_ITERATIONS}) and print where their time went: data wait, "
                        "host->device copy, forward, loss, backward, update, logging, "
                        "validation (also a 'profile' record in the log)")
    dont_show(p)


def add_darknet_train(subparsers, help, func):
    """Darknet's ``classifier train`` and ``detector train``: DATA CFG [WEIGHTS] and the
    training flags."""
    p = subparsers.add_parser("train", help=help)
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("weights", nargs="?")
    train_flags(p)
    usage = "darknet_py " + help.split(":")[0].strip()

    def checked(args):
        check_argument_order(args.cfg, args.data, usage)
        return func(args)
    p.set_defaults(func=checked)


def _spawn_replicas(gpus):
    """darknet_py ... -gpus 0,1,...: one process per GPU with torchrun's environment
    (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); returns the worst exit status."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("-gpus", "--gpus"):
            skip = True
            continue
        if a.startswith("--gpus=") or a.startswith("-gpus="):
            continue
        argv.append(a)
    procs = []
    for rank, gpu in enumerate(gpus):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE=str(len(gpus)), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, "-m", "darknet_py", *argv, "--device", "gpu", "-i", str(gpu)]
        procs.append(subprocess.Popen(cmd, env=env))
    return max(p.wait() for p in procs)


def gpu_list(text):
    """An argparse type: Darknet's ``-gpus 0,1,...``, GPU indices separated by commas."""
    try:
        gpus = [int(g, 10) for g in text.split(",") if g.strip()]
    except ValueError:
        gpus = []
    if not gpus or min(gpus) < 0:
        raise argparse.ArgumentTypeError(f"expected GPU indices separated by commas (0,1,...), "
                                         f"not {text!r}")
    return gpus


def run_training(args, detector=False):
    """Train ``args.cfg`` on ``args.data`` from ``args.weights``: the exit status.  With
    ``-gpus`` naming several GPUs this process starts one replica per GPU and waits."""
    gpus = args.gpus or []
    if len(gpus) > 1 and "WORLD_SIZE" not in os.environ:
        for gpu in gpus:     # no CuPy or no such GPU: one line here, not one per replica
            resolve_device("gpu", gpu)
        return _spawn_replicas(gpus)
    if len(gpus) == 1:
        args.device, args.gpu_index = "gpu", gpus[0]
    cls = DetectorTrainer if detector else ClassifierTrainer
    options = TrainOptions(device=device(args), gpu_index=args.gpu_index,
                           precision=args.precision, graphs=not args.no_graphs,
                           max_batches=args.max_batches, clear=args.clear, resume=args.resume,
                           seed=args.seed, backup_every=args.backup_every,
                           darknet_lines=args.darknet_lines, progress=not args.no_progress,
                           map=args.map if detector else True,
                           save_weights_every=args.saveweights, chart=args.chart,
                           map_epochs=args.map_epochs, show_imgs=args.show_imgs,
                           loader_processes=args.loader_processes, profile=args.profile)
    trainer = cls(args.cfg, args.data, args.weights, options)
    return trainer.run()


def _head(cfg):
    """("detector" | "classifier" | None, section): what the cfg's last head layer makes it
    (None: no head; the section is the last one)."""
    parsed = read_cfg(cfg)
    for sec in reversed(parsed.layers):
        if sec.type in ("yolo", "region", "detection"):
            return "detector", sec
        if sec.type in ("softmax", "cost", "logistic"):
            return "classifier", sec
    return None, parsed.layers[-1] if parsed.layers else parsed.net


def cmd_train(args):
    check_argument_order(args.cfg, args.data, "darknet_py train CFG DATA [WEIGHTS]")
    kind, last = _head(args.cfg)
    if kind is None:
        raise DarknetError(f"the cfg has no training head (its last section is [{last.name}]): "
                           "end it with [yolo] or [region] for a detector, [softmax] (or "
                           "[cost], [logistic]) for a classifier", args.cfg, last.line)
    return run_training(args, detector=kind == "detector")


def register(subparsers):
    train = subparsers.add_parser("train",
                                  help="train a network: darknet_py train CFG DATA [WEIGHTS]")
    train.add_argument("cfg")
    train.add_argument("data")
    train.add_argument("weights", nargs="?", help="initial weights (a *.conv.N backbone is fine)")
    train_flags(train)
    train.set_defaults(func=cmd_train)
