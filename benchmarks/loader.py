"""Detection loader throughput: images/s of the training pipeline (DetectionSet.submit through
Batches, as DetectorTrainer uses it) with threads and with worker processes, on a generated
shapes set (the same batches either way).

    python benchmarks/loader.py [--processes 2 4 8 16] [--sizes 416 256] [--batch 64]

One JSON line per configuration: threads, one worker process (the base of the scaling figure),
then each count of ``--processes``; ``images_per_s`` per network size and, for processes,
``scaling``: images/s over (workers x one worker's images/s), 1.0 being linear.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from darknet_py.data.datasets import Batches  # noqa: E402
from darknet_py.data.detaug import DetectionSet  # noqa: E402
from darknet_py.data.shapes import make_shapes  # noqa: E402
from darknet_py.data.threads import batches_ahead, usable_cores  # noqa: E402


def images_per_second(data, size, batch, seconds, processes, mosaic, raw):
    kw = dict(jitter=.3, hue=.1, saturation=1.5, exposure=1.5, mosaic=mosaic,
              processes=processes, raw=raw)
    n = len(data)

    def make(k):
        idx = [(k * batch + j) % n for j in range(batch)]
        return data.submit(idx, (3, size, size), np.random.default_rng([0, k]), **kw)

    ahead = batches_ahead(processes, batch)
    batches = Batches(make, 0, ahead=ahead)
    try:
        for _ in range(ahead + 2):                # workers started, slots faulted in
            batches.next()
        count, t = 0, time.perf_counter()
        while count < 3 or time.perf_counter() - t < seconds:
            batches.next()
            count += 1
        return count * batch / (time.perf_counter() - t)
    finally:
        batches.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[416, 256])
    ap.add_argument("--batch", type=int, default=64,
                    help="images per batch (a cfg's batch/subdivisions)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured per configuration")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--mosaic", action="store_true", help="mosaic=1 (half the images are "
                                                           "4-image mosaics)")
    ap.add_argument("--processes", type=int, nargs="*", default=[2, 4, 8])
    ap.add_argument("--raw", action="store_true",
                    help="hand the images over as bytes + colour tables, as GPU training "
                         "does (the colour distortion finished on the GPU, not timed here)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(os.path.join(tmp, "set"), args.images, size=(256, 256), seed=1)
        data = DetectionSet(os.path.join(tmp, "set", "train.txt"), 4)
        one = None
        for processes in [0, 1] + [p for p in args.processes if p > 1]:
            ips = {str(s): round(images_per_second(data, s, args.batch, args.seconds,
                                                   processes, args.mosaic, args.raw), 1)
                   for s in args.sizes}
            data.close()
            line = {"loader": f"{processes} processes" if processes else "threads",
                    "cores": usable_cores(), "batch": args.batch, "mosaic": args.mosaic,
                    "raw": args.raw,
                    "images_per_s": ips}
            if processes == 1:
                one = ips
            if processes:
                line["scaling"] = {s: round(ips[s] / (processes * one[s]), 2) for s in ips}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
