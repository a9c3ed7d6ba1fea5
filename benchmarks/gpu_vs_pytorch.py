#!/usr/bin/env python3
"""darknet_py against its PyTorch peer on one GPU, in one run: the README's table.

For each case (cfg, batch, size) it runs ``python -m darknet_py.bench`` and the peer
(``shared/bench/pytorch_peer.py``: the same network in PyTorch, fp32, TF32 and AMP) one after
the other on the same card, and prints the markdown table with the ratios
(darknet_py ms / PyTorch ms in the matching mode -- fp32, TF32, and AMP for fp16 and bf16:
below 1 is faster).  Every JSON line it reads is printed as it comes, the table last; a run cut
short (a time limit) leaves its lines, and ``--rows`` makes the table of what they hold.

    python benchmarks/gpu_vs_pytorch.py --peer ../shared/bench/pytorch_peer.py | tee rows.txt
    python benchmarks/gpu_vs_pytorch.py --rows rows.txt

Heads ([yolo], [region]) are timed as identity with a mean-squared loss in both, as the peer does.
"""

import argparse
import json
import subprocess
import sys

CASES = (("cfg/yolov3-tiny.cfg", 64, 416), ("cfg/yolov3-tiny.cfg", 16, 416),
         ("cfg/yolov3-tiny.cfg", 1, 416), ("cfg/shapes-tiny.cfg", 32, 256),
         ("cfg/mnist.cfg", 128, 28))


def _json_lines(cmd, timeout):
    """The JSON lines a command prints (its stderr passes through), printed here too."""
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        print(f"gpu_vs_pytorch: {' '.join(cmd)} ran past --timeout {timeout} s", file=sys.stderr)
        return []
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    if rows:
        print("\n".join(json.dumps(row) for row in rows), flush=True)
    if out.returncode != 0 or not rows:
        print(f"gpu_vs_pytorch: {' '.join(cmd)} exited {out.returncode}", file=sys.stderr)
    return rows


#: the peer's mode each precision is compared with (its AMP is float16 autocast)
PEER_MODE = {"fp32": "fp32", "tf32": "tf32", "fp16": "amp", "bf16": "amp"}


def results_of(rows):
    """``table``'s results from the JSON lines of a run, in the order their cases came."""
    cases = {}
    for row in rows:
        if not {"cfg", "batch", "size", "mode"} <= row.keys():
            continue
        case = (row["cfg"], row["batch"], row["size"][0])
        ours, peer = cases.setdefault(case, ({}, {}))
        (ours if row.get("peer") == "darknet_py" else peer)[row["mode"]] = row
    return [(case, ours, peer) for case, (ours, peer) in cases.items()]


def table(results, precisions):
    """The markdown table of (case, {precision: darknet_py row}, {mode: peer row}) results:
    per precision darknet_py's ms, the peer's in the matching mode, and their ratio."""
    head = "| case |" + "".join(f" {p} ms | PyTorch {PEER_MODE[p]} | ratio |" for p in precisions)
    lines = [head, "|---|" + "---|---|---|" * len(precisions)]
    for (cfg, batch, size), ours, peer in results:
        name = cfg.rsplit("/", 1)[-1].removesuffix(".cfg")
        for what, key in (("train step", "train_ms"), ("inference", "infer_ms")):
            cells = []
            for p in precisions:
                mine = (ours.get(p) or {}).get(key)
                theirs = peer.get(PEER_MODE[p], {}).get(key)
                ratio = f"{mine / theirs:.2f}" if mine and theirs else "n/a"
                cells += [f"{v:.2f}" if v else "n/a" for v in (mine, theirs)] + [ratio]
            lines.append(f"| {name} {size} b{batch}, {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peer", default="../shared/bench/pytorch_peer.py",
                   help="the PyTorch peer script (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--case", action="append", metavar="CFG:BATCH:SIZE",
                   help="instead of the README's cases (repeatable)")
    p.add_argument("--timeout", type=int, default=180, help="seconds per command")
    p.add_argument("--precisions", default="fp32,tf32,fp16,bf16",
                   help="darknet_py's precisions to run (comma list; default: %(default)s)")
    p.add_argument("--rows", metavar="FILE", help="run nothing: the table of the JSON lines "
                   "in FILE (a run's output, or the part a time limit left)")
    a = p.parse_args(argv)
    cases = CASES
    if a.case:
        try:
            cases = [(c, int(b), int(s)) for c, b, s in (x.rsplit(":", 2) for x in a.case)]
        except ValueError:
            p.error("argument --case: expected CFG:BATCH:SIZE, e.g. cfg/mnist.cfg:128:28")
    precisions = a.precisions.split(",")
    unknown = [x for x in precisions if x not in PEER_MODE]
    if unknown:
        p.error(f"argument --precisions: unknown {', '.join(unknown)}; expected a comma list "
                f"of {', '.join(PEER_MODE)}")
    if a.rows:
        try:
            with open(a.rows) as f:
                rows = [json.loads(line) for line in f if line.startswith("{")]
        except (OSError, ValueError) as e:
            p.error(f"argument --rows: {a.rows}: {e}")
        print(table(results_of(rows), precisions))
        return 0
    modes = ",".join(dict.fromkeys(PEER_MODE[x] for x in precisions))
    rows = []
    for cfg, batch, size in cases:
        common = [cfg, "--batch", str(batch), "--size", str(size), "--steps", str(a.steps)]
        for cmd in ([sys.executable, "-m", "darknet_py.bench", *common, "--device", "gpu",
                     "--precision", precision] for precision in precisions):
            rows += _json_lines(cmd, a.timeout)[-1:]
        rows += _json_lines([sys.executable, a.peer, *common, "--modes", modes], a.timeout)
    print(table(results_of(rows), precisions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
