"""Inference time with batch norm as separate ops against folded into the weights (fuse).

    python benchmarks/fuse.py cfg/yolov3-tiny.cfg --batch 1 --device gpu

Prints one JSON line: median ms per forward pass of the network as built (BN with rolling
statistics) and after Network.fold_batchnorm(), the ratio, and the largest relative difference
between the two outputs.  CUDA events on the GPU (after warm-up), a wall clock on the CPU.
"""
import argparse
import json

import numpy as np

from darknet_py.bench import bench_network, time_ms
from darknet_py.nn.backend import to_numpy


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cfg")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    a = p.parse_args()
    net, _ = bench_network(a.cfg, a.batch, a.size, a.device)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False):
            layer.rolling_mean[...] = net.xp.asarray(rng.uniform(-1, 1, layer.out_c))
            layer.rolling_variance[...] = net.xp.asarray(rng.uniform(0.5, 2, layer.out_c))
    x = net.xp.asarray(rng.random((a.batch,) + net.input_shape, dtype=np.float32))
    unfused = time_ms(lambda: net.forward(x), 3, a.steps, net.device)
    reference = to_numpy(net.forward(x)).copy()
    folded = net.fold_batchnorm()
    fused = time_ms(lambda: net.forward(x), 3, a.steps, net.device)
    diff = np.abs(to_numpy(net.forward(x)) - reference).max() / np.abs(reference).max()
    print(json.dumps({"cfg": a.cfg, "batch": a.batch, "device": net.xp.__name__,
                      "layers_folded": folded, "unfused_ms": round(unfused, 3),
                      "fused_ms": round(fused, 3), "speedup": round(unfused / fused, 3),
                      "max_rel_diff": float(diff)}))


if __name__ == "__main__":
    main()
