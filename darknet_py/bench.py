"""Benchmark: ``python -m darknet_py.bench CFG --batch B --size S [--device gpu]``.

Prints one JSON line in the schema of ``shared/bench/pytorch_peer.py`` (run both in the same
device call): milliseconds per training step (forward, backward, update) and per inference
batch, timed with CUDA events after warm-up (a wall clock on the CPU), median of the repeats.
Detection heads ([yolo], [region]) are timed as identity with a squared-output loss on their
inputs, as the peer does.  Timed is what the commands run: on the GPU the training step
replays CUDA graphs of its pass and update where the network allows (``--no-graphs``: layer
by layer), and inference folds batch norm into the weights as the inference commands load
them (``--no-fuse``: rolling statistics) and replays a graph of the forward.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

from .cfg.parser import Option, read_cfg
from .errors import DarknetError
from .nn.timing import event_times
from .nn.layers.activation import ActivationLayer
from .nn.network import Network
from .nn.precision import PRECISIONS

HEADS = ("yolo", "region", "detection")


def _set(section, key, value):
    opt = section.find(key)
    if opt is None:
        section.options.append(Option(key, str(value), section.line))
    else:
        opt.value = str(value)


class HeadStandIn(ActivationLayer):
    """A detection head as the peer times it: the identity, with the loss mean(out^2) set in
    the forward (delta = -dL/dout = -2 out / size), so that the step is one pass."""

    def forward(self, net):
        super().forward(net)
        if net.train:
            self.delta = (-2.0 / self.output.size) * self.output


def bench_network(cfg_path, batch, size, device, seed=0, precision=None):
    cfg = read_cfg(cfg_path)
    net_section = cfg.net
    _set(net_section, "batch", batch)
    _set(net_section, "subdivisions", 1)
    if size:
        _set(net_section, "width", size)
        _set(net_section, "height", size)
    heads = []
    for i, sec in enumerate(cfg.layers):
        if sec.type in HEADS:       # identity stand-in, as in the PyTorch peer
            sec.name, sec.type = "activation", "activation"
            sec.options = [Option("activation", "linear", sec.line)]
            heads.append(i)
    net = Network(cfg, device=device, seed=seed, warn=False, precision=precision)
    for i in heads:     # built as [activation]; the stand-in adds its loss (no cfg type names it)
        net.layers[i].__class__ = HeadStandIn
    net.options.learning_rate = 1e-4
    return net, heads


def device_name(device):
    """What the JSON lines call the device: the GPU's name, or ``cpu``."""
    if not device.on_gpu:
        return "cpu"
    return device.xp.cuda.runtime.getDeviceProperties(device.index)["name"].decode()


def time_ms(fn, warmup, steps, device):
    """Median milliseconds of ``fn()`` over ``steps`` calls after ``warmup`` untimed ones:
    CUDA events around each call on the GPU, the wall clock on the CPU."""
    if device.on_gpu:
        return statistics.median(event_times(device.xp, fn, steps, warmup))
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile(net, step):
    """Milliseconds per (layer type, pass) over one ``step`` (a training step, or an inference
    forward), each layer call timed on its own, layer by layer (no graphs: a replayed graph
    has no layers to time), so the sum exceeds the graphed step."""
    totals = {}
    sync = net.xp.cuda.Device().synchronize if net.device.on_gpu else (lambda: None)

    def timed(layer, name):
        inner = getattr(layer, name)

        def wrapper(net_state):
            sync()
            t0 = time.perf_counter()
            inner(net_state)
            sync()
            key = f"{layer.type}.{name}"
            totals[key] = totals.get(key, 0.0) + (time.perf_counter() - t0) * 1e3
        return wrapper

    graphs = net.graphs, net.step_graphs                # each layer timed: layer by layer
    net.graphs = net.step_graphs = None
    for layer in net.layers:
        layer.forward, layer.backward = timed(layer, "forward"), timed(layer, "backward")
    step()
    totals = {}
    step()
    for layer in net.layers:
        del layer.forward, layer.backward
    net.graphs, net.step_graphs = graphs
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m darknet_py.bench", description=__doc__.split("\n")[0])
    p.add_argument("cfg")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=0, help="input width=height (default: the cfg's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="the convolutions' arithmetic (nn/precision.py; the peer's mode for "
                        "fp16 and bf16 is amp)")
    p.add_argument("--profile", action="store_true",
                   help="also print where a training step and an inference batch spend their "
                        "time, per layer type (each layer timed alone)")
    p.add_argument("--no-graphs", dest="no_graphs", action="store_true",
                   help="GPU: run every pass layer by layer instead of replaying CUDA graphs")
    p.add_argument("--no-fuse", dest="no_fuse", action="store_true",
                   help="time inference with batch norm on its rolling statistics instead of "
                        "folded into the weights (as the inference commands load them)")
    a = p.parse_args(argv)
    for flag, value, least in (("--batch", a.batch, 1), ("--size", a.size, 0),
                               ("--steps", a.steps, 1), ("--warmup", a.warmup, 0)):
        if value < least:
            p.error(f"argument {flag}: expected a whole number >= {least}, not {value}")
    try:
        net, heads = bench_network(a.cfg, a.batch, a.size, a.device, precision=a.precision)
    except DarknetError as e:               # a bad cfg or --batch/--size: one line, no traceback
        print(f"python -m darknet_py.bench: {e}", file=sys.stderr)
        return 2
    xp = net.xp
    c, h, w = net.input_shape
    x = xp.asarray(np.random.default_rng(0).random((a.batch, c, h, w), dtype=np.float32))
    last = net.layers[-1]
    truth = None
    if last.type in ("softmax", "cost", "logistic"):
        truth = xp.zeros((a.batch, last.inputs), dtype=xp.float32)
        truth[:, 0] = 1

    graphs = not a.no_graphs and net.enable_graphs()

    def train_step():            # Network.train_step without reading the loss (a host wait)
        net.train_pass(x, truth)
        net.update()

    def infer():
        net.forward(x, train=False)

    train = time_ms(train_step, a.warmup, a.steps, net.device)
    if a.profile:
        print(json.dumps({"profile_ms": profile(net, train_step)}), flush=True)
    step_graphs = graphs and net.step_graphs.refusal is None
    if not a.no_fuse:
        net.fold_batchnorm()
    inference = time_ms(infer, a.warmup, a.steps, net.device)
    if a.profile:
        print(json.dumps({"profile_infer_ms": profile(net, infer)}), flush=True)
    print(json.dumps({
        "peer": "darknet_py", "device": device_name(net.device), "cfg": a.cfg, "batch": a.batch,
        "size": [h, w], "mode": a.precision, "train_ms": round(train, 3),
        "infer_ms": round(inference, 3), "train_graphs": step_graphs,
        "infer_graphs": bool(graphs and net.graphs.failed is None), "fused": not a.no_fuse,
        "train_img_s": round(a.batch / train * 1e3, 1),
        "infer_img_s": round(a.batch / inference * 1e3, 1),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
