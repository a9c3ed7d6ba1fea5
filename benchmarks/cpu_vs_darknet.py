"""darknet_py's NumPy engine against Debian's Darknet (libdarknet, CPU), in the same process.

    python benchmarks/cpu_vs_darknet.py [--threads N] [--repeats R]

One JSON line per case: median milliseconds of darknet_py and of Darknet (same cfg, same
weights, same input; BN in training mode for the train step), and ratio = darknet_py / Darknet
(below 1: darknet_py is faster).  Debian's libdarknet is single-threaded (no OpenMP); darknet_py's
matrix products use NumPy's BLAS, so ``--threads 1`` (set before NumPy loads) gives the
like-for-like figure and the default shows what the machine's cores add.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_ms(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def darknet_silenced():
    """Darknet prints its layer table and training lines from C: send fds 1 and 2 to
    /dev/null meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def truths_for(net, batch, rng):
    """Classifier: one-hot rows; detector: two boxes per image (class, x, y, w, h)."""
    import numpy as np
    head = net.layers[-1]
    if head.type in ("yolo", "region"):
        truth = np.zeros((batch, head.max_boxes * 5), np.float32)
        for b in range(batch):
            for k in range(2):
                truth[b, 5 * k:5 * k + 4] = rng.uniform(.2, .6, 4)
                truth[b, 5 * k + 4] = rng.integers(head.classes)
        return truth
    classes = net.layers[-1].outputs
    return np.eye(classes, dtype=np.float32)[rng.integers(classes, size=batch)]


def case(name, cfg, batch, train, repeats):
    import numpy as np
    from darknet_py import Network
    from oracle.darknet import DarknetOracle

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        # a cfg with this batch (Darknet keeps the cfg's batch/subdivisions for training)
        text = open(cfg).read()
        cfg_b = os.path.join(tmp, "b.cfg")
        with open(cfg_b, "w") as f:
            f.write(text.replace("[net]", f"[net]\nbatch={batch}\nsubdivisions=1\n", 1))
        net = Network.from_cfg(cfg_b, batch=batch, seed=1, warn=False)
        weights = os.path.join(tmp, "w.weights")
        net.save_weights(weights)
        with darknet_silenced():
            dk = DarknetOracle.load(cfg_b, weights, batch=0 if train else batch)
        x = rng.uniform(0, 1, (batch, *net.input_shape)).astype(np.float32)
        if train:
            truth = truths_for(net, batch, rng)
            ours = median_ms(lambda: net.train_step(x, truth), repeats)
            with darknet_silenced():
                theirs = median_ms(lambda: dk.train_step(x, truth), repeats)
        else:
            ours = median_ms(lambda: net.forward(x), repeats)
            theirs = median_ms(lambda: dk.forward(x), repeats)
        dk.close()
    return {"case": name, "batch": batch, "mode": "train step" if train else "inference",
            "darknet_py_ms": round(ours, 2), "darknet_ms": round(theirs, 2),
            "ratio": round(ours / theirs, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, help="BLAS threads for darknet_py (default: NumPy's)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
    from oracle.darknet import DarknetOracle
    ok, why = DarknetOracle.available()
    if not ok:
        sys.exit(f"cpu_vs_darknet: Debian's darknet is needed ({why}): apt-get install darknet")
    yolo = "/usr/share/darknet/cfg/yolov3-tiny.cfg"
    for name, cfg, batch, train in [
            ("mnist.cfg", os.path.join(ROOT, "cfg/mnist.cfg"), 64, False),
            ("mnist.cfg", os.path.join(ROOT, "cfg/mnist.cfg"), 64, True),
            ("yolov3-tiny 416", yolo, 1, False),
            ("yolov3-tiny 416", yolo, 2, True)]:
        row = case(name, cfg, batch, train, args.repeats)
        row["threads"] = args.threads or "default"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
