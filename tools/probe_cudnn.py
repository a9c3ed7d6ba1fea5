"""Diagnostics: what the installed cuDNN Frontend offers (run on a GPU machine)."""
import cupy as cp
import cudnn
import numpy as np

print("frontend", cudnn.__version__, "backend", cudnn.backend_version())
print("pygraph methods:", sorted(m for m in dir(cudnn.pygraph) if not m.startswith("_")))
print("module:", sorted(m for m in dir(cudnn) if not m.startswith("_")))
for enum in ("numerical_note", "behavior_note", "heur_mode", "data_type", "build_plan_policy"):
    if hasattr(cudnn, enum):
        print(enum, [m for m in dir(getattr(cudnn, enum)) if not m.startswith("_")])

h = cudnn.create_handle()
cudnn.set_stream(handle=h, stream=cp.cuda.get_current_stream().ptr)
F = cudnn.data_type.FLOAT


def strides(shape):
    s = np.cumprod((1,) + tuple(shape[::-1]))[:-1][::-1]
    return [int(v) for v in s]


def conv_test(n, c, hh, ww, k, r, stride, pad, groups):
    x = cp.random.standard_normal((n, c, hh, ww), dtype=cp.float32)
    w = cp.random.standard_normal((k, c // groups, r, r), dtype=cp.float32)
    g = cudnn.pygraph(io_data_type=F, intermediate_data_type=F, compute_data_type=F, handle=h)
    X = g.tensor(name="x", dim=list(x.shape), stride=strides(x.shape), data_type=F)
    W = g.tensor(name="w", dim=list(w.shape), stride=strides(w.shape), data_type=F)
    Y = g.conv_fprop(image=X, weight=W, padding=[pad, pad], stride=[stride, stride],
                     dilation=[1, 1], compute_data_type=F)
    Y.set_output(True)
    Y.set_dim([n, k, (hh + 2 * pad - r) // stride + 1, (ww + 2 * pad - r) // stride + 1])
    Y.set_stride(strides(Y.get_dim()))
    g.validate(); g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support(); g.build_plans()
    dims = Y.get_dim()
    y = cp.empty(dims, dtype=cp.float32)
    ws = cp.empty(max(1, g.get_workspace_size()), dtype=cp.uint8)
    g.execute({X: x.data.ptr, W: w.data.ptr, Y: y.data.ptr}, ws, handle=h)
    cp.cuda.get_current_stream().synchronize()
    import torch
    ref = torch.nn.functional.conv2d(torch.as_tensor(x.get(), dtype=torch.float64),
                                     torch.as_tensor(w.get(), dtype=torch.float64),
                                     stride=stride, padding=pad, groups=groups).numpy()
    err = np.abs(y.get() - ref).max() / np.abs(ref).max()
    print("conv", (n, c, hh, ww, k, r, stride, pad, groups), "out", dims, "rel err", err,
          "plans", g.get_execution_plan_count())


for args in [(8, 16, 32, 32, 32, 3, 1, 1, 1), (2, 3, 13, 13, 8, 3, 2, 1, 1),
             (2, 8, 9, 9, 8, 3, 1, 1, 8), (2, 8, 9, 9, 4, 1, 2, 0, 2)]:
    try:
        conv_test(*args)
    except Exception as e:
        print("conv", args, "FAILED", type(e).__name__, e)

# batch norm training, fp32 io
print("scalar_type:", [m for m in dir(cudnn.scalar_type) if not m.startswith("_")])
print("bn bwd doc:", cudnn.pygraph.batchnorm_backward.__doc__, "infer doc:", cudnn.pygraph.batchnorm_inference.__doc__)
try:
    n, c, hh, ww = 4, 8, 5, 5
    x = cp.random.standard_normal((n, c, hh, ww), dtype=cp.float32)
    g = cudnn.pygraph(io_data_type=F, intermediate_data_type=F, compute_data_type=F, handle=h)
    X = g.tensor(name="x", dim=[n, c, hh, ww], stride=strides((n, c, hh, ww)), data_type=F)
    vec = lambda name: g.tensor(name=name, dim=[1, c, 1, 1], stride=[c, 1, 1, 1], data_type=F)
    S, B, RM, RV = vec("s"), vec("b"), vec("rm"), vec("rv")
    eps = np.full((1, 1, 1, 1), 1e-5, dtype=np.float32)
    mom = np.full((1, 1, 1, 1), 0.01, dtype=np.float32)
    try:
        EPS = g.tensor_scalar(1e-5, cudnn.scalar_type.RUNTIME_PARAM); MOM = g.tensor_scalar(0.01, cudnn.scalar_type.RUNTIME_PARAM)
        print("tensor_scalar worked")
    except Exception as e:
        print("tensor_scalar failed", e)
        EPS = g.tensor_like(eps); MOM = g.tensor_like(mom)
    Y, SM, SIV, NRM, NRV = g.batchnorm(name="bn", input=X, scale=S, bias=B, in_running_mean=RM,
                                       in_running_var=RV, epsilon=EPS, momentum=MOM)
    for t in (Y, SM, SIV, NRM, NRV):
        t.set_output(True).set_data_type(F)
    g.validate(); g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support(); g.build_plans()
    s = cp.ones((1, c, 1, 1), cp.float32); b = cp.zeros_like(s)
    rm = cp.zeros_like(s); rv = cp.zeros_like(s)
    y = cp.empty_like(x); sm = cp.empty_like(s); siv = cp.empty_like(s)
    ws = cp.empty(max(1, g.get_workspace_size()), dtype=cp.uint8)
    g.execute({X: x.data.ptr, S: s.data.ptr, B: b.data.ptr, RM: rm.data.ptr, RV: rv.data.ptr,
               Y: y.data.ptr, SM: sm.data.ptr, SIV: siv.data.ptr,
               NRM: rm.data.ptr, NRV: rv.data.ptr}, ws, handle=h)
    cp.cuda.get_current_stream().synchronize()
    xm = x.get().astype(np.float64)
    mu = xm.mean(axis=(0, 2, 3)); var = xm.var(axis=(0, 2, 3))
    ref = (xm - mu.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5)
    print("bn fp32 NCHW ok: y err", np.abs(y.get() - ref).max(), "inv var err",
          np.abs(siv.get().ravel() - 1 / np.sqrt(var + 1e-5)).max(),
          "rv (unbiased*0.01) err", np.abs(rv.get().ravel() - 0.01 * var * 100 / 99).max(),
          "rv biased err", np.abs(rv.get().ravel() - 0.01 * var).max())
except Exception as e:
    import traceback; traceback.print_exc()
