"""nn/precision.py: the half roundings, the convolution in fp16/bf16 on the NumPy engine (the
function the GPU must equal), fp16's loss scale, and ``precision=`` / ``--precision``; the GPU
cases (cuDNN's half convolutions equal to this engine) at the end."""

import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.errors import CfgError, DarknetError
from darknet_py.nn.im2col import conv_backward_data, conv_backward_filter, conv_forward
from darknet_py.nn.backend import to_numpy
from darknet_py.nn.precision import (LossScale, Precision, check_precision, round_bf16,
                                     round_fp16)

CONV = ("[net]\nbatch=4\nwidth=10\nheight=10\nchannels=3\nlearning_rate=0.1\nmomentum=0.9\n"
        "decay=0.0005\n{extra}\n"
        "[convolutional]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
        "batch_normalize=1\n\n"
        "[convolutional]\nfilters=5\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
        "[avgpool]\n\n[softmax]\n")
ONE_CONV = ("[net]\nbatch=4\nwidth=10\nheight=10\nchannels=3\n{extra}\n"
            "[convolutional]\nfilters=5\nsize=3\nstride=2\npad=1\nactivation=linear\n\n"
            "[avgpool]\n\n[softmax]\n")
#: ONE_CONV's convolution as layer 1 (after an identity max pool): the first layer stays
#: float32 in fp16/bf16 (nn/precision.py layer_precision, AlexeyAB's CUDNN_HALF)
HALF_CONV = ONE_CONV.replace("[convolutional]", "[maxpool]\nsize=1\nstride=1\n\n"
                             "[convolutional]", 1)


def bf16_reference(values):
    """Round to nearest bfloat16, ties to the even mantissa, one float64 value at a time."""
    out = []
    for v in np.asarray(values, np.float32):
        if not np.isfinite(v):
            out.append(v)
            continue
        bits = int(np.float32(v).view(np.uint32))
        low = float(np.uint32(bits & 0xFFFF0000).view(np.float32))
        exponent = (bits >> 23) & 0xFF
        unit = 2.0 ** (max(exponent, 1) - 127 - 7)        # of bf16's 7 mantissa bits
        high = low + unit if low >= 0 else low - unit      # away from zero, in float64
        dl, dh = abs(float(v) - low), abs(high - float(v))
        if dl < dh or (dl == dh and not (bits >> 16) & 1):
            out.append(np.float32(low))
        else:
            overflow = abs(high) >= 2.0 ** 128
            out.append(np.float32(np.sign(v) * np.inf) if overflow else np.float32(high))
    return np.array(out, np.float32)


def test_bf16_rounding_is_to_nearest_ties_to_even():
    rng = rng_for_test()
    x = (rng.standard_normal(4000) * 10.0 ** rng.integers(-30, 30, 4000)).astype(np.float32)
    # exact ties: a kept part with an odd and an even last bit, plus half of the dropped unit
    ties = np.array([0x3F818000, 0x3F808000, 0xBF818000, 0x7F7F8000], np.uint32).view(np.float32)
    x = np.concatenate([x, ties, np.float32([0.0, -0.0, np.inf, -np.inf, 65504.0, 1e-45])])
    got = round_bf16(x)
    np.testing.assert_array_equal(got.view(np.uint32), bf16_reference(x).view(np.uint32))
    assert (got.view(np.uint32) & 0xFFFF == 0).all()
    assert np.isnan(round_bf16(np.float32([np.nan]))).all()


def test_fp16_rounding_saturates_to_inf_beyond_65504():
    got = round_fp16(np.float32([65504.0, 65519.0, 65520.0, -1e6, 2.0 ** -25, 2.0 ** -24]))
    np.testing.assert_array_equal(got, np.float32([65504, 65504, np.inf, -np.inf, 0,
                                                   2.0 ** -24]))


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_a_half_convolution_is_the_rounded_one_accumulated_in_float32(name):
    """One [convolutional] (linear, no batch norm: its delta is the loss's) in half precision:
    forward y = h(conv(h(x), h(W))), dW = h(corr(h(x), h(S dy))) / S and the input's delta
    h(conv_T(h(S dy), h(W))) / S, the convolutions in float64 here (S: the loss scale)."""
    rng = rng_for_test()
    net = build(HALF_CONV.format(extra=f"precision={name}\n"), seed=3)
    r, s = net.precision.round, np.float32(net.precision.loss_scale)
    conv = net.layers[1]
    x = rng.random((4, 3, 10, 10), dtype=np.float32)
    net.forward(x, train=True, truth=np.eye(5, dtype=np.float32)[[0, 1, 2, 3]])
    w = conv.weights.astype(np.float64)
    y = r(conv_forward(r(x).astype(np.float64), r(w), 2, 1, 1).astype(np.float32))
    np.testing.assert_allclose(conv.output, y + conv.biases[None, :, None, None], rtol=1e-6,
                               atol=1e-7)
    dx = np.zeros_like(x)
    net.backward(dx)
    dy = r(conv.delta * s).astype(np.float64)
    dw = r(conv_backward_filter(r(x).astype(np.float64), dy, 3, 2, 1, 1).astype(np.float32))
    np.testing.assert_allclose(conv.weight_updates, dw / s, rtol=2e-7, atol=0)
    want = r(conv_backward_data(dy, r(w), x.shape, 2, 1, 1).astype(np.float32)) / s
    np.testing.assert_allclose(dx, want, rtol=2e-7, atol=0)
    assert np.abs(want).max() > 0 and np.abs(dw).max() > 0


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_the_first_layer_stays_float32_in_half_precision(name):
    """AlexeyAB's CUDNN_HALF runs layer 0 in float32 (ab:src/convolutional_kernels.cu:
    state.index != 0): in fp16/bf16 the first convolution's output, weight gradient and input
    delta are fp32's bit for bit on the NumPy engine (tf32 on the GPU), the loss scale unused;
    the same convolution as layer 1 is rounded (the test above)."""
    rng = rng_for_test()
    x = rng.random((4, 3, 10, 10), dtype=np.float32)
    truth = np.eye(5, dtype=np.float32)[[0, 1, 2, 3]]
    got = []
    for precision in (name, "fp32"):
        net = build(ONE_CONV.format(extra=f"precision={precision}\n"), seed=3)
        net.forward(x, train=True, truth=truth)
        dx = np.zeros_like(x)
        net.backward(dx)
        got.append((net.layers[0].output.copy(), net.layers[0].weight_updates.copy(), dx))
    for a, b in zip(*got):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    half = build(HALF_CONV.format(extra=f"precision={name}\n"), seed=3)
    half.forward(x, train=True, truth=truth)
    assert not np.array_equal(half.layers[1].output, got[1][0])


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_half_training_stays_within_half_precision_of_fp32(name):
    rng = rng_for_test()
    text = CONV.format(extra=f"precision={name}\n")
    half, exact = build(text, seed=3), build(text, seed=3, precision="fp32")
    x = rng.random((4, 3, 10, 10), dtype=np.float32)
    t = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
    for net in (half, exact):
        net.train_step(x, t)
        net.forward(x, train=True, truth=t)
    tol = {"fp16": 4e-3, "bf16": 3e-2}[name]
    for a, b in zip(half.layers, exact.layers):
        err = np.abs(a.output - b.output).max() / np.abs(b.output).max()
        assert err < tol, (a.type, err)
        for k, v in b.state().items():
            err = np.abs(getattr(a, k) - v).max() / max(np.abs(v).max(), 1e-3)
            assert err < 4 * tol, (a.index, k, err)


def test_an_fp16_overflow_skips_the_update_and_halves_the_scale():
    rng = rng_for_test()
    net = build(CONV.format(extra="precision=fp16\n"), seed=2)
    x = rng.random((4, 3, 10, 10), dtype=np.float32)
    t = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
    net.train_step(x, t)                        # a clean step: momentum buffers not zero
    assert net.t == 1
    state = {k: v.copy() for k, v in net.layers[0].state().items()}
    net.precision.scale.value = 2.0 ** 60       # dy * S beyond 65504: inf in half
    net.train_step(x, t)
    assert net.t == 1 and net.precision.scale.skipped == 1
    assert net.precision.loss_scale == 2.0 ** 59
    for k, v in net.layers[0].state().items():
        if k in ("rolling_mean", "rolling_variance"):
            continue                             # the forward's statistics still count
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    net.precision.scale.value = 2.0 ** 10
    net.train_step(x, t)
    assert net.t == 2 and all(np.isfinite(v).all() for v in net.layers[0].state().values())


def test_the_loss_scale_grows_after_clean_iterations():
    scale = LossScale(value=8.0, growth_interval=3)
    layer = build(CONV.format(extra=""), seed=1).layers[0]
    scale.save([layer])
    assert [scale.finish([layer]) for _ in range(3)] == [True] * 3 and scale.value == 16.0


@pytest.mark.parametrize("name", ["tf32", "bf16"])
def test_tf32_and_bf16_need_no_loss_scale(name):
    p = Precision(name)
    assert p.scale is None and p.loss_scale == 1.0 and p.tf32 == (name == "tf32")


def test_precision_in_the_cfg_and_as_an_argument():
    net = build(CONV.format(extra="precision=bf16\n"))
    assert net.precision.name == "bf16"
    assert build(CONV.format(extra="precision=bf16\n"), precision="fp32").precision.name == \
        "fp32"
    with pytest.raises(CfgError, match=r"cfg:9: error: .*precision=fp8.*expected one of"):
        build(CONV.format(extra="precision=fp8\n"))
    with pytest.raises(DarknetError, match="unknown precision 'half'"):
        check_precision("half")


def test_bench_and_train_take_precision(tmp_path):
    r = subprocess.run([sys.executable, "-m", "darknet_py.bench", "cfg/mnist.cfg", "--batch",
                        "8", "--steps", "2", "--warmup", "1", "--device", "cpu", "--precision",
                        "fp16"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["mode"] == "fp16" and row["train_ms"] > 0
    r = subprocess.run([sys.executable, "-m", "darknet_py", "train", "cfg/mnist.cfg",
                        "data/mnist.data", "--precision", "fp8"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "--precision" in r.stderr and "fp8" in r.stderr


# -- GPU ----------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_gpu_half_training_steps_equal_the_numpy_engine(name):
    """cuDNN's half convolutions compute the NumPy engine's function: two training steps of a
    batch-normalised conv net, outputs and every array within one half unit of rounding."""
    rng = rng_for_test()
    text = CONV.format(extra=f"precision={name}\n")
    cpu, gpu = build(text, seed=4), build(text, seed=4, device="gpu")
    tol = {"fp16": 2e-3, "bf16": 1.6e-2}[name]
    for _ in range(2):
        x = rng.random((4, 3, 10, 10), dtype=np.float32)
        t = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
        assert abs(gpu.train_step(x, t) - cpu.train_step(x, t)) < tol
    for a, b in zip(cpu.layers, gpu.layers):
        got, want = to_numpy(b.output), a.output
        assert np.abs(got - want).max() <= tol * np.abs(want).max(), a.type
        for k, v in a.state().items():
            got = to_numpy(getattr(b, k))
            assert np.abs(got - v).max() <= 4 * tol * max(np.abs(v).max(), 1e-3), (a.index, k)


@pytest.mark.gpu
def test_gpu_fp16_overflow_skips_the_step_on_the_device_too():
    rng = rng_for_test()
    net = build(CONV.format(extra="precision=fp16\n"), seed=2, device="gpu")
    x = rng.random((4, 3, 10, 10), dtype=np.float32)
    t = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
    net.train_step(x, t)
    weights = to_numpy(net.layers[0].weights).copy()
    net.precision.scale.value = 2.0 ** 60
    net.train_step(x, t)
    assert net.t == 1 and net.precision.scale.skipped == 1
    np.testing.assert_array_equal(to_numpy(net.layers[0].weights), weights)


@pytest.mark.gpu
def test_gpu_saved_arrays_copy_back_and_find_nan_and_inf_in_one_launch():
    """kernels.SavedArrays (fp16's loss scale on the GPU): save copies every array, restore
    puts the saved values back bit for bit, and nonfinite sees a NaN or an inf anywhere
    (arrays of 1 to 70,000 values: one block row each, a grid-stride over the long ones)."""
    import cupy
    from darknet_py.nn.kernels import SavedArrays
    rng = rng_for_test()
    host = [rng.standard_normal(n).astype(np.float32) for n in (1, 300, 70000)]
    arrays = [cupy.asarray(h) for h in host]
    assert SavedArrays.fit(arrays) and not SavedArrays.fit(arrays + [arrays[1][::2]])
    saved = SavedArrays(arrays)
    saved.save()
    assert not saved.nonfinite()
    for bad in (np.inf, -np.inf, np.nan):
        for i, a in enumerate(arrays):
            a += 1
            a[-1] = bad
            assert saved.nonfinite(), (bad, i)
            saved.restore()
            assert not saved.nonfinite()
            for b, h in zip(arrays, host):
                np.testing.assert_array_equal(cupy.asnumpy(b).view(np.uint32), h.view(np.uint32))


@pytest.mark.gpu
def test_gpu_tf32_stays_close_to_fp32():
    rng = rng_for_test()
    text = CONV.format(extra="")
    a, b = build(text, seed=6, device="gpu"), build(text, seed=6, device="gpu",
                                                    precision="tf32")
    x = rng.random((4, 3, 10, 10), dtype=np.float32)
    ya, yb = to_numpy(a.forward(x)), to_numpy(b.forward(x))
    assert np.abs(ya - yb).max() <= 2e-3 * np.abs(ya).max()


def test_training_says_when_an_fp16_iteration_is_skipped(tmp_path):
    """From a loss scale far too large, the first iterations overflow: each is skipped with one
    line and halves the scale, until the gradients fit and training goes on."""
    import io
    from test_train import make_project
    from darknet_py.train.classifier import ClassifierTrainer
    from darknet_py.train.options import TrainOptions
    from test_train import CFG
    project = make_project(tmp_path)
    # a convolution after the first (which stays float32) to overflow in half
    (project / "halves.cfg").write_text(CFG.format(lr=0.05).replace(
        "[dropout]", "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\n"
                     "activation=leaky\n\n[dropout]"))
    out = io.StringIO()
    t = ClassifierTrainer(str(project / "halves.cfg"), str(project / "halves.data"),
                          options=TrainOptions(device="cpu", seed=3, progress=False,
                                               max_batches=60, precision="fp16"), out=out)
    t.net.precision.scale.value = 2.0 ** 61
    assert t.run() == 0
    lines = [line for line in out.getvalue().splitlines() if "overflowed" in line]
    skipped = t.net.precision.scale.skipped
    assert 0 < skipped == len(lines) < 60 and t.net.t == 60 - skipped
    ks = [int(line.split()[1].rstrip(":")) for line in lines]
    assert ks[0] == 0 and ks == sorted(set(ks))          # from the first iteration on
    assert lines == [f"iteration {k}: fp16 gradients overflowed; update skipped, loss scale now "
                     f"{2.0 ** (60 - i):g}" for i, k in enumerate(ks)]
    assert all(np.isfinite(v).all() for layer in t.net.layers for v in layer.state().values())


def test_detector_test_names_fp16s_range_when_outputs_overflow(tmp_path):
    """Untrained weights (rolling variance 0: batch norm folds to x316 a layer) overflow fp16:
    the warning says where the range ends and what to use instead."""
    from darknet_py.nn.network import Network
    from PIL import Image
    Network.from_cfg("cfg/shapes-tiny.cfg", batch=1, seed=1).save_weights(
        str(tmp_path / "s.weights"))
    (tmp_path / "s.names").write_text("a\nb\nc\nd\n")
    (tmp_path / "s.data").write_text(f"classes=4\nnames={tmp_path}/s.names\n")
    image = rng_for_test().integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "im.jpg")
    r = subprocess.run([sys.executable, "-m", "darknet_py", "detector", "test",
                        str(tmp_path / "s.data"), "cfg/shapes-tiny.cfg",
                        str(tmp_path / "s.weights"), str(tmp_path / "im.jpg"), "-dont_show",
                        "--precision", "fp16"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fp16 ends at 65504: try --precision bf16 or fp32" in r.stderr


def test_the_predict_api_takes_a_precision(tmp_path):
    from darknet_py.nn.network import Network
    from darknet_py.predict import Classifier, Detector
    Network.from_cfg("cfg/shapes-tiny.cfg", batch=1, seed=2).save_weights(
        str(tmp_path / "s.weights"))
    det = Detector("cfg/shapes-tiny.cfg", str(tmp_path / "s.weights"), precision="fp16",
                   device="cpu")
    assert det.net.precision.name == "fp16"
    Network.from_cfg("cfg/mnist.cfg", batch=1, seed=2).save_weights(str(tmp_path / "m.weights"))
    # (untrained weights fold batch norm to x316 a layer: fp16 would overflow, bf16 does not)
    clf = Classifier("cfg/mnist.cfg", str(tmp_path / "m.weights"), precision="bf16",
                     device="cpu")
    probs = clf(rng_for_test().random((1, 28, 28), dtype=np.float32))
    assert clf.net.precision.name == "bf16" and np.isclose(probs.sum(), 1, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_gpu_half_casts_round_as_the_numpy_engine(name):
    """kernels.to_half / from_half: x * scale rounded once, bit for bit the NumPy rounding,
    and back exactly (a half value is a float32 value)."""
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    x = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-8, 8, 100_000)).astype(np.float32)
    x = np.concatenate([x, np.float32([0.0, -0.0, np.inf, -np.inf, 65504.0, 65520.0]),
                        np.array([0x3F818000, 0x3F808000], np.uint32).view(np.float32)])
    p = Precision(name)
    for scale in (1.0, 1024.0):
        want = p.round(x * np.float32(scale))
        h = kernels.to_half(cupy.asarray(x), name, scale)
        back = cupy.asnumpy(kernels.from_half(h, name))
        np.testing.assert_array_equal(back.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(cupy.asnumpy(kernels.from_half(h, name, scale)),
                                      want * np.float32(1.0 / scale))


GROUPED = ("[net]\nbatch=2\nwidth=12\nheight=12\nchannels=4\nprecision={name}\n"
           "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\ngroups=2\n"
           "activation=leaky\n"
           "[convolutional]\nfilters=6\nsize=3\nstride=2\npad=1\ndilation=2\n"
           "activation=mish\n"
           "[convolutional]\nfilters=6\nsize=1\nstride=1\nactivation=linear\n")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_gpu_half_convolutions_run_nhwc_and_give_nchw_arrays(name):
    """Half operands go to cuDNN laid out NHWC (Precision.to_half: an (N, C, H, W) view of
    NHWC memory, the same values), and what comes back is C-contiguous NCHW float32: grouped,
    strided and dilated convolutions equal the NumPy engine's, forward and backward."""
    import cupy
    rng = rng_for_test()
    p = Precision(name)
    x = rng.random((2, 5, 7, 3), dtype=np.float32)
    h = p.to_half(cupy.asarray(x))
    assert h.shape == x.shape and h.transpose(0, 2, 3, 1).flags.c_contiguous
    back = p.from_half(h)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(cupy.asnumpy(back), p.round(x))
    _grouped_equals_numpy(name, {"fp16": 2e-3, "bf16": 1.6e-2}[name], rng)


def _grouped_equals_numpy(name, tol, rng):
    """GROUPED in precision ``name`` on the GPU against the NumPy engine, in inference and in
    training (tf32 lays them out differently: nn/cudnn.py _LAYOUT): C-contiguous NCHW outputs
    within ``tol`` (relative to the largest), the input delta and the weight updates within
    4 tol."""
    import cupy
    text = GROUPED.format(name=name)
    cpu, gpu = build(text, seed=5), build(text, seed=5, device="gpu")
    x = rng.random((2, 4, 12, 12), dtype=np.float32)
    for train in (False, True):
        want, got = cpu.forward(x, train=train), gpu.forward(x, train=train)
        for a, b in zip(cpu.layers, gpu.layers):
            assert b.output.flags.c_contiguous, (train, b.index)
            assert np.abs(to_numpy(b.output) - a.output).max() <= \
                tol * np.abs(a.output).max(), (train, b.index)
    delta = rng.standard_normal(want.shape).astype(np.float32)
    for net in (cpu, gpu):
        net.layers[-1].delta = net.xp.asarray(delta)
        if net.precision.scale is not None:     # deltas ~1: 2^16 would overflow fp16
            net.precision.scale.value = 8.0
    dx_cpu, dx_gpu = np.zeros_like(x), cupy.zeros(x.shape, np.float32)
    cpu.backward(dx_cpu)
    gpu.backward(dx_gpu)
    assert np.abs(cupy.asnumpy(dx_gpu) - dx_cpu).max() <= 4 * tol * np.abs(dx_cpu).max()
    for a, b in zip(cpu.layers, gpu.layers):
        got = to_numpy(b.weight_updates)
        assert np.abs(got - a.weight_updates).max() <= \
            4 * tol * np.abs(a.weight_updates).max(), a.index


@pytest.mark.gpu
@pytest.mark.parametrize("channels", [37, 3, 1])
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_gpu_tiled_nhwc_casts_equal_the_elementwise_ones(name, channels):
    """kernels.to_nhwc / from_nhwc (32x32 tiles through shared memory; a thread a
    pixel below kernels.PIXEL_CAST_CHANNELS) give the elementwise casts' values bit for bit,
    in NHWC memory, for planes that are not multiples of a tile, with the values that round
    specially."""
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    shape = (3, channels, 5, 13)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 6, shape)).astype(np.float32)
    x.reshape(-1)[:8] = [0.0, -0.0, np.inf, -np.inf, 65504.0, 65520.0, np.nan, 1e-45]
    dx = cupy.asarray(x)
    for scale in (1.0, 1024.0):
        want = cupy.asnumpy(kernels.to_half(dx, name, scale))
        h = kernels.to_nhwc(dx, name, scale)
        assert h.shape == x.shape and h.transpose(0, 2, 3, 1).flags.c_contiguous
        got = cupy.asnumpy(cupy.ascontiguousarray(h))
        nan = np.isnan(x)                       # a NaN stays one; its payload bits may differ
        np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])
        back = kernels.from_half(h, name, scale)
        assert back.flags.c_contiguous
        ref = cupy.asnumpy(kernels.from_half(cupy.asarray(want), name, scale))
        back = cupy.asnumpy(back)
        assert np.isnan(back[nan]).all()
        np.testing.assert_array_equal(back.view(np.uint32)[~nan], ref.view(np.uint32)[~nan])


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp16", "bf16", "fp32"])
def test_gpu_tiled_nhwc_epilogue_equals_the_elementwise_one(name):
    """normalize_activate of an NHWC half convolution output with its bias (the epilogue of a
    layer without batch norm, and of every folded one in inference) goes through the tiled
    kernel: the values of the elementwise kernel reading the same half values, in C-contiguous
    NCHW float32, with the pre-activation for the activations whose gradient needs it."""
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    x = rng.standard_normal((3, 37, 5, 13)).astype(np.float32) * 4
    bias = cupy.asarray(rng.standard_normal(37).astype(np.float32))
    h = kernels.to_nhwc(cupy.asarray(x), name)      # fp32: tf32's convolutions
    flat = cupy.ascontiguousarray(h)
    assert kernels.is_nhwc(h) and not kernels.is_nhwc(flat)
    for activation in ("leaky", "linear", "logistic", "mish", "swish"):
        keep = activation in ("mish", "swish")
        y, a = kernels.normalize_activate(h, activation, shift=bias, keep_input=keep)
        want_y, want_a = kernels.normalize_activate(flat, activation, shift=bias, keep_input=keep)
        assert y.flags.c_contiguous and y.dtype == np.float32
        np.testing.assert_allclose(cupy.asnumpy(y), cupy.asnumpy(want_y), rtol=1e-6,
                                   atol=1e-7, err_msg=activation)
        assert (a is None) == (not keep)
        if keep:
            np.testing.assert_array_equal(cupy.asnumpy(a), cupy.asnumpy(want_a))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint16"])
def test_gpu_plane_epilogue_equals_the_elementwise_one(dtype, monkeypatch):
    """normalize_activate over C-contiguous NCHW planes (a block per image channel,
    kernels._PLANES) gives the elementwise kernel's values bit for bit, for every combination
    of mean, scale and shift, with and without the pre-activation kept, from float32 and half
    inputs (float16, bfloat16 bits), planes not a multiple of a block; float32 planes of a
    multiple of 4 values four a thread (kernels._PLANES4), unless not 16-byte aligned."""
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    for shape, offset in (((3, 5, 19, 23), 0), ((2, 5, 16, 20), 0), ((2, 5, 16, 20), 1)):
        x = rng.standard_normal(shape).astype(np.float32) * 3
        dx = cupy.empty(x.size + offset, np.float32)[offset:].reshape(shape)
        dx[...] = cupy.asarray(x)
        if dtype != "float32":
            dx = kernels.to_half(dx, "fp16" if dtype == "float16" else "bf16")
        _planes_equal_elementwise(kernels, dx, rng, monkeypatch)


def _planes_equal_elementwise(kernels, dx, rng, monkeypatch):
    import cupy
    m, s, b = (cupy.asarray(rng.uniform(lo, hi, 5).astype(np.float32))
               for lo, hi in ((-1, 1), (0.5, 2), (-1, 1)))
    for activation in ("leaky", "linear", "logistic", "mish", "swish"):
        for parts in ((None, None, b), (m, s, b), (m, s, None), (None, s, None)):
            keep = activation in ("mish", "swish")
            y, a = kernels.normalize_activate(dx, activation, *parts, keep_input=keep)
            with monkeypatch.context() as patch:
                patch.setattr(kernels, "PLANE_MIN", 10 ** 9)       # the elementwise kernel
                want_y, want_a = kernels.normalize_activate(dx, activation, *parts,
                                                            keep_input=keep)
            assert y.flags.c_contiguous and y.dtype == np.float32
            np.testing.assert_array_equal(cupy.asnumpy(y), cupy.asnumpy(want_y),
                                          err_msg=activation)
            assert (a is None) == (not keep)
            if keep:
                np.testing.assert_array_equal(cupy.asnumpy(a), cupy.asnumpy(want_a))


@pytest.mark.gpu
def test_gpu_tf32_convolutions_run_nhwc_and_give_nchw_arrays():
    """tf32's operands go to cuDNN laid out NHWC (kernels.to_nhwc, the same values) and what
    comes back is C-contiguous NCHW float32: grouped, strided and dilated convolutions stay
    within tf32's rounding of the NumPy engine, forward and backward."""
    import cupy
    from darknet_py.nn import kernels
    rng = rng_for_test()
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    h = kernels.to_nhwc(cupy.asarray(x))
    assert kernels.is_nhwc(h)
    np.testing.assert_array_equal(cupy.asnumpy(h), x)
    back = kernels.from_nhwc(h)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(cupy.asnumpy(back), x)
    _grouped_equals_numpy("tf32", 2e-3, rng)


#: Darknet's sample photos (Debian's darknet package)
SAMPLES = [f"/usr/share/darknet/data/{n}.jpg"
           for n in ("dog", "eagle", "giraffe", "horses", "kite", "person", "scream")]


@pytest.mark.gpu
def test_gpu_half_precisions_keep_the_yolov3_tiny_detections():
    """Darknet's trained yolov3-tiny.weights (pjreddie.com; the path in the environment variable
    DARKNET_PY_YOLOV3_TINY_WEIGHTS) name the same classes on Darknet's sample photos in tf32,
    fp16 and bf16 as in fp32: the issue's accuracy check, for a machine that has the file."""
    import os
    path = os.environ.get("DARKNET_PY_YOLOV3_TINY_WEIGHTS", "")
    if not os.path.isfile(path):
        pytest.skip("set DARKNET_PY_YOLOV3_TINY_WEIGHTS to Darknet's yolov3-tiny.weights")
    photos = [p for p in SAMPLES if os.path.isfile(p)]
    if not photos:
        pytest.skip("Darknet's sample photos are not here (apt-get install darknet)")
    from darknet_py import Detector
    root = Path(__file__).resolve().parent.parent

    def classes(precision):
        det = Detector(str(root / "cfg/yolov3-tiny.cfg"), path,
                       names=str(root / "data/coco.names"), device="gpu", precision=precision)
        return [sorted(d.name for d in found) for found in (det(p) for p in photos)]

    want = classes("fp32")
    assert any(want), "the fp32 run found nothing: not Darknet's trained weights?"
    for precision in ("tf32", "fp16", "bf16"):
        assert classes(precision) == want, precision

