"""The one backend seam: arrays are NumPy on the CPU and CuPy on the GPU.

Layers call ``xp_of(array)`` (or use ``net.xp``) and write their math once.  A network lives on
one ``Device`` (``net.device``); "is this on the GPU" is ``device.on_gpu`` for a network and
``on_gpu(array)`` for an array.  Importing this module never imports CuPy;
``resolve_device("gpu")`` does, and fails with a clear message without it.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import DarknetError

DEVICE_NAMES = ("cpu", "gpu", "auto")


@dataclass(frozen=True)
class Device:
    """Where a network's arrays live: ``kind`` ``cpu`` or ``gpu``, ``index`` the GPU (Darknet's
    ``-i N``; 0 on the CPU).  A resolved value: ``resolve_device`` checked that it exists."""

    kind: str = "cpu"
    index: int = 0

    def __post_init__(self):
        if self.kind not in ("cpu", "gpu"):
            raise DarknetError(f"unknown device kind '{self.kind}'; expected cpu or gpu")

    @property
    def on_gpu(self):
        return self.kind == "gpu"

    @property
    def xp(self):
        """The array module: NumPy, or CuPy (the caller's thread uses this GPU after
        ``resolve_device``)."""
        if not self.on_gpu:
            return np
        import cupy
        return cupy


CPU = Device()


def xp_of(array):
    """NumPy or CuPy, whichever module owns ``array``."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return np
    module = type(array).__module__
    if module.startswith("cupy"):
        import cupy
        return cupy
    return np


def on_gpu(array):
    """True for a CuPy array."""
    return not isinstance(array, np.ndarray) and type(array).__module__.startswith("cupy")


def resolve_device(device="cpu", index=0):
    """The ``Device`` for ``cpu``, ``gpu`` or ``auto`` (the GPU when CuPy sees one), or a
    ``Device`` itself; ``index`` picks the GPU (Darknet's ``-i N``), and that GPU becomes the
    calling thread's current one.  (What its products may round to is the network's
    precision: nn/precision.py.)
    """
    if isinstance(device, Device):
        device, index = device.kind, device.index
    if device in (None, "cpu"):
        return CPU
    if device not in ("gpu", "auto"):
        raise DarknetError(f"unknown device '{device}'; expected {', '.join(DEVICE_NAMES)}")
    try:
        import cupy
        found = cupy.cuda.runtime.getDeviceCount() > index
        if found:
            cupy.cuda.Device(index).use()
    except ImportError:
        if device == "gpu":
            raise DarknetError("the GPU engine is not installed (no CuPy): pip install "
                               "'darknet_py[gpu]' (CuPy for CUDA 12, cuDNN), or train on the "
                               "CPU with --device cpu") from None
        return CPU
    except Exception as e:  # CUDA driver errors
        if device == "gpu":
            raise DarknetError(f"--device gpu needs a CUDA GPU that CuPy can use ({e})") \
                from None
        return CPU
    if found:
        return Device("gpu", index)
    if device == "gpu":
        raise DarknetError(f"--device gpu: no CUDA GPU with index {index} found")
    return CPU


def to_numpy(array):
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    if array is None or isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    return get() if get is not None else np.asarray(array)


def host_copies(arrays, copy=True):
    """NumPy copies of ``arrays`` (NumPy or CuPy, any mix; None stays None), taken now: the
    CuPy ones gathered on the device and fetched in one transfer per dtype.  Each fetch waits
    for the GPU, and a backup reads a network's ~100-200 arrays: one wait, not one per array.
    ``copy=False``: NumPy arrays come back as they are (for a caller that reads them at once)."""
    host = np.array if copy else np.asarray
    out = [None if a is None or on_gpu(a) else host(a) for a in arrays]
    groups = {}
    for i, a in enumerate(arrays):
        if a is not None and on_gpu(a):
            groups.setdefault(a.dtype, []).append(i)
    for idx in groups.values():
        flat = to_numpy(xp_of(arrays[idx[0]]).concatenate([arrays[i].ravel() for i in idx]))
        at = 0
        for i in idx:
            out[i] = flat[at:at + arrays[i].size].reshape(arrays[i].shape)
            at += arrays[i].size
    return out


class HostCopy:
    """NumPy copies of ``arrays`` (NumPy or CuPy; any shape) as the GPU's work stands now,
    read later with ``get()``.  The CuPy ones are copied into pinned host memory by transfers
    queued now on the current stream, and ``get()`` waits for that point of the stream only:
    a plain ``.get()`` made later would queue its transfer behind everything queued since and
    wait for it too -- for a training loss read one iteration late, the whole next iteration,
    so that the host could not prepare the one after while the GPU ran it."""

    def __init__(self, arrays):
        self._host, self._event = [], None
        for a in arrays:
            if not on_gpu(a):
                self._host.append(np.array(a))
                continue
            import cupy
            a = cupy.ascontiguousarray(a)
            pinned = cupy.cuda.alloc_pinned_memory(max(a.nbytes, 1))
            out = np.ndarray(a.shape, a.dtype, buffer=pinned)
            a.get(out=out, blocking=False)
            self._host.append(out)
            if self._event is None:
                self._event = cupy.cuda.Event(disable_timing=True)
        if self._event is not None:
            self._event.record()

    def get(self):
        """The copies (waits for the transfers alone)."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host


def cudnn_ops(array):
    """The cuDNN adapter for a CuPy array; None for NumPy arrays or without the cuDNN Frontend."""
    if isinstance(array, np.ndarray):
        return None
    from .cudnn import get_ops
    return get_ops()
