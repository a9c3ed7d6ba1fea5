"""Darknet's update step (SGD with momentum and decay, Adam) and learning-rate schedule."""

import numpy as np
import pytest

from darknet_py.nn.policies import current_rate

from conftest import build


def one_weight_net(extra=""):
    net = build("[net]\nbatch=2\ninputs=1\nmomentum=0.9\ndecay=0.01\nlearning_rate=0.1\n"
                + extra + "[connected]\noutput=1\nactivation=linear\n[cost]\n")
    net.layers[0].weights[:] = 0.5
    net.layers[0].biases[:] = 0.25
    return net


def test_sgd_step_matches_darknets_formula_exactly():
    net = one_weight_net()
    layer = net.layers[0]
    x = np.array([[1.0], [2.0]], np.float32)
    t = np.array([[1.0], [0.0]], np.float32)
    net.train_step(x, t)
    # y = 0.5x + 0.25 = [0.75, 1.25]; delta = t - y = [0.25, -1.25]
    # U_w = sum(delta*x) = 0.25 - 2.5 = -2.25 ; U_b = sum(delta) = -1.0 ; B = 2
    # U_w += -decay*B*w = -2.25 - 0.01 ; w += lr/B * U_w
    assert layer.weights[0, 0] == pytest.approx(0.5 + 0.1 / 2 * (-2.25 - 0.01), rel=1e-6)
    assert layer.biases[0] == pytest.approx(0.25 + 0.1 / 2 * -1.0, rel=1e-6)   # no decay
    # momentum: the update buffers are scaled by 0.9 after the step
    assert layer.weight_updates[0, 0] == pytest.approx(0.9 * (-2.26), rel=1e-6)
    assert layer.bias_updates[0] == pytest.approx(-0.9, rel=1e-6)


def test_momentum_carries_into_the_next_step():
    net = one_weight_net()
    layer = net.layers[0]
    x = np.array([[1.0], [2.0]], np.float32)
    t = np.array([[1.0], [0.0]], np.float32)
    net.train_step(x, t)
    w1, b1 = float(layer.weights[0, 0]), float(layer.biases[0])
    y = w1 * x[:, 0] + b1
    d = t[:, 0] - y
    u_w = 0.9 * -2.26 + (d * x[:, 0]).sum() - 0.01 * 2 * w1
    net.train_step(x, t)
    assert layer.weights[0, 0] == pytest.approx(w1 + 0.05 * u_w, rel=1e-5)


def test_subdivisions_accumulate_before_one_update():
    net = build("[net]\nbatch=4\nsubdivisions=2\ninputs=1\nlearning_rate=0.1\nmomentum=0\n"
                "decay=0\n[connected]\noutput=1\nactivation=linear\n[cost]\n")
    layer = net.layers[0]
    layer.weights[:] = 0.0
    layer.biases[:] = 0.0
    assert net.batch == 2
    net.train_step(np.ones((2, 1)), np.ones((2, 1)))
    assert layer.weights[0, 0] == 0.0 and net.seen == 2           # accumulated, not applied
    assert layer.weight_updates[0, 0] == pytest.approx(2.0)
    net.train_step(np.ones((2, 1)), np.ones((2, 1)))
    # 4 images with delta 1 each; B = batch*subdivisions = 4 -> w = 0.1/4*4
    assert layer.weights[0, 0] == pytest.approx(0.1)
    assert net.seen == 4


def test_per_layer_learning_rate_scales_the_global_rate():
    net = build("[net]\nbatch=1\ninputs=1\nlearning_rate=0.1\nmomentum=0\ndecay=0\n"
                "[connected]\noutput=1\nactivation=linear\nlearning_rate=0.5\n[cost]\n")
    layer = net.layers[0]
    layer.weights[:] = 0.0
    net.train_step(np.ones((1, 1)), np.ones((1, 1)))
    assert layer.weights[0, 0] == pytest.approx(0.05)


def test_adam_as_darknet_defines_it():
    net = one_weight_net("adam=1\n")
    layer = net.layers[0]
    x = np.array([[1.0], [2.0]], np.float32)
    t = np.array([[1.0], [0.0]], np.float32)
    net.train_step(x, t)
    d = -2.25 - 0.01 * 2 * 0.5             # decay applies in Adam, lr not divided by B
    m = 0.1 * d
    v = 0.001 * d * d
    expected = 0.5 + 0.1 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-7)
    assert layer.weights[0, 0] == pytest.approx(expected, rel=1e-5)
    assert layer.weight_updates[0, 0] == 0.0


def test_state_holds_the_update_buffers_and_with_adam_its_moments():
    params = {"weights", "biases", "weight_updates", "bias_updates"}
    assert set(one_weight_net().layers[0].state()) == params
    layer = one_weight_net("adam=1\n").layers[0]
    assert set(layer.state()) == params | {"weights_m", "weights_v", "biases_m", "biases_v"}
    assert not layer.weights_m.any() and not layer.biases_v.any()


def test_astype_casts_the_adam_moments():
    net = one_weight_net("adam=1\n")
    net.train_step(np.array([[1.0], [2.0]], np.float32), np.array([[1.0], [0.0]], np.float32))
    net.astype(np.float64)
    layer = net.layers[0]
    for name in ("weights_m", "weights_v", "biases_m", "biases_v"):
        assert getattr(layer, name).dtype == np.float64, name
    assert all(array.dtype == np.float64 for array in layer.state().values())


def options(**kw):
    base = dict(learning_rate=0.1, burn_in=0, power=4.0, policy="constant", step=1, scale=1.0,
                steps=[], scales=[], gamma=1.0, max_batches=0, learning_rate_min=1e-5,
                sgdr_cycle=1, sgdr_mult=2)
    base.update(kw)
    return type("Options", (), base)


def test_burn_in_values_darknet_printed():
    # verified against libdarknet: lr 0.1, burn_in 10 -> 1e-5 at 1 and 0.00625 at 5
    o = options(burn_in=10)
    assert current_rate(o, 1) == pytest.approx(1e-5)
    assert current_rate(o, 5) == pytest.approx(0.00625)
    assert current_rate(o, 10) == pytest.approx(0.1)


def test_steps_policy_applies_at_the_step():
    o = options(policy="steps", steps=[100, 200], scales=[0.1, 0.5])
    assert current_rate(o, 99) == pytest.approx(0.1)
    assert current_rate(o, 100) == pytest.approx(0.01)
    assert current_rate(o, 250) == pytest.approx(0.005)


@pytest.mark.parametrize("policy,kw,n,expected", [
    ("step", dict(step=10, scale=0.5), 25, 0.1 * 0.25),
    ("exp", dict(gamma=0.9), 3, 0.1 * 0.9 ** 3),
    ("poly", dict(max_batches=100, power=2), 50, 0.1 * 0.25),
    ("sigmoid", dict(gamma=0.01, step=100), 150, 0.1 / (1 + np.exp(0.5))),
    ("sigmoid", dict(gamma=0.01, step=100), 100, 0.05),
])
def test_policies(policy, kw, n, expected):
    assert current_rate(options(policy=policy, **kw), n) == pytest.approx(expected)


def test_first_update_uses_batch_num_one():
    net = build("[net]\nbatch=2\ninputs=1\nlearning_rate=0.1\nburn_in=10\n"
                "[connected]\noutput=1\n[cost]\n")
    net.train_step(np.ones((2, 1)), np.ones((2, 1)))
    assert net.current_rate() == pytest.approx(1e-5)

