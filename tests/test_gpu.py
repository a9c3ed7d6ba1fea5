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
               "hard_mish", "gelu", "revleaky", "normalize_channels",
               "normalize_channels_softmax", "normalize_channels_softmax_maxval"]

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
    # AlexeyAB's layers
    "scale_channels": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1)
    + "[avgpool]\n[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n"
      "[scale_channels]\nfrom=-3\n",
    "scale_channels_wh": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1)
    + "[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n"
      "[scale_channels]\nfrom=-2\nscale_wh=1\nactivation=mish\n",
    "sam": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1)
    + "[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n[sam]\nfrom=-2\n",
    "implicit_mul": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1)
    + "[implicit]\nfilters=4\nmean=1\nstd=0.02\n[scale_channels]\nfrom=-2\n",
    "empty": CONV.format(f=4, k=3, s=1, bn=0, act="leaky", g=1) + "[empty]\n"
    + CONV.format(f=4, k=1, s=1, bn=0, act="linear", g=1),
    "conv_stride_x_y": "[convolutional]\nfilters=6\nsize=3\nstride_x=2\nstride_y=1\npad=1\n"
                       "activation=leaky\n",
    "conv_dilation_bn": "[convolutional]\nfilters=6\nsize=3\npad=1\ndilation=2\n"
                        "batch_normalize=1\nactivation=leaky\n",
    "conv_dilation_groups_stride": "[convolutional]\nfilters=4\nsize=3\npad=1\ndilation=3\n"
                                   "stride=2\ngroups=2\nactivation=linear\n",
    "maxpool_stride_x_y": "[maxpool]\nsize=3\nstride_x=2\nstride_y=1\n",
    "maxpool_depth": "[maxpool]\nmaxpool_depth=1\nout_channels=3\n",
    "local_avgpool_3_1": "[local_avgpool]\nsize=3\nstride=1\n",
    "local_avgpool_stride_x_y": "[local_avgpool]\nsize=3\nstride_x=2\nstride_y=1\n",
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
    for lc, lg in zip(cpu.layers, gpu.layers):
        if getattr(lc, "activation", "").startswith("normalize_channels"):
            # AlexeyAB starts these convs with every weight 1: identical channels, whose input
            # gradient is 0 (rounding noise); random weights make the comparison mean something
            w = rng.normal(0, 0.5, lc.weights.shape).astype(np.float32)
            lc.weights[...] = w
            lg.weights = gpu.xp.asarray(w)
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


def test_cudnn_runs_alexeyabs_dilation_and_stride_x_y(monkeypatch):
    """AlexeyAB's dilated / asymmetric-stride convs go through cuDNN's graph, not im2col."""
    from darknet_py.nn.cudnn import get_ops
    # a plan's key: (op, input shapes, output shape, (stride_y, stride_x), pad, dilation, math,
    # layout)
    from darknet_py.nn.layers import convkernel
    monkeypatch.setattr(convkernel, "fits", lambda *a: False)   # few channels: one kernel
    for case, want in (("conv_dilation_bn", ((1, 1), 2, 2, "fp32", "nchw")),
                       ("conv_stride_x_y", ((1, 2), 1, 1, "fp32", "nchw"))):
        _, gpu = pair(CASES[case])
        gpu.forward(rng_for_test().standard_normal((4, 4, 8, 8)), train=True)
        ops = get_ops()
        assert ops is not None
        keys = [k for k, plan in ops._plans.items() if plan is not None and k[0] == "fprop"]
        assert any(k[4:] == want for k in keys), (case, keys)


def test_cudnn_is_really_used_for_conv_and_batchnorm():
    from darknet_py.nn.cudnn import get_ops
    _, gpu = pair(CASES["conv_bn_leaky"])
    gpu.forward(rng_for_test().standard_normal((4, 4, 8, 8)), train=True)
    ops = get_ops()
    assert ops is not None
    used = {key[0] for key, plan in ops._plans.items() if plan is not None}
    assert {"fprop", "bn_fwd"} <= used


def test_batchnorm_plans_read_back_from_the_disk_cache_compute_the_same(tmp_path, monkeypatch):
    """A batch-norm plan is kept on disk when built and read back by a new process (a new
    CudnnOps here): the same outputs and rolling statistics, bit for bit, and no new build."""
    import warnings

    import cupy
    from darknet_py.nn import cudnn as dn
    monkeypatch.setenv("DARKNET_PY_CACHE", str(tmp_path))
    rng = rng_for_test()
    x = cupy.asarray(rng.standard_normal((4, 16, 20, 12)), dtype=cupy.float32)
    dy = cupy.asarray(rng.standard_normal(x.shape), dtype=cupy.float32)
    vec = [cupy.asarray(v, dtype=cupy.float32) for v in rng.uniform(0.5, 1.5, (4, 16))]

    def run(ops):
        s, b, rm, rv = (v.copy() for v in vec)
        y, m, iv = ops.batchnorm_train(x, s, b, rm, rv, 1e-5, 0.01)
        dx, ds, db = ops.batchnorm_backward(dy, x, s, m, iv)
        return [to_numpy(a) for a in (y, m, iv, rm, rv, dx, ds, db)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no engine or no cache would warn
        built = run(dn.CudnnOps())
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cudnn-plans").iterdir()) == \
        ["bn_bwd", "bn_fwd"]
    ops = dn.CudnnOps()
    monkeypatch.setattr(ops.cudnn, "pygraph", _counting(ops.cudnn.pygraph))
    again = run(ops)
    assert ops.cudnn.pygraph.built == 2          # two graphs, both deserialized, none built
    for a, b in zip(built, again):
        assert np.array_equal(a, b)


def test_convolution_plans_are_timed_once_and_their_choice_read_back(tmp_path, monkeypatch,
                                                                     capsys):
    """A convolution's plan is the fastest of cuDNN's candidates on its first call (one line
    on stderr says why the pause); the choice goes to the disk cache and a new process (a new
    CudnnOps here) rebuilds it without timing: bit for bit the same outputs where a
    deterministic engine won, and within fp32 rounding of the heuristic choice's (the plan
    used without a cache) in any case."""
    import cupy
    from darknet_py.nn import cudnn as dn
    rng = rng_for_test()
    x = cupy.asarray(rng.standard_normal((8, 24, 20, 20)), dtype=cupy.float32)
    w = cupy.asarray(rng.standard_normal((32, 24, 3, 3)), dtype=cupy.float32)
    dy = cupy.asarray(rng.standard_normal((8, 32, 20, 20)), dtype=cupy.float32)

    def run(ops):
        return [to_numpy(a) for a in (ops.conv_forward(x, w, 1, 1, 1),
                                      ops.conv_backward_data(dy, w, x.shape, 1, 1, 1),
                                      ops.conv_backward_filter(x, dy, w.shape, 1, 1, 1))]

    monkeypatch.setenv("DARKNET_PY_CACHE", "off")
    heuristic = run(dn.CudnnOps())
    monkeypatch.setenv("DARKNET_PY_CACHE", str(tmp_path))
    ops = dn.CudnnOps()
    timed = []
    monkeypatch.setattr(ops, "_time", lambda plan, pointers, t=ops._time: timed.append(1) or
                        t(plan, pointers))
    capsys.readouterr()
    tuned = run(ops)
    assert len(timed) > 3                       # the heuristic choice and the others, each op
    said = capsys.readouterr().err.splitlines()
    assert [line for line in said if line.startswith("cuDNN: timing")] == [
        f"cuDNN: timing the convolution plans of shapes new to this GPU (once; kept in "
        f"{tmp_path / 'cudnn-plans'})"]
    choice = {p.name.split("-")[0]: p.read_text().split()
              for p in (tmp_path / "cudnn-plans").iterdir()}
    assert sorted(choice) == ["dgrad", "fprop", "wgrad"]
    for words in choice.values():
        assert words == ["heuristic"] or (len(words) == 2 and words[0].isdigit()), words
    again = dn.CudnnOps()
    monkeypatch.setattr(again, "_time", lambda *a: pytest.fail("timed again"))
    read_back = run(again)
    assert "cuDNN: timing" not in capsys.readouterr().err
    for op, a, b, c in zip(("fprop", "dgrad", "wgrad"), tuned, read_back, heuristic):
        assert rel(a, c) < TOL, op
        if choice[op] == ["heuristic"]:
            assert rel(b, a) < TOL, op
        else:
            assert np.array_equal(b, a), op


def _counting(make):
    """``cudnn.pygraph`` counting the graphs made (a graph read back is made without types)."""
    def wrapper(*args, **kw):
        wrapper.built += 1
        assert "io_data_type" not in kw, "a plan was built instead of read back"
        return make(*args, **kw)
    wrapper.built = 0
    return wrapper


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
    # inference: the same output, and no argmax indexes written (only a backward reads them)
    out_gpu = gpu.forward(x, train=False)
    assert rel(out_gpu, cpu.forward(x, train=False)) < TOL
    assert gpu.layers[0].gpu_indexes is None


IMAGE_LAYERS = {
    "yolo_first": (3, 20, "filters=16\nsize=3\nstride=1\npad=1\nbatch_normalize=1\n"
                          "activation=leaky\n"),
    "gray_5x5_stride2": (1, 13, "filters=32\nsize=5\nstride=2\npad=1\nactivation=relu\n"),
    "odd_filters_no_pad": (3, 11, "filters=5\nsize=3\nstride=1\npadding=0\n"
                                  "activation=logistic\n"),
    "stride_x_y_mish": (2, 9, "filters=7\nsize=3\nstride_x=2\nstride_y=1\npad=1\n"
                              "activation=mish\n"),
    "one_by_one": (4, 6, "filters=8\nsize=1\nstride=1\nactivation=linear\n"),
}


@pytest.mark.parametrize("case", list(IMAGE_LAYERS))
def test_gpu_image_layer_kernel_equals_numpy_and_cudnn(case, monkeypatch):
    """A convolution with few input channels runs as one kernel (layers/convkernel.py), batch
    norm folded for inference: its output equals the NumPy engine's and the cuDNN path's
    (convolution + epilogue) within float rounding, for strides, padding, sizes, filter counts
    and an activation whose pre-activation is kept (mish); batch norm in training takes cuDNN."""
    from darknet_py.nn.layers import convkernel
    c, w, options = IMAGE_LAYERS[case]
    rng = rng_for_test()
    cpu, gpu = pair("[convolutional]\n" + options, c=c, w=w)
    layer_cpu, layer_gpu = cpu.layers[0], gpu.layers[0]
    if layer_cpu.batch_normalize:
        for name, lo, hi in (("rolling_mean", -1, 1), ("rolling_variance", 0.5, 2),
                             ("scales", 0.5, 2), ("biases", -1, 1)):
            v = rng.uniform(lo, hi, getattr(layer_cpu, name).shape).astype(np.float32)
            getattr(layer_cpu, name)[...] = v
            setattr(layer_gpu, name, gpu.xp.asarray(v))
        cpu.fold_batchnorm()
        gpu.fold_batchnorm()
    calls = []
    monkeypatch.setattr(convkernel, "forward",
                        lambda *a, inner=convkernel.forward: calls.append(1) or inner(*a))
    x = rng.standard_normal((4, c, w, w)).astype(np.float32)
    want = cpu.forward(x, train=False)
    got = gpu.forward(x, train=False)
    assert calls, "the kernel did not run"
    assert got.shape == want.shape and rel(got, want) < TOL
    keep = layer_cpu.activation == "mish"
    assert (layer_gpu.activation_input is None) == (not keep)
    if keep:
        assert rel(layer_gpu.activation_input, layer_cpu.activation_input) < TOL
    monkeypatch.setattr(convkernel, "fits", lambda *a: False)        # cuDNN and the epilogue
    assert rel(gpu.forward(x, train=False), to_numpy(got)) < TOL


def test_gpu_image_layer_with_batch_norm_trains_through_cudnn(monkeypatch):
    from darknet_py.nn.layers import convkernel
    calls = []
    monkeypatch.setattr(convkernel, "forward",
                        lambda *a, inner=convkernel.forward: calls.append(1) or inner(*a))
    _, gpu = pair("[convolutional]\n" + IMAGE_LAYERS["yolo_first"][2], c=3, w=20)
    gpu.forward(rng_for_test().standard_normal((4, 3, 20, 20)).astype(np.float32), train=True)
    assert not calls


def test_version_reports_the_gpu_cuda_and_cudnn(capsys):
    from darknet_py.commands import main
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert "CuPy " in out and "CUDA runtime " in out and "GPU 0: " in out
    assert "compute capability " in out and "cuDNN Frontend " in out


# ------------------------------------------------------------------------------------------------
# the [yolo] and [region] losses on the device
# ------------------------------------------------------------------------------------------------

DETECTION_HEADS = {
    "yolo": "",
    "yolo_alexeyab": "iou_loss=ciou\niou_normalizer=0.07\ncls_normalizer=1.5\nobj_normalizer=2\n"
                     "iou_thresh=0.2\niou_thresh_kind=giou\nmax_delta=5\nmask=0,1,2\n"
                     "counters_per_class=10,20,30,5\nlabel_smooth_eps=0.1\ntruth_thresh=0.35\n"
                     "ignore_thresh=0.3\n",
    "yolo_focal_giou": "focal_loss=1\niou_loss=giou\ntruth_thresh=0.3\nignore_thresh=0.2\n",
    "yolo_new_coords_ciou": "new_coords=1\nscale_x_y=2.0\niou_loss=ciou\niou_normalizer=0.05\n"
                            "obj_normalizer=4\niou_thresh=0.2\nmax_delta=5\ntruth_thresh=0.35\n"
                            "ignore_thresh=0.3\n",
    "yolo_new_coords_mse": "new_coords=1\n",
    "yolo_objectness_smooth": "objectness_smooth=1\nnew_coords=1\nscale_x_y=2.0\n"
                              "iou_loss=ciou\niou_normalizer=0.05\ntruth_thresh=0.35\n"
                              "ignore_thresh=0.2\ncounters_per_class=10,20,30,5\n",
    "region_voc": "softmax=1\nbias_match=1\nrescore=1\nobject_scale=5\n",
    "region_logistic": "softmax=0\nbias_match=0\nbackground=1\nthresh=0.2\n",
}


@pytest.mark.parametrize("kind", ["iou", "giou", "mse", "diou", "ciou"])
def test_gpu_dx_box_iou_equals_numpy(kind):
    """AlexeyAB's box deltas (box.dx_box_iou, float32) on CuPy columns equal NumPy's bit for bit
    on random and degenerate pairs (ciou: within its atan's rounding)."""
    import cupy
    from darknet_py.box import dx_box_iou
    from test_ab_box_oracle import assert_equal_f32, box_pairs
    p, t = box_pairs(rng_for_test())
    want = np.stack(dx_box_iou(tuple(p.T), tuple(t.T), kind), axis=1)
    got = dx_box_iou(tuple(cupy.asarray(p).T), tuple(cupy.asarray(t).T), kind)
    assert all(isinstance(v, cupy.ndarray) and v.dtype == np.float32 for v in got)
    assert_equal_f32(np.stack([to_numpy(v) for v in got], axis=1), want, kind)


def _detection_head(case):
    from test_yolo_loss import region_head, yolo_head
    head = region_head if case.startswith("region") else yolo_head
    return head(DETECTION_HEADS[case])


def _same_stats(got, want):
    for key in ("count", "recall", "recall75", "cells"):
        assert got[key] == want[key], key
    for key in ("iou", "cls", "obj", "anyobj"):
        assert got[key] == pytest.approx(want[key], rel=TOL, abs=1e-9), key


@pytest.mark.parametrize("seen", [0, 20000], ids=["anchor-prior", "after-12800-images"])
@pytest.mark.parametrize("case", list(DETECTION_HEADS))
def test_gpu_detection_loss_equals_numpy(case, seen):
    """The loss functions on CuPy outputs and truths equal their NumPy results, on crowded
    truth tables (duplicates, shared cells, rows after the end marker) and outputs with exact
    0/1 probabilities (Darknet's class-delta test); the device keeps the whole truth table."""
    import cupy
    from darknet_py.nn.layers.yololoss import fetch_stats, region_loss, yolo_loss
    from test_yolo_loss import BATCH, crowded_truths, head_output
    rng = rng_for_test()
    layer = _detection_head(case)
    region = layer.type == "region"
    cells = BATCH * layer.n * layer.h * layer.w
    eps = getattr(layer, "label_smooth_eps", 0)
    for _ in range(3):
        out = head_output(rng, layer, saturate=(0.0, 1.0, 0.5 * eps, 1 - 0.5 * eps))
        truth = crowded_truths(rng, BATCH, layer.classes, rows=30 if region else 90,
                               zero_size=False)
        args = (seen,) if region else ()
        loss = region_loss if region else yolo_loss
        d_cpu, t_cpu = loss(layer, out, truth, *args)
        d_gpu, t_gpu = loss(layer, cupy.asarray(out), cupy.asarray(truth), *args)
        assert isinstance(d_gpu, cupy.ndarray) and d_gpu.dtype == d_cpu.dtype
        assert rel(d_gpu, d_cpu) < TOL
        cost_gpu, stats_gpu = fetch_stats(t_gpu, cells)
        cost_cpu, stats_cpu = fetch_stats(t_cpu, cells)
        assert cost_gpu == pytest.approx(cost_cpu, rel=TOL)
        _same_stats(stats_gpu, stats_cpu)


@pytest.mark.parametrize("case", list(DETECTION_HEADS))
def test_gpu_detection_head_training_forward_equals_numpy(case):
    """A network's [yolo]/[region] forward in training (truth moved by Network.forward) gives
    the NumPy network's deltas, cost and report line."""
    from test_yolo_loss import BATCH, crowded_truths
    rng = rng_for_test()
    layer = _detection_head(case)
    region = layer.type == "region"
    head = ("[region]\nclasses=4\ncoords=4\nnum=3\nanchors=0.5,0.8, 1.5,1.5, 3,2.5\n" if region
            else "[yolo]\nclasses=4\nnum=5\nmask=1,2,3\nanchors=1,1.5, 2,2, 3,2.5, 4,5, 6,6\n")
    text = (f"[net]\nbatch={BATCH}\nchannels={layer.c}\nwidth=16\nheight=16\n"
            f"[maxpool]\nsize=2\nstride=2\n{head}{DETECTION_HEADS[case]}")
    cpu, gpu = build(text, seed=1), build(text, seed=1, device="gpu")
    x = (rng.standard_normal((BATCH, layer.c, 16, 16)) * 2).astype(np.float32)
    truth = crowded_truths(rng, BATCH, 4, rows=30 if region else 90, zero_size=False)
    for net in (cpu, gpu):
        net.forward(x, train=True, truth=truth)
    lc, lg = cpu.layers[-1], gpu.layers[-1]
    assert rel(lg.delta, lc.delta) < TOL
    assert lg.cost == pytest.approx(lc.cost, rel=TOL)
    _same_stats(lg.stats, lc.stats)
    assert lg.report().split(",")[-1] == lc.report().split(",")[-1]        # count: N


@pytest.mark.parametrize("case", ["yolo_alexeyab", "region_logistic"])
def test_gpu_detection_loss_fetches_only_its_statistics(case, monkeypatch):
    """The outputs stay on the device: the loss kernels (yolokernel) read a truth table on
    the device, so the forward runs without a device-to-host copy (CuPy's synchronisation
    detector, where this CuPy has it) and fetches nothing until the statistics are asked
    for, then one array of len(STATS) values."""
    import warnings
    from types import SimpleNamespace

    import cupy
    import cupyx
    from darknet_py.nn.layers import yololoss
    from test_yolo_loss import BATCH, crowded_truths
    rng = rng_for_test()
    layer = _detection_head(case)
    truth = cupy.asarray(crowded_truths(rng, BATCH, layer.classes,
                                        rows=30 if layer.type == "region" else 90))
    x = cupy.asarray(rng.standard_normal((BATCH, layer.c, layer.h, layer.w)), dtype=np.float32)

    def forward():
        layer.forward(SimpleNamespace(xp=cupy, input=x, truth=truth, train=True, delta=None,
                                      seen=0))
    detector = getattr(cupyx, "allow_synchronize", None)
    if detector is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with detector(False):
                forward()
    fetched = []
    real = yololoss.to_numpy
    monkeypatch.setattr(yololoss, "to_numpy", lambda a: (
        fetched.append(a.size) if isinstance(a, cupy.ndarray) else None) or real(a))
    forward()
    assert fetched == []                   # the statistics wait on the device until asked for
    assert isinstance(layer.delta, cupy.ndarray) and isinstance(layer.cost, float)
    assert layer.stats["count"] >= 0 and fetched == [len(yololoss.STATS)]


# ------------------------------------------------------------------------------------------------
# training batches copied to the device from pinned memory on a stream of their own
# ------------------------------------------------------------------------------------------------

def _random_batches(seed, shapes):
    def make(k):
        r = np.random.default_rng([seed, k])
        n = shapes[k][0]
        return r.random(shapes[k], dtype=np.float32), r.random((n, 10), dtype=np.float32)
    return make


def test_batches_reach_the_gpu_from_pinned_memory_equal_to_the_host_batches():
    """Through a ring of device buffers that is reused, grown (a larger size, as multi-scale
    training) and shrunk, every batch arrives as made; the host side is pinned."""
    import cupy
    from darknet_py.data.datasets import Batches
    from darknet_py.nn.backend import resolve_device
    seed = int(rng_for_test().integers(1 << 30))
    shapes = [(4, 3, 8, 8)] * 6 + [(4, 3, 32, 32)] * 6 + [(2, 3, 8, 8)] * 6
    make = _random_batches(seed, shapes)
    batches = Batches(make, 0, prefetch=2, device=resolve_device("gpu"))
    try:
        for k in range(len(shapes)):
            x, truth = batches.next()
            assert isinstance(x, cupy.ndarray) and x.shape == shapes[k]
            want_x, want_truth = make(k)
            np.testing.assert_array_equal(cupy.asnumpy(x), want_x)
            np.testing.assert_array_equal(cupy.asnumpy(truth), want_truth)
        host = batches._stage._ring[0].host
        attributes = cupy.cuda.runtime.pointerGetAttributes(host.ctypes.data)
        assert attributes.type == 1           # cudaMemoryTypeHost: page-locked, not pageable
    finally:
        batches.close()


def test_a_device_buffer_is_not_overwritten_while_the_training_stream_still_reads_it():
    """The consumer queues long work, then reads each batch, and asks for the next batch
    before the GPU got there: the copies that reuse a buffer must wait for that read."""
    import cupy
    from darknet_py.data.datasets import Batches
    from darknet_py.nn.backend import resolve_device
    seed = int(rng_for_test().integers(1 << 30))
    shapes = [(8, 3, 64, 64)] * 24
    make = _random_batches(seed, shapes)
    batches = Batches(make, 0, prefetch=1, device=resolve_device("gpu"))
    busy = cupy.ones((2048, 2048), np.float32) / 2048
    sums = []
    try:
        for _ in shapes:
            x, _ = batches.next()
            for _ in range(8):                 # keeps the stream busy well past next()
                busy = busy @ busy
            sums.append((x * (1 + 0 * busy[0, 0])).sum(dtype=np.float64))
        got = [float(s) for s in sums]
    finally:
        batches.close()
    want = [float(make(k)[0].sum(dtype=np.float64)) for k in range(len(shapes))]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_detector_training_on_the_gpu_with_loader_processes(tmp_path):
    """Worker processes feed a GPU detector through the device staging; the run ends with
    finite losses and its weights."""
    import os
    import re
    from darknet_py.data.shapes import make_shapes
    from darknet_py.train.detector import DetectorTrainer
    from darknet_py.train.options import TrainOptions
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    make_shapes(tmp_path / "set", 24, size=(96, 96), seed=int(rng_for_test().integers(100)),
                absolute=True)
    cfg = open(os.path.join(root, "cfg/shapes-tiny.cfg")).read()
    for key, value in (("batch", 8), ("width", 96), ("height", 96), ("burn_in", 0)):
        cfg = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", cfg)
    (tmp_path / "s.cfg").write_text(cfg)
    data = (tmp_path / "set" / "shapes.data").read_text()
    (tmp_path / "s.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data))
    trainer = DetectorTrainer(str(tmp_path / "s.cfg"), str(tmp_path / "s.data"),
                              options=TrainOptions(device="gpu", seed=2, progress=False,
                                                   max_batches=6, loader_processes=2,
                                                   map=False),
                              out=open(os.devnull, "w"))
    try:
        assert trainer.run() == 0
    finally:
        trainer.train_set.close()
    assert len(trainer.losses) == 6 and all(np.isfinite(l) for _, l, _ in trainer.losses)
    assert (tmp_path / "bk" / "s_final.weights").exists()
