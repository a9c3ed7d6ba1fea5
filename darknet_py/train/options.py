"""What a training run is asked to do, besides the cfg, the .data file and the start weights.

The command line (``darknet_py train``, ``detector train``) fills one ``TrainOptions``; the
defaults are those of a plain ``darknet_py train cfg data``.
"""

from dataclasses import dataclass

from ..nn.backend import Device
from .profile import WARMUP

DEFAULT_BACKUP_EVERY = 100


@dataclass(frozen=True)
class TrainOptions:
    #: ``cpu``, ``gpu``, ``auto`` (the GPU when CuPy sees one) or a ``Device``
    device: str | Device = "auto"
    #: the GPU (Darknet's ``-i N``; one rank's GPU with ``-gpus``)
    gpu_index: int = 0
    #: fp32, tf32, fp16 or bf16 (nn/precision.py); None: the cfg's ``precision=``
    precision: str | None = None
    #: GPU: replay the training passes and updates from CUDA graphs where the network allows
    #: (nn/graphs.py GraphedStep; ``--no-graphs``: layer by layer)
    graphs: bool = True
    #: iterations to train up to; None: the cfg's ``max_batches``
    max_batches: int | None = None
    #: count from iteration 0 whatever the start weights have seen (Darknet's ``-clear``)
    clear: bool = False
    #: continue from ``<cfg>_last.weights`` and its state file
    resume: bool = False
    #: the data order, augmentation and dropout draws; None: a random one (kept for --resume)
    seed: int | None = None
    #: save ``<cfg>_last.weights`` every N iterations (and on Ctrl-C; a classifier also at
    #: each epoch); None: the .data file's ``savelast=`` (AlexeyAB's), else 100
    backup_every: int | None = None
    #: numbered ``<cfg>_N.weights`` every N iterations; None: AlexeyAB's rule (snapshot_every)
    save_weights_every: int | None = None
    #: print Darknet's per-iteration lines (and the [yolo] reports) instead of a progress bar
    darknet_lines: bool = False
    #: show a progress bar on stderr
    progress: bool = True
    #: the loss chart's path; None: ``chart_<cfg>.png`` in the backup folder (AlexeyAB's name)
    chart: str | None = None
    #: validate during training (top-k for a classifier; the detector's ``-map``)
    map: bool = True
    #: the detector's mAP every ``map_epochs`` epochs (AlexeyAB's ``-mAP_epochs``)
    map_epochs: int = 4
    #: draw the first mini-batch with its truth boxes into the backup folder (``-show_imgs``)
    show_imgs: bool = False
    #: processes that load and augment the detector's images (0: threads of this one; None:
    #: chosen from the cores, data/threads.py default_loader_processes)
    loader_processes: int | None = None
    #: print where the time of this many iterations went (``--profile N``; 0: do not profile)
    profile: int = 0
    #: iterations left untimed before the profiled ones (fewer when the run is shorter)
    profile_warmup: int = WARMUP
