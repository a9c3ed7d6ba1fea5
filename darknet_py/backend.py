"""The one backend seam: arrays are NumPy on the CPU and CuPy on the GPU.

Layers call ``xp_of(array)`` (or use ``net.xp``) and write their math once.  Importing this
module never imports CuPy; ``get_xp("gpu")`` does, and fails with a clear message without it.
"""

import numpy as np

from .errors import DarknetError


def xp_of(array):
    """NumPy or CuPy, whichever module owns ``array``."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return np
    module = type(array).__module__
    if module.startswith("cupy"):
        import cupy
        return cupy
    return np


def get_xp(device="cpu"):
    """The array module for a device name: ``cpu`` or ``gpu`` (``auto``: GPU when CuPy sees one)."""
    if device in (None, "cpu"):
        return np
    if device in ("gpu", "auto"):
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() > 0:
                return cupy
        except Exception as e:  # ImportError, CUDA driver errors
            if device == "gpu":
                raise DarknetError(f"--device gpu needs CuPy and a CUDA GPU ({e})") from None
            return np
        if device == "gpu":
            raise DarknetError("--device gpu: no CUDA GPU found")
        return np
    raise DarknetError(f"unknown device '{device}'; expected cpu, gpu or auto")


def to_numpy(array):
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    if array is None or isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    return get() if get is not None else np.asarray(array)
