"""The recurrent layers: [rnn] against pj's Darknet (the oracle, Debian's libdarknet), its
gradients by finite differences (float64), its weights file, and the GPU engine against NumPy.

pj's CPU [rnn] backward is the exact gradient only with ``activation=linear``, no batch norm and
no shortcut (rnn.py and docs/notes.md say why), so the SGD comparisons use that; the forward is
compared for every option, the training forward with batch norm using pj's CPU BN formulas
(monkeypatched in, as tests/test_darknet_conformance.py does).
"""

import numpy as np
import pytest

from darknet_py import Network
from darknet_py.errors import CfgError
from darknet_py.nn.backend import to_numpy

from conftest import build, require_darknet, rng_for_test
from oracle.darknet import DarknetOracle
from test_darknet_conformance import (EXACT_BN_RTOL, EXACT_RTOL, pj_cpu_batchnorm_backward,
                                      pj_cpu_batchnorm_forward, rel_err)
from test_gradients import assert_grad_close, numeric_grad

ORACLE_OK, ORACLE_WHY = DarknetOracle.available()
STEPS, BATCH, INPUTS, CLASSES = 4, 3, 5, 3


def net_cfg(section, steps=STEPS, batch=BATCH):
    """input 5 -> connected(leaky) -> ``section`` -> connected -> softmax: the first connected
    gets the recurrent layer's input delta, so its update checks it."""
    return (f"[net]\nbatch={batch}\nsubdivisions=1\ntime_steps={steps}\ninputs={INPUTS}\n"
            "learning_rate=0.1\nmomentum=0.9\ndecay=0.001\n\n"
            f"[connected]\noutput=4\nactivation=leaky\n\n{section}\n"
            f"[connected]\noutput={CLASSES}\nactivation=linear\n\n[softmax]\n")


def rnn_cfg(activation="linear", bn=0, shortcut=0, extra="", output=6, steps=STEPS,
            batch=BATCH):
    return net_cfg(f"[rnn]\noutput={output}\nactivation={activation}\nbatch_normalize={bn}\n"
                   f"shortcut={shortcut}\n{extra}", steps, batch)


def gru_cfg(bn=0, tanh=0, output=6):
    return net_cfg(f"[gru]\noutput={output}\nbatch_normalize={bn}\ntanh={tanh}\n")


def crnn_cfg(activation="linear", bn=0, shortcut=0, steps=STEPS, batch=BATCH):
    """A 4x4x2 image -> conv(leaky) -> [crnn] (pj's keys: 3x3 pad 1) -> connected -> softmax."""
    return (f"[net]\nbatch={batch}\nsubdivisions=1\ntime_steps={steps}\nwidth=4\nheight=4\n"
            "channels=2\nlearning_rate=0.1\nmomentum=0.9\ndecay=0.001\n\n"
            "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=leaky\n\n"
            f"[crnn]\noutput_filters=4\nhidden_filters=3\nactivation={activation}\n"
            f"batch_normalize={bn}\nshortcut={shortcut}\n\n"
            f"[connected]\noutput={CLASSES}\nactivation=linear\n\n[softmax]\n")


def lstm_cfg(bn=0, output=6):
    return net_cfg(f"[lstm]\noutput={output}\nbatch_normalize={bn}\n")


CASES = {
    "rnn-linear": rnn_cfg("linear"), "rnn-leaky": rnn_cfg("leaky"),
    "rnn-logistic-shortcut": rnn_cfg("logistic", 0, 1), "rnn-tanh-bn": rnn_cfg("tanh", 1, 0),
    "rnn-leaky-bn-shortcut": rnn_cfg("leaky", 1, 1),
    "gru": gru_cfg(), "gru-tanh": gru_cfg(tanh=1), "gru-bn": gru_cfg(bn=1),
    "gru-tanh-bn": gru_cfg(bn=1, tanh=1), "lstm": lstm_cfg(), "lstm-bn": lstm_cfg(bn=1),
    "crnn-linear": crnn_cfg(), "crnn-leaky-shortcut": crnn_cfg("leaky", 0, 1),
    "crnn-tanh-bn": crnn_cfg("tanh", 1),
}


def floats(path):
    return np.fromfile(path, np.float32)[5:]      # after the 20-byte header (64-bit seen)


def darknet_run(cfg, tmp_path, seed, train_steps=0, inference_passes=1, train_forward=False):
    """Darknet: random init + randomize_bn, saved; forwards and SGD steps on seeded data.
    Returns (x, truths, start weights path, [outputs per pass], [costs], end weights path)."""
    require_darknet(ORACLE_OK, ORACLE_WHY, "the [rnn] oracle tests")
    rng = np.random.default_rng(seed)
    start, end = tmp_path / "start.weights", tmp_path / "end.weights"
    with DarknetOracle.load(cfg, batch=0, seed=seed) as dn:
        x = rng.random((dn.batch, dn.inputs), dtype=np.float32)
        truths = [np.eye(dn.truths, dtype=np.float32)[rng.integers(0, dn.truths, dn.batch)]
                  for _ in range(train_steps)]
        dn.randomize_bn(seed)
        dn.save(start)
        outs = []
        for _ in range(inference_passes):
            dn.forward(x, train=train_forward)
            outs.append([dn.layer_output(i) for i in range(dn.n_layers)])
        costs = [dn.train_step(x, t) for t in truths]
        dn.save(end)
    return x, truths, start, outs, costs, end


def py_net(cfg, weights):
    net = Network.from_cfg(str(cfg), warn=False)
    assert net.load_weights(str(weights)) == len(net.layers)
    return net


def write(tmp_path, text):
    cfg = tmp_path / "rnn.cfg"
    cfg.write_text(text)
    return cfg


def compensate_bn(net):
    """Darknet's CPU inference BN divides by sqrt(rv) + 1e-6, darknet_py by sqrt(rv + 1e-5)."""
    for layer in net.layers:
        parts = layer.part_layers() if hasattr(layer, "parts") else [layer]
        for part in parts:
            if getattr(part, "batch_normalize", False):
                rv = np.asarray(part.rolling_variance, np.float64)
                part.rolling_variance = ((np.sqrt(rv) + 1e-6) ** 2 - 1e-5).astype(np.float32)


# -- against pj's Darknet ----------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_inference_equals_darknet_and_carries_the_state(tmp_path, case):
    """Two inference passes: the second starts from the state the first left (pj l.state)."""
    cfg = write(tmp_path, CASES[case])
    x, _, start, outs, _, _ = darknet_run(cfg, tmp_path, seed=7, inference_passes=2)
    net = py_net(cfg, start)
    compensate_bn(net)
    for p, ref in enumerate(outs):
        net.forward(x)
        for i, layer in enumerate(net.layers):
            got = to_numpy(layer.output).reshape(len(x), -1)
            err = rel_err(got, ref[i])
            assert err <= EXACT_RTOL, f"pass {p} layer {i} ({layer.type}): rel_err {err:.3g}"
    assert rel_err(outs[1][1], outs[0][1]) > 1e-3, "the state carried over changes nothing"


@pytest.mark.parametrize("case", ["rnn-tanh-bn", "rnn-leaky-bn-shortcut", "gru-bn",
                                  "gru-tanh-bn", "lstm-bn", "crnn-tanh-bn"])
def test_training_forward_with_batchnorm_equals_darknet(tmp_path, monkeypatch, case):
    """Batch statistics per step and part (pj's CPU BN formulas swapped in), and the rolling
    statistics each part's BN then holds (Darknet's saved file)."""
    import darknet_py.nn.layers.epilogue as epilogue
    monkeypatch.setattr(epilogue, "batchnorm_forward", pj_cpu_batchnorm_forward)
    monkeypatch.setattr(epilogue, "batchnorm_backward", pj_cpu_batchnorm_backward)
    cfg = write(tmp_path, CASES[case])
    x, _, start, outs, _, _ = darknet_run(cfg, tmp_path, seed=11, train_forward=True)
    with DarknetOracle.load(cfg, str(start), batch=0, seed=11) as dn:
        dn.forward(x, train=True)
        dn.save(tmp_path / "stats.weights")
    net = py_net(cfg, start)
    net.forward(x, train=True)
    for i, layer in enumerate(net.layers):
        err = rel_err(to_numpy(layer.output).reshape(len(x), -1), outs[0][i])
        assert err <= EXACT_BN_RTOL, f"layer {i} ({layer.type}): rel_err {err:.3g}"
    net.save_weights(str(tmp_path / "py.weights"))
    err = rel_err(floats(tmp_path / "py.weights"), floats(tmp_path / "stats.weights"))
    assert err <= EXACT_BN_RTOL, f"rolling statistics: rel_err {err:.3g}"


@pytest.mark.parametrize("make,steps,batch", [(rnn_cfg, 4, 3), (rnn_cfg, 2, 4), (rnn_cfg, 1, 5),
                                              (crnn_cfg, 3, 2)],
                         ids=["rnn-4x3", "rnn-2x4", "rnn-1x5", "crnn-3x2"])
def test_sgd_steps_equal_darknet(tmp_path, make, steps, batch):
    """Three train_network_datum steps (momentum and decay act): every weight of the file and
    the loss; the layer before the recurrent one learns from its input delta."""
    cfg = write(tmp_path, make("linear", steps=steps, batch=batch))
    x, truths, start, _, costs, end = darknet_run(cfg, tmp_path, seed=steps, train_steps=3)
    net = py_net(cfg, start)
    assert net.batch == steps * batch
    py_costs = [float(net.train_step(x, t)) * len(x) for t in truths]
    assert rel_err(py_costs, costs) <= EXACT_RTOL, (py_costs, costs)
    net.save_weights(str(tmp_path / "py.weights"))
    before, want, got = floats(start), floats(end), floats(tmp_path / "py.weights")
    assert np.abs(want - before).max() > 0
    err = rel_err(got - before, want - before)
    assert err <= 2 * EXACT_RTOL, f"weight changes: rel_err {err:.3g}"


@pytest.mark.parametrize("case", ["rnn-leaky", "rnn-tanh-bn", "gru", "gru-bn", "lstm",
                                  "lstm-bn", "crnn-linear", "crnn-tanh-bn"])
def test_darknet_weights_round_trip_byte_identical(tmp_path, case):
    cfg = write(tmp_path, CASES[case])
    *_, start, _, _, _ = darknet_run(cfg, tmp_path, seed=3, inference_passes=0)
    py_net(cfg, start).save_weights(str(tmp_path / "again.weights"))
    assert (tmp_path / "again.weights").read_bytes() == start.read_bytes()


# -- gradients (float64) ------------------------------------------------------------------

def rnn_params(net):
    """(layer, parameter name) of every trained array of the recurrent layers' parts, with
    its update buffer's name."""
    out = []
    for layer in net.layers:
        for key in layer.state():
            for p, u in (("weights", "weight_updates"), ("biases", "bias_updates"),
                         ("scales", "scale_updates")):
                part, sep, own = key.partition("__")
                if sep and own == p:
                    out.append((layer, key, f"{part}__{u}"))
    return out


@pytest.mark.parametrize("opts", [
    "activation=tanh\nbatch_normalize=0\nshortcut=0",
    "activation=leaky\nbatch_normalize=0\nshortcut=1",
    "activation=logistic\nbatch_normalize=1\nshortcut=1\nhidden=3",
    "activation=tanh\nbatch_normalize=1\nshortcut=0\nlogistic=1\nhidden=5",
], ids=["tanh", "shortcut", "bn-shortcut-hidden", "bn-logistic-self"])
def test_rnn_backward_through_time_is_the_gradient(opts):
    check_gradients(f"[rnn]\noutput=4\n{opts}\n")


@pytest.mark.parametrize("opts", ["batch_normalize=0\ntanh=0", "batch_normalize=0\ntanh=1",
                                  "batch_normalize=1\ntanh=1"], ids=["logistic", "tanh", "bn"])
def test_gru_backward_through_time_is_the_gradient(opts):
    check_gradients(f"[gru]\noutput=4\n{opts}\n")


@pytest.mark.parametrize("bn", [0, 1])
def test_lstm_backward_through_time_is_the_gradient(bn):
    check_gradients(f"[lstm]\noutput=4\nbatch_normalize={bn}\n")


@pytest.mark.parametrize("opts", [
    "output_filters=3\nhidden_filters=2\nactivation=tanh\nshortcut=1",
    "output=3\nhidden=2\nsize=1\npad=0\nactivation=logistic\nbatch_normalize=1",
    "output=2\nhidden=4\nsize=3\npad=1\ngroups=2\nactivation=leaky\nbatch_normalize=1"],
    ids=["pj-shortcut", "ab-1x1-bn", "ab-groups-bn"])
def test_crnn_backward_through_time_is_the_gradient(opts):
    check_gradients(f"[crnn]\n{opts}\n", image=True)


def test_crnn_refuses_a_convolution_that_changes_the_map_size():
    with pytest.raises(CfgError, match="keeps the map size"):
        build("[net]\nbatch=2\ntime_steps=2\nwidth=4\nheight=4\nchannels=2\n\n"
              "[crnn]\noutput=2\nhidden=2\nsize=3\npad=0\n")


def check_gradients(section, image=False):
    """-dx and every part's -updates against central differences of sum(r * output), each
    forward from a zero state (a [gru] would carry its state from the last forward on)."""
    shape = "width=3\nheight=3\nchannels=2" if image else "inputs=4"
    text = f"[net]\nbatch=3\ntime_steps=3\n{shape}\n\n{section}"
    net = build(text, seed=2, strict=True).astype(np.float64)
    rng = rng_for_test()
    for layer, key, _ in rnn_params(net):
        if not key.endswith("weights"):
            low, high = (0.5, 1.5) if key.endswith("scales") else (-0.5, 0.5)
            getattr(layer, key)[...] = rng.uniform(low, high, getattr(layer, key).shape)
    x = rng.standard_normal((9,) + tuple(net.input_shape))
    r = rng.standard_normal(net.layers[0].output.shape if net.layers[0].output is not None
                            else (9,) + net.layers[0].out_shape)

    def f():
        net.layers[0].last_state = None
        net.forward(x, train=True)
        return float(np.sum(r * net.layers[-1].output))

    f()
    params = rnn_params(net)
    for layer, _, upd in params:
        getattr(layer, upd)[...] = 0
    net.layers[-1].delta[...] = -r
    dx = np.zeros_like(x)
    net.backward(dx)
    numeric = numeric_grad(f, x)
    assert np.abs(numeric).max() > 1e-6, "the numeric input gradient is zero: a vacuous check"
    assert_grad_close(-dx, numeric, "d/d input")
    for layer, key, upd in params:
        assert_grad_close(-getattr(layer, upd), numeric_grad(f, getattr(layer, key)),
                          f"d/d {key}")


def test_rnn_batch_not_a_multiple_of_time_steps_is_a_one_line_error():
    net = build("[net]\nbatch=2\ntime_steps=3\ninputs=4\n\n[rnn]\noutput=4\n")
    with pytest.raises(Exception, match="multiple of time_steps=3"):
        net.forward(np.zeros((4, 4), np.float32))


def test_rnn_update_trains_every_part_and_hidden_sizes_the_state():
    net = build("[net]\nbatch=2\ntime_steps=2\ninputs=3\nlearning_rate=0.5\n\n"
                "[rnn]\noutput=4\nhidden=7\nactivation=leaky\n\n[softmax]\n")
    rnn = net.layers[0]
    assert rnn.input_layer.weights.shape == (7, 3) and rnn.self_layer.weights.shape == (7, 7)
    assert rnn.output_layer.weights.shape == (4, 7)
    before = {k: v.copy() for k, v in rnn.state().items() if k.endswith("weights")}
    rng = rng_for_test()
    net.train_step(rng.random((4, 3), dtype=np.float32),
                   np.eye(4, dtype=np.float32)[rng.integers(0, 4, 4)])
    for k, v in before.items():
        assert np.abs(getattr(rnn, k) - v).max() > 0, f"{k} did not change"


# -- GPU ----------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("text", [rnn_cfg("leaky", 0, 1, "hidden=5\n"),
                                  rnn_cfg("leaky", 1, 1, "hidden=5\n"), gru_cfg(0, 1),
                                  gru_cfg(1, 1), lstm_cfg(0), lstm_cfg(1),
                                  crnn_cfg("leaky", 1, 1)],
                         ids=["rnn", "rnn-bn", "gru", "gru-bn", "lstm", "lstm-bn", "crnn-bn"])
def test_gpu_recurrent_step_equals_numpy(text):
    # with batch norm over 3 rows a step, the summation order of its sums shows (as against
    # pj's BN: EXACT_BN_RTOL); on the H200 the bn cases differ by 1.0e-5 to 1.6e-5
    tol = EXACT_BN_RTOL if "batch_normalize=1" in text else EXACT_RTOL
    cpu, gpu = build(text, seed=4), build(text, seed=4, device="gpu")
    rng = rng_for_test()
    for _ in range(2):
        x = rng.random((cpu.batch,) + tuple(cpu.input_shape), dtype=np.float32)
        t = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, cpu.batch)]
        assert rel_err(gpu.train_step(x, t), cpu.train_step(x, t)) <= tol
    for a, b in zip(cpu.layers, gpu.layers):
        assert rel_err(to_numpy(b.output), to_numpy(a.output)) <= tol, a.type
        for k, v in a.state().items():
            err = rel_err(to_numpy(getattr(b, k)), to_numpy(v))
            assert err <= tol, (a.index, k, err)
