"""The [yolo] training loss equals Darknet's (pj forward_yolo_layer) on the same input and truth."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from darknet_py import Network  # noqa: E402
from darknet_py.errors import DarknetError  # noqa: E402
from oracle.darknet import DarknetOracle  # noqa: E402
from test_darknet_conformance import shrink_cfg  # noqa: E402
from conftest import build, rng_for_test

DEBIAN_CFG = Path("/usr/share/darknet/cfg")
pytestmark = pytest.mark.darknet

_ok, _why = DarknetOracle.available()
if not _ok:
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        raise RuntimeError(f"CI needs Debian's darknet for the oracle tests: {_why}")
    pytest.skip(_why, allow_module_level=True)


class _State:
    def __init__(self, x, truth):
        self.xp, self.input, self.truth, self.train, self.delta = np, x, truth, True, None


def truths(rng, batch, per_image, classes):
    t = np.zeros((batch, 90, 5), np.float32)
    for b in range(batch):
        for k in range(per_image):
            w, h = rng.uniform(0.05, 0.6, 2)
            t[b, k] = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), w, h,
                       rng.integers(0, classes))
    return t.reshape(batch, -1)


@pytest.mark.parametrize("cfg_name", ["yolov3-tiny.cfg", "yolov3.cfg"])
def test_yolo_deltas_and_cost_equal_darknet(tmp_path, cfg_name):
    if not (DEBIAN_CFG / cfg_name).exists():
        pytest.skip(f"{DEBIAN_CFG / cfg_name} not installed")
    cfg = shrink_cfg(DEBIAN_CFG / cfg_name, tmp_path / cfg_name, 96, batch=2)
    rng = rng_for_test()
    weights = tmp_path / "w.weights"
    with DarknetOracle.load(cfg, batch=0, seed=3) as dn:
        dn.randomize_bn(5)
        dn.save(weights)
    x = rng.random((2, 3, 96, 96), dtype=np.float32)
    truth = truths(rng, 2, 6, 80)
    with DarknetOracle.load(cfg, weights, batch=0) as dn:
        dn.train_step(x, truth)
        yolo = [i for i in range(dn.n_layers) if dn.layer_type(i) == "YOLO"]
        ours = Network.from_cfg(cfg, warn=False)
        compared = 0
        for i in yolo:
            layer = ours.layers[i]
            layer_input = dn.layer_output(i - 1).reshape(2, layer.c, layer.h, layer.w)
            layer.forward(_State(layer_input, truth))
            theirs = dn.get(i, "delta").reshape(layer.delta.shape)
            scale = np.abs(theirs).max()
            assert np.abs(layer.delta - theirs).max() <= 1e-4 * scale, f"layer {i} deltas"
            cost = float((theirs.astype(np.float64) ** 2).sum())
            assert layer.cost == pytest.approx(cost, rel=1e-4), f"layer {i} cost"
            compared += layer.stats["count"]
        assert compared > 0           # some truths were assigned to these layers


def test_yolo_backward_adds_delta_without_the_logistic_derivative():
    from conftest import build
    net = build("[net]\nbatch=1\nchannels=6\nwidth=4\nheight=4\n"
                "[yolo]\nclasses=1\nnum=1\nmask=0\nanchors=2,2\n")
    x = rng_for_test().standard_normal((1, 6, 4, 4)).astype(np.float32)
    truth = np.zeros((1, 450), np.float32)
    truth[0, :5] = (0.4, 0.6, 0.5, 0.5, 0)
    net.forward(x, train=True, truth=truth)
    dx = np.zeros_like(x)
    net.backward(dx)
    np.testing.assert_array_equal(dx, net.layers[0].delta)
    assert net.layers[0].stats["count"] == 1
    assert net.layers[0].report().startswith("Region 0 Avg IOU: ")


@pytest.mark.parametrize("seen", [0, 20000], ids=["with-anchor-prior", "after-12800-images"])
def test_region_deltas_and_cost_equal_darknet(tmp_path, seen):
    cfg_name = "yolov2-tiny-voc.cfg"
    if not (DEBIAN_CFG / cfg_name).exists():
        pytest.skip(f"{DEBIAN_CFG / cfg_name} not installed")
    cfg = shrink_cfg(DEBIAN_CFG / cfg_name, tmp_path / cfg_name, 128, batch=2)
    rng = rng_for_test()
    weights = tmp_path / "w.weights"
    with DarknetOracle.load(cfg, batch=0, seed=3) as dn:
        dn.randomize_bn(5)
        dn.save(weights)
    x = rng.random((2, 3, 128, 128), dtype=np.float32)
    t = truths(rng, 2, 5, 20).reshape(2, 90, 5)[:, :30].reshape(2, -1)
    with DarknetOracle.load(cfg, weights, batch=0) as dn:
        dn.seen = seen
        dn.train_step(x, t)
        i = dn.n_layers - 1
        assert dn.layer_type(i) == "REGION"
        ours = Network.from_cfg(cfg, warn=False)
        layer = ours.layers[i]
        state = _State(dn.layer_output(i - 1).reshape(2, layer.c, layer.h, layer.w), t)
        state.seen = seen + 2
        layer.forward(state)
        theirs = dn.get(i, "delta").reshape(layer.delta.shape)
        assert np.abs(layer.delta - theirs).max() <= 1e-4 * np.abs(theirs).max()
        assert layer.cost == pytest.approx(float((theirs.astype(np.float64) ** 2).sum()),
                                           rel=1e-4)
        assert layer.stats["count"] == 10


def test_region_backward_applies_the_logistic_derivative_to_xy_and_obj():
    from conftest import build
    net = build("[net]\nbatch=1\nchannels=7\nwidth=4\nheight=4\n"
                "[region]\nclasses=2\ncoords=4\nnum=1\nanchors=1,1\nsoftmax=1\n")
    x = rng_for_test().standard_normal((1, 7, 4, 4)).astype(np.float32)
    truth = np.zeros((1, 150), np.float32)
    truth[0, :5] = (0.4, 0.6, 0.5, 0.5, 1)
    net.forward(x, train=True, truth=truth)
    layer = net.layers[0]
    dx = np.zeros_like(x)
    net.backward(dx)
    y, d = layer.output[0], layer.delta[0]
    np.testing.assert_allclose(dx[0, :2], d[:2] * y[:2] * (1 - y[:2]), rtol=1e-6)
    np.testing.assert_allclose(dx[0, 4], d[4] * y[4] * (1 - y[4]), rtol=1e-6)
    np.testing.assert_array_equal(dx[0, 2:4], d[2:4])         # w, h: linear
    np.testing.assert_array_equal(dx[0, 5:], d[5:])           # softmax classes: CE gradient


def _yolo_net(extra=""):
    from conftest import build
    return build("[net]\nbatch=1\nchannels=12\nwidth=4\nheight=4\n"
                 "[yolo]\nclasses=1\nnum=2\nmask=0,1\nanchors=1,1, 1.25,1.25\n" + extra)


def _one_truth():
    truth = np.zeros((1, 450), np.float32)
    truth[0, :5] = (0.3, 0.6, 0.28, 0.28, 0)
    return truth


def test_scale_x_y_stretches_the_cell_offsets():
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32)
    plain = _yolo_net().forward(x).copy()
    scaled = _yolo_net("scale_x_y=1.05\n").forward(x)
    planes = lambda a: a.reshape(2, 6, 4, 4)  # noqa: E731
    np.testing.assert_allclose(planes(scaled)[:, :2], planes(plain)[:, :2] * 1.05 - 0.025,
                               rtol=1e-6)
    np.testing.assert_array_equal(planes(scaled)[:, 2:], planes(plain)[:, 2:])


def test_normalizers_scale_the_box_and_class_deltas():
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32) * 0.1
    base, norm = _yolo_net(), _yolo_net("iou_normalizer=0.5\ncls_normalizer=2\n")
    for net in (base, norm):
        net.forward(x, train=True, truth=_one_truth())
    d0 = base.layers[0].delta.reshape(2, 6, 4, 4)
    d1 = norm.layers[0].delta.reshape(2, 6, 4, 4)
    a, j, i = 1, 2, 1                       # anchor 1.25 fits a 0.28*4 = 1.12 px box best
    np.testing.assert_allclose(d1[a, :4, j, i], 0.5 * d0[a, :4, j, i], rtol=1e-6)
    np.testing.assert_allclose(d1[a, 5, j, i], 2 * d0[a, 5, j, i], rtol=1e-6)
    assert d0[a, 4, j, i] == d1[a, 4, j, i]


def test_iou_thresh_assigns_a_truth_to_every_close_anchor():
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32) * 0.1
    one, both = _yolo_net(), _yolo_net("iou_thresh=0.5\n")
    for net in (one, both):
        net.forward(x, train=True, truth=_one_truth())
    assert one.layers[0].stats["count"] == 1 and both.layers[0].stats["count"] == 2
    d = both.layers[0].delta.reshape(2, 6, 4, 4)
    assert d[0, 0, 2, 1] != 0 and d[1, 0, 2, 1] != 0


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_iou_losses_give_the_score_gradient_at_the_assigned_cell(kind):
    from darknet_py.box import score_gradient
    net = _yolo_net(f"iou_loss={kind}\niou_normalizer=0.07\nnms_kind=greedynms\n")
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32) * 0.1
    net.forward(x, train=True, truth=_one_truth())
    layer = net.layers[0]
    o = layer.output.reshape(2, 6, 4, 4).astype(np.float64)
    a, j, i = 1, 2, 1
    pw = np.exp(o[a, 2, j, i]) * 1.25 / 4
    ph = np.exp(o[a, 3, j, i]) * 1.25 / 4
    pred = ((i + o[a, 0, j, i]) / 4, (j + o[a, 1, j, i]) / 4, pw, ph)
    gx, gy, gw, gh = score_gradient(pred, (0.3, 0.6, 0.28, 0.28), kind)
    d = layer.delta.reshape(2, 6, 4, 4)
    np.testing.assert_allclose(d[a, :4, j, i], 0.07 * np.array([gx / 4, gy / 4, gw * pw,
                                                                 gh * ph]), rtol=1e-4)
    assert d[a, 4, j, i] == pytest.approx(1 - o[a, 4, j, i], rel=1e-5)


def test_max_delta_clips_the_iou_loss_box_deltas_only():
    """AlexeyAB's max_delta bounds the giou/diou/ciou box deltas; mse's are left alone."""
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32) * 0.1
    deltas = {}
    for name, extra in (("free", "iou_loss=ciou\n"),
                        ("clipped", "iou_loss=ciou\nmax_delta=0.01\n"),
                        ("mse", "max_delta=0.01\n"), ("mse free", "")):
        net = _yolo_net(extra)
        net.forward(x, train=True, truth=_one_truth())
        deltas[name] = net.layers[0].delta.reshape(2, 6, 4, 4)[1, :, 2, 1].copy()
    free, clipped = deltas["free"], deltas["clipped"]
    assert np.abs(free[:4]).max() > 0.01
    np.testing.assert_allclose(clipped[:4], np.clip(free[:4], -0.01, 0.01), rtol=1e-6)
    np.testing.assert_array_equal(clipped[4:], free[4:])         # objectness and class
    np.testing.assert_array_equal(deltas["mse"], deltas["mse free"])


@pytest.mark.parametrize("kind,count", [("iou", 2), ("diou", 2), ("giou", 1)])
def test_iou_thresh_kind_is_the_score_the_other_anchors_must_pass(kind, count):
    """A 0.4 x 0.15 truth: anchor 0.25 x 0.25 fits best (IoU .44); anchor 0.3125 has IoU .42
    > iou_thresh=0.4 but crosses the truth, so its GIoU (.31) does not pass."""
    truth = np.zeros((1, 450), np.float32)
    truth[0, :5] = (0.3, 0.6, 0.4, 0.15, 0)
    net = _yolo_net(f"iou_thresh=0.4\niou_thresh_kind={kind}\n")
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32) * 0.1
    net.forward(x, train=True, truth=truth)
    assert net.layers[0].stats["count"] == count and not net.layers[0].unimplemented


def test_focal_loss_scales_the_class_deltas_by_alexeyabs_factor():
    x = rng_for_test().standard_normal((1, 14, 4, 4)).astype(np.float32)
    head = "[net]\nbatch=1\nchannels=14\nwidth=4\nheight=4\n[yolo]\nclasses=2\nnum=2\n" \
           "mask=0,1\nanchors=1,1, 1.25,1.25\n"
    plain, focal = build(head), build(head + "focal_loss=1\n")
    for net in (plain, focal):
        net.forward(x, train=True, truth=_one_truth())
    a, j, i = 1, 2, 1
    p0 = float(focal.layers[0].output.reshape(2, 7, 4, 4)[a, 5, j, i])
    grad = -(1 - p0) * (2 * p0 * np.log(p0) + p0 - 1)
    d0 = plain.layers[0].delta.reshape(2, 7, 4, 4)[a, 5:, j, i]
    d1 = focal.layers[0].delta.reshape(2, 7, 4, 4)[a, 5:, j, i]
    np.testing.assert_allclose(d1, d0 * 0.5 * grad, rtol=1e-5)
    assert not focal.layers[0].unimplemented


def test_counters_per_class_weigh_the_rare_classes_deltas():
    """AlexeyAB's counters_per_class: multiplier max/count (capped at max_delta) on the box,
    objectness and true-class deltas of a truth of that class."""
    x = rng_for_test().standard_normal((1, 14, 4, 4)).astype(np.float32) * 0.1
    head = "[net]\nbatch=1\nchannels=14\nwidth=4\nheight=4\n[yolo]\nclasses=2\nnum=2\n" \
           "mask=0,1\nanchors=1,1, 1.25,1.25\n"
    truth = _one_truth()
    truth[0, 4] = 1                                   # the rare class
    plain, weighted = build(head), build(head + "counters_per_class=100,25\n")
    capped = build(head + "counters_per_class=100,25\nmax_delta=2\n")
    for net in (plain, weighted, capped):
        net.forward(x, train=True, truth=truth)
    assert list(weighted.layers[0].class_multipliers) == [1, 4]
    assert list(capped.layers[0].class_multipliers) == [1, 2]
    a, j, i = 1, 2, 1
    d0, d1 = (n.layers[0].delta.reshape(2, 7, 4, 4)[a, :, j, i] for n in (plain, weighted))
    np.testing.assert_allclose(d1[:5], 4 * d0[:5], rtol=1e-6)      # box and objectness
    np.testing.assert_allclose(d1[6], 4 * d0[6], rtol=1e-6)        # the true class
    assert d1[5] == d0[5]                                           # the other class
    with pytest.raises(DarknetError, match="counters_per_class has 3 values but classes=2"):
        build(head + "counters_per_class=1,2,3\n")


def test_label_smooth_eps_moves_the_class_targets_towards_one_half():
    """AlexeyAB's label_smooth_eps: targets y * (1 - eps) + eps / 2."""
    x = rng_for_test().standard_normal((1, 14, 4, 4)).astype(np.float32) * 0.1
    head = "[net]\nbatch=1\nchannels=14\nwidth=4\nheight=4\n[yolo]\nclasses=2\nnum=2\n" \
           "mask=0,1\nanchors=1,1, 1.25,1.25\n"
    net = build(head + "label_smooth_eps=0.1\n")
    net.forward(x, train=True, truth=_one_truth())
    o = net.layers[0].output.reshape(2, 7, 4, 4)
    d = net.layers[0].delta.reshape(2, 7, 4, 4)
    a, j, i = 1, 2, 1
    np.testing.assert_allclose(d[a, 5:, j, i], [0.95 - o[a, 5, j, i], 0.05 - o[a, 6, j, i]],
                               rtol=1e-5)
    assert not net.layers[0].unimplemented


def test_ciou_training_moves_the_box_onto_the_truth():
    from conftest import build
    from darknet_py.box import score
    net = build("[net]\nbatch=1\nchannels=1\nwidth=4\nheight=4\nlearning_rate=0.1\n"
                "momentum=0.9\ndecay=0\n[convolutional]\nfilters=12\nsize=1\n"
                "activation=linear\n[yolo]\nclasses=1\nnum=2\nmask=0,1\n"
                "anchors=1,1, 1.25,1.25\niou_loss=ciou\n", seed=0)
    x = np.ones((1, 1, 4, 4), np.float32)
    truth = _one_truth()

    def assigned_score():
        o = net.forward(x).reshape(2, 6, 4, 4).astype(np.float64)
        a, j, i = 1, 2, 1
        pred = ((i + o[a, 0, j, i]) / 4, (j + o[a, 1, j, i]) / 4,
                np.exp(o[a, 2, j, i]) * 1.25 / 4, np.exp(o[a, 3, j, i]) * 1.25 / 4)
        return score(pred, (0.3, 0.6, 0.28, 0.28), "ciou")
    before = assigned_score()
    for _ in range(300):
        net.train_step(x, truth)
    after = assigned_score()
    assert after > before + 0.3 and after > 0.5, (before, after)
