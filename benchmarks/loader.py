"""Detection loader throughput: images/s of DetectionSet.batch with threads and with worker
processes, on a generated shapes set (the same batches either way).

    python benchmarks/loader.py [--size 416] [--batch 64] [--processes 4 8 16]

One JSON line per configuration.  The thread pool is what training uses by default; the
processes are ``--loader-processes N``.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from darknet_py.data.detaug import DetectionSet  # noqa: E402
from darknet_py.data.shapes import make_shapes  # noqa: E402


def images_per_second(data, size, batch, repeats, processes):
    rng = np.random.default_rng(0)
    kw = dict(jitter=.3, hue=.1, saturation=1.5, exposure=1.5, processes=processes)
    n = len(data)
    data.batch([j % n for j in range(batch)], (3, size, size), rng, **kw)   # warm-up, pools start
    t = time.perf_counter()
    for r in range(repeats):
        data.batch([(r * batch + j) % n for j in range(batch)], (3, size, size), rng, **kw)
    return repeats * batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--processes", type=int, nargs="*", default=[2, 4, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(os.path.join(tmp, "set"), args.images, size=(256, 256), seed=1)
        data = DetectionSet(os.path.join(tmp, "set", "train.txt"), 4)
        for processes in [0] + args.processes:
            ips = images_per_second(data, args.size, args.batch, args.repeats, processes)
            print(json.dumps({"loader": f"{processes} processes" if processes else "threads",
                              "cores": os.cpu_count(), "size": args.size,
                              "images_per_s": round(ips, 1)}), flush=True)


if __name__ == "__main__":
    main()
