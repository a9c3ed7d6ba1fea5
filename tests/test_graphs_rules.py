"""What may be replayed from a CUDA graph (nn/graphs.py), and the commands' --no-graphs: the
rules, checked on the CPU (tests/test_gpu_graphs.py replays on the GPU)."""

import numpy as np

from darknet_py.bench import HeadStandIn, bench_network
from darknet_py.nn.graphs import host_layers
from darknet_py.nn.network import Network

from conftest import build, rng_for_test
from test_cli import run

MNIST_LIKE = ("[net]\nbatch=2\nchannels=1\nwidth=8\nheight=8\n"
              "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nbatch_normalize=1\n"
              "activation=leaky\n[maxpool]\nsize=2\nstride=2\n"
              "[connected]\noutput=3\nactivation=linear\n[softmax]\n")


def test_the_layers_with_host_work_in_their_pass_are_the_islands():
    assert host_layers(build(MNIST_LIKE)) == []
    dropout = MNIST_LIKE.replace("[softmax]", "[dropout]\nprobability=.5\n[softmax]")
    assert [(l.index, l.type) for l in host_layers(build(dropout))] == [(3, "dropout")]
    detector = Network.from_cfg("cfg/yolov3-tiny.cfg", batch=1, warn=False)
    assert host_layers(detector) == []          # [yolo]: the loss kernels (yolokernel.py)
    assert host_layers(Network.from_cfg("cfg/yolov2-tiny.cfg", batch=1, warn=False)) == []


def test_graphs_are_a_no_op_on_the_cpu():
    net = build(MNIST_LIKE)
    assert not net.enable_graphs() and net.step_graphs is None


def test_the_bench_heads_are_the_identity_with_the_squared_loss_set_in_the_forward():
    net, heads = bench_network("cfg/yolov3-tiny.cfg", 1, 64, "cpu")
    assert heads and all(type(net.layers[i]) is HeadStandIn for i in heads)
    x = rng_for_test().random((1, *net.input_shape), dtype=np.float32)
    net.forward(x, train=True)
    for i in heads:
        layer = net.layers[i]
        np.testing.assert_array_equal(layer.output, net.layers[i - 1].output)
        np.testing.assert_allclose(layer.delta, -2.0 / layer.output.size * layer.output)


def test_no_graphs_is_a_flag_of_the_device_commands():
    r = run("speed", "cfg/mnist.cfg", "2", "--device", "cpu", "--no-graphs")
    assert r.returncode == 0, r.stderr
    r = run("train", "--help")
    assert "--no-graphs" in r.stdout


class _Replay:
    """A stand-in CUDA graph on the CPU: launching runs the recorded Python again."""

    def __init__(self, work):
        self.work = work

    def launch(self):
        self.work()


def _eager_and_graphed(cfg):
    """Two networks of ``cfg``; the second with a GraphedStep as on a GPU."""
    from darknet_py.nn.graphs import GraphedStep
    eager, graphed = build(cfg), build(cfg)
    graphed.step_graphs = GraphedStep(graphed)
    graphed.step_graphs.refusal = None
    return eager, graphed


def _batch(rng):
    """Images and box truths for test_gpu_graphs.DETECTOR (and HOST_DETECTOR)."""
    from test_yolo_loss import crowded_truths
    return (rng.random((2, 3, 32, 32), dtype=np.float32),
            crowded_truths(rng, 2, 2, zero_size=False))


def test_the_runs_and_islands_of_a_pass_keep_the_eager_order(monkeypatch):
    """GraphedStep's orchestration on the CPU, with graphs that re-run their Python: the
    captured runs and the [dropout] island in pass order, forward then backward, equal the eager
    pass step for step (tests/test_gpu_graphs.py replays real graphs)."""
    import darknet_py.nn.graphs as graphs
    from test_gpu_graphs import HOST_DETECTOR
    monkeypatch.setattr(graphs, "_record", lambda work: (_Replay(work), None, None, None))
    rng = rng_for_test()
    eager, graphed = _eager_and_graphed(HOST_DETECTOR)
    for _ in range(5):
        x, truth = _batch(rng)
        want, got = eager.train_step(x, truth), graphed.train_step(x, truth)
        assert got == want
        for a, b in zip(eager.layers, graphed.layers):
            np.testing.assert_array_equal(b.output, a.output)
            for k, v in a.state().items():
                np.testing.assert_array_equal(b.state()[k], v)
    entry, = graphed.step_graphs.passes.values()
    assert entry.items == [("graph", entry.items[0][1]), ("forward", 2),
                           ("graph", entry.items[2][1]), ("graph", entry.items[3][1]),
                           ("backward", 2), ("graph", entry.items[5][1])]


def test_a_capture_that_fails_midway_puts_back_what_the_launched_runs_changed(monkeypatch):
    """The capturing step launches each run right after capturing it; when a later run's
    capture fails, the arrays the earlier runs changed (batch-norm statistics, update
    buffers) go back, one warning says why, and the step runs eagerly: the same weights as a
    network that never tried, the same dropout draws included."""
    import pytest
    import darknet_py.nn.graphs as graphs
    from test_gpu_graphs import HOST_DETECTOR
    recorded = []

    def record(work):
        recorded.append(work)
        if len(recorded) == 2:
            raise RuntimeError("operation not permitted when stream is capturing")
        return _Replay(work), None, None, None
    monkeypatch.setattr(graphs, "_record", record)
    rng = rng_for_test()
    eager, graphed = _eager_and_graphed(HOST_DETECTOR)
    for step in range(4):
        x, truth = _batch(rng)
        if step == 2:                                   # the capturing step
            with pytest.warns(RuntimeWarning, match="not permitted when stream is capturing"):
                got = graphed.train_step(x, truth)
        else:
            got = graphed.train_step(x, truth)
        assert got == eager.train_step(x, truth)
        for a, b in zip(eager.layers, graphed.layers):
            for k, v in a.state().items():
                np.testing.assert_array_equal(b.state()[k], v)
    assert "training pass failed" in graphed.step_graphs.refusal
    assert not graphed.step_graphs.passes and len(recorded) == 2
