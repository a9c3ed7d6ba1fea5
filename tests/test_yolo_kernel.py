"""The [yolo] and [region] loss kernels (darknet_py.nn.layers.yolokernel) against the NumPy
losses (yololoss, themselves checked against libdarknet and the loop reference): their CUDA C,
built by the host's C compiler and run thread by thread, on the CPU; the CuPy launch on the
GPU.  Every case of test_yolo_loss.py (each option of pj's and AlexeyAB's [yolo], pj's
[region] but its tree)."""

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from darknet_py.nn.layers import yolokernel  # noqa: E402
from darknet_py.nn.layers.yololoss import fetch_stats, region_loss, yolo_loss  # noqa: E402
from conftest import rng_for_test, under_ci  # noqa: E402
from test_yolo_loss import (BATCH, REGION_CASES, YOLO_CASES, assert_same_loss,  # noqa: E402
                            crowded_truths, head_output, region_head, uses_zero_size_truths,
                            yolo_head)

#: what a C compiler needs of CUDA to build the kernels: the qualifiers, the thread index
#: (set before each call) and the bit cast
HOST_PRELUDE = r"""
#include <math.h>
#include <string.h>
#define __global__
#define __device__ static
struct dim { long long x; };
static struct dim blockIdx, blockDim, threadIdx;
static double __longlong_as_double(long long v) { double d; memcpy(&d, &v, sizeof d); return d; }
void set_thread(long long id) { blockIdx.x = id; blockDim.x = 1; threadIdx.x = 0; }
"""


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """yolokernel.SOURCE as a C library (``extern "C"`` is C++'s linkage: dropped)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if under_ci():
            pytest.fail("no C compiler: CI must run the yolo kernel tests", pytrace=False)
        pytest.skip("no C compiler (cc/gcc) to build the yolo kernels on the host")
    folder = tmp_path_factory.mktemp("yolokernel")
    source = folder / "yolokernel.c"
    source.write_text(HOST_PRELUDE + yolokernel.SOURCE.replace('extern "C" ', ""))
    lib = folder / "yolokernel.so"
    subprocess.run([cc, "-O2", "-ffp-contract=off", "-std=gnu99", "-shared", "-fPIC",
                    str(source), "-o", str(lib), "-lm"], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def host_launch(lib):
    """yolokernel.yolo_loss's ``launch``: each thread of a kernel in turn."""
    def c_arg(a):
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous
            return ctypes.c_void_p(a.ctypes.data)
        if isinstance(a, np.uint64):            # a null pointer
            return ctypes.c_void_p(None)
        if isinstance(a, np.int32):
            return ctypes.c_int(int(a))
        if isinstance(a, np.int64):
            return ctypes.c_longlong(int(a))
        assert isinstance(a, np.float64), type(a)
        return ctypes.c_double(float(a))

    def launch(name, threads, args):
        kernel, c_args = getattr(lib, name), [c_arg(a) for a in args]
        for thread in range(threads):
            lib.set_thread(ctypes.c_longlong(thread))
            kernel(*c_args)
    return launch


def assert_deltas(got, want, on_gpu):
    """The host build (no FMA contraction, the C library's expf/logf) gives NumPy's float32
    bits; NVRTC contracts a*b+c into FMAs and CUDA's expf/logf are within 2 ulp of the
    correctly rounded result, so on the GPU the deltas are within a few float32 ulp: 1e-6 of
    the largest (the issue's bound is 1e-5)."""
    if on_gpu:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def _against_numpy(case, loss, on_gpu):
    """``loss(layer, out, truth)`` (host arrays in, the deltas as a host array and the STATS
    array out) against yololoss.yolo_loss on crowded truth tables of ``case``; the deltas as
    ``assert_deltas`` (and the summed statistics within assert_same_loss's 1e-5)."""
    rng = rng_for_test()
    layer = yolo_head(YOLO_CASES[case])
    eps = layer.label_smooth_eps
    cells = BATCH * layer.n * layer.h * layer.w
    for _ in range(3):
        out = head_output(rng, layer, saturate=(0.0, 1.0, 0.5 * eps, 1 - 0.5 * eps))
        truth = crowded_truths(rng, BATCH, layer.classes, zero_size=uses_zero_size_truths(layer))
        got = loss(layer, out, truth)
        want, totals = yolo_loss(layer, out, truth)
        assert_same_loss(got, (want, *fetch_stats(totals, cells)), cells)
        assert_deltas(got[0], want, on_gpu)


@pytest.mark.parametrize("case", list(YOLO_CASES))
def test_the_kernels_compute_the_numpy_loss(host_kernels, case):
    _against_numpy(case, lambda layer, out, truth: yolokernel.yolo_loss(
        layer, out, truth, launch=host_launch(host_kernels)), on_gpu=False)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(YOLO_CASES))
def test_gpu_kernels_compute_the_numpy_loss(case):
    import cupy

    def on_the_gpu(layer, out, truth):
        delta, totals = yolokernel.yolo_loss(layer, cupy.asarray(out), cupy.asarray(truth))
        return cupy.asnumpy(delta), totals
    _against_numpy(case, on_the_gpu, on_gpu=True)


#: test_yolo_loss's [region] cases, and a map= of the training classes
REGION_KERNEL_CASES = {**REGION_CASES, "map": "map={folder}/map.txt\nsoftmax=0\n"}


def _region_against_numpy(case, seen, folder, loss, on_gpu):
    """``loss(layer, out, truth)`` against yololoss.region_loss, as ``_against_numpy``."""
    (folder / "map.txt").write_text("2\n0\n3\n1\n")
    rng = rng_for_test()
    layer = region_head(REGION_KERNEL_CASES[case].format(folder=folder))
    cells = BATCH * layer.n * layer.h * layer.w
    for _ in range(3):
        out = head_output(rng, layer)
        truth = crowded_truths(rng, BATCH, layer.classes, rows=40, zero_size=False)
        got = loss(layer, out, truth)
        want, totals = region_loss(layer, out, truth, seen)
        assert_same_loss(got, (want, *fetch_stats(totals, cells)), cells)
        assert_deltas(got[0], want, on_gpu)


@pytest.mark.parametrize("seen", [0, 12800], ids=["anchor-prior", "after-12800-images"])
@pytest.mark.parametrize("case", list(REGION_KERNEL_CASES))
def test_the_region_kernels_compute_the_numpy_loss(host_kernels, case, seen, tmp_path):
    _region_against_numpy(case, seen, tmp_path, lambda layer, out, truth: yolokernel.region_loss(
        layer, out, truth, seen, launch=host_launch(host_kernels)), on_gpu=False)


@pytest.mark.gpu
@pytest.mark.parametrize("seen", [0, 12800], ids=["anchor-prior", "after-12800-images"])
@pytest.mark.parametrize("case", list(REGION_KERNEL_CASES))
def test_gpu_region_kernels_compute_the_numpy_loss(case, seen, tmp_path):
    import cupy

    def on_the_gpu(layer, out, truth):
        delta, totals = yolokernel.region_loss(layer, cupy.asarray(out), cupy.asarray(truth),
                                               seen)
        return cupy.asnumpy(delta), totals
    _region_against_numpy(case, seen, tmp_path, on_the_gpu, on_gpu=True)
