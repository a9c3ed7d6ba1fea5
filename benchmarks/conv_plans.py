"""cuDNN's heuristic plan against the fastest candidates for yolov3-tiny's convolutions (run on a
GPU machine).

    python benchmarks/conv_plans.py [--batch 64] [--precision fp32]

For each of yolov3-tiny's convolutions at 416 (80 classes) and each of fprop, dgrad and wgrad it
times, with CUDA events (fastest of 5 runs after one), the plan cuDNN's heuristics choose (what
darknet_py ran before it timed its plans), the fastest of every candidate plan, and the fastest
of the deterministic ones (NONDETERMINISTIC engines removed too): one JSON line per shape and
op, then the sums ("chosen": the faster of the heuristic plan and the fastest deterministic
one, which is what nn/cudnn.py runs).  fp32 keeps exact engines only, as darknet_py does; tf32
keeps the tensor-core ones (NCHW float32 tensors in both).
"""
import argparse
import json

import cudnn
import cupy as cp

from darknet_py.nn.timing import event_times
from darknet_py.nn.cudnn import get_ops
from layout import strides

F = cudnn.data_type.FLOAT
# (C_in, H, K, size) of yolov3-tiny's convolutions at 416, stride 1, "same" padding
SHAPES = [(3, 416, 16, 3), (16, 208, 32, 3), (32, 104, 64, 3), (64, 52, 128, 3),
          (128, 26, 256, 3), (256, 13, 512, 3), (512, 13, 1024, 3), (1024, 13, 256, 1),
          (256, 13, 512, 3), (512, 13, 255, 1), (256, 13, 128, 1), (384, 26, 256, 3),
          (256, 26, 255, 1)]


def fastest_ms(run, reps=5):
    return min(event_times(cp, run, reps, warmup=1))


def graph(ops, op, dims, r, notes):
    """op's graph over (x, w, y) dims with its candidate plans, ``notes`` removed (nn/cudnn.py's
    graph making, as darknet_py builds it); its tensors."""
    xd, wd, yd = dims
    geometry = dict(padding=[r // 2] * 2, stride=[1, 1], dilation=[1, 1], compute_data_type=F)
    tensors = {}

    def build(g):
        t = {nm: g.tensor(name=nm, dim=d, stride=strides(d, "nchw"), data_type=F)
             for nm, d in (("x", xd), ("w", wd), ("dy", yd))}
        if op == "fprop":
            out, want = g.conv_fprop(image=t["x"], weight=t["w"], **geometry), ("y", yd)
        elif op == "dgrad":
            out, want = g.conv_dgrad(loss=t["dy"], filter=t["w"], **geometry), ("dx", xd)
        else:
            out, want = g.conv_wgrad(image=t["x"], loss=t["dy"], **geometry), ("dw", wd)
        out.set_output(True).set_dim(want[1]).set_stride(strides(want[1], "nchw")) \
            .set_data_type(F)
        used = {"fprop": ("x", "w"), "dgrad": ("dy", "w"), "wgrad": ("x", "dy")}[op]
        tensors.update({nm: t[nm] for nm in used})
        tensors[want[0]] = out

    return ops._graph(build, "FLOAT", notes), tensors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32"))
    a = p.parse_args()
    ops = get_ops()
    ops._bind_stream()
    handle = ops.handle
    exact = a.precision == "fp32"
    sums = {}
    for op in ("fprop", "dgrad", "wgrad"):
        for c, h, k, r in SHAPES:
            n = a.batch
            dims = ([n, c, h, h], [k, c, r, r], [n, k, h, h])
            d = dict(zip(("x", "w", "y"), dims), dy=dims[2], dx=dims[0], dw=dims[1])
            row = {"op": op, "shape": [c, h, k, r]}
            for label, notes in (("heuristic", ops._notes(exact)), ("all", ops._notes(exact)),
                                 ("deterministic", ops._notes(exact, deterministic=True))):
                g, tensors = graph(ops, op, dims, r, notes)
                buf = {nm: cp.random.standard_normal(d[nm], dtype=cp.float32) for nm in tensors}
                pack = {tensors[nm]: buf[nm].data.ptr for nm in tensors}
                if label == "heuristic":
                    g.build_plans()
                    ws = cp.empty(max(1, g.get_workspace_size()), cp.uint8)
                    row[label] = fastest_ms(lambda: g.execute(pack, ws, handle=handle))
                    continue
                g.build_plans(cudnn.build_plan_policy.ALL)
                times = {}
                for i in range(g.get_execution_plan_count()):
                    try:
                        ws = cp.empty(max(1, g.get_workspace_size_plan_at_index(i)), cp.uint8)
                        times[g.get_plan_name_at_index(i)] = fastest_ms(
                            lambda: g.execute_plan_at_index(pack, ws, i, handle=handle))
                    except Exception:           # not built, or its workspace does not fit
                        continue
                best = min(times, key=times.get) if times else None
                row[label] = times.get(best)
                row[label + "_engine"] = best
            for label in ("heuristic", "all", "deterministic"):
                v = row[label] if row[label] is not None else row["heuristic"]
                sums[f"{op} {label}"] = sums.get(f"{op} {label}", 0.0) + v
            sums[f"{op} chosen"] = sums.get(f"{op} chosen", 0.0) + min(
                row["heuristic"], row["deterministic"] or row["heuristic"])
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)
    print(json.dumps({"batch": a.batch, "precision": a.precision,
                      "sum_ms": {k: round(v, 3) for k, v in sums.items()}}))


if __name__ == "__main__":
    main()
