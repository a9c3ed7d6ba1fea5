"""cuDNN on CuPy arrays through NVIDIA's cuDNN Frontend (``import cudnn``; CuPy 14 has no cuDNN).

The one GPU adapter the layers call: convolution forward / backward-data / backward-filter and
SPATIAL batch norm (training forward, backward, inference).  It owns the handle (bound to CuPy's
current stream), one plan per shape (built once, reused every step), one workspace buffer from
CuPy's memory pool, and turns cuDNN failures into errors naming the layer, op and shapes.

Every method returns ``None`` when cuDNN has no engine for that shape (``check_support`` fails);
the caller then uses its CuPy implementation (im2col + cuBLAS, or the xp batch-norm formulas),
after a one-time warning, so training never dies on an unsupported shape.

Exact fp32 by default: engines whose numerical notes say TENSOR_CORE or DOWN_CONVERT_INPUTS (TF32
for fp32 data) are removed before plans are built (cuBLAS's products: ``Precision.activate``);
the tf32, fp16 and bf16 precisions (nn/precision.py) keep them.

Batch-norm plans are cuDNN runtime-compiled kernels: building one costs ~140 ms per shape on an
H200 (a convolution plan ~5 ms), which multi-scale training (``random=1``, a new input size every
10 iterations) pays for every layer at every size.  They are kept on disk once built
(``plan_cache_dir``: ``$DARKNET_PY_CACHE``, else ``~/.cache/darknet_py``; ``DARKNET_PY_CACHE=off``
disables it) and read back in ~20 ms, keyed by everything the plan depends on: the op and its
shapes and scalars, cuDNN's version and the GPU.

A convolution's plan is chosen by timing, as PyTorch's ``cudnn.benchmark`` does, because
cuDNN's heuristic choice can be far from its fastest engine (yolov3-tiny's 384->256 3x3
convolution at 26x26, b64, fp32 on an H200: 2.81 ms against 0.89).  The candidates are the
heuristic choice and every plan left once NONDETERMINISTIC engines are removed too (those
accumulate with atomics: two runs would differ), each timed on the call's own operands; the
choice is kept in the same cache (a plan index and its engine's name, rebuilt in ~5 ms), so a
machine times each shape once.  Without a cache (``DARKNET_PY_CACHE=off``), or while a CUDA
graph is being captured (no timing may happen then), the heuristic choice serves.

Batch norm as Darknet calls cuDNN (epsilon and exponential average factor come from
``layers/batchnorm.py``, the one place they are defined), running variance fed with the unbiased batch variance, normalisation with the biased one; the backward returns
dscale and dbias, which the caller *adds* to ``scale_updates``/``bias_updates`` -- cuDNN never
changes scales or biases.
"""

import hashlib
import os
import sys
import warnings
from pathlib import Path

from ..atomic import atomic_write
from ..errors import DarknetError
from . import kernels
from .timing import event_times

_OPS = None          # one CudnnOps per process (device 0 or the one chosen with -i)
_UNAVAILABLE = None  # the reason the frontend could not be loaded


def get_ops():
    """The CudnnOps of this process, or None when the cuDNN Frontend cannot be used."""
    global _OPS, _UNAVAILABLE
    if _OPS is not None or _UNAVAILABLE is not None:
        return _OPS
    try:
        _OPS = CudnnOps()
    except Exception as e:   # ImportError, no libcudnn, no GPU
        _UNAVAILABLE = f"{type(e).__name__}: {e}"
        warnings.warn(f"cuDNN Frontend unavailable ({_UNAVAILABLE}); using CuPy kernels",
                      RuntimeWarning, stacklevel=2)
    return _OPS


#: every tensor a plan names, by uid: a plan read back from disk is executed by uid
_UIDS = {name: uid for uid, name in enumerate(
    "x w y dy dx dw s b rm rv m iv nrm nrv ds db".split(), start=1)}
#: the plans worth keeping on disk (runtime-compiled: reading back is ~7x faster than building)
_KEPT = ("bn_fwd", "bn_bwd", "bn_inf")
#: the plans chosen by timing (the choice kept on disk)
_TUNED = ("fprop", "dgrad", "wgrad")
#: timed runs of each candidate plan (after one untimed run); the fastest run counts
TUNE_RUNS = 3
#: cuDNN's data type of a convolution's tensors, by precision (nn/precision.py)
_IO_TYPE = {"fp32": "FLOAT", "tf32": "FLOAT", "fp16": "HALF", "bf16": "BFLOAT16"}
#: their memory layout, (training, inference), by measurement on an H200: the half tensor-core
#: engines are ~1.5-1.9x faster NHWC (benchmarks/layout.py); tf32's too (fprop 2.5 ms against
#: 4.1 over yolov3-tiny's at b64), which wins inference (b64 6.57 -> 5.73 ms) but not training,
#: where each of fprop, dgrad and wgrad transposes its float32 operands (27.7 -> 30.5 ms); exact
#: fp32's convolutions are slower NHWC (fprop 11.8 ms against 10.8)
_LAYOUT = {"fp32": ("nchw", "nchw"), "tf32": ("nchw", "nhwc"), "fp16": ("nhwc", "nhwc"),
           "bf16": ("nhwc", "nhwc")}


def plan_cache_dir():
    """Where built batch-norm plans are kept (None: not kept)."""
    where = os.environ.get("DARKNET_PY_CACHE", "")
    if where.lower() in ("off", "0", "none"):
        return None
    root = Path(where) if where else Path.home() / ".cache" / "darknet_py"
    return root / "cudnn-plans"


def _pair(stride):
    """(stride_y, stride_x) from an int or a pair."""
    return (stride, stride) if isinstance(stride, int) else tuple(stride)


def _strides(shape, layout="nchw"):
    """The element strides of a C-contiguous array of ``shape``, or with ``layout`` "nhwc" of
    an (N, C, H, W) one whose memory is (N, H, W, C)."""
    if layout == "nhwc":
        n, c, h, w = shape
        return [h * w * c, 1, w * c, c]
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return list(reversed(out))


def _laid_out(cp, a, layout):
    """``a`` with the memory ``layout`` (a copy when it has another)."""
    if layout == "nhwc":
        if a.transpose(0, 2, 3, 1).flags.c_contiguous:
            return a
        if a.dtype == cp.float32:                   # tf32's operands
            return kernels.to_nhwc(a)
        return cp.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return cp.ascontiguousarray(a)


#: the cuDNN frontend's python norm-engine families (cudnn/engines/manifest.py MANIFEST)
_TORCH_NORM_MODULES = ("cudnn.norm.fprop.engine", "cudnn.norm.bprop.engine",
                       "cudnn.norm.graph_analyzer")


class _Plan:
    """A graph ready to run: its built plan (``index`` None) or the plan at ``index``."""
    __slots__ = ("graph", "workspace", "index")

    def __init__(self, graph, workspace, index=None):
        self.graph, self.workspace, self.index = graph, workspace, index

    @classmethod
    def at(cls, graph, index):
        return cls(graph, graph.get_workspace_size_plan_at_index(index), index)


class CudnnOps:
    def __init__(self):
        import cudnn
        import cupy
        if "torch" not in sys.modules:
            # the frontend asks of each tensor whether it is PyTorch's, importing torch to find
            # out (seconds of start-up where torch is installed); no torch tensor exists before
            # torch is imported, and darknet_py hands the frontend raw pointers
            from cudnn import datatypes
            datatypes.torch_available = False
            # and planning a batch-norm graph loads the frontend's python norm engines
            # (sm100 CuTe kernels) and their analyzer, which import torch: blocked, they are
            # absent as where torch is not installed (cudnn/engines/manifest.py instantiate,
            # _resolve: "a supported configuration"), so the same backend engines serve
            # whether torch is installed or not, and a first run's BN plans skip its import
            for module in _TORCH_NORM_MODULES:
                sys.modules.setdefault(module, None)
        self.cudnn, self.cp = cudnn, cupy
        self.handle = cudnn.create_handle()
        self._stream = None
        self._plans = {}
        self._warned = set()
        self._said_timing = False
        self._workspace = cupy.empty(1, dtype=cupy.uint8)
        self.F = cudnn.data_type.FLOAT
        self._device_tag = None

    # -- plumbing ----------------------------------------------------------------------------
    def _bind_stream(self):
        ptr = self.cp.cuda.get_current_stream().ptr
        if ptr != self._stream:
            self.cudnn.set_stream(handle=self.handle, stream=ptr)
            self._stream = ptr

    def _tensor(self, g, name, shape, io="FLOAT", layout="nchw"):
        return g.tensor(name=name, dim=list(shape), stride=_strides(shape, layout),
                        data_type=getattr(self.cudnn.data_type, io), uid=_UIDS[name])

    def _vec(self, g, name, c):
        return g.tensor(name=name, dim=[1, c, 1, 1], stride=[c, 1, 1, 1], data_type=self.F,
                        uid=_UIDS[name])

    def _outputs(self, **tensors):
        """Marks a graph's outputs: fp32, their uids."""
        for name, t in tensors.items():
            t.set_output(True).set_data_type(self.F).set_uid(_UIDS[name])

    def _plan_file(self, key):
        where = plan_cache_dir()
        if where is None or key[0] not in _KEPT + _TUNED:
            return None
        if self._device_tag is None:
            props = self.cp.cuda.runtime.getDeviceProperties(self.cp.cuda.Device().id)
            self._device_tag = (f"{props['name'].decode()} sm{props['major']}{props['minor']} "
                                f"cudnn {self.cudnn.backend_version()} fe {self.cudnn.__version__}")
        digest = hashlib.sha256(repr((self._device_tag, key)).encode()).hexdigest()[:32]
        return where / f"{key[0]}-{digest}.plan"

    def _graph(self, build, io, notes):
        """A graph from ``build`` with its candidate plans, ``notes`` (numerical notes)
        removed; raises when cuDNN has no engine left."""
        cudnn = self.cudnn
        g = cudnn.pygraph(io_data_type=getattr(cudnn.data_type, io),
                          intermediate_data_type=self.F, compute_data_type=self.F,
                          handle=self.handle)
        build(g)
        g.validate()
        g.build_operation_graph()
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        if notes:
            g.deselect_numeric_notes(notes)
        g.check_support()
        return g

    def _notes(self, exact, deterministic=False):
        note = self.cudnn.numerical_note
        notes = [note.TENSOR_CORE, note.DOWN_CONVERT_INPUTS] if exact else []
        return notes + [note.NONDETERMINISTIC] if deterministic else notes

    def _heuristic(self, build, io, exact):
        g = self._graph(build, io, self._notes(exact))
        g.build_plans()
        return _Plan(g, g.get_workspace_size())

    def _load(self, path, build, io, exact):
        """A plan read back from ``path``, or None (absent, unreadable or of another engine:
        built or timed again and rewritten)."""
        try:
            data = path.read_bytes()
            if path.name.split("-")[0] in _TUNED:       # "heuristic", or "index engine-name"
                words = data.decode().split()
                if words == ["heuristic"]:
                    return self._heuristic(build, io, exact)
                index, name = int(words[0]), words[1]
                plan = self._plan_at(build, io, exact, index)
                return plan if plan.graph.get_plan_name_at_index(index) == name else None
            g = self.cudnn.pygraph(handle=self.handle)
            g.deserialize(data)
            return _Plan(g, g.get_workspace_size())
        except Exception:
            return None

    def _plan(self, key, build, what, io="FLOAT", exact=True, pointers=None):
        """The cached plan for ``key``; built on first use (or read back from the disk cache);
        None when cuDNN has no engine.  ``pointers`` (a convolution's operands, by name): the
        plan is the fastest on them of the candidates (module docstring)."""
        if key in self._plans:
            return self._plans[key]
        path = self._plan_file(key)
        if path is not None and path.exists():
            plan = self._load(path, build, io, exact)
            if plan is not None:
                self._plans[key] = plan
                return plan
        tune = pointers is not None and path is not None and not self._capturing()
        if tune and not self._said_timing:      # seconds a size: say why the pause
            self._said_timing = True
            print(f"cuDNN: timing the convolution plans of shapes new to this GPU (once; kept "
                  f"in {path.parent})", file=sys.stderr, flush=True)
        try:
            plan, kept = self._tune(build, io, exact, pointers) if tune else \
                (self._heuristic(build, io, exact), None)
        except Exception as e:
            plan = None
            if what not in self._warned:
                self._warned.add(what)
                warnings.warn(f"cuDNN has no engine for {what} ({str(e).splitlines()[0]}); "
                              "using the CuPy kernel for it", RuntimeWarning, stacklevel=3)
        else:
            if path is not None and (kept is not None or key[0] in _KEPT):
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(path, [kept if kept is not None
                                        else bytes(plan.graph.serialize())])
                except (OSError, RuntimeError) as e:     # a read-only home: build each time
                    warnings.warn(f"cannot keep cuDNN plans in {path.parent} ({e}); set "
                                  "DARKNET_PY_CACHE to a writable folder", RuntimeWarning,
                                  stacklevel=3)
        self._plans[key] = plan
        return plan

    def _capturing(self):
        """Whether the current stream is capturing a CUDA graph (then nothing may wait)."""
        try:
            return self.cp.cuda.get_current_stream().is_capturing()
        except Exception:       # asked of the legacy stream while another one captures
            return True

    def _tune(self, build, io, exact, pointers):
        """The fastest of the heuristic choice and the deterministic plans, run on
        ``pointers``; returns it and what the disk cache keeps of the choice (bytes)."""
        heuristic = self._heuristic(build, io, exact)
        fastest, winner = self._time(heuristic, pointers), None
        try:
            g = self._graph(build, io, self._notes(exact, deterministic=True))
            g.build_plans(self.cudnn.build_plan_policy.ALL)
        except Exception:               # no deterministic engine: the heuristic choice
            return heuristic, b"heuristic\n"
        for index in range(g.get_execution_plan_count()):
            try:
                ms = self._time(_Plan.at(g, index), pointers)
            except Exception:           # not built (unsupported), or its workspace too big
                continue
            if ms < fastest:
                fastest, winner = ms, index
        if winner is None:
            return heuristic, b"heuristic\n"
        kept = f"{winner} {g.get_plan_name_at_index(winner)}\n".encode()
        return self._plan_at(build, io, exact, winner), kept     # the others' plans let go

    def _plan_at(self, build, io, exact, index):
        """The deterministic graph's plan number ``index``, built alone."""
        g = self._graph(build, io, self._notes(exact, deterministic=True))
        g.build_plan_at_index(index)
        return _Plan.at(g, index)

    def _time(self, plan, pointers):
        """The fastest of TUNE_RUNS runs of ``plan`` (ms), after one untimed run."""
        workspace = self.cp.empty(max(1, plan.workspace), dtype=self.cp.uint8)
        return min(event_times(self.cp, lambda: self._run(plan, pointers, workspace),
                               TUNE_RUNS, warmup=1))

    def _run(self, plan, pointers, workspace):
        self._bind_stream()
        pack = {_UIDS[name]: ptr for name, ptr in pointers.items()}
        if plan.index is None:
            plan.graph.execute(pack, workspace, handle=self.handle)
        else:
            plan.graph.execute_plan_at_index(pack, workspace, plan.index, handle=self.handle)

    def _execute(self, plan, pointers, what):
        if plan.workspace > self._workspace.size:
            self._workspace = self.cp.empty(plan.workspace, dtype=self.cp.uint8)
        try:
            self._run(plan, pointers, self._workspace)
        except Exception as e:
            raise DarknetError(f"cuDNN failed in {what}: {str(e).splitlines()[0]}") from None

    # -- convolution ---------------------------------------------------------------------------
    # ``math`` (nn/precision.py): fp32 keeps exact engines only, tf32 allows the tensor-core
    # ones, fp16/bf16 take and give half tensors (float16, or bfloat16 bits in uint16 arrays)
    # with float32 accumulation.

    def conv_forward(self, x, w, stride, pad, groups, what="conv forward", dilation=1,
                     math="fp32", train=True):
        """``stride``: an int or (stride_y, stride_x); ``pad`` zeros on every side; taps
        ``dilation`` apart (AlexeyAB's stride_x/stride_y/dilation); ``train``: part of a
        training pass (the layout may differ: ``_LAYOUT``)."""
        n, c, h, wd = x.shape
        k, cg, r, s = w.shape
        sy, sx = _pair(stride)
        oh = (h + 2 * pad - dilation * (r - 1) - 1) // sy + 1
        ow = (wd + 2 * pad - dilation * (s - 1) - 1) // sx + 1
        return self._conv("fprop", dict(x=x, w=w), "y", (n, k, oh, ow), (sy, sx), pad,
                          dilation, math, f"{what} {x.shape}*{w.shape}", train)

    def conv_backward_data(self, dy, w, x_shape, stride, pad, groups, what="conv dgrad",
                           dilation=1, math="fp32"):
        return self._conv("dgrad", dict(dy=dy, w=w), "dx", tuple(x_shape), _pair(stride), pad,
                          dilation, math, f"{what} {dy.shape}*{w.shape}")

    def conv_backward_filter(self, x, dy, w_shape, stride, pad, groups, what="conv wgrad",
                             dilation=1, math="fp32"):
        return self._conv("wgrad", dict(x=x, dy=dy), "dw", tuple(w_shape), _pair(stride), pad,
                          dilation, math, f"{what} {x.shape}/{dy.shape}")

    def _conv(self, op, inputs, out, out_shape, stride, pad, dilation, math, what, train=True):
        """One convolution graph: ``op`` fprop (x, w -> y), dgrad (dy, w -> dx) or wgrad
        (x, dy -> dw); the output allocated here, of the inputs' dtype."""
        (a, first), (b, second) = inputs.items()
        io, layout = _IO_TYPE[math], _LAYOUT[math][0 if train else 1]
        key = (op, first.shape, second.shape, out_shape, stride, pad, dilation, math, layout)

        def build(g):
            A = self._tensor(g, a, first.shape, io, layout)
            B = self._tensor(g, b, second.shape, io, layout)
            geometry = dict(padding=[pad, pad], stride=list(stride),
                            dilation=[dilation, dilation], compute_data_type=self.F)
            if op == "fprop":
                Y = g.conv_fprop(image=A, weight=B, **geometry)
            elif op == "dgrad":
                Y = g.conv_dgrad(loss=A, filter=B, **geometry)
            else:
                Y = g.conv_wgrad(image=A, loss=B, **geometry)
            Y.set_output(True).set_uid(_UIDS[out]).set_dim(list(out_shape))
            Y.set_stride(_strides(out_shape, layout))
            Y.set_data_type(getattr(self.cudnn.data_type, io))
            return A, B, Y

        cp = self.cp
        first, second = _laid_out(cp, first, layout), _laid_out(cp, second, layout)
        if layout == "nhwc":
            n, c, h, w = out_shape
            result = cp.empty((n, h, w, c), dtype=first.dtype).transpose(0, 3, 1, 2)
        else:
            result = cp.empty(out_shape, dtype=first.dtype)
        pointers = {a: first.data.ptr, b: second.data.ptr, out: result.data.ptr}
        plan = self._plan(key, build, what, io=io, exact=math == "fp32", pointers=pointers)
        if plan is None:
            return None
        self._execute(plan, pointers, what)
        return result

    # -- batch normalization (SPATIAL) -----------------------------------------------------
    def batchnorm_train(self, x, scales, biases, rolling_mean, rolling_variance, epsilon,
                        momentum, what="batchnorm forward"):
        """y, saved mean, saved inverse std; the rolling statistics are updated in place
        (``momentum``: cuDNN's exponential average factor)."""
        n, c, h, w = x.shape
        key = ("bn_fwd", x.shape, epsilon, momentum)
        cudnn = self.cudnn

        def build(g):
            X = self._tensor(g, "x", x.shape)
            S, B, RM, RV = (self._vec(g, nm, c) for nm in ("s", "b", "rm", "rv"))
            eps = g.tensor_scalar(epsilon, cudnn.scalar_type.RUNTIME_PARAM)
            mom = g.tensor_scalar(momentum, cudnn.scalar_type.RUNTIME_PARAM)
            Y, M, IV, NRM, NRV = g.batchnorm(name="bn", input=X, scale=S, bias=B,
                                            in_running_mean=RM, in_running_var=RV,
                                            epsilon=eps, momentum=mom)
            Y.set_dim(list(x.shape)).set_stride(_strides(x.shape))
            self._outputs(y=Y, m=M, iv=IV, nrm=NRM, nrv=NRV)

        plan = self._plan(key, build, f"{what} {x.shape}")
        if plan is None:
            return None
        cp = self.cp
        x = cp.ascontiguousarray(x)
        y = cp.empty_like(x)
        mean = cp.empty(c, dtype=x.dtype)
        inv_std = cp.empty(c, dtype=x.dtype)
        self._execute(plan, {"x": x.data.ptr, "s": scales.data.ptr, "b": biases.data.ptr,
                             "rm": rolling_mean.data.ptr, "rv": rolling_variance.data.ptr,
                             "y": y.data.ptr, "m": mean.data.ptr, "iv": inv_std.data.ptr,
                             "nrm": rolling_mean.data.ptr, "nrv": rolling_variance.data.ptr},
                      what)
        return y, mean, inv_std

    def batchnorm_backward(self, dy, x, scales, mean, inv_std, what="batchnorm backward"):
        """dx, dscale, dbias (with Darknet's delta as dy they are negative gradients)."""
        n, c, h, w = x.shape
        key = ("bn_bwd", x.shape)

        def build(g):
            DY, X = self._tensor(g, "dy", dy.shape), self._tensor(g, "x", x.shape)
            S, M, IV = (self._vec(g, nm, c) for nm in ("s", "m", "iv"))
            DX, DS, DB = g.batchnorm_backward(grad=DY, input=X, scale=S, mean=M,
                                              inv_variance=IV)
            DX.set_dim(list(x.shape)).set_stride(_strides(x.shape))
            self._outputs(dx=DX, ds=DS, db=DB)

        plan = self._plan(key, build, f"{what} {x.shape}")
        if plan is None:
            return None
        cp = self.cp
        dy, x = cp.ascontiguousarray(dy), cp.ascontiguousarray(x)
        dx = cp.empty_like(x)
        ds = cp.empty(c, dtype=x.dtype)
        db = cp.empty(c, dtype=x.dtype)
        self._execute(plan, {"dy": dy.data.ptr, "x": x.data.ptr, "s": scales.data.ptr,
                             "m": mean.data.ptr, "iv": inv_std.data.ptr, "dx": dx.data.ptr,
                             "ds": ds.data.ptr, "db": db.data.ptr}, what)
        return dx, ds, db

    def batchnorm_inference(self, x, rolling_mean, inv_std, scales, biases,
                            what="batchnorm inference"):
        n, c, h, w = x.shape
        key = ("bn_inf", x.shape)

        def build(g):
            X = self._tensor(g, "x", x.shape)
            M, IV, S, B = (self._vec(g, nm, c) for nm in ("m", "iv", "s", "b"))
            Y = g.batchnorm_inference(input=X, mean=M, inv_variance=IV, scale=S, bias=B)
            Y.set_dim(list(x.shape)).set_stride(_strides(x.shape))
            self._outputs(y=Y)

        plan = self._plan(key, build, f"{what} {x.shape}")
        if plan is None:
            return None
        cp = self.cp
        x = cp.ascontiguousarray(x)
        y = cp.empty_like(x)
        self._execute(plan, {"x": x.data.ptr, "m": rolling_mean.data.ptr, "iv": inv_std.data.ptr,
                             "s": scales.data.ptr, "b": biases.data.ptr, "y": y.data.ptr}, what)
        return y
