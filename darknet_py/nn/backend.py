"""The one backend seam: arrays are NumPy on the CPU and CuPy on the GPU.

Layers call ``xp_of(array)`` (or use ``net.xp``) and write their math once.  Importing this
module never imports CuPy; ``get_xp("gpu")`` does, and fails with a clear message without it.
"""

import os

import numpy as np

from ..errors import DarknetError


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


def get_xp(device="cpu", index=0):
    """The array module for a device name: ``cpu`` or ``gpu`` (``auto``: GPU when CuPy sees one).

    ``index`` picks the GPU (Darknet's ``-i N``).  fp32 stays exact: TF32 is switched off for
    cuBLAS/cuDNN (``NVIDIA_TF32_OVERRIDE=0``, unless the user set it) before CuPy loads them.
    """
    if device in (None, "cpu"):
        return np
    if device in ("gpu", "auto"):
        os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() > index:
                cupy.cuda.Device(index).use()
                return cupy
        except Exception as e:  # ImportError, CUDA driver errors
            if device == "gpu":
                raise DarknetError(f"--device gpu needs CuPy and a CUDA GPU ({e})") from None
            return np
        if device == "gpu":
            raise DarknetError(f"--device gpu: no CUDA GPU with index {index} found")
        return np
    raise DarknetError(f"unknown device '{device}'; expected cpu, gpu or auto")


def to_numpy(array):
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    if array is None or isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    return get() if get is not None else np.asarray(array)


def cudnn_ops(array):
    """The cuDNN adapter for a CuPy array; None for NumPy arrays or without the cuDNN Frontend."""
    if isinstance(array, np.ndarray):
        return None
    from .cudnn import get_ops
    return get_ops()
