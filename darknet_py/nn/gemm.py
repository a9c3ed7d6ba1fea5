"""Matrix products on the GPU through cuBLAS called directly (ctypes), for [connected] layers.

CuPy refuses every cuBLAS call while a stream is being captured (``NotImplementedError:
calling cuBLAS API during stream capture is currently unsupported``), even though cuBLAS
itself can be captured, so a network with a [connected] layer could not replay its training
step from a CUDA graph (nn/graphs.py).  This module keeps a cuBLAS handle of its own per
device, with a workspace of its own (cuBLAS's graph rule: a workspace set by the caller, so
that a capture records no allocation), and calls ``cublasGemmEx`` on CuPy's current stream.
Eager and captured passes run the same call, so they compute the same bits.

    matmul(a, b)                          # a @ b, a new C-contiguous array
    matmul(a, b, out=c, accumulate=True)  # c += a @ b in the product (beta = 1)

``a`` and ``b`` are 2-D float32 CuPy arrays, C- or F-contiguous (``w.T`` of a C-contiguous
``w`` is F-contiguous: no copy).  ``tf32=True`` lets the tensor cores round the operands to
TF32 (``--precision tf32``); otherwise the product is IEEE float32 (CUBLAS_COMPUTE_32F).
"""

import ctypes
import threading

import numpy as np

# cublas_api.h / library_types.h
_OP_N, _OP_T = 0, 1
_R_32F = 0
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32 = 68, 77
_GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20          # NVIDIA's advice for Hopper (cuBLAS docs, cublasSetWorkspace)

_lib = None
_handles = {}                       # device id -> _Handle
_lock = threading.Lock()


class CublasError(RuntimeError):
    pass


def _library():
    """The libcublas CuPy has loaded (the same library, not a second copy)."""
    global _lib
    if _lib is None:
        from cupy_backends.cuda.libs import cublas  # noqa: F401  (loads libcublas)
        path = None
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = line.rsplit("/", 1)[-1].strip()
                if name.startswith("libcublas.so"):
                    path = line.split(None, 5)[-1].strip()
                    break
        lib = ctypes.CDLL(path or "libcublas.so.12")
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.cublasSetStream_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cublasSetWorkspace_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.cublasGemmEx.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        _lib = lib
    return _lib


def _check(status, what):
    if status != 0:
        raise CublasError(f"cuBLAS {what} failed with status {status}")


class _Handle:
    """A cuBLAS handle of one device, its workspace and the stream it is bound to."""

    def __init__(self, cupy):
        lib = _library()
        self.ptr = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.ptr)), "create")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)
        self.stream = None

    def bind(self, cupy):
        """On CuPy's current stream; cublasSetStream resets the workspace, so set it after."""
        stream = cupy.cuda.get_current_stream().ptr
        if stream != self.stream:
            lib = _library()
            _check(lib.cublasSetStream_v2(self.ptr, ctypes.c_void_p(stream)), "set stream")
            _check(lib.cublasSetWorkspace_v2(self.ptr, ctypes.c_void_p(self.workspace.data.ptr),
                                             self.workspace.nbytes), "set workspace")
            self.stream = stream
        return self.ptr


def _handle(cupy):
    device = cupy.cuda.Device().id
    with _lock:
        h = _handles.get(device)
        if h is None:
            h = _handles[device] = _Handle(cupy)
    return h.bind(cupy)


def _operand(m):
    """(pointer, leading dimension, op) giving m^T as cuBLAS's column-major operand."""
    if m.flags.c_contiguous:
        return m.data.ptr, max(m.shape[1], 1), _OP_N
    return m.data.ptr, max(m.shape[0], 1), _OP_T


_ONE, _ZERO = ctypes.c_float(1.0), ctypes.c_float(0.0)


def matmul(a, b, out=None, accumulate=False, tf32=False):
    """``a @ b`` (or ``out += a @ b`` with ``accumulate``) for 2-D float32 CuPy arrays.

    Row-major C = A B is column-major C^T = B^T A^T, so cuBLAS gets B's and A's transposes as
    they lie in memory (see _operand) and writes C^T, i.e. the C-contiguous C."""
    import cupy
    if a.dtype != np.float32 or b.dtype != np.float32:
        raise TypeError(f"gemm.matmul takes float32 arrays, not {a.dtype} and {b.dtype}")
    m, k = a.shape
    k2, n = b.shape
    if k != k2:
        raise ValueError(f"gemm.matmul: shapes {a.shape} and {b.shape} do not chain")
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        a = cupy.ascontiguousarray(a)
    if not (b.flags.c_contiguous or b.flags.f_contiguous):
        b = cupy.ascontiguousarray(b)
    if out is None:
        if accumulate:
            raise ValueError("gemm.matmul: accumulate=True needs out=")
        out = cupy.empty((m, n), dtype=np.float32)
    elif out.shape != (m, n) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"gemm.matmul: out must be a C-contiguous float32 {(m, n)} array")
    if m == 0 or n == 0:
        return out
    if k == 0:
        if not accumulate:
            out.fill(0)
        return out
    handle = _handle(cupy)
    pb, ldb, opb = _operand(b)
    pa, lda, opa = _operand(a)
    beta = _ONE if accumulate else _ZERO
    _check(_library().cublasGemmEx(
        handle, opb, opa, n, m, k, ctypes.byref(_ONE), ctypes.c_void_p(pb), _R_32F, ldb,
        ctypes.c_void_p(pa), _R_32F, lda, ctypes.byref(beta), ctypes.c_void_p(out.data.ptr),
        _R_32F, n, _COMPUTE_32F_FAST_TF32 if tf32 else _COMPUTE_32F, _GEMM_DEFAULT), "gemm")
    return out
