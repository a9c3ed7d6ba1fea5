"""The evidence for docs/batchnorm.md: where batch norm goes, and whether it can be dropped.

    python tools/batchnorm_experiments.py [--iterations 1500] [--seed 1] [--out docs/images]

Trains three variants of the MNIST classifier on data/mnist.data (8,000 training digits,
2,000 held-out digits), on the CPU, from the same initial seed and the same batch order:

* ``cfg/mnist.cfg``          conv -> BN -> leaky        (Darknet's ``batch_normalize=1``)
* ``cfg/mnist-bn-after.cfg`` conv -> bias -> leaky -> [batchnorm]
* ``cfg/mnist-nobn.cfg``     conv -> bias -> leaky      (no BN)

Each run lasts ``--iterations`` weight updates of 64 images; the cfg's learning-rate steps
(2000 and 2600 of 3000) are scaled to the run length, so ``--iterations 3000`` is exactly the
cfgs.  Then, on the held-out set, each trained net is evaluated in inference mode (rolling
statistics), with BN removed (normalisation and scale skipped, keeping the weights), and with
BN folded into the weights (``Network.fold_batchnorm``).

Writes ``<out>/bn_training.png`` (average loss of each variant on the left axis, held-out top-1
on the right) and ``<out>/bn_heldout_error.png`` (held-out top-1 error), and prints the
markdown tables quoted in docs/batchnorm.md.  Backups go to a temporary folder.
"""

import os

# One BLAS thread: the run is reproducible in time, and OpenBLAS's spinning threads do not fight
# other processes for the cores (set the variables yourself to override).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from darknet_py.train.chart import draw_chart  # noqa: E402
from darknet_py.nn.network import Network  # noqa: E402
from darknet_py.train.classifier import ClassifierTrainer, evaluate  # noqa: E402
from darknet_py.train.options import TrainOptions  # noqa: E402

VARIANTS = [  # (key, cfg, label)
    ("before", "cfg/mnist.cfg", "conv/connected -> BN -> leaky"),
    ("after", "cfg/mnist-bn-after.cfg", "leaky -> [batchnorm]"),
    ("none", "cfg/mnist-nobn.cfg", "no BN"),
]


def scaled_cfg(src, dst, iterations):
    """Copy ``src`` with max_batches=iterations and steps= scaled from 3000 to iterations."""
    with open(src) as f:
        text = f.read()

    def steps(m):
        values = [int(v) for v in m.group(1).split(",")]
        return "steps=" + ",".join(str(max(1, round(v * iterations / 3000))) for v in values)

    text = re.sub(r"(?m)^steps=([0-9, ]+)$", steps, text)
    text = re.sub(r"(?m)^max_batches=\d+$", f"max_batches={iterations}", text)
    with open(dst, "w") as f:
        f.write(text)
    return dst


def data_file(tmp, backup="backup"):
    """data/mnist.data with absolute paths and backup= in ``tmp/backup``."""
    lines = []
    with open(os.path.join(ROOT, "data", "mnist.data")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key == "backup":
                value = os.path.join(tmp, backup) + os.sep
            elif key in ("train", "valid", "names", "labels"):
                value = os.path.join(ROOT, value)
            lines.append(f"{key}={value}")
    path = os.path.join(tmp, f"mnist-{backup}.data")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def outputs(net, dataset, batch=256):
    """(softmax outputs, logits) of ``net`` in inference mode on the whole ``dataset``."""
    probs, logits = [], []
    for start in range(0, len(dataset), batch):
        x, _ = dataset.batch(np.arange(start, min(start + batch, len(dataset))), net.input_shape)
        probs.append(np.array(net.forward(x, train=False)).reshape(len(x), -1))
        logits.append(np.array(net.layers[-2].output).reshape(len(x), -1))
    return np.concatenate(probs), np.concatenate(logits)


def load(cfg, weights):
    net = Network.from_cfg(cfg, warn=False)
    net.load_weights(weights)
    return net


def remove_bn(net, keep_beta=True):
    """BN gone, weights kept: conv/connected compute W*x + biases (biases = BN's beta, or 0),
    and a standalone [batchnorm] becomes the identity.  Returns the number of BN layers removed."""
    removed = 0
    for layer in net.layers:
        if layer.type in ("convolutional", "connected") and layer.batch_normalize:
            layer.batch_normalize = False
            if not keep_beta:
                layer.biases[:] = 0
            removed += 1
        elif layer.type == "batchnorm":
            layer.scales[:] = 1
            layer.biases[:] = 0
            layer.rolling_mean[:] = 0
            layer.rolling_variance[:] = 1 - 1e-5     # sqrt(rv + 1e-5) = 1
            removed += 1
    return removed


def warmup_check(run, data, seed, k):
    """Train ``run``'s cfg again for its first ``k`` iterations (the same ones: same seed, same
    batches) and evaluate with the rolling statistics as they are and divided by 1 - 0.99^k,
    which removes the weight their initial zeros still carry.  Returns (top-1, debiased top-1)."""
    trainer = ClassifierTrainer(run["cfg_path"], data, options=TrainOptions(
        device="cpu", max_batches=k, seed=seed, progress=False), out=io.StringIO())
    trainer.run()
    net = trainer.net
    as_is = evaluate(net, trainer.valid_set)[0]
    for layer in net.layers:
        if getattr(layer, "rolling_mean", None) is not None:
            layer.rolling_mean /= 1 - 0.99 ** k
            layer.rolling_variance /= 1 - 0.99 ** k
    return as_is, evaluate(net, trainer.valid_set)[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=1500,
                   help="weight updates per variant (default 1500; the cfgs say 3000)")
    p.add_argument("--seed", type=int, default=1, help="initial weights and batch order")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "images"),
                   help="folder for the PNG charts (default docs/images)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="bn-experiments-")
    data = data_file(tmp)
    print(f"# {args.iterations} iterations per variant, seed {args.seed}, backups in {tmp}\n")

    runs = {}
    for key, cfg, label in VARIANTS:
        cfg_path = scaled_cfg(os.path.join(ROOT, cfg), os.path.join(tmp, os.path.basename(cfg)),
                              args.iterations)
        log = io.StringIO()
        trainer = ClassifierTrainer(cfg_path, data, options=TrainOptions(
            device="cpu", max_batches=args.iterations, seed=args.seed, progress=False), out=log)
        t0, c0 = time.perf_counter(), time.process_time()
        status = trainer.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if status != 0:
            sys.exit(f"{cfg}: training stopped with status {status}\n{log.getvalue()}")
        runs[key] = dict(cfg=cfg, cfg_path=cfg_path, label=label, trainer=trainer, wall=wall,
                         cpu=cpu, weights=trainer.paths["final"])
        acc = trainer.accuracy
        print(f"{cfg}: final top-1 {acc[-1][1]:.4f}, best {max(a for _, a, _ in acc):.4f}, "
              f"avg loss {trainer.losses[-1][2]:.4f}, {wall:.0f} s wall, {cpu:.0f} s CPU",
              file=sys.stderr, flush=True)

    # -- charts --------------------------------------------------------------------------
    loss = {f"avg loss, {r['label']}": [(k, a) for k, _, a in r["trainer"].losses]
            for r in runs.values()}
    top1 = {f"top-1, {r['label']}": [(k, a) for k, a, _ in r["trainer"].accuracy]
            for r in runs.values()}
    chart = draw_chart(os.path.join(args.out, "bn_training.png"), loss,
                       title=f"MNIST, {args.iterations} iterations: average loss (left), "
                             "held-out top-1 (right)", right_series=top1)
    error = {f"error %, {r['label']}": [(k, 100 * (1 - a)) for k, a, _ in r["trainer"].accuracy]
             for r in runs.values()}
    chart2 = draw_chart(os.path.join(args.out, "bn_heldout_error.png"), error,
                        title="Held-out top-1 error (%) after each epoch")

    # -- training table ------------------------------------------------------------------
    iters_per_epoch = runs["before"]["trainer"].per_epoch
    print(f"Training: {args.iterations} iterations of 64 images "
          f"({args.iterations / iters_per_epoch:.0f} epochs of the 8,000 training digits), "
          f"held-out top-1 on 2,000 digits after each epoch.\n")
    print("| variant | cfg | final top-1 | best top-1 | final avg loss | wall s |")
    print("|---|---|---|---|---|---|")
    for r in runs.values():
        t = r["trainer"]
        best_k, best = max(((k, a) for k, a, _ in t.accuracy), key=lambda ka: ka[1])
        print(f"| {r['label']} | `{r['cfg']}` | {100 * t.accuracy[-1][1]:.2f} % | "
              f"{100 * best:.2f} % (it. {best_k}) | {t.losses[-1][2]:.4f} | {r['wall']:.0f} |")
    print("\nHeld-out top-1 after each epoch:\n")
    print("| iteration | " + " | ".join(r["label"] for r in runs.values()) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for i, (k, _, _) in enumerate(runs["before"]["trainer"].accuracy):
        print(f"| {k} | " + " | ".join(f"{100 * r['trainer'].accuracy[i][1]:.2f} %"
                                       for r in runs.values()) + " |")

    # -- inference table -----------------------------------------------------------------
    print("\nInference on the 2,000 held-out digits with the final weights:\n")
    print("| network | rolling statistics | BN removed (W·x + β) | BN removed, β too (W·x) "
          "| BN folded | max abs diff folded vs unfolded (softmax / logits) |")
    print("|---|---|---|---|---|---|")
    for key, r in runs.items():
        valid = r["trainer"].valid_set
        net = load(r["cfg_path"], r["weights"])
        ref_probs, ref_logits = outputs(net, valid)
        rolling = evaluate(net, valid)[0]
        cells = [f"{100 * rolling:.2f} %"]
        for keep_beta in (True, False):
            stripped = load(r["cfg_path"], r["weights"])
            if remove_bn(stripped, keep_beta) == 0:
                cells.append("(no BN)")
            elif not keep_beta and key == "after":
                cells.append("= W·x + β")     # [batchnorm]'s β is gone either way
            else:
                cells.append(f"{100 * evaluate(stripped, valid)[0]:.2f} %")
        folded = load(r["cfg_path"], r["weights"])
        n = folded.fold_batchnorm()
        if n:
            probs, logits = outputs(folded, valid)
            cells.append(f"{100 * evaluate(folded, valid)[0]:.2f} % ({n} layers)")
            cells.append(f"{np.abs(probs - ref_probs).max():.1e} / "
                         f"{np.abs(logits - ref_logits).max():.1e}")
        else:
            n_bn = sum(layer.type == "batchnorm" for layer in folded.layers)
            cells.append("0 layers folded" + (f" ({n_bn} [batchnorm] after leaky)" if n_bn
                                              else ""))
            cells.append("–")
        print(f"| {r['label']} | " + " | ".join(cells) + " |")
    # -- the first epoch: rolling statistics still warming up ----------------------------
    k = runs["before"]["trainer"].accuracy[0][0]      # the first validation
    print(f"\nThe rolling statistics start at 0 and after k = {k} iterations still carry "
          f"0.99^{k} = {0.99 ** k:.2f} of that start.  Retraining the first {k} iterations "
          "and evaluating:\n")
    print(f"| network | top-1 at {k} (rolling statistics as they are) | "
          f"rolling statistics / (1 - 0.99^{k}) |")
    print("|---|---|---|")
    for key in ("before", "after"):
        as_is, debiased = warmup_check(runs[key], data_file(tmp, "warmup"), args.seed, k)
        print(f"| {runs[key]['label']} | {100 * as_is:.2f} % | {100 * debiased:.2f} % |")
    total = sum(r["cpu"] for r in runs.values())
    print(f"\nCharts: {chart}, {chart2}.  Training CPU time {total:.0f} s "
          f"({os.environ.get('OPENBLAS_NUM_THREADS')} BLAS thread).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
