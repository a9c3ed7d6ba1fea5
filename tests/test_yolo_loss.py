"""The [yolo] and [region] training losses: equal to Darknet's (pj forward_yolo_layer,
forward_region_layer through libdarknet, the ``darknet`` tests) and, option by option, to the loop
implementation kept in tests/yolo_reference.py (the vectorised loss reproduces its order-dependent
writes: the later truth of a cell wins, pj's ``if (delta[index])`` class test)."""

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import yolo_reference as reference  # noqa: E402
from darknet_py import Network  # noqa: E402
from darknet_py.errors import DarknetError  # noqa: E402
from darknet_py.nn.layers.yololoss import fetch_stats, region_loss, yolo_loss  # noqa: E402
from oracle.darknet import DarknetOracle  # noqa: E402
from test_darknet_conformance import shrink_cfg  # noqa: E402
from conftest import build, require_darknet, rng_for_test  # noqa: E402

DEBIAN_CFG = Path("/usr/share/darknet/cfg")
_ok, _why = DarknetOracle.available()


@pytest.fixture
def oracle():
    """Skip a libdarknet test when it cannot be driven, or fail it under CI."""
    require_darknet(_ok, _why, "[yolo]/[region] loss oracle tests")


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


@pytest.mark.darknet
@pytest.mark.parametrize("cfg_name", ["yolov3-tiny.cfg", "yolov3.cfg"])
def test_yolo_deltas_and_cost_equal_darknet(tmp_path, cfg_name, oracle):
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


@pytest.mark.darknet
@pytest.mark.parametrize("seen", [0, 20000], ids=["with-anchor-prior", "after-12800-images"])
def test_region_deltas_and_cost_equal_darknet(tmp_path, seen, oracle):
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


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_iou_losses_give_alexeyabs_deltas_at_the_assigned_cell(kind):
    """AB delta_yolo_box: iou_normalizer x dx_box_iou of the box, its w, h terms times exp(o_w),
    exp(o_h), and no 1/W chain factor on x, y (for giou, whose x term is the gradient, the
    x delta is iou_normalizer d score / d x of the image-relative box)."""
    from darknet_py.box import dx_box_iou, score
    net = _yolo_net(f"iou_loss={kind}\niou_normalizer=0.07\nnms_kind=greedynms\n")
    x = rng_for_test().standard_normal((1, 12, 4, 4)).astype(np.float32) * 0.1
    net.forward(x, train=True, truth=_one_truth())
    layer = net.layers[0]
    o = layer.output.reshape(2, 6, 4, 4).astype(np.float64)
    a, j, i = 1, 2, 1
    pw = np.exp(o[a, 2, j, i]) * 1.25 / 4
    ph = np.exp(o[a, 3, j, i]) * 1.25 / 4
    pred = ((i + o[a, 0, j, i]) / 4, (j + o[a, 1, j, i]) / 4, pw, ph)
    truth = (0.3, 0.6, 0.28, 0.28)
    dx, dy, dw, dh = (float(v) for v in dx_box_iou(pred, truth, kind))
    d = layer.delta.reshape(2, 6, 4, 4)
    np.testing.assert_allclose(d[a, :4, j, i], 0.07 * np.array(
        [dx, dy, dw * np.exp(o[a, 2, j, i]), dh * np.exp(o[a, 3, j, i])]), rtol=1e-5)
    assert d[a, 4, j, i] == pytest.approx(1 - o[a, 4, j, i], rel=1e-5)
    if kind == "giou":
        shifted = [(pred[0] + e, *pred[1:]) for e in (1e-6, -1e-6)]
        numeric = (score(shifted[0], truth, kind) - score(shifted[1], truth, kind)) / 2e-6
        assert d[a, 0, j, i] == pytest.approx(0.07 * numeric, rel=1e-3)


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
    net = build("[net]\nbatch=1\nchannels=1\nwidth=4\nheight=4\nlearning_rate=0.01\n"
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


# ------------------------------------------------------------------------------------------------
# AlexeyAB's new_coords=1 (ab:src/yolo_layer.c get_yolo_box, delta_yolo_box)
# ------------------------------------------------------------------------------------------------

def _new_coords_box(o, a, j, i, anchors, lw=4, lh=4, net=4):
    """ab get_yolo_box with new_coords: ((i + x)/lw, (j + y)/lh, x_w^2*4*anchor_w/net_w, ...)."""
    return ((i + o[a, 0, j, i]) / lw, (j + o[a, 1, j, i]) / lh,
            o[a, 2, j, i] ** 2 * 4 * anchors[a][0] / net,
            o[a, 3, j, i] ** 2 * 4 * anchors[a][1] / net)


def test_new_coords_forward_applies_no_logistic_only_scale_x_y():
    x = rng_for_test().random((1, 12, 4, 4)).astype(np.float32)
    out = _yolo_net("new_coords=1\nscale_x_y=2.0\n").forward(x).reshape(2, 6, 4, 4)
    planes = x.reshape(2, 6, 4, 4)
    np.testing.assert_allclose(out[:, :2], planes[:, :2] * 2 - 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 2:], planes[:, 2:])
    plain = _yolo_net("new_coords=1\n").forward(x)
    np.testing.assert_array_equal(plain, x)


def test_new_coords_mse_deltas_vanish_where_the_box_is_the_truth():
    """mse targets (ab delta_yolo_box, new_coords): x*lw - i and sqrt(w*net_w/(4 anchor_w))."""
    net = _yolo_net("new_coords=1\n")
    x = np.full((1, 12, 4, 4), 0.5, np.float32)
    a, j, i = 1, 2, 1                       # anchor 1.25 fits the 0.28 x 0.28 truth best
    p = x.reshape(2, 6, 4, 4)
    p[a, 0, j, i], p[a, 1, j, i] = 0.3 * 4 - i, 0.6 * 4 - j
    p[a, 2, j, i] = p[a, 3, j, i] = np.sqrt(0.28 * 4 / (4 * 1.25))
    net.forward(x, train=True, truth=_one_truth())
    d = net.layers[0].delta.reshape(2, 6, 4, 4)
    np.testing.assert_allclose(d[a, :4, j, i], 0, atol=1e-6)
    assert net.layers[0].stats["iou"] == pytest.approx(1, abs=1e-5)
    # away from it, the delta is (2 - w h) (target - o)
    p[a, 2, j, i] = 0.2
    net.forward(x, train=True, truth=_one_truth())
    d = net.layers[0].delta.reshape(2, 6, 4, 4)
    assert d[a, 2, j, i] == pytest.approx((2 - 0.28 * 0.28) * (np.sqrt(0.28 / 1.25) - 0.2),
                                          rel=1e-5)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_new_coords_iou_deltas_are_alexeyabs_unscaled(kind):
    """With new_coords AB's delta_yolo_box leaves dx_box_iou's w, h terms unscaled (its
    8 o factors are commented out): iou_normalizer x dx_box_iou of w = 4 o^2 anchor / net_w; an
    output of exactly 0 (w = 0) is taken as w = 1 ("avoid nan in dx_box_iou")."""
    from darknet_py.box import dx_box_iou
    net = _yolo_net(f"new_coords=1\niou_loss={kind}\niou_normalizer=0.07\n")
    x = rng_for_test().uniform(0.2, 0.8, (1, 12, 4, 4)).astype(np.float32)
    a, j, i = 1, 2, 1
    anchors = [(1, 1), (1.25, 1.25)]
    truth = (0.3, 0.6, 0.28, 0.28)
    for zero_w in (False, True):
        if zero_w:
            x.reshape(2, 6, 4, 4)[a, 2, j, i] = 0
        net.forward(x, train=True, truth=_one_truth())
        o = net.layers[0].output.reshape(2, 6, 4, 4).astype(np.float64)
        box = list(_new_coords_box(o, a, j, i, anchors))
        assert (box[2] == 0) == zero_w
        box[2] = box[2] or 1.0
        d = net.layers[0].delta.reshape(2, 6, 4, 4)
        want = 0.07 * np.array([float(v) for v in dx_box_iou(tuple(box), truth, kind)])
        np.testing.assert_allclose(d[a, :4, j, i], want, rtol=1e-5, atol=1e-9)
        assert (want != 0).any()
        assert d[a, 4, j, i] == pytest.approx(1 - o[a, 4, j, i], rel=1e-5)


def test_new_coords_training_through_a_logistic_conv_moves_the_box_onto_the_truth():
    """yolov4-csp's head: a conv with activation=logistic feeds [yolo] new_coords=1; the deltas
    pass the conv's logistic derivative, and the box converges on the truth."""
    from darknet_py.box import score
    net = build("[net]\nbatch=1\nchannels=1\nwidth=4\nheight=4\nlearning_rate=0.01\n"
                "momentum=0.9\ndecay=0\n[convolutional]\nfilters=12\nsize=1\n"
                "activation=logistic\n[yolo]\nclasses=1\nnum=2\nmask=0,1\n"
                "anchors=1,1, 1.25,1.25\nnew_coords=1\nscale_x_y=2.0\niou_loss=ciou\n", seed=0)
    x = np.ones((1, 1, 4, 4), np.float32)

    def assigned_score():
        o = net.forward(x).reshape(2, 6, 4, 4).astype(np.float64)
        return score(_new_coords_box(o, 1, 2, 1, [(1, 1), (1.25, 1.25)]),
                     (0.3, 0.6, 0.28, 0.28), "ciou")
    before = assigned_score()
    for _ in range(500):
        net.train_step(x, _one_truth())
    after = assigned_score()
    assert before < 0 and after > 0.9, (before, after)


# ------------------------------------------------------------------------------------------------
# the vectorised loss equals the loop reference (tests/yolo_reference.py), option by option
# ------------------------------------------------------------------------------------------------

BATCH = 4
ANCHORS = "anchors=1,1.5, 2,2, 3,2.5, 4,5, 6,6\n"        # net pixels of a 16x16 net: grid 8x8
YOLO_CASES = {
    "pj": "",
    "normalizers": "iou_normalizer=0.07\ncls_normalizer=2\nobj_normalizer=0.5\n",
    "iou": "iou_loss=iou\niou_normalizer=0.5\n",
    "giou": "iou_loss=giou\niou_normalizer=0.07\n",
    "diou": "iou_loss=diou\n",
    "ciou": "iou_loss=ciou\niou_normalizer=0.07\nmask=0,1,2\n",
    "ciou-max_delta": "iou_loss=ciou\nmax_delta=0.02\nmask=0,2,4\n",
    "iou_thresh": "iou_thresh=0.3\n",
    "iou_thresh_giou": "iou_thresh=0.2\niou_thresh_kind=giou\n",
    "iou_thresh_ciou": "iou_thresh=0.2\niou_thresh_kind=ciou\n",
    "iou_thresh_diou": "iou_thresh=0.2\niou_thresh_kind=diou\n",
    "scale_x_y": "scale_x_y=1.1\n",
    "counters_per_class": "counters_per_class=100,25,3,50\n",
    "counters-max_delta": "counters_per_class=100,25,3,50\nmax_delta=3\n",
    "label_smooth_eps": "label_smooth_eps=0.1\n",
    "label_smooth_half": "label_smooth_eps=0.5\n",
    "focal_loss": "focal_loss=1\n",
    "focal-smooth-counters": "focal_loss=1\nlabel_smooth_eps=0.5\ncounters_per_class=9,3,1,0\n",
    "truth_thresh": "truth_thresh=0.3\nignore_thresh=0.2\n",
    "truth_thresh-iou_normalizer": "truth_thresh=0.3\nignore_thresh=0.2\niou_normalizer=0.5\n",
    "truth_thresh-giou": "truth_thresh=0.3\nignore_thresh=0.2\niou_loss=giou\nmax_delta=0.1\n"
                        "counters_per_class=1,2,3,4\nlabel_smooth_eps=0.2\n",
    "truth_thresh-focal": "truth_thresh=0.25\nfocal_loss=1\ncls_normalizer=0.5\n",
    "ignore_thresh_0": "ignore_thresh=0\n",
    "cls_normalizer_0": "cls_normalizer=0\n",
    "mask_repeats": "mask=1,1,3\n",
    "everything": "iou_loss=ciou\niou_normalizer=0.07\ncls_normalizer=1.5\nobj_normalizer=2\n"
                  "iou_thresh=0.2\niou_thresh_kind=ciou\nscale_x_y=1.05\nmax_delta=5\n"
                  "counters_per_class=10,20,30,5\nlabel_smooth_eps=0.1\ntruth_thresh=0.35\n"
                  "ignore_thresh=0.3\nmask=0,1,2\n",
    # AlexeyAB's new_coords=1 (yolov4-csp, yolov7): w = 4 o^2 anchor / U
    "new_coords": "new_coords=1\n",
    "new_coords-scale_x_y": "new_coords=1\nscale_x_y=2.0\niou_thresh=0.2\n",
    "new_coords-ciou": "new_coords=1\nscale_x_y=2.0\niou_loss=ciou\niou_normalizer=0.05\n"
                       "cls_normalizer=0.5\nobj_normalizer=4.0\niou_thresh=0.2\nmax_delta=5\n",
    "new_coords-giou": "new_coords=1\niou_loss=giou\n",
    "new_coords-truth_thresh": "new_coords=1\ntruth_thresh=0.3\nignore_thresh=0.2\n"
                               "iou_loss=diou\n",
    # AlexeyAB's objectness_smooth (yolov7): IoU targets, the class-confidence gate
    "objectness_smooth": "objectness_smooth=1\nignore_thresh=0.2\n",
    "objectness_smooth-truth_thresh": "objectness_smooth=1\nignore_thresh=0.2\n"
                                      "truth_thresh=0.3\ncounters_per_class=10,20,30,5\n",
    "objectness_smooth-yolov7": "objectness_smooth=1\nnew_coords=1\nscale_x_y=2.0\n"
                                "iou_loss=ciou\niou_normalizer=0.05\ncls_normalizer=0.5\n"
                                "obj_normalizer=1.0\nignore_thresh=0.2\niou_thresh=0.2\n"
                                "max_delta=2\n",
}
REGION_CASES = {
    "voc": "softmax=1\nbias_match=1\nrescore=1\nobject_scale=5\n",
    "logistic-classes": "softmax=0\nbias_match=0\n",
    "rescore-logistic": "softmax=0\nrescore=1\nthresh=0.2\n",
    "background": "background=1\nsoftmax=1\n",
    "scales": "coord_scale=2\nobject_scale=5\nnoobject_scale=0.5\nclass_scale=0.7\n",
    "class_scale_0": "class_scale=0\n",
}


def yolo_head(extra="", batch=BATCH, classes=4):
    """A [yolo] of 3 slots and ``classes`` classes on an 8x8 grid of a 16x16 net."""
    net = build(f"[net]\nbatch={batch}\nchannels={3 * (5 + classes)}\nwidth=16\nheight=16\n"
                "[maxpool]\nsize=2\nstride=2\n"
                f"[yolo]\nclasses={classes}\nnum=5\nmask=1,2,3\n{ANCHORS}" + extra)
    return net.layers[-1]


def region_head(extra="", batch=BATCH, classes=4, num=3):
    net = build(f"[net]\nbatch={batch}\nchannels={num * (5 + classes)}\nwidth=16\nheight=16\n"
                "[maxpool]\nsize=2\nstride=2\n"
                f"[region]\nclasses={classes}\ncoords=4\nnum={num}\n"
                "anchors=0.5,0.8, 1.5,1.5, 3,2.5\n" + extra)
    return net.layers[-1]


def head_output(rng, layer, batch=BATCH, saturate=(0.0, 1.0)):
    """Activated outputs: x, y, objectness and classes in (0, 1), w and h raw; about a quarter
    of the objectness and class values are exactly one of ``saturate`` (a saturated logistic,
    or a label_smooth_eps target), which makes Darknet's "class delta is 0" test fire."""
    planes = layer.c // layer.n
    o = rng.random((batch, layer.n, planes, layer.h, layer.w))
    if getattr(layer, "new_coords", False):     # w, h in [0, 1) too: the conv's logistic
        o[:, :, 2:4] = np.where(rng.random(o[:, :, 2:4].shape) < 0.05, 0.0, o[:, :, 2:4])
    else:
        o[:, :, 2:4] = rng.normal(0, 0.7, o[:, :, 2:4].shape)
    exact = rng.random(o[:, :, 4:].shape) < 0.25
    o[:, :, 4:] = np.where(exact, rng.choice(saturate, o[:, :, 4:].shape), o[:, :, 4:])
    return o.reshape(batch, layer.c, layer.h, layer.w).astype(np.float32)


def crowded_truths(rng, batch, classes, rows=90, most=14, zero_size=True):
    """Truth tables Darknet's order matters for: per image 0..most truths (the first image
    ``most``), among them exact duplicates, truths in the cell (and of about the shape) of an
    earlier one with another class, truths of zero width or height (when ``zero_size``), then
    the x == 0 end marker followed by rows that must be ignored."""
    t = np.zeros((batch, rows, 5), np.float32)
    for b in range(batch):
        k = int(rng.integers(0, most + 1)) if b else most
        for r in range(k):
            kind = rng.random()
            if r and kind < 0.2:
                t[b, r] = t[b, rng.integers(0, r)]
            elif r and kind < 0.45:
                t[b, r] = t[b, rng.integers(0, r)]
                t[b, r, :2] = np.clip(t[b, r, :2] + rng.uniform(-0.01, 0.01, 2), 0.001, 0.999)
                t[b, r, 2:4] *= rng.uniform(0.9, 1.1, 2)
                t[b, r, 4] = rng.integers(0, classes)
            else:
                t[b, r] = (*rng.uniform(0.02, 0.98, 2), *rng.uniform(0.03, 0.6, 2),
                           rng.integers(0, classes))
            if zero_size and rng.random() < 0.1:
                t[b, r, 2 + rng.integers(0, 2)] = 0
        t[b, k + 1:k + 3] = (0.5, 0.5, 0.2, 0.2, 1)            # after the end marker
    return t.reshape(batch, -1)


def assert_same_loss(got, ref, cells):
    """Deltas and cost within 1e-5 relative; counts equal; summed statistics within 1e-5."""
    delta, totals = got
    ref_delta, ref_cost, ref_stats = ref
    cost, stats = fetch_stats(totals, cells)
    assert delta.dtype == ref_delta.dtype and delta.shape == ref_delta.shape
    scale = float(np.abs(ref_delta).max())
    np.testing.assert_allclose(delta, ref_delta, rtol=1e-5, atol=1e-6 * scale)
    assert np.abs(delta - ref_delta).max() <= 1e-5 * scale
    assert cost == pytest.approx(ref_cost, rel=1e-5)
    for key in ("count", "recall", "recall75", "cells"):
        assert stats[key] == ref_stats[key], key
    for key in ("iou", "cls", "obj", "anyobj"):
        assert stats[key] == pytest.approx(float(ref_stats[key]), rel=1e-5, abs=1e-9), key


def uses_zero_size_truths(layer):
    """A zero-size truth gets anchor 0; the reference's mse (math.log(0)) raises there, pj
    writes -inf: only layers where that cannot happen get such truths."""
    return layer.iou_loss != "mse" or 0 not in layer.mask


@pytest.mark.parametrize("case", list(YOLO_CASES))
def test_yolo_loss_equals_the_loop_reference(case):
    rng = rng_for_test()
    layer = yolo_head(YOLO_CASES[case])
    eps = layer.label_smooth_eps
    for _ in range(3):
        out = head_output(rng, layer, saturate=(0.0, 1.0, 0.5 * eps, 1 - 0.5 * eps))
        truth = crowded_truths(rng, BATCH, layer.classes, zero_size=uses_zero_size_truths(layer))
        assert_same_loss(yolo_loss(layer, out, truth), reference.yolo_loss(layer, out, truth),
                         BATCH * layer.n * layer.h * layer.w)


@pytest.mark.parametrize("seen", [0, 12800], ids=["anchor-prior", "after-12800-images"])
@pytest.mark.parametrize("case", list(REGION_CASES))
def test_region_loss_equals_the_loop_reference(case, seen):
    rng = rng_for_test()
    layer = region_head(REGION_CASES[case])
    for _ in range(3):
        out = head_output(rng, layer)
        truth = crowded_truths(rng, BATCH, layer.classes, rows=30, zero_size=False)
        assert_same_loss(region_loss(layer, out, truth, seen),
                         reference.region_loss(layer, out, truth, seen),
                         BATCH * layer.n * layer.h * layer.w)


def test_two_truths_in_one_cell_the_later_one_wins():
    """pj loops over the truths in order: of two truths of one cell and anchor the later one's
    box and objectness deltas stay; the earlier one wrote every class, the later one only its
    own (the cell's class-0 delta was nonzero by then)."""
    layer = yolo_head("counters_per_class=10,20,5,40\n", batch=1)
    out = head_output(rng_for_test(), layer, 1, (0.5,))
    truth = np.zeros((1, 450), np.float32)
    truth[0, :10] = (0.3, 0.6, 0.2, 0.2, 0, 0.31, 0.61, 0.22, 0.2, 2)
    later = truth.copy()
    later[0, :5], later[0, 5:10] = later[0, 5:10], 0
    delta, totals = yolo_loss(layer, out, truth)
    alone, _ = yolo_loss(layer, out, later)
    p = out.reshape(3, 9, 8, 8)
    d, a = delta.reshape(3, 9, 8, 8), alone.reshape(3, 9, 8, 8)
    hit = np.nonzero(a[:, 0])
    assert len(hit[0]) == 1
    s, j, i = (int(v[0]) for v in hit)
    np.testing.assert_array_equal(d[s, :5, j, i], a[s, :5, j, i])      # box and objectness
    assert d[s, 4, j, i] == pytest.approx(8 * (1 - p[s, 4, j, i]))     # class 2's 40/5
    np.testing.assert_allclose(d[s, 5:, j, i], [4 * (1 - p[s, 5, j, i]), -p[s, 6, j, i],
                                                8 * (1 - p[s, 7, j, i]), -p[s, 8, j, i]],
                               rtol=1e-6)
    assert fetch_stats(totals, 192)[1]["count"] == 2
    assert_same_loss((delta, totals), reference.yolo_loss(layer, out, truth), 192)


def test_a_class_0_delta_of_zero_lets_the_next_truth_write_every_class():
    """pj's delta_yolo_class tests ``if (delta[index])``, the value of the class-0 delta: a
    saturated class-0 probability of exactly 1 leaves it 0 after a class-0 truth, so the next
    truth of that cell writes every class again (class 0: 0 - 1)."""
    layer = yolo_head(batch=1)
    truth = np.zeros((1, 450), np.float32)
    truth[0, :10] = (0.3, 0.6, 0.2, 0.2, 0, 0.31, 0.61, 0.22, 0.2, 2)
    out = head_output(rng_for_test(), layer, 1, (0.5,))
    ref_delta = reference.yolo_loss(layer, out, truth)[0].reshape(3, 9, 8, 8)
    s, j, i = (int(v[0]) for v in np.nonzero(ref_delta[:, 0]))
    p = out.reshape(3, 9, 8, 8)
    p[s, 5, j, i] = 1.0
    delta, totals = yolo_loss(layer, out, truth)
    d = delta.reshape(3, 9, 8, 8)
    np.testing.assert_allclose(d[s, 5:, j, i], [-1, -p[s, 6, j, i], 1 - p[s, 7, j, i],
                                                -p[s, 8, j, i]], rtol=1e-6)
    assert_same_loss((delta, totals), reference.yolo_loss(layer, out, truth), 192)


def test_region_single_class_writes_follow_the_same_rule():
    """[region] with logistic classes: the later truth of a cell adds its class; with a
    saturated probability 1 of class 0 the later truth rewrites every class."""
    layer = region_head("softmax=0\nbias_match=1\n", batch=1)
    truth = np.zeros((1, 150), np.float32)
    truth[0, :10] = (0.3, 0.6, 0.2, 0.2, 0, 0.31, 0.61, 0.2, 0.2, 2)
    for saturated in (False, True):
        out = head_output(rng_for_test(), layer, 1, (0.5,))
        if saturated:
            out.reshape(3, 9, 8, 8)[:, 5] = 1.0
        delta, totals = region_loss(layer, out, truth, 20000)
        ref = reference.region_loss(layer, out, truth, 20000)
        assert_same_loss((delta, totals), ref, 192)
        d, p = delta.reshape(3, 9, 8, 8), out.reshape(3, 9, 8, 8)
        s, j, i = (int(v[0]) for v in np.nonzero(d[:, 0]))
        first = -1 if saturated else 1 - p[s, 5, j, i]
        np.testing.assert_allclose(d[s, 5:, j, i], [first, -p[s, 6, j, i], 1 - p[s, 7, j, i],
                                                    -p[s, 8, j, i]], rtol=1e-6)


@pytest.mark.parametrize("kind", ["yolo", "region"])
def test_ignore_mask_blocks_and_a_full_truth_table_change_nothing(kind, monkeypatch):
    """The batched IoU is cut into blocks of images to bound its memory, and a device keeps
    the whole truth table (rows after the end markers masked): one image per block and a
    table whose first image fills every row give the reference's loss."""
    from darknet_py.nn.layers import yololoss
    rng = rng_for_test()
    monkeypatch.setattr(yololoss, "_BLOCK", 1)
    rows = 30 if kind == "region" else 90
    layer = region_head() if kind == "region" else yolo_head("truth_thresh=0.3\n")
    out = head_output(rng, layer)
    truth = crowded_truths(rng, BATCH, layer.classes, rows=rows, most=rows, zero_size=False)
    assert (truth.reshape(BATCH, rows, 5)[0, :, 0] != 0).all()
    got = region_loss(layer, out, truth, 0) if kind == "region" else yolo_loss(layer, out, truth)
    ref = (reference.region_loss(layer, out, truth, 0) if kind == "region"
           else reference.yolo_loss(layer, out, truth))
    assert_same_loss(got, ref, BATCH * layer.n * layer.h * layer.w)


@pytest.mark.parametrize("case", [c for c in YOLO_CASES if c.startswith("objectness_smooth")])
def test_objectness_smooth_changes_the_objectness_targets(case):
    """The smooth cases above are not the plain loss in disguise: objectness deltas differ
    (IoU targets where the class-confident boxes overlap a truth, kept at the truths' cells),
    and with truth_thresh the truth's class delta too."""
    rng = rng_for_test()
    on = yolo_head(YOLO_CASES[case])
    off = yolo_head(YOLO_CASES[case].replace("objectness_smooth=1", "objectness_smooth=0"))
    out = head_output(rng, on)
    truth = crowded_truths(rng, BATCH, on.classes)
    shape = (BATCH, on.n, 5 + on.classes, on.h, on.w)
    d_on = yolo_loss(on, out, truth)[0].reshape(shape)
    d_off = yolo_loss(off, out, truth)[0].reshape(shape)
    assert (d_on[:, :, 4] != d_off[:, :, 4]).sum() > 10
    assert ((d_on[:, :, 5:] != d_off[:, :, 5:]).sum() > 0) == ("truth_thresh" in case)
