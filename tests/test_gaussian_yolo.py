"""AlexeyAB's [Gaussian_yolo] (inference): the forward and the detections equal loops written
from AlexeyAB's C (ab:src/gaussian_yolo_layer.c forward_gaussian_yolo_layer,
get_gaussian_yolo_box, get_gaussian_yolo_detections, correct_gaussian_yolo_boxes); training
it is refused at the start of a run."""

import math
import os

import numpy as np
import pytest

from conftest import build, rng_for_test
from darknet_py.detection.detect import get_network_boxes, network_boxes_for_nms
from darknet_py.errors import CfgError, NotSupportedError
from darknet_py.nn.backend import to_numpy
from darknet_py.train.detector import DetectorTrainer
from darknet_py.train.options import TrainOptions

F = np.float32
CLASSES, MASK, ANCHORS = 3, [1, 2], [7, 9, 12, 15, 20, 11]


def cfg(extra="", letter_box=""):
    filters = len(MASK) * (CLASSES + 9)
    return (f"[net]\nbatch=1\nwidth=64\nheight=48\nchannels=3\n{letter_box}"
            f"[convolutional]\nfilters={filters}\nsize=1\nstride=16\nactivation=linear\n"
            f"[Gaussian_yolo]\nmask={','.join(map(str, MASK))}\nnum=3\n"
            f"anchors={','.join(map(str, ANCHORS))}\nclasses={CLASSES}\n{extra}")


def logistic(v):
    return F(1) / (F(1) + np.exp(-v.astype(F)))


def ab_forward(x, n, classes, scale_x_y):
    """forward_gaussian_yolo_layer's activations, entry by entry (batch, n, entries, h, w)."""
    out = x.astype(F).copy().reshape(x.shape[0], n, 9 + classes, *x.shape[2:])
    for b in range(out.shape[0]):
        for a in range(n):
            for e in (0, 1, 2, 3, 5, 7, *range(8, 9 + classes)):
                out[b, a, e] = logistic(out[b, a, e])
            for e in (0, 2):
                out[b, a, e] = out[b, a, e] * F(scale_x_y) + F(-0.5 * (scale_x_y - 1))
    return out


def ab_detections(out, anchors, mask, netw, neth, img_w, img_h, thresh, yolo_point, letter):
    """get_gaussian_yolo_detections (relative=1) and correct_gaussian_yolo_boxes, loop for
    loop, C's float and double where C has them: [(x, y, w, h, objectness, probs)]."""
    n, entries, lh, lw = out.shape[1:]
    classes = entries - 9
    dets = []
    for i in range(lw * lh):
        row, col = i // lw, i % lw
        for a in range(n):
            v = out[0, a, :, row, col]
            objectness = v[8]
            if not objectness > F(thresh):
                continue
            bw = F(math.exp(float(v[4])) * float(anchors[2 * mask[a]]) / netw)
            bh = F(math.exp(float(v[6])) * float(anchors[2 * mask[a] + 1]) / neth)
            bx = (F(col) + v[0]) / F(lw)
            by = (F(row) + v[2]) / F(lh)
            if yolo_point == "left_top":
                bx, by = bx + bw / F(2), by + bh / F(2)
            elif yolo_point == "right_bottom":
                bx, by = bx - bw / F(2), by - bh / F(2)
            uc_aver = float(v[1] + v[3] + v[5] + v[7]) / 4.0
            probs = []
            for j in range(classes):
                prob = F(float(objectness * v[9 + j]) * (1.0 - uc_aver))
                probs.append(prob if prob > F(thresh) else F(0))
            dets.append([bx, by, bw, bh, objectness, probs])
    if letter:
        if F(netw) / F(img_w) < F(neth) / F(img_h):
            new_w, new_h = netw, (img_h * netw) // img_w
        else:
            new_w, new_h = (img_w * neth) // img_h, neth
    else:
        new_w, new_h = netw, neth
    for d in dets:
        d[0] = F((float(d[0]) - (netw - new_w) / 2. / netw) / float(F(new_w) / F(netw)))
        d[1] = F((float(d[1]) - (neth - new_h) / 2. / neth) / float(F(new_h) / F(neth)))
        d[2] = d[2] * (F(netw) / F(new_w))
        d[3] = d[3] * (F(neth) / F(new_h))
    return dets


@pytest.mark.parametrize("scale", [1.0, 1.1])
def test_forward_equals_alexeyabs(scale):
    rng = rng_for_test()
    net = build(cfg(f"scale_x_y={scale}\n"))
    x = rng.standard_normal((1, 3, 48, 64)).astype(F) * 3
    net.forward(x)
    head = net.layers[-1]
    assert head.type == "gaussian_yolo" and head.describe() == "Gaussian_yolo"
    got = np.asarray(head.output).reshape(1, len(MASK), 9 + CLASSES, 3, 4)
    np.testing.assert_allclose(got, ab_forward(np.asarray(net.layers[0].output), len(MASK),
                                               CLASSES, scale), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("point,letter", [("center", ""), ("left_top", "letter_box=0\n"),
                                          ("right_bottom", "")])
def test_detections_equal_alexeyabs(point, letter):
    rng = rng_for_test()
    net = build(cfg(f"yolo_point={point}\n", letter))
    net.forward(rng.standard_normal((1, 3, 48, 64)).astype(F))
    head = net.layers[-1]
    out = np.asarray(head.output).reshape(1, len(MASK), 9 + CLASSES, 3, 4)
    for img_w, img_h in ((640, 360), (300, 500)):
        dropped = []
        dets = get_network_boxes(net, img_w, img_h, thresh=0.3, dropped=dropped)
        assert dropped == [0]           # no absurd box left out: all of AB's are compared
        want = ab_detections(out, ANCHORS, MASK, 64, 48, img_w, img_h, 0.3, point, not letter)
        assert len(dets) == len(want) > 0
        for d, (x, y, w, h, obj, probs) in zip(dets, want):
            assert tuple(F(v) for v in d.bbox) == (x, y, w, h)
            assert F(d.objectness) == obj
            np.testing.assert_array_equal(np.asarray(d.prob, F), np.asarray(probs, F))


def test_filters_must_fit_classes_plus_9():
    text = cfg().replace(f"filters={len(MASK) * (CLASSES + 9)}",
                         f"filters={len(MASK) * (CLASSES + 5)}")
    with pytest.raises(CfgError) as e:
        build(text)
    assert "classes=3 + 9" in e.value.message


def test_training_a_gaussian_yolo_is_refused_at_its_line(tmp_path):
    path = tmp_path / "g.cfg"
    path.write_text(cfg())
    (tmp_path / "train.txt").write_text("nothing.jpg\n")
    (tmp_path / "x.data").write_text(f"classes={CLASSES}\ntrain={tmp_path / 'train.txt'}\n")
    with pytest.raises(NotSupportedError) as e:
        DetectorTrainer(str(path), str(tmp_path / "x.data"), out=open(os.devnull, "w"),
                        options=TrainOptions(device="cpu", seed=1, progress=False))
    assert e.value.line == cfg().splitlines().index("[Gaussian_yolo]") + 1
    assert "training a [Gaussian_yolo]" in e.value.message
    net = build(cfg())
    with pytest.raises(NotSupportedError):
        net.forward(np.zeros((1, 3, 48, 64), F), train=True,
                    truth=np.zeros((1, 90 * 5), F))


def test_the_batched_detections_equal_the_per_image_ones():
    """network_boxes_for_nms (detector map/valid, detect_images) reads the head as
    get_network_boxes does, image by image."""
    rng = rng_for_test()
    net = build(cfg().replace("batch=1", "batch=2"))
    net.forward(rng.standard_normal((2, 3, 48, 64)).astype(F))
    sizes = [(640, 360), (300, 500)]
    batched = network_boxes_for_nms(net, sizes, 0.3)
    for b, (w, h) in enumerate(sizes):
        single = get_network_boxes(net, w, h, 0.3, batch_index=b)
        assert len(single) > 0 and len(batched[b]) == len(single)
        for d, e in zip(batched[b], single):
            assert tuple(d.bbox) == tuple(e.bbox) and d.objectness == e.objectness
            np.testing.assert_array_equal(d.prob, e.prob)


@pytest.mark.gpu
def test_gpu_forward_and_detections_equal_numpy():
    rng = rng_for_test()
    text = cfg("scale_x_y=1.05\n")
    cpu, gpu = build(text, seed=3), build(text, seed=3, device="gpu")
    x = rng.standard_normal((1, 3, 48, 64)).astype(F)
    np.testing.assert_allclose(to_numpy(gpu.forward(x)), cpu.forward(x), rtol=1e-5, atol=1e-5)
    got, want = get_network_boxes(gpu, 640, 360, 0.3), get_network_boxes(cpu, 640, 360, 0.3)
    assert len(got) == len(want)
    for d, e in zip(got, want):
        np.testing.assert_allclose(tuple(d.bbox), tuple(e.bbox), rtol=1e-5)
