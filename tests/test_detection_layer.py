"""pj's YOLOv1 [detection] head for inference: the forward and get_detection_detections equal
libdarknet's (the oracle: Debian's Darknet) on pixel boxes; relative boxes are those divided by
the image size (pj multiplies by it whatever ``relative`` asks); training is refused."""

import numpy as np
import pytest

from conftest import build, require_darknet, rng_for_test
from darknet_py.detection import detect as D
from darknet_py.errors import CfgError, NotSupportedError
from oracle.darknet import DarknetOracle

SIDE, NUM, CLASSES = 5, 2, 3


def _cfg(softmax, sqrt, output=SIDE * SIDE * ((1 + 4) * NUM + CLASSES)):
    return ("[net]\nwidth=24\nheight=24\nchannels=3\nbatch=1\n"
            f"[connected]\noutput={output}\nactivation=linear\n"
            f"[detection]\nclasses={CLASSES}\ncoords=4\nrescore=1\nside={SIDE}\nnum={NUM}\n"
            f"softmax={softmax}\nsqrt={sqrt}\njitter=.2\nobject_scale=1\nnoobject_scale=.5\n"
            "class_scale=1\ncoord_scale=5\n")


def _net(text, rng):
    net = build(text)
    fc = net.layers[0]
    fc.weights = (rng.standard_normal(fc.weights.shape) * 0.05).astype(np.float32)
    fc.biases = rng.uniform(0.1, 0.9, fc.biases.shape).astype(np.float32)
    return net


@pytest.mark.darknet
@pytest.mark.parametrize("softmax,sqrt", [(0, 1), (1, 0)])
def test_detections_equal_darknets(tmp_path, softmax, sqrt):
    ok, why = DarknetOracle.available()
    require_darknet(ok, why, "[detection] tests")
    rng = rng_for_test()
    text = _cfg(softmax, sqrt)
    net = _net(text, rng)
    (tmp_path / "v1.cfg").write_text(text)
    net.save_weights(tmp_path / "v1.weights")
    image = rng.random((3, 20, 30), dtype=np.float32)
    with DarknetOracle.load(tmp_path / "v1.cfg", tmp_path / "v1.weights") as dn:
        sized, ref = dn.detect_image(image, thresh=0.3, nms=0, relative=False)
        dn.forward(sized[None])
        ref_out = dn.layer_output(1)
    out = net.forward(sized[None])
    # the connected layer sums 1,728 products in another order: float32 rounding apart
    np.testing.assert_allclose(out.reshape(-1), ref_out.reshape(-1), rtol=1e-4, atol=1e-5)
    dets = D.get_network_boxes(net, 30, 20, thresh=0.3, relative=0)
    got = np.array([[*d.bbox, d.objectness, *d.prob] for d in dets], np.float64)
    assert got.shape == ref.shape == (SIDE * SIDE * NUM, 5 + CLASSES)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert (got[:, 5:] > 0).any()                       # some probabilities pass 0.3
    rel = np.array([[*d.bbox] for d in D.get_network_boxes(net, 30, 20, 0.3, relative=1)])
    np.testing.assert_allclose(rel * [30, 20, 30, 20], got[:, :4], rtol=1e-5)
    # the batched path (detector map, the predict API) keeps the same boxes
    batched = D.network_boxes_for_nms(net, [(30, 20)], thresh=0.3, relative=0)[0]
    assert len(batched) == int((got[:, 4] != 0).sum())


def test_the_connected_layer_must_give_the_heads_inputs():
    text = _cfg(0, 1, output=100)
    with pytest.raises(CfgError, match=r"needs side\*side.*= 325 inputs.*gives 100") as e:
        build(text)
    assert e.value.line == text.splitlines().index("[detection]") + 1


def test_training_a_detection_head_is_refused_in_one_line():
    net = _net(_cfg(0, 1), rng_for_test())
    with pytest.raises(NotSupportedError, match=r"\[detection\].*YOLOv1.*detection only"):
        net.train_step(np.zeros((1, 3, 24, 24), np.float32), np.zeros((1, 5), np.float32))
