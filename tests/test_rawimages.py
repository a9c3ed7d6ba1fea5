"""Raw batches: the images handed over as bytes and colour tables (darknet_py/data/
rawimages.py).  The C source of Pillow's HSV arithmetic equals Pillow over every colour both
ways (compiled here with the host's compiler, without FMA contraction); finished on the host,
raw batches equal the float batches bit for bit."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import rng_for_test, under_ci
from darknet_py.data.rawimages import HSV_SOURCE, RawImages
from test_loader import AUG, H, W, _dataset

_HARNESS = r"""
#include <math.h>
#define DEVICE static
%s
void convert(const unsigned char* in, unsigned char* out, long n, int to_hsv) {
    for (long k = 0; k < n; ++k) {
        int a, b, c;
        if (to_hsv) pillow_rgb_to_hsv(in[3 * k], in[3 * k + 1], in[3 * k + 2], &a, &b, &c);
        else pillow_hsv_to_rgb(in[3 * k], in[3 * k + 1], in[3 * k + 2], &a, &b, &c);
        out[3 * k] = a; out[3 * k + 1] = b; out[3 * k + 2] = c;
    }
}
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        if under_ci():
            pytest.fail("no C compiler: .ci/run installs gcc")
        pytest.skip("no C compiler (apt-get install gcc)")
    folder = tmp_path_factory.mktemp("hsv")
    (folder / "hsv.c").write_text(_HARNESS % HSV_SOURCE)
    subprocess.run([cc, "-O2", "-ffp-contract=off", "-shared", "-fPIC", str(folder / "hsv.c"),
                    "-o", str(folder / "hsv.so"), "-lm"], check=True)
    return ctypes.CDLL(str(folder / "hsv.so"))


@pytest.mark.parametrize("to_hsv", [1, 0], ids=["rgb-to-hsv", "hsv-to-rgb"])
def test_the_kernels_hsv_arithmetic_is_pillows_for_every_colour(compiled, to_hsv):
    """All 2^24 byte triples through the kernel's C and through Pillow's convert: equal."""
    every = np.arange(1 << 24, dtype=np.uint32)
    triples = np.stack([every >> 16, (every >> 8) & 255, every & 255], -1).astype(np.uint8)
    out = np.empty_like(triples)
    compiled.convert(triples.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                     ctypes.c_long(len(triples)), ctypes.c_int(to_hsv))
    image = Image.fromarray(triples.reshape(4096, 4096, 3), "RGB" if to_hsv else "HSV")
    want = np.asarray(image.convert("HSV" if to_hsv else "RGB")).reshape(-1, 3)
    assert np.array_equal(out, want)


@pytest.mark.parametrize("letterbox", [True, False], ids=["letterbox", "stretch"])
@pytest.mark.parametrize("processes", [0, 2], ids=["threads", "processes"])
def test_raw_batches_finished_on_the_host_equal_the_float_batches(tmp_path, letterbox,
                                                                   processes):
    """The same draws: the bytes and tables of a raw batch, finished as the CPU path finishes
    an image, are the float batch bit for bit, and the truths are the same."""
    data = _dataset(tmp_path)
    seed = int(rng_for_test().integers(1 << 30))
    idx = np.random.default_rng(seed).integers(0, len(data), 5)
    opts = dict(AUG, letterbox=letterbox, processes=processes or None)
    raw = data.submit(idx, (3, H, W), np.random.default_rng([seed, 1]), raw=True, **opts)
    x, truth = raw.result()
    assert isinstance(x, RawImages) and x.flags.all()
    want_x, want_truth = data.batch(idx, (3, H, W), np.random.default_rng([seed, 1]), **opts)
    np.testing.assert_array_equal(x.finish(), want_x)
    np.testing.assert_array_equal(truth, want_truth)
    raw.release()
    data.close()


def test_raw_is_ignored_where_the_cpu_must_finish(tmp_path):
    """Mosaic and mixup blend floats, grey images have no colour: their batches stay float."""
    data = _dataset(tmp_path)
    rng = np.random.default_rng(int(rng_for_test().integers(1 << 30)))
    for kw, shape in ((dict(mosaic=True), (3, H, W)), (dict(mixup=True), (3, H, W)),
                      ({}, (1, H, W))):
        pending = data.submit([0, 1], shape, rng, raw=True, **AUG, **kw)
        x, _ = pending.result()
        assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (2, *shape)
        pending.release()


@pytest.mark.gpu
def test_a_staged_raw_batch_is_finished_on_the_gpu_as_on_the_host(tmp_path):
    """DeviceStaging finishes a raw batch with the kernel on its copy stream: the float32
    images are RawImages.finish()'s bit for bit (a row without colour distortion too), the
    truth arrives unchanged (on the host, a copy of its own), and a float batch staged after it
    in the same ring still does."""
    import cupy
    from darknet_py.data.staging import DeviceStaging
    data = _dataset(tmp_path)
    seed = int(rng_for_test().integers(1 << 30))
    idx = np.random.default_rng(seed).integers(0, len(data), 6)
    pending = data.submit(idx, (3, H, W), np.random.default_rng([seed, 1]), raw=True, **AUG)
    raw, truth = pending.result()
    raw.flags[2] = 0                                  # this row is the canvas / 255 alone
    want = raw.finish()
    stage = DeviceStaging(0, 2)
    staged = stage.put(raw, truth)
    pending.release()                                 # put() copied it to pinned memory
    floats = np.random.default_rng(seed).random((3, 3, H + 32, W), dtype=np.float32)
    staged_floats = stage.put(floats, truth[:3])
    x, t = staged.take()
    x2, t2 = staged_floats.take()
    np.testing.assert_array_equal(cupy.asnumpy(x), want)
    assert isinstance(t, np.ndarray) and not np.shares_memory(t, truth)
    np.testing.assert_array_equal(t, truth)
    np.testing.assert_array_equal(cupy.asnumpy(x2), floats)
    np.testing.assert_array_equal(cupy.asnumpy(t2), truth[:3])
    staged.release()
    staged_floats.release()
    stage.close()
    data.close()
