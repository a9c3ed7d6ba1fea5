"""NCHW against NHWC for darknet_py's conv + batch-norm stack on cuDNN (run on a GPU machine).

    python benchmarks/layout.py [--batch 64]

For each conv layer shape of yolov3-tiny at 416 it builds cuDNN Frontend graphs (conv forward,
BN training forward, BN backward, conv dgrad, conv wgrad) with NCHW strides and with NHWC strides
(same logical dims), times each with CUDA events (median of 20 after warm-up) and prints one JSON
line per layout with the summed milliseconds per op kind.

    python benchmarks/layout.py --precision fp16      # fp32 (default), tf32, fp16 or bf16

``--precision`` as darknet_py runs it (nn/precision.py): tf32 keeps the tensor-core engines
fp32 removes; fp16 and bf16 give the convolutions half tensors (float32 compute) while batch
norm stays float32.
"""
import argparse
import json
import statistics

import cudnn
import cupy as cp

from darknet_py.nn.timing import event_times
from darknet_py.nn.cudnn import get_ops

F = cudnn.data_type.FLOAT
#: the convolutions' tensor type per precision, and CuPy's dtype for its buffers (bf16 as bits)
IO = {"fp32": (F, cp.float32), "tf32": (F, cp.float32),
      "fp16": (cudnn.data_type.HALF, cp.float16), "bf16": (cudnn.data_type.BFLOAT16, cp.uint16)}
# (C_in, H, K, size, stride) of yolov3-tiny's conv layers at 416
SHAPES = [(3, 416, 16, 3, 1), (16, 208, 32, 3, 1), (32, 104, 64, 3, 1), (64, 52, 128, 3, 1),
          (128, 26, 256, 3, 1), (256, 13, 512, 3, 1), (512, 13, 1024, 3, 1),
          (1024, 13, 256, 1, 1), (256, 13, 512, 3, 1), (384, 26, 256, 3, 1)]


def strides(dims, layout):
    n, c, h, w = dims
    return [c * h * w, h * w, w, 1] if layout == "nchw" else [h * w * c, 1, w * c, c]


def run(ops, build, buffers, exact):
    """Median ms of 20 runs of the graph ``build`` makes (nn/cudnn.py's graph making, with the
    heuristic's plan), after 3."""
    tensors = {}
    g = ops._graph(lambda g: tensors.update(build(g)), "FLOAT", ops._notes(exact))
    g.build_plans()
    ws = cp.empty(max(1, g.get_workspace_size()), cp.uint8)
    pack = {tensors[k]: buffers[k].data.ptr for k in tensors}
    return statistics.median(event_times(
        cp, lambda: g.execute(pack, ws, handle=ops.handle), 20, warmup=3))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=sorted(IO))
    a = p.parse_args()
    io, io_dtype = IO[a.precision]
    ops = get_ops()
    ops._bind_stream()
    for layout in ("nchw", "nhwc"):
        total = {"fprop": 0.0, "bn_fwd": 0.0, "bn_bwd": 0.0, "dgrad": 0.0, "wgrad": 0.0}
        failed = []
        for c, h, k, r, s in SHAPES:
            n = a.batch
            oh = (h + 2 * (r // 2) - r) // s + 1
            xd, wd, yd = [n, c, h, h], [k, c, r, r], [n, k, oh, oh]
            buf = {name: cp.random.standard_normal(int(cp.prod(cp.array(d))), dtype=cp.float32)
                   for name, d in (("x", xd), ("w", wd), ("y", yd), ("dy", yd), ("dx", xd),
                                   ("dw", wd), ("bx", yd), ("by", yd), ("bdx", yd))}
            for name in ("x", "w", "y", "dy", "dx", "dw"):      # the convolutions' tensors
                v = buf[name]
                buf[name] = (v.view(cp.uint32) >> 16).astype(cp.uint16) \
                    if io_dtype is cp.uint16 else v.astype(io_dtype)     # bf16: its top bits
            for name in ("s", "b", "rm", "rv", "m", "iv", "ds", "db"):
                buf[name] = cp.ones(k, cp.float32)
            pad = r // 2

            def T(g, name, d, kind="act"):
                st = strides(d, layout)
                return g.tensor(name=name, dim=d, stride=st,
                                data_type=F if name.startswith("b") else io)

            def V(g, name):
                return g.tensor(name=name, dim=[1, k, 1, 1], stride=[k, 1, 1, 1], data_type=F)

            def fprop(g):
                X, W = T(g, "x", xd), T(g, "w", wd)
                Y = g.conv_fprop(image=X, weight=W, padding=[pad, pad], stride=[s, s],
                                 dilation=[1, 1], compute_data_type=F)
                Y.set_output(True).set_dim(yd).set_stride(strides(yd, layout)).set_data_type(io)
                return {"x": X, "w": W, "y": Y}

            def dgrad(g):
                DY, W = T(g, "dy", yd), T(g, "w", wd)
                DX = g.conv_dgrad(loss=DY, filter=W, padding=[pad, pad], stride=[s, s],
                                  dilation=[1, 1], compute_data_type=F)
                DX.set_output(True).set_dim(xd).set_stride(strides(xd, layout)).set_data_type(io)
                return {"dy": DY, "w": W, "dx": DX}

            def wgrad(g):
                X, DY = T(g, "x", xd), T(g, "dy", yd)
                DW = g.conv_wgrad(image=X, loss=DY, padding=[pad, pad], stride=[s, s],
                                  dilation=[1, 1], compute_data_type=F)
                DW.set_output(True).set_dim(wd).set_stride(strides(wd, layout)).set_data_type(io)
                return {"x": X, "dy": DY, "dw": DW}

            def bn_fwd(g):
                X = T(g, "bx", yd)
                S, B, RM, RV = (V(g, nm) for nm in ("s", "b", "rm", "rv"))
                eps = g.tensor_scalar(1e-5, cudnn.scalar_type.RUNTIME_PARAM)
                mom = g.tensor_scalar(0.01, cudnn.scalar_type.RUNTIME_PARAM)
                Y, M, IV, NRM, NRV = g.batchnorm(name="bn", input=X, scale=S, bias=B,
                                                in_running_mean=RM, in_running_var=RV,
                                                epsilon=eps, momentum=mom)
                for t in (Y, M, IV, NRM, NRV):
                    t.set_output(True).set_data_type(F)
                Y.set_dim(yd).set_stride(strides(yd, layout))
                return {"bx": X, "s": S, "b": B, "rm": RM, "rv": RV, "by": Y, "m": M, "iv": IV,
                        "nrm": NRM, "nrv": NRV}

            def bn_bwd(g):
                DY, X = T(g, "bdy", yd), T(g, "bx", yd)
                S, M, IV = (V(g, nm) for nm in ("s", "m", "iv"))
                DX, DS, DB = g.batchnorm_backward(grad=DY, input=X, scale=S, mean=M,
                                                  inv_variance=IV)
                for t in (DX, DS, DB):
                    t.set_output(True).set_data_type(F)
                DX.set_dim(yd).set_stride(strides(yd, layout))
                return {"bdy": DY, "bx": X, "s": S, "m": M, "iv": IV, "bdx": DX, "ds": DS,
                        "db": DB}

            buf["nrm"], buf["nrv"], buf["bdy"] = buf["rm"], buf["rv"], buf["by"]
            for kind, build in (("fprop", fprop), ("bn_fwd", bn_fwd), ("bn_bwd", bn_bwd),
                                ("dgrad", dgrad), ("wgrad", wgrad)):
                try:
                    total[kind] += run(ops, build, buf, exact=a.precision == "fp32")
                except Exception as e:
                    failed.append(f"{kind} {c}x{h}->{k}: {str(e).splitlines()[0][:80]}")
        print(json.dumps({"layout": layout, "precision": a.precision, "batch": a.batch, "ms": {k: round(v, 3) for k, v in
                                                                     total.items()},
                          "total_ms": round(sum(total.values()), 3), "unsupported": failed}))


if __name__ == "__main__":
    main()
