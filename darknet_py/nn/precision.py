"""The arithmetic of the convolutions: ``precision=`` in ``[net]``, ``--precision`` on the
command line.

* ``fp32`` (the default): exact IEEE float32, equal to the NumPy engine within summation order.
* ``tf32``: float32 data, the GPU's TF32 tensor cores allowed in cuDNN's convolutions and
  cuBLAS's matrix products (inputs rounded to 10 mantissa bits inside the product, float32
  accumulation) -- PyTorch's ``allow_tf32``.  The NumPy engine computes fp32 (TF32 is how the
  GPU executes fp32 products, not a different function).
* ``fp16`` / ``bf16``: AlexeyAB's CUDNN_HALF scheme (ab:src/convolutional_kernels.cu
  forward_convolutional_layer_gpu / backward_convolutional_layer_gpu): each convolution casts
  its input and weights to half, runs in half with float32 accumulation, and casts its result
  back to float32; batch norm, activations, the other layers, the loss and the weights
  (master copy, update, .weights files) stay float32.  As there, the network's first layer
  (``state.index != 0``) stays float32 (``layer_precision``): run as tf32, as AlexeyAB's cuDNN
  default math allows on the GPUs that have it -- its 3 input channels leave half's tensor
  cores idle (H200, yolov3-tiny b64: bf16 1.38 ms, tf32 0.80).

The function every engine computes for a half convolution, with ``h()`` rounding a float32 to
the half type (round to nearest even) and ``conv`` accumulated in float32::

    forward:  y  = h(conv(h(x), h(W)))
    backward: dW = h(corr(h(x), h(S dy))) / S        dx = h(conv_T(h(S dy), h(W))) / S

S is the loss scale: 1 for bf16 (float32's exponent range), dynamic for fp16 (65504 is its
largest value, 6e-8 its smallest): ``LossScale`` starts at 2^16, halves and skips the update
when an iteration's gradients are not finite, and doubles after 2,000 clean iterations
(PyTorch's GradScaler).  Scaling inside each convolution rather than the whole backward keeps
every float32 delta and update buffer unscaled (AlexeyAB scales them all by its static
``loss_scale`` and divides in the update).  The GPU runs it with cuDNN on float16 / bfloat16
tensors; the NumPy engine (and the GPU where cuDNN has no engine) with float32 arithmetic on
the rounded values -- the same function up to summation order and the last half bit.
"""

import numpy as np

from ..errors import DarknetError
from .backend import xp_of

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
#: PyTorch GradScaler's defaults
INITIAL_SCALE, GROWTH_INTERVAL = 2.0 ** 16, 2000


def check_precision(name, where="--precision"):
    """``name`` if it is one of PRECISIONS, else a one-line error naming ``where``."""
    if name not in PRECISIONS:
        raise DarknetError(f"{where}: unknown precision '{name}'; expected one of "
                           f"{', '.join(PRECISIONS)}")
    return name


def round_bf16(x):
    """float32 -> the nearest bfloat16 (ties to even), as float32 values; NaN stays NaN."""
    xp = xp_of(x)
    u = xp.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    out = r.view(np.float32)
    return xp.where(xp.isnan(x), x, out).astype(np.float32)


def round_fp16(x):
    """float32 -> the nearest float16 (ties to even; beyond 65504 inf), as float32 values."""
    with np.errstate(over="ignore"):
        return x.astype(np.float16).astype(np.float32)


class Precision:
    """One network's precision: what its convolutions run in, and the fp16 loss scale."""

    def __init__(self, name="fp32"):
        self.name = check_precision(name)
        self.half = name in ("fp16", "bf16")
        self.tf32 = name == "tf32"
        self.round = {"fp16": round_fp16, "bf16": round_bf16}.get(name)
        self.scale = LossScale() if name == "fp16" else None

    def activate(self, xp):
        """cuBLAS's float32 products in this precision (TF32 or exact).  CuPy keeps the choice
        per process, so a network sets it before each pass; without CuPy's setter the fp32
        products stay exact in every precision."""
        if xp is np:
            return
        try:
            from cupy._core import _routines_linalg as linalg
        except ImportError:
            return
        want = linalg.COMPUTE_TYPE_TF32 if self.tf32 else linalg.COMPUTE_TYPE_DEFAULT
        if linalg.get_compute_type(np.float32) != want:
            linalg.set_compute_type(np.float32, want)

    @property
    def loss_scale(self):
        return 1.0 if self.scale is None else self.scale.value

    def __repr__(self):
        return f"Precision({self.name!r})"

    # -- the device's half arrays ----------------------------------------------------------
    # CuPy has float16 but no bfloat16: bf16 tensors are their bits in uint16 arrays (cuDNN
    # is told the type), converted with the same rounding as round_bf16.

    def to_half(self, x, scale=1.0):
        """A float32 CuPy array (times ``scale``) as the half tensor cuDNN reads: an (N, C, H,
        W) one laid out NHWC in memory (a transposed view; its shape and indexing stay NCHW),
        where cuDNN's tensor-core convolutions are fastest (benchmarks/layout.py, H200: fprop
        1.75 ms against 3.30 in NCHW over yolov3-tiny's, dgrad 2.81 / 4.28, wgrad 2.53 /
        4.00).  The conversion writes the transposed layout in the same pass (kernels.py's tiled
        transposes: coalesced on both sides)."""
        from . import kernels
        if x.ndim != 4:
            return kernels.to_half(x, self.name, scale)
        return kernels.to_nhwc(x, self.name, scale)

    def from_half(self, h, scale=1.0):
        """A half tensor from cuDNN (NHWC in memory) as a C-contiguous float32 (N, C, H, W)
        array, divided by ``scale``."""
        from . import kernels
        return kernels.from_half(h, self.name, scale)


class LossScale:
    """fp16's dynamic loss scale (PyTorch GradScaler's rule, counted in iterations)."""

    def __init__(self, value=INITIAL_SCALE, growth_interval=GROWTH_INTERVAL):
        self.value = float(value)
        self.growth_interval = growth_interval
        self.clean = 0          # iterations since the last overflow or growth
        self.skipped = 0        # iterations skipped in this run
        self._saved = None      # [(array, its copy)] on the host
        self._device = None     # kernels.SavedArrays on the GPU

    def save(self, layers):
        """Before an iteration's first backward: a copy of every update buffer
        (``Layer.update_buffers``), to go back to if its gradients overflow.  On the GPU the
        copies are kept and refilled in one launch (nn/kernels.py SavedArrays)."""
        arrays = _buffers(layers)
        from . import kernels
        if arrays and xp_of(arrays[0]) is not np and kernels.SavedArrays.fit(arrays):
            if self._device is None or self._device.key != kernels.SavedArrays.key_of(arrays):
                self._device = kernels.SavedArrays(arrays)
            self._device.save()
            self._saved = None
            return
        self._device = None
        self._saved = [(array, array.copy()) for array in arrays]

    def finish(self, layers):
        """After the iteration's backwards: True when its gradients are finite (then the
        update goes ahead); otherwise the buffers go back, the scale halves and the caller
        skips the update.  Reads one flag from the device."""
        arrays = _buffers(layers)
        device = self._device
        if device is not None and device.key != device.key_of(arrays):
            device = None       # not the arrays saved (replaced since): the host's check
        if device is not None:
            bad = device.nonfinite()
        else:
            bad = 0
            for array in arrays:
                xp = xp_of(array)
                bad = bad + xp.count_nonzero(~xp.isfinite(array))
            bad = int(bad) != 0
        if not bad:
            self.clean += 1
            if self.clean >= self.growth_interval:
                self.value *= 2.0
                self.clean = 0
            return True
        if device is not None:
            device.restore()
        for array, saved in self._saved or ():
            array[...] = saved
        self.value /= 2.0
        self.clean = 0
        self.skipped += 1
        return False


def _buffers(layers):
    return [array for layer in layers for array in layer.update_buffers().values()]


FP32 = Precision("fp32")
TF32 = Precision("tf32")


def precision_of(net):
    """The precision of the pass ``net`` (a network's pass state); fp32 for the parts the
    recurrent layers run on their own."""
    return getattr(net, "precision", FP32)


def layer_precision(mp, layer):
    """What ``layer``'s convolutions run in under the pass precision ``mp``: tf32 for the
    network's first layer in fp16/bf16 (the module docstring), else ``mp``."""
    return TF32 if mp.half and layer.index == 0 else mp


def convolve(mp, cudnn_call, numpy_call, operands, scaled=None, keep_half=False):
    """One convolution in precision ``mp``: ``cudnn_call(*operands, math=name)`` (None, or
    returning None, where cuDNN has no engine) else ``numpy_call(*operands)``.  In fp16/bf16
    the operands go in as half (``operands[scaled]``, the delta, times the loss scale) and the
    result comes out as float32 divided by it -- the function in the module docstring;
    ``keep_half``: cuDNN's half (or tf32's NHWC float32) result as it is, for a reader that
    converts it itself (the epilogue: layers/epilogue.py takes_half)."""
    if not mp.half:
        out = cudnn_call(*operands, math=mp.name) if cudnn_call is not None else None
        if out is None:
            return numpy_call(*operands)
        from . import kernels
        return out if keep_half or not kernels.is_nhwc(out) else kernels.from_nhwc(out)
    s = mp.loss_scale if scaled is not None else 1.0
    if cudnn_call is not None:
        out = cudnn_call(*(mp.to_half(a, s if i == scaled else 1.0)
                           for i, a in enumerate(operands)), math=mp.name)
        if out is not None:
            return out if keep_half and s == 1.0 else mp.from_half(out, s)
    with np.errstate(over="ignore", invalid="ignore"):    # an overflow skips the update
        out = mp.round(numpy_call(*(mp.round(a * np.float32(s) if i == scaled else a)
                                    for i, a in enumerate(operands))))
    if s != 1.0:
        out *= np.float32(1.0 / s)
    return out
