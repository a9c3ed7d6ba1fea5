"""CUDA graphs (nn/graphs.py): a replayed inference forward equals the eager one.

Run on a CUDA machine: ``pytest -m gpu``.
"""

import numpy as np
import pytest

from darknet_py.nn.backend import to_numpy

from conftest import build, rng_for_test

pytestmark = pytest.mark.gpu

NET = ("[net]\nbatch=2\nchannels=3\nwidth=32\nheight=32\n"
       "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nbatch_normalize=1\nactivation=leaky\n"
       "[maxpool]\nsize=2\nstride=2\n"
       "[convolutional]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=mish\n"
       "[route]\nlayers=-1,-2\n"
       "[upsample]\nstride=2\n"
       "[convolutional]\nfilters=4\nsize=1\nstride=1\nactivation=logistic\n")


def _net():
    net = build(NET, device="gpu")
    rng = rng_for_test()
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False):
            layer.rolling_mean[:] = net.xp.asarray(rng.uniform(-1, 1, layer.out_c), np.float32)
            layer.rolling_variance[:] = net.xp.asarray(rng.uniform(0.5, 2, layer.out_c),
                                                       np.float32)
    return net, rng


def test_a_replayed_forward_equals_the_eager_one_and_follows_new_inputs():
    net, rng = _net()
    xs = [rng.random((2, 3, 32, 32), dtype=np.float32) for _ in range(3)]
    eager = [to_numpy(net.forward(x)).copy() for x in xs]
    assert net.enable_graphs()
    for x, want in zip(xs + xs[::-1], eager + eager[::-1]):
        got = to_numpy(net.forward(x))
        np.testing.assert_array_equal(got, want)
    assert net.graphs.failed is None and len(net.graphs.captured) == 1


def test_a_new_shape_is_captured_beside_the_first_and_layer_outputs_follow():
    net, rng = _net()
    net.enable_graphs()
    small, big = (rng.random((n, 3, 32, 32), dtype=np.float32) for n in (1, 2))
    out_small = to_numpy(net.forward(small)).copy()
    out_big = to_numpy(net.forward(big)).copy()
    assert len(net.graphs.captured) == 2
    np.testing.assert_array_equal(to_numpy(net.forward(small)), out_small)
    assert net.layers[-1].output.shape[0] == 1
    np.testing.assert_array_equal(to_numpy(net.layers[-1].output), out_small)
    np.testing.assert_array_equal(to_numpy(net.forward(big)), out_big)


def test_replaced_weights_are_not_replayed_from_the_old_graph(tmp_path):
    net, rng = _net()
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    net.enable_graphs()
    before = to_numpy(net.forward(x)).copy()
    other, _ = _net()
    for layer in other.layers:
        if hasattr(layer, "weights"):
            layer.weights *= 2
    other.save_weights(tmp_path / "w.weights")
    net.load_weights(tmp_path / "w.weights", fuse=True)
    after = to_numpy(net.forward(x))
    net.graphs = None
    np.testing.assert_array_equal(after, to_numpy(net.forward(x)))
    assert not np.array_equal(after, before)


def test_a_replayed_forward_checks_and_scales_its_input_as_the_eager_one():
    net, rng = _net()
    pixels = (rng.random((2, 3, 32, 32)) * 255).astype(np.uint8)
    want = to_numpy(net.forward(pixels)).copy()
    net.enable_graphs()
    np.testing.assert_array_equal(to_numpy(net.forward(pixels)), want)
    with pytest.raises(ValueError):
        net.forward(np.zeros((2, 32, 32, 3), np.float32))


# -- the training step (GraphedStep) -------------------------------------------------------

CLASSIFIER = ("[net]\nbatch=4\nchannels=1\nwidth=12\nheight=12\nlearning_rate=0.1\n"
              "momentum=0.9\ndecay=0.0005\npolicy=steps\nsteps=4\nscales=0.1\n"
              "[convolutional]\nfilters=6\nsize=3\nstride=1\npad=1\nbatch_normalize=1\n"
              "activation=leaky\n"
              "[maxpool]\nsize=2\nstride=2\n"
              "[connected]\noutput=16\nbatch_normalize=1\nactivation=relu\n"
              "[connected]\noutput=5\nactivation=linear\n"
              "[softmax]\n")

# route, upsample, shortcut and a [cost] head (the layers of the detectors' bodies)
MAPS = ("[net]\nbatch=2\nchannels=3\nwidth=16\nheight=16\nlearning_rate=0.01\n"
        "momentum=0.9\ndecay=0.0005\npolicy=poly\npower=2\nmax_batches=10\n"
        "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nbatch_normalize=1\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=mish\n"
        "[upsample]\nstride=2\n"
        "[shortcut]\nfrom=-4\nactivation=linear\n"
        "[route]\nlayers=-1,-5\n"
        "[convolutional]\nfilters=2\nsize=1\nstride=1\nactivation=logistic\n"
        "[cost]\ntype=sse\n")


def _same_steps(want, got):
    """Two networks' _train records agree: outputs, losses, every layer's state()."""
    assert len(want) == len(got)
    for step, ((o1, l1, s1), (o2, l2, s2)) in enumerate(zip(want, got)):
        np.testing.assert_allclose(o2, o1, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
        assert l2 == pytest.approx(l1, rel=1e-5), f"step {step}"
        for i, (a, b) in enumerate(zip(s1, s2)):
            for k in a:
                np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6,
                                           err_msg=f"step {step} layer {i} {k}")


def _train(net, batches):
    """Per step: the output, the loss and every layer's state() after the update."""
    seen = []
    for x, truth in batches:
        loss = net.train_step(x, truth)
        seen.append((to_numpy(net.layers[-1].output).copy(), loss,
                     [{k: to_numpy(v).copy() for k, v in layer.state().items()}
                      for layer in net.layers]))
    return seen


# a [dropout] (host draws) between captured runs, whose output a captured layer reads
DROPOUT = CLASSIFIER.replace("[softmax]", "[dropout]\nprobability=.3\n[softmax]")


@pytest.mark.parametrize("cfg,precision", [(CLASSIFIER, "fp32"), (MAPS, "fp32"),
                                           (MAPS, "fp16"), (CLASSIFIER, "bf16"),
                                           (DROPOUT, "fp32")],
                         ids=["classifier", "maps", "maps-fp16", "classifier-bf16", "dropout"])
def test_a_replayed_training_step_equals_the_eager_one(cfg, precision):
    rng = rng_for_test()
    eager, graphed = (build(cfg, device="gpu", precision=precision) for _ in range(2))
    assert graphed.enable_graphs() and graphed.step_graphs.refusal is None
    n, c, h, w = eager.batch, *eager.input_shape
    out = eager.layers[-1].inputs
    batches = []
    for _ in range(7):          # 2 eager warm-up steps, then replays; the rate drops at 4
        x = rng.random((n, c, h, w), dtype=np.float32)
        truth = np.zeros((n, out), np.float32)
        if cfg is not MAPS:
            truth[np.arange(n), rng.integers(0, out, n)] = 1
        else:
            truth[...] = rng.random((n, out)) > 0.5
        batches.append((x, truth))
    if precision == "fp16":     # a new loss scale from step 4 on: captured anew at step 7
        batches[4:4] = [(x, t) for x, t in batches[4:6]]
        for net in (eager, graphed):
            net.precision.scale.value = 16.0        # small: no overflow changes it meanwhile
    want, got = _train(eager, batches[:4]), _train(graphed, batches[:4])
    for net in (eager, graphed):
        if precision == "fp16":
            net.precision.scale.value /= 4
    want += _train(eager, batches[4:])
    got += _train(graphed, batches[4:])
    assert len(graphed.step_graphs.passes) == (2 if precision == "fp16" else 1)
    assert eager.precision.loss_scale == graphed.precision.loss_scale
    assert graphed.step_graphs.updates is not None
    _same_steps(want, got)


# two [yolo] heads with capturable layers between and after them
DETECTOR = ("[net]\nbatch=2\nchannels=3\nwidth=32\nheight=32\nlearning_rate=0.001\n"
            "momentum=0.9\ndecay=0.0005\n"
            "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nbatch_normalize=1\n"
            "activation=leaky\n"
            "[maxpool]\nsize=2\nstride=2\n"
            "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nbatch_normalize=1\n"
            "activation=leaky\n"
            "[convolutional]\nfilters=21\nsize=1\nstride=1\nactivation=linear\n"
            "[yolo]\nclasses=2\nnum=6\nmask=3,4,5\n"
            "anchors=2,3, 4,5, 6,8, 8,9, 10,14, 16,12\n"
            "[route]\nlayers=-3\n"
            "[upsample]\nstride=2\n"
            "[route]\nlayers=-1,-6\n"
            "[convolutional]\nfilters=21\nsize=1\nstride=1\nactivation=linear\n"
            "[yolo]\nclasses=2\nnum=6\nmask=0,1,2\n"
            "anchors=2,3, 4,5, 6,8, 8,9, 10,14, 16,12\n")


# a [dropout] after the maxpool: it draws on the host, so the pass replays in runs around it
HOST_DETECTOR = DETECTOR.replace("[maxpool]\nsize=2\nstride=2\n",
                                 "[maxpool]\nsize=2\nstride=2\n[dropout]\nprobability=.3\n")


def test_a_detector_replays_its_whole_pass_with_the_loss_kernels():
    """[yolo] with the loss kernels (nn/layers/yolokernel.py) is device work alone: the whole
    pass is one graph, with the same outputs, losses and weights as the eager network."""
    from test_yolo_loss import crowded_truths
    rng = rng_for_test()
    eager, graphed = (build(DETECTOR, device="gpu") for _ in range(2))
    assert graphed.enable_graphs() and graphed.step_graphs.islands == frozenset()
    batches = [(rng.random((2, 3, 32, 32), dtype=np.float32),
                crowded_truths(rng, 2, 2, zero_size=False)) for _ in range(6)]
    want, got = _train(eager, batches), _train(graphed, batches)
    entry, = graphed.step_graphs.passes.values()
    assert entry.items is None and entry.graph is not None
    _same_steps(want, got)
    for a, b in zip(eager.layers, graphed.layers):      # the report line's statistics too
        if a.type == "yolo":
            assert b.stats == pytest.approx(a.stats, rel=1e-9)


# DETECTOR with [region] heads (YOLOv2's loss)
REGION_DETECTOR = DETECTOR.replace(
    "[yolo]\nclasses=2\nnum=6\nmask=3,4,5\nanchors=2,3, 4,5, 6,8, 8,9, 10,14, 16,12\n",
    "[region]\nclasses=2\nnum=3\ncoords=4\nanchors=0.5,0.8, 1.5,1.5, 3,2.5\n").replace(
    "[yolo]\nclasses=2\nnum=6\nmask=0,1,2\nanchors=2,3, 4,5, 6,8, 8,9, 10,14, 16,12\n",
    "[region]\nclasses=2\nnum=3\ncoords=4\nrescore=1\nsoftmax=1\n"
    "anchors=0.5,0.8, 1.5,1.5, 3,2.5\n")


def test_a_region_detector_replays_its_whole_pass_and_captures_again_after_the_prior():
    """[region]'s loss kernels: the whole pass is one graph, the same steps as the eager
    network's, and a second graph once 12800 images are seen (pj's anchor prior stops)."""
    from test_yolo_loss import crowded_truths
    rng = rng_for_test()
    eager, graphed = (build(REGION_DETECTOR, device="gpu") for _ in range(2))
    assert graphed.enable_graphs() and graphed.step_graphs.islands == frozenset()
    for net in (eager, graphed):
        net.seen = 12800 - 2 * 7        # the prior for 7 more steps of 2 images
    batches = [(rng.random((2, 3, 32, 32), dtype=np.float32),
                crowded_truths(rng, 2, 2, rows=30, zero_size=False)) for _ in range(12)]
    want, got = _train(eager, batches), _train(graphed, batches)
    assert len(graphed.step_graphs.passes) == 2
    assert all(entry.items is None for entry in graphed.step_graphs.passes.values())
    _same_steps(want, got)


def test_a_network_with_host_layers_replays_the_runs_between_them():
    """[dropout] (drawing on the host) runs eagerly between the captured runs: the same
    outputs, losses and weights as the eager network."""
    from test_yolo_loss import crowded_truths
    rng = rng_for_test()
    eager, graphed = (build(HOST_DETECTOR, device="gpu") for _ in range(2))
    assert graphed.enable_graphs() and graphed.step_graphs.refusal is None
    assert graphed.step_graphs.islands == {2}
    batches = [(rng.random((2, 3, 32, 32), dtype=np.float32),
                crowded_truths(rng, 2, 2, zero_size=False)) for _ in range(6)]
    want, got = _train(eager, batches), _train(graphed, batches)
    entry, = graphed.step_graphs.passes.values()
    assert [kind for kind, _ in entry.items].count("graph") == 4     # 2 runs each way
    _same_steps(want, got)


@pytest.mark.parametrize("tf32", [False, True])
def test_gemm_equals_numpys_product_in_every_layout(tf32):
    import cupy
    from darknet_py.nn import gemm
    rng = rng_for_test()
    for m, k, n in ((1, 7, 3), (33, 65, 17), (128, 3136, 10)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64)
        tol = dict(rtol=3e-3, atol=3e-3 * np.sqrt(k)) if tf32 else \
            dict(rtol=1e-5, atol=4e-6 * np.sqrt(k))     # float32 sums of k products
        for da in (cupy.asarray(a), cupy.asfortranarray(cupy.asarray(a))):
            for db in (cupy.asarray(b), cupy.asarray(b.T.copy()).T):
                np.testing.assert_allclose(to_numpy(gemm.matmul(da, db, tf32=tf32)), want,
                                           **tol)
        c = rng.standard_normal((m, n)).astype(np.float32)
        out = cupy.asarray(c)
        gemm.matmul(cupy.asarray(a), cupy.asarray(b), out=out, accumulate=True, tf32=tf32)
        np.testing.assert_allclose(to_numpy(out), want + c, **tol)


def test_a_resized_copy_replays_its_own_graphs_and_updates_the_shared_weights():
    """Multi-scale training: a copy at another size (Network.resized) captures graphs of its
    own, and its replayed steps equal an eager copy's, through the weights both share with
    their network."""
    from test_yolo_loss import crowded_truths
    from darknet_py import Network
    rng = rng_for_test()
    # built at 64x64, trained at 32x32: the size whose steps test_a_network_with_host_layers
    # compares (larger ones may take cuDNN's atomically accumulating dgrad/wgrad engines,
    # another rounding each run, eager or replayed)
    big = DETECTOR.replace("width=32\nheight=32", "width=64\nheight=64")
    eager, graphed = (Network.from_cfg_text(big, device="gpu", seed=1, warn=False)
                      for _ in range(2))
    graphed.enable_graphs()
    small_eager, small_graphed = eager.resized(32, 32), graphed.resized(32, 32)
    assert small_eager.graphs is None and small_graphed.step_graphs.refusal is None
    batches = [(rng.random((2, 3, 32, 32), dtype=np.float32),
                crowded_truths(rng, 2, 2, zero_size=False)) for _ in range(5)]
    want, got = _train(small_eager, batches), _train(small_graphed, batches)
    assert len(small_graphed.step_graphs.passes) == 1 and not graphed.step_graphs.passes
    _same_steps(want, got)
    for mine, theirs in zip(graphed.layers, small_graphed.layers):
        for k, v in mine.state().items():
            assert v is theirs.state()[k]
    # a copy made again for that size (multi-scale drops copies) captures on its first pass
    again = graphed.resized(32, 32)
    more = [(rng.random((2, 3, 32, 32), dtype=np.float32),
             crowded_truths(rng, 2, 2, zero_size=False)) for _ in range(2)]
    want, got = _train(small_eager, more[:1]), _train(again, more[:1])
    assert len(again.step_graphs.passes) == 1 and again.step_graphs.updates is not None
    want += _train(small_eager, more[1:])
    got += _train(again, more[1:])
    _same_steps(want, got)
