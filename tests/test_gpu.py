"""The GPU engine (CuPy + cuDNN) computes the same function as the NumPy engine.

Run on a CUDA machine: ``pytest -m gpu``.  Fresh random data every run.  Relative error is
max|gpu - cpu| / max|cpu| per array; fp32 on both sides.
"""

import numpy as np
import pytest

from darknet_py.nn.backend import to_numpy

from conftest import build, rng_for_test

pytestmark = pytest.mark.gpu

TOL = 1e-5
NET = "[net]\nbatch=4\nchannels={c}\nwidth={w}\nheight={w}\nlearning_rate=0.1\nmomentum=0.9\n" \
      "decay=0.0005\n"

CONV = "[convolutional]\nfilters={f}\nsize={k}\nstride={s}\npad=1\nbatch_normalize={bn}\n" \
       "activation={act}\ngroups={g}\n"
ACTIVATIONS = ["logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu",
               "loggy", "stair", "hardtan", "lhtan", "selu", "relu6", "swish", "mish",
               "hard_mish", "gelu"]

CASES = {
    "conv_bn_leaky": CONV.format(f=8, k=3, s=1, bn=1, act="leaky", g=1),
    "conv_stride2_groups": CONV.format(f=8, k=3, s=2, bn=0, act="linear", g=2),
    "conv_1x1_stride2": "[convolutional]\nfilters=6\nsize=1\nstride=2\nactivation=linear\n",
    "connected_bn": "[connected]\noutput=7\nbatch_normalize=1\nactivation=leaky\n",
    "connected": "[connected]\noutput=7\nactivation=tanh\n",
    "batchnorm": "[batchnorm]\n",
    "maxpool_2_2": "[maxpool]\nsize=2\nstride=2\n",
    "maxpool_3_1": "[maxpool]\nsize=3\nstride=1\n",
    "avgpool": "[avgpool]\n",
    "route_shortcut": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1) * 2
    + "[route]\nlayers=-1,-2\n[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
      "[shortcut]\nfrom=-3\nalpha=0.5\nbeta=2\n",
    "route_groups": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1)
    + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n",
    "upsample": "[upsample]\nstride=2\nscale=0.5\n",
    "downsample": "[upsample]\nstride=-2\n",
    "reorg": "[reorg]\nstride=2\n",
    "reorg3d": "[reorg3d]\nstride=2\n",
    "l2norm": "[l2norm]\n",
    "dropout": "[dropout]\nprobability=0.3\n",
    "softmax_loss": "[connected]\noutput=5\nactivation=linear\n[softmax]\ngroups=1\n",
    "cost_loss": "[connected]\noutput=5\nactivation=linear\n[cost]\ntype=smooth\n",
    "logistic_loss": "[connected]\noutput=5\nactivation=linear\n[logistic]\n",
}
CASES.update({f"activation_{a}": CONV.format(f=4, k=3, s=1, bn=0, act=a, g=1)
              for a in ACTIVATIONS})


def rel(gpu, cpu):
    gpu, cpu = to_numpy(gpu).astype(np.float64), np.asarray(cpu, np.float64)
    return np.abs(gpu - cpu).max() / max(np.abs(cpu).max(), 1e-12)


def pair(body, c=4, w=8, seed=None):
    seed = int(rng_for_test().integers(1 << 31)) if seed is None else seed
    text = NET.format(c=c, w=w) + body
    return build(text, seed=seed), build(text, seed=seed, device="gpu")


def truth_for(net, rng):
    last = net.layers[-1]
    if last.type not in ("softmax", "cost", "logistic"):
        return None
    t = np.zeros((4, last.inputs), np.float32)
    t[np.arange(4), rng.integers(0, last.inputs, 4)] = 1
    return t


@pytest.mark.parametrize("case", list(CASES))
def test_gpu_step_equals_numpy(case):
    rng = rng_for_test()
    cpu, gpu = pair(CASES[case])
    x = rng.standard_normal((4, 4, 8, 8)).astype(np.float32)
    t = truth_for(cpu, rng)
    for net in (cpu, gpu):
        net.forward(x, train=True, truth=t)
    for lc, lg in zip(cpu.layers, gpu.layers):
        assert rel(lg.output, lc.output) < TOL, f"layer {lc.index} {lc.type} forward"
    if t is None:
        r = rng.standard_normal(cpu.layers[-1].output.shape).astype(np.float32)
        cpu.layers[-1].delta[...] = r
        gpu.layers[-1].delta[...] = gpu.xp.asarray(r)
    dx_cpu = np.zeros_like(x)
    dx_gpu = gpu.xp.zeros(x.shape, dtype=np.float32)
    cpu.backward(dx_cpu)
    gpu.backward(dx_gpu)
    assert rel(dx_gpu, dx_cpu) < TOL, "input delta"
    for lc, lg in zip(cpu.layers, gpu.layers):
        for name in ("weight_updates", "bias_updates", "scale_updates"):
            if getattr(lc, name, None) is not None:
                assert rel(getattr(lg, name), getattr(lc, name)) < TOL, \
                    f"layer {lc.index} {lc.type} {name}"
    cpu.update()
    gpu.update()
    for lc, lg in zip(cpu.layers, gpu.layers):
        for name in lc.weight_record():
            assert rel(getattr(lg, name), getattr(lc, name)) < TOL, \
                f"layer {lc.index} {lc.type} {name} after update"


@pytest.mark.parametrize("body", [CASES["conv_bn_leaky"], CASES["connected_bn"]],
                         ids=["conv_spatial", "connected_n_c_1_1"])
def test_gpu_batchnorm_inference_uses_rolling_statistics(body):
    rng = rng_for_test()
    cpu, gpu = pair(body)
    for lc, lg in zip(cpu.layers, gpu.layers):
        if getattr(lc, "batch_normalize", False):
            for name, lo, hi in (("rolling_mean", -1, 1), ("rolling_variance", 0.5, 2),
                                 ("scales", 0.5, 2), ("biases", -1, 1)):
                v = rng.uniform(lo, hi, getattr(lc, name).shape).astype(np.float32)
                getattr(lc, name)[...] = v
                setattr(lg, name, gpu.xp.asarray(v))
    x = rng.standard_normal((4, 4, 8, 8)).astype(np.float32)
    assert rel(gpu.forward(x), cpu.forward(x)) < TOL


def test_cudnn_is_really_used_for_conv_and_batchnorm():
    from darknet_py.nn.cudnn import get_ops
    _, gpu = pair(CASES["conv_bn_leaky"])
    gpu.forward(rng_for_test().standard_normal((4, 4, 8, 8)), train=True)
    ops = get_ops()
    assert ops is not None
    used = {key[0] for key, plan in ops._plans.items() if plan is not None}
    assert {"fprop", "bn_fwd"} <= used


def test_cudnn_batchnorm_backward_leaves_scales_and_biases_until_update():
    rng = rng_for_test()
    _, gpu = pair(CASES["conv_bn_leaky"])
    layer = gpu.layers[0]
    scales, biases = layer.scales.copy(), layer.biases.copy()
    gpu.forward(rng.standard_normal((4, 4, 8, 8)), train=True)
    layer.delta[...] = gpu.xp.asarray(rng.standard_normal(layer.delta.shape))
    gpu.backward()
    assert (layer.scales == scales).all() and (layer.biases == biases).all()
    assert float(abs(layer.scale_updates).sum()) > 0
    gpu.update()
    assert not (layer.scales == scales).all()


def test_ten_sgd_steps_of_a_bn_classifier_match():
    rng = rng_for_test()
    body = ("[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
            "[maxpool]\nsize=2\nstride=2\n"
            "[connected]\noutput=16\nbatch_normalize=1\nactivation=leaky\n"
            "[connected]\noutput=10\nactivation=linear\n[softmax]\n")
    cpu, gpu = pair(body, c=1, w=12)
    for _ in range(10):
        x = rng.standard_normal((4, 1, 12, 12)).astype(np.float32)
        t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)]
        cpu.train_step(x, t)
        gpu.train_step(x, t)
    for lc, lg in zip(cpu.layers, gpu.layers):
        for name in lc.weight_record():
            assert rel(getattr(lg, name), getattr(lc, name)) < 1e-4, \
                f"layer {lc.index} {lc.type} {name}"


@pytest.mark.parametrize("size,stride,width", [(2, 2, 7), (3, 2, 9), (5, 1, 6), (2, 1, 5)])
def test_gpu_maxpool_kernel_matches_numpy_on_odd_sizes(size, stride, width):
    rng = rng_for_test()
    cpu, gpu = pair(f"[maxpool]\nsize={size}\nstride={stride}\n", w=width)
    x = rng.standard_normal((4, 4, width, width)).astype(np.float32)
    out_cpu, out_gpu = cpu.forward(x, train=True), gpu.forward(x, train=True)
    assert rel(out_gpu, out_cpu) < TOL
    r = rng.standard_normal(out_cpu.shape).astype(np.float32)
    cpu.layers[0].delta[...] = r
    gpu.layers[0].delta[...] = gpu.xp.asarray(r)
    dx_cpu, dx_gpu = np.zeros_like(x), gpu.xp.zeros(x.shape, dtype=np.float32)
    cpu.backward(dx_cpu)
    gpu.backward(dx_gpu)
    assert rel(dx_gpu, dx_cpu) < TOL


def test_version_reports_the_gpu_cuda_and_cudnn(capsys):
    from darknet_py.commands import main
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert "CuPy " in out and "CUDA runtime " in out and "GPU 0: " in out
    assert "compute capability " in out and "cuDNN Frontend " in out
