"""AlexeyAB's ``[net] ema_alpha`` (darknet_py/train/ema.py): the schedule against AB's rules
(ab:src/network.c train_network_waitkey), the update formula on a short classifier training,
``<cfg>_ema.weights`` (ab:src/parser.c save_convolutional_weights_ema), --resume, cfg check."""

import os
import re
import shutil

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.cfg.check import check_cfg
from darknet_py.data.shapes import make_shapes
from darknet_py.errors import CfgError
from darknet_py.nn.network import Network
from darknet_py.train.detector import DetectorTrainer
from darknet_py.train.ema import EMA_NAMES, ema_schedule
from darknet_py.train.options import TrainOptions
from darknet_py.train.trainer import Trainer
from test_train import CFG, ROOT, make_project, trainer

ALPHA = 0.75
# max_batches 2010: the EMA starts at 1005 and is applied at 1010; the runs start from weights
# saved at iteration 1003 and stop at 1012 (--max-batches), so each runs 9 iterations
EMA_CFG = CFG.format(lr=0.05).replace("max_batches=12", f"max_batches=2010\nema_alpha={ALPHA}")
START, INIT, APPLY, STOP = 1003, 1005, 1010, 1012


def ab_schedule(cur_iteration, max_batches, initialized):
    """AB's train_network_waitkey after update_network, as written: the calls it makes."""
    calls = []
    ema_start_point = max_batches // 2          # C's int / int on non-negative values
    if cur_iteration >= ema_start_point:
        ema_apply_point = max_batches - 1000
        if not initialized:
            calls.append("ema_update(0)")
        if cur_iteration == ema_apply_point:
            calls.append("ema_apply")
        elif cur_iteration < ema_apply_point:
            calls.append("ema_update(alpha)")
    return calls


@pytest.mark.parametrize("max_batches", [6000, 2001, 2000, 1001, 12, 7, 0])
def test_the_schedule_is_alexeyabs(max_batches):
    for initialized in (False, True):
        for k in range(0, max_batches + 3):
            action = ema_schedule(k, max_batches)
            expected = ab_schedule(k, max_batches, initialized)
            got = [] if action is None else ["ema_update(0)"] * (not initialized) + \
                {"apply": ["ema_apply"], "update": ["ema_update(alpha)"], "keep": []}[action]
            assert got == expected, (k, max_batches, initialized)
    # the landmarks: above 2000 start, updates, the apply point, then nothing
    assert [ema_schedule(k, 6000) for k in (2999, 3000, 4999, 5000, 5001)] == \
        [None, "update", "update", "apply", "keep"]
    # a small max_batches: the apply point is negative, only the initialisation happens
    assert [ema_schedule(k, 12) for k in (5, 6, 7, 12)] == [None, "keep", "keep", "keep"]


def start_weights(project):
    """The halves classifier's initial weights, saved as if at iteration START."""
    (project / "halves.cfg").write_text(EMA_CFG)
    net = Network.from_cfg(str(project / "halves.cfg"), seed=int(rng_for_test().integers(1000)))
    net.seen = START * 8                    # batch=8 images per iteration
    path = project / "start.weights"
    net.save_weights(path)
    return str(path)


def conv_arrays(net):
    """{(layer index, name): a copy} of each [convolutional]'s parameters and EMA arrays."""
    return {(layer.index, name): np.array(array) for layer in net.layers
            for name, array in layer.state().items()
            if name in EMA_NAMES or name in EMA_NAMES.values()}


def record_iterations(monkeypatch):
    """Hooks recording the conv arrays after each update ({iteration: arrays}, from the network
    that updated: a multi-scale copy shares the arrays) and after each whole iteration."""
    updated, after = {}, {}
    real_update, real_after = Network.update, Trainer._after_iteration

    def update(net):
        done = real_update(net)
        updated[net.seen // net.update_batch] = conv_arrays(net)
        return done

    def after_iteration(self, k, log, interrupt):
        after[k] = conv_arrays(self.net)
        return real_after(self, k, log, interrupt)

    monkeypatch.setattr(Network, "update", update)
    monkeypatch.setattr(Trainer, "_after_iteration", after_iteration)
    return updated, after


def check_recursion(updated, after, alpha):
    """The EMA after each iteration is AB's: zeros before INIT; at INIT ema_update(0) then
    ema_update(alpha); ema = alpha ema + (1 - alpha) w (float32) until APPLY, where the weights
    become the EMA; unchanged after."""
    assert sorted(after) == list(range(START + 1, STOP + 1))
    a, keep = np.float32(alpha), np.float32(1) - np.float32(alpha)
    params = [(i, p) for i, p in after[STOP] if (i, EMA_NAMES.get(p)) in after[STOP]]
    assert params
    ema = {}
    for k in range(START + 1, STOP + 1):
        for index, p in params:
            w, got = updated[k][index, p], after[k][index, EMA_NAMES[p]]
            assert got.dtype == np.float32
            if k < INIT:
                assert not got.any() and np.array_equal(after[k][index, p], w)
                continue
            if k == INIT:                   # initialised (ema_update with alpha 0), updated
                zero = np.float32(0)
                ema[index, p] = zero * np.zeros_like(w) + (np.float32(1) - zero) * w
                ema[index, p] = a * ema[index, p] + keep * w
            elif k < APPLY:
                ema[index, p] = a * ema[index, p] + keep * w
            assert np.array_equal(got, ema[index, p]), (k, index, p)
            if k == APPLY:                  # ema_apply: the weights are the EMA
                assert np.array_equal(after[k][index, p], ema[index, p])
                assert not np.array_equal(w, ema[index, p])
            else:
                assert np.array_equal(after[k][index, p], w)
    return params


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def test_the_ema_follows_the_formula_after_each_update(project, monkeypatch):
    weights = start_weights(project)
    updated, after = record_iterations(monkeypatch)
    t = trainer(project, weights, max_batches=STOP)
    assert t.iteration == START and t.run() == 0
    assert check_recursion(updated, after, ALPHA) == [(0, "biases"), (0, "scales"),
                                                      (0, "weights")]
    # the rolling statistics are not averaged, and other layers have no EMA
    assert "rolling_mean_ema" not in t.net.layers[0].state()
    assert not any(name.endswith("_ema") for layer in t.net.layers[1:] for name in layer.state())
    # the last weights continue from the EMA applied at APPLY
    assert not np.array_equal(after[STOP][0, "weights"], after[APPLY][0, "weights"])


def test_multi_scale_detector_copies_share_the_ema(tmp_path, monkeypatch):
    """A detector with random=1 trains through resized copies (Network.resized): they share
    the EMA arrays, and the EMA follows the updates made through them."""
    make_shapes(tmp_path / "set", 16, size=(96, 96), seed=3, absolute=True)
    cfg = open(os.path.join(ROOT, "cfg/shapes-tiny.cfg")).read()
    for key, value in (("batch", 4), ("subdivisions", 1), ("width", 96), ("height", 96),
                       ("burn_in", 0), ("max_batches", "2010\nema_alpha=0.5"),
                       ("steps", "1500,1800")):
        cfg = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", cfg)
    assert "random=1" in cfg and "ema_alpha=0.5" in cfg
    (tmp_path / "det.cfg").write_text(cfg)
    data = (tmp_path / "set" / "shapes.data").read_text()
    (tmp_path / "det.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/b", data))
    net = Network.from_cfg(str(tmp_path / "det.cfg"), seed=int(rng_for_test().integers(1000)))
    net.seen = START * 4
    net.save_weights(tmp_path / "start.weights")
    # every other iteration at 64x64 (AB's rule: the largest size so close to the run's end)
    monkeypatch.setattr(DetectorTrainer, "_size_for",
                        lambda self, k: (64, 64) if k % 2 else (96, 96))
    updated, after = record_iterations(monkeypatch)
    t = DetectorTrainer(str(tmp_path / "det.cfg"), str(tmp_path / "det.data"),
                        str(tmp_path / "start.weights"),
                        TrainOptions(device="cpu", seed=1, progress=False, map=False,
                                     max_batches=STOP, loader_processes=0),
                        out=open(os.devnull, "w"))
    assert t.run() == 0
    (small,) = t._nets.values()
    assert small.input_shape[1:] == (64, 64)
    for mine, theirs in zip(t.net.layers, small.layers):
        for name in EMA_NAMES.values():
            if name in mine.state():
                assert getattr(theirs, name) is getattr(mine, name)
    params = check_recursion(updated, after, 0.5)
    convs = [layer.index for layer in t.net.layers if layer.type == "convolutional"]
    assert sorted({index for index, _ in params}) == convs
    assert (t.net.layers[convs[-1]].batch_normalize, (convs[-1], "scales") in params) == \
        (False, False)


def test_ema_weights_file_holds_the_ema_in_the_conv_layers(project):
    weights = start_weights(project)
    backup = project / "backup"
    assert trainer(project, weights, max_batches=INIT - 1, backup_every=1).run() == 0
    assert (backup / "halves_last.weights").exists()
    assert not (backup / "halves_ema.weights").exists()       # not initialised yet
    shutil.rmtree(backup)
    t = trainer(project, weights, max_batches=STOP)
    assert t.run() == 0
    conv, connected = t.net.layers[0], t.net.layers[3]
    assert connected.type == "connected"
    saved = Network.from_cfg(str(project / "halves.cfg"), seed=1)
    saved.load_weights(str(backup / "halves_ema.weights"))
    assert saved.seen == STOP * 8
    for p, e in EMA_NAMES.items():
        assert np.array_equal(getattr(saved.layers[0], p), getattr(conv, e)), p
    for name in ("rolling_mean", "rolling_variance"):
        assert np.array_equal(getattr(saved.layers[0], name), getattr(conv, name))
    for name in connected.weight_record():
        assert np.array_equal(getattr(saved.layers[3], name), getattr(connected, name))
    # the EMA stopped at APPLY, the weights did not: the two files differ
    last = Network.from_cfg(str(project / "halves.cfg"), seed=1)
    last.load_weights(str(backup / "halves_last.weights"))
    assert not np.array_equal(last.layers[0].weights, saved.layers[0].weights)


def test_resume_from_the_middle_equals_an_uninterrupted_run(project):
    weights = start_weights(project)
    backup = project / "backup"
    assert trainer(project, weights, max_batches=STOP).run() == 0
    expected = {name: (backup / name).read_bytes()
                for name in ("halves_final.weights", "halves_ema.weights")}
    with np.load(backup / "halves_last.state.npz") as state:
        expected_ema = {k: state[k] for k in state.files if k.endswith("_ema")}
    assert sorted(expected_ema) == ["0/biases_ema", "0/scales_ema", "0/weights_ema"]
    shutil.rmtree(backup)
    # stopped between the initialisation and the apply point: AB would start the EMA over
    assert trainer(project, weights, max_batches=INIT + 2).run() == 0
    resumed = trainer(project, resume=True, seed=None, max_batches=STOP)
    assert resumed.iteration == INIT + 2 and resumed.ema.initialized()
    assert resumed.run() == 0
    for name, data in expected.items():
        assert (backup / name).read_bytes() == data, name
    with np.load(backup / "halves_last.state.npz") as state:
        for key, value in expected_ema.items():
            assert np.array_equal(state[key], value), key


NET = "[net]\nbatch=2\nwidth=16\nheight=16\nchannels=3\nmax_batches=100\n{}\n"
LAYERS = "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"


@pytest.mark.parametrize("value", ["0.9998", "0", "0.5"])
def test_cfg_check_accepts_ema_alpha(tmp_path, value):
    path = tmp_path / "ema.cfg"
    path.write_text(NET.format(f"ema_alpha={value}") + LAYERS)
    assert not [f for f in check_cfg(str(path)) if f.level == "error"]
    assert build(NET.format(f"ema_alpha={value}") + LAYERS).options.ema_alpha == float(value)


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_ema_alpha_outside_0_1_is_an_error_at_its_line(tmp_path, value):
    text = NET.format(f"ema_alpha={value}") + LAYERS
    path = tmp_path / "ema.cfg"
    path.write_text(text)
    errors = [f for f in check_cfg(str(path)) if f.level == "error"]
    assert [(f.line, f.message) for f in errors] == [
        (7, f"ema_alpha={value} in [net] must be in [0, 1), the weight of the old average in "
            "AlexeyAB's EMA of the weights (0: off; AlexeyAB's cfgs use 0.9998)")]
    with pytest.raises(CfgError) as e:
        build(text)
    assert e.value.line == 7 and e.value.message == errors[0].message


@pytest.mark.gpu
def test_the_ema_on_the_gpu_equals_the_cpu_and_stays_on_the_device():
    """The same schedule on a GPU network: the same float32 values, every array a CuPy one."""
    import cupy

    from darknet_py.train.ema import Ema
    text = NET.format("ema_alpha=0.9") + LAYERS + LAYERS.replace("leaky", "linear") \
        .replace("[convolutional]", "[convolutional]\nbatch_normalize=1")
    text = text.replace("max_batches=100", "max_batches=2006")      # start 1003, apply 1006
    cpu, gpu = build(text), build(text, device="gpu")
    emas = Ema.for_net(cpu), Ema.for_net(gpu)
    rng = rng_for_test()
    for k in range(1001, 1009):
        for a, b in zip(cpu.layers, gpu.layers):
            for p in EMA_NAMES:
                if p in a.state():
                    w = rng.standard_normal(getattr(a, p).shape).astype(np.float32)
                    getattr(a, p)[...] = w
                    getattr(b, p)[...] = cupy.asarray(w)
        assert emas[0].after_update(k) == emas[1].after_update(k)
        for a, b in zip(cpu.layers, gpu.layers):
            for name, array in a.state().items():
                assert isinstance(getattr(b, name), cupy.ndarray)
                assert np.array_equal(cupy.asnumpy(getattr(b, name)), array), (k, name)
