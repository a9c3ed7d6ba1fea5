"""The fused GPU kernels (nn/kernels.py) equal the NumPy formulas they replace.

Run on a CUDA machine: ``pytest -m gpu``.  Relative error is max|gpu - cpu| / max|cpu|.
"""

import numpy as np
import pytest

from darknet_py.nn.activations import ACTIVATIONS, NEEDS_INPUT, activate, gradient

from conftest import rng_for_test

pytestmark = pytest.mark.gpu

TOL = 1e-5


def _rel(gpu, cpu):
    gpu = gpu.get() if hasattr(gpu, "get") else gpu
    return float(np.max(np.abs(gpu - cpu)) / max(np.max(np.abs(cpu)), 1e-30))


def _data(shape=(3, 5, 7, 6)):
    rng = rng_for_test()
    x = rng.uniform(-5, 5, shape).astype(np.float32)
    c = shape[1]
    per_channel = [rng.uniform(a, b, c).astype(np.float32) for a, b in ((-1, 1), (0.2, 2),
                                                                        (-1, 1))]
    return rng, x, per_channel


def _c(v):
    return v.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bias_and_activation_in_one_kernel(act):
    import cupy
    from darknet_py.nn import kernels
    _, x, (mean, scale, shift) = _data()
    keep = act in NEEDS_INPUT
    y, a = kernels.normalize_activate(cupy.asarray(x), act, shift=cupy.asarray(shift),
                                      keep_input=keep)
    v = x + _c(shift)
    assert _rel(y, activate(v, act)) <= TOL
    assert (a is not None) == keep and (not keep or _rel(a, v) <= TOL)
    y, _ = kernels.normalize_activate(cupy.asarray(x), act, cupy.asarray(mean),
                                      cupy.asarray(scale), cupy.asarray(shift))
    assert _rel(y, activate((x - _c(mean)) * _c(scale) + _c(shift), act)) <= TOL


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_gradient_and_bias_gradient_in_one_kernel(act):
    import cupy
    from darknet_py.nn import kernels
    rng, x, _ = _data((4, 6, 9, 5))
    delta = rng.standard_normal(x.shape).astype(np.float32)
    y = activate(x, act)
    want = delta * gradient(y, x if act in NEEDS_INPUT else None, act)
    sums = cupy.full(x.shape[1], 0.5, cupy.float32)
    got = kernels.activation_backward(cupy.asarray(delta), cupy.asarray(y),
                                      cupy.asarray(x) if act in NEEDS_INPUT else None, act, sums)
    assert _rel(got, want) <= TOL
    assert _rel(sums, 0.5 + want.sum(axis=(0, 2, 3))) <= TOL
    again = cupy.full(x.shape[1], 0.5, cupy.float32)
    kernels.activation_backward(cupy.asarray(delta), cupy.asarray(y),
                                cupy.asarray(x) if act in NEEDS_INPUT else None, act, again)
    assert bool((again == sums).all()), "the bias gradient must not depend on thread timing"


def test_bias_gradient_of_large_maps_sums_every_value():
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    delta = rng.standard_normal((8, 3, 130, 131)).astype(np.float32)
    y = np.ones_like(delta)
    sums = cupy.zeros(3, cupy.float32)
    kernels.activation_backward(cupy.asarray(delta), cupy.asarray(y), None, "linear", sums)
    assert _rel(sums, delta.astype(np.float64).sum(axis=(0, 2, 3))) <= 1e-4


@pytest.mark.parametrize("decay", [0.0, 0.0005 * 64])
def test_sgd_update_in_one_kernel(decay):
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    u = rng.standard_normal(w.shape).astype(np.float32)
    lr_b, mom, scale = 0.01 / 64, 0.9, 0.5          # scale: the layer's learning_rate=
    gw, gu = cupy.asarray(w), cupy.asarray(u)
    kernels.sgd_update(gw, gu, cupy.asarray([lr_b], np.float32), scale, decay, mom)
    u = u + np.float32(-decay) * w
    w = w + (np.float32(lr_b) * np.float32(scale)) * u
    u = u * np.float32(mom)
    assert _rel(gw, w) <= TOL and _rel(gu, u) <= TOL
