"""The Python predict API (darknet_py.predict): Detector and Classifier give what the commands
give (``detect`` / ``detector test`` and ``classify``) for the same files, whatever form the
image comes in, and a list runs as one batch with the same answers as one image at a time."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from conftest import build  # noqa: E402
from darknet_py import Box, Classifier, Detection, Detector  # noqa: E402
from darknet_py.commands import main  # noqa: E402
from darknet_py.train.topk import top_k_lists  # noqa: E402

# a small two-head detector: [yolo] at 16x16 and, through route + upsample, at 32x32
YOLO_CFG = """[net]
width=64
height=64
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear
[yolo]
mask=2,3
anchors=6,8, 10,14, 20,24, 34,40
classes=3
num=4
[route]
layers=-3
[upsample]
stride=2
[route]
layers=-1,-6
[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear
[yolo]
mask=0,1
anchors=6,8, 10,14, 20,24, 34,40
classes=3
num=4
"""

CLASSIFIER_CFG = """[net]
width=20
height=20
channels=1
[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky
[connected]
output=6
activation=linear
[softmax]
"""

NAMES = ["circle", "square", "triangle"]


def _tune(net, rng):
    """Random weights whose heads give a few confident boxes of moderate size: the heads'
    weights scaled down, objectness biases mostly low."""
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False):
            layer.rolling_mean[:] = rng.normal(0, 0.1, layer.rolling_mean.shape)
            layer.rolling_variance[:] = rng.uniform(0.5, 2, layer.rolling_variance.shape)
    for i in (4, 9):
        conv = net.layers[i]
        conv.weights *= 0.1
        conv.biases[:] = rng.normal(0, 0.5, conv.biases.shape)
        conv.biases[4::8] = rng.normal(-0.5, 2, 2)     # per anchor: x y w h obj classes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(14)
    d = tmp_path_factory.mktemp("predict")
    (d / "yolo.cfg").write_text(YOLO_CFG)
    net = build(YOLO_CFG, seed=14)
    _tune(net, rng)
    net.save_weights(str(d / "yolo.weights"))
    (d / "classes.names").write_text("\n".join(NAMES) + "\n")
    (d / "cls.cfg").write_text(CLASSIFIER_CFG)
    build(CLASSIFIER_CFG, seed=15).save_weights(str(d / "cls.weights"))
    for name, (w, h) in (("a.png", (90, 60)), ("b.png", (50, 77))):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(d / name)
    return d


def _command(args, cwd, capsys):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(args) == 0
    finally:
        os.chdir(old)
    return capsys.readouterr().out


def test_detector_gives_what_detect_prints_and_writes(files, capsys):
    det = Detector(files / "yolo.cfg", files / "yolo.weights", names=files / "classes.names",
                   device="cpu")
    for image in ("a.png", "b.png"):
        got = det(str(files / image), thresh=0.25)
        assert got and all(isinstance(d, Detection) and isinstance(d.box, Box) for d in got)
        out = _command(["detect", "yolo.cfg", "yolo.weights", image, "--names", "classes.names",
                        "-out", "r.json", "-nogpu", "-dont_show"], files, capsys)
        lines = [ln for ln in out.splitlines() if "%" in ln]
        assert lines == [f"{d.name}: {np.float32(d.confidence) * np.float32(100):.0f}%"
                         for d in got]
        objects = json.loads((files / "r.json").read_text())[0]["objects"]
        assert [o["name"] for o in objects] == [d.name for d in got]
        for o, d in zip(objects, got):
            assert o["confidence"] == d.confidence and o["class_id"] == d.class_id
            p = o["pixel_box"]
            assert (d.box.x1, d.box.y1, d.box.w, d.box.h) == pytest.approx(
                (p["left"], p["top"], p["width"], p["height"]), rel=1e-9, abs=1e-9)
            assert d.box.x2 == pytest.approx(p["left"] + p["width"])
            assert d.box.y2 == pytest.approx(p["top"] + p["height"])


def test_detector_takes_paths_pillow_and_arrays_alike(files):
    det = Detector(str(files / "yolo.cfg"), str(files / "yolo.weights"), device="cpu")
    path = files / "a.png"
    want = det(path)
    assert want and {d.name for d in want} <= {"0", "1", "2"}      # no names: the numbers
    with Image.open(path) as im:
        assert det(im) == want
        pixels = np.asarray(im.convert("RGB"))
    assert det(pixels) == want                                      # uint8 (h, w, 3)
    assert det(pixels.transpose(2, 0, 1) / np.float32(255)) == want  # float (3, h, w)
    with pytest.raises(ValueError, match="transpose"):
        det(pixels / np.float32(255))


def test_a_list_runs_as_one_batch_with_the_same_answers(files):
    det = Detector(files / "yolo.cfg", files / "yolo.weights", names=NAMES, device="cpu")
    paths = [files / "a.png", files / "b.png", files / "a.png"]
    one_by_one = [det(p, thresh=0.2) for p in paths]
    batched = det(paths, thresh=0.2)
    assert len(batched) == 3 and batched[0] == batched[2]
    for got, want in zip(batched, one_by_one):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert (g.name, g.class_id) == (w.name, w.class_id)
            assert g.confidence == pytest.approx(w.confidence, rel=1e-5)
            assert tuple(g.box) == pytest.approx(tuple(w.box), rel=1e-5, abs=1e-4)
    assert det([]) == []


def test_detector_without_detection_heads_is_an_error(files):
    with pytest.raises(ValueError, match="not a detector"):
        Detector(files / "cls.cfg", files / "cls.weights", device="cpu")


def test_classifier_top_is_what_classify_prints(files, capsys):
    names = [f"digit{i}" for i in range(6)]
    clf = Classifier(files / "cls.cfg", files / "cls.weights", names=names, device="cpu")
    top = clf.top(files / "a.png", k=3)
    # pj's top_k order (tests/test_topk.py checks it against libdarknet's): these
    # probabilities tie, where a sort would list the tied classes otherwise
    probs = clf(files / "a.png")
    assert [p.class_id for p in top] == top_k_lists(probs[None], 3)[0].tolist()
    assert [p.name for p in top] == [names[p.class_id] for p in top]
    assert sum(clf(files / "b.png")) == pytest.approx(1, abs=1e-5)      # softmax
    out = _command(["classify", "cls.cfg", "cls.weights", "a.png", "-t", "3", "-nogpu"],
                   files, capsys)
    assert out.splitlines()[1:] == [f"{100 * p.probability:5.2f}%: {p.class_id}" for p in top]
    both = clf.top([files / "a.png", files / "b.png"], k=2)
    assert both[0] == top[:2] and both[1] == clf.top(files / "b.png", k=2)


@pytest.mark.gpu
def test_detector_on_the_gpu_finds_what_the_cpu_finds(files):
    """The GPU path (cuDNN, CUDA graphs) gives the CPU's detections, a batch too."""
    paths = [files / "a.png", files / "b.png"]
    cpu = Detector(files / "yolo.cfg", files / "yolo.weights", names=NAMES, device="cpu")
    gpu = Detector(files / "yolo.cfg", files / "yolo.weights", names=NAMES, device="gpu")
    for want, got in zip(cpu(paths) * 2, [gpu(paths[0]), gpu(paths[1])] + gpu(paths)):
        assert [(d.name, d.class_id) for d in got] == [(d.name, d.class_id) for d in want]
        for g, w in zip(got, want):
            assert g.confidence == pytest.approx(w.confidence, rel=1e-4)
            assert tuple(g.box) == pytest.approx(tuple(w.box), rel=1e-4, abs=1e-3)
