"""What may be replayed from a CUDA graph (nn/graphs.py), and the commands' --no-graphs: the
rules, checked on the CPU (tests/test_gpu_graphs.py replays on the GPU)."""

import numpy as np

from darknet_py.bench import HeadStandIn, bench_network
from darknet_py.nn.graphs import host_layer, step_refusal
from darknet_py.nn.network import Network

from conftest import build, rng_for_test
from test_cli import run

MNIST_LIKE = ("[net]\nbatch=2\nchannels=1\nwidth=8\nheight=8\n"
              "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nbatch_normalize=1\n"
              "activation=leaky\n[maxpool]\nsize=2\nstride=2\n"
              "[connected]\noutput=3\nactivation=linear\n[softmax]\n")


def test_the_layers_with_host_work_in_their_pass_are_named():
    assert host_layer(build(MNIST_LIKE)) is None
    dropout = MNIST_LIKE.replace("[softmax]", "[dropout]\nprobability=.5\n[softmax]")
    assert host_layer(build(dropout)) == \
        "layer 3 [dropout] runs host code in its training pass"
    detector = Network.from_cfg("cfg/yolov3-tiny.cfg", batch=1, warn=False)
    assert "[yolo]" in host_layer(detector)
    assert step_refusal(build(MNIST_LIKE)) == "the network is not on a GPU"


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
