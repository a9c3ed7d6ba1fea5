"""Detector training on the generated shapes set (CPU, short): the loss falls, the commands work."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from darknet_py.data.shapes import make_shapes
from darknet_py.train.detector import DetectorTrainer
from darknet_py.train.options import TrainOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapes")
    make_shapes(base / "set", 40, size=(96, 96), seed=3, absolute=True)
    cfg = open(os.path.join(ROOT, "cfg/shapes-tiny.cfg")).read()
    for key, value in (("batch", 8), ("width", 96), ("height", 96), ("burn_in", 0),
                       ("learning_rate", 0.002), ("max_batches", 30), ("steps", "25,28")):
        cfg = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", cfg)
    cfg = cfg.replace("random=1", "random=0")
    (base / "shapes-small.cfg").write_text(cfg)
    data = (base / "set" / "shapes.data").read_text()
    data = re.sub(r"(?m)^backup=.*$", f"backup={base}/backup", data)
    (base / "shapes.data").write_text(data)
    return base


def test_short_detector_training_halves_the_loss(shapes):
    trainer = DetectorTrainer(str(shapes / "shapes-small.cfg"), str(shapes / "shapes.data"),
                              options=TrainOptions(device="cpu", seed=1, progress=False),
                              out=open(os.devnull, "w"))
    assert trainer.run() == 0
    losses = [loss for _, loss, _ in trainer.losses]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last <= first / 2, (first, last)
    assert trainer.accuracy and trainer.accuracy[-1][0] == 30         # mAP measured at the end
    assert (shapes / "backup" / "shapes-small_final.weights").exists()


def run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "darknet_py", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


def test_detector_test_map_and_calc_anchors_commands(shapes, tmp_path):
    weights = shapes / "backup" / "shapes-small_final.weights"
    if not weights.exists():
        pytest.skip("needs the training test's weights")
    image = open(shapes / "set" / "valid.txt").readline().strip()
    r = run("detector", "test", str(shapes / "shapes.data"), str(shapes / "shapes-small.cfg"),
            str(weights), image, "-thresh", "0.01", "-ext_output", "-out", "r.json",
            "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{image}: Predicted in " in r.stdout
    assert (tmp_path / "predictions.jpg").read_bytes()[:2] == b"\xff\xd8"
    objects = json.loads((tmp_path / "r.json").read_text())[0]["objects"]
    printed = [ln for ln in r.stdout.splitlines() if "(left_x:" in ln]
    assert len(printed) == len(objects)
    assert all(o["name"] in ("circle", "square", "triangle", "star") for o in objects)
    r = run("detector", "map", str(shapes / "shapes.data"), str(shapes / "shapes-small.cfg"),
            str(weights), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class_id = 0, name = circle, ap = " in r.stdout
    assert "mean average precision (mAP@0.50) = " in r.stdout
    r = run("detector", "calc_anchors", str(shapes / "shapes.data"), "-num_of_clusters", "6",
            "-width", "96", "-height", "96", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "anchors = " in r.stdout and "mask = 3,4,5" in r.stdout and "filters=27" in r.stdout


def test_no_detections_says_the_weights_are_barely_trained(shapes, tmp_path):
    weights = shapes / "backup" / "shapes-small_final.weights"
    if not weights.exists():
        pytest.skip("needs the training test's weights")
    image = open(shapes / "set" / "valid.txt").readline().strip()
    r = run("detector", "test", str(shapes / "shapes.data"), str(shapes / "shapes-small.cfg"),
            str(weights), image, "-thresh", "0.999", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "nothing above -thresh 0.999; the highest scores: " in r.stdout
    assert "(the weights have seen 240 images, 30 iterations of batch 8: a detector usually " \
           "needs thousands)" in r.stdout


def assert_trains_three_iterations(cfg, shapes):
    """A cfg made by cfg new, at batch 4 without burn-in, trains 3 iterations on shapes."""
    from darknet_py.cfg.edit import CfgDocument
    doc = CfgDocument.load(cfg)
    doc.net.set("batch", 4)
    doc.net.set("subdivisions", 1)
    doc.net.set("burn_in", 0)
    doc.save(cfg)
    trainer = DetectorTrainer(str(cfg), str(shapes / "shapes.data"),
                              options=TrainOptions(device="cpu", seed=1, max_batches=3,
                                                   progress=False),
                              out=open(os.devnull, "w"))
    assert trainer.run() == 0
    assert len(trainer.losses) == 3 and all(loss > 0 for _, loss, _ in trainer.losses)


def test_cfg_new_yolov3_tiny_passes_check_and_trains_on_shapes(shapes, tmp_path):
    from darknet_py.cfg.check import check_cfg
    out = tmp_path / "y3t.cfg"
    r = run("cfg", "new", "--from", "yolov3-tiny", "--classes", "4", "--size", "96x96",
            "--anchors", str(shapes / "shapes.data"), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not [f for f in check_cfg(str(out), str(shapes / "shapes.data"))
                if f.level == "error"]
    assert_trains_three_iterations(out, shapes)


def copy_of_the_set(shapes, folder):
    """The shapes set copied to ``folder`` (its lists and .data pointing at the copy)."""
    import shutil
    shutil.copytree(shapes / "set", folder)
    for name in ("train.txt", "valid.txt", "shapes.data"):
        (folder / name).write_text((folder / name).read_text().replace(str(shapes / "set"),
                                                                       str(folder)))
    return folder


def test_data_check_lists_every_problem_with_its_line(shapes, tmp_path):
    bad = copy_of_the_set(shapes, tmp_path / "bad")
    train = (bad / "train.txt").read_text().splitlines()
    first = os.path.splitext(os.path.basename(train[0]))[0]
    with open(bad / "labels" / f"{first}.txt", "a") as f:
        f.write("7 0.5 0.5 0.2 0.2\n")
    os.remove(bad / "labels" / (os.path.splitext(os.path.basename(train[1]))[0] + ".txt"))
    (bad / "train.txt").write_text("\n".join(train + [str(bad / "JPEGImages" / "nope.jpg")])
                                   + "\n")
    r = run("data", "check", str(bad / "shapes.data"), cwd=tmp_path)
    assert r.returncode == 1
    out = r.stdout
    assert "error: class_id = 7 is out of range: it must be from 0 to 3" in out
    assert f"train.txt:2: error: no label file for {train[1]}" in out
    assert f"train.txt:{len(train) + 1}: error: image " in out and "does not exist" in out
    assert out.splitlines()[-1].endswith("3 error(s), 0 warning(s)")
    r = run("data", "check", str(shapes / "shapes.data"), os.path.join(ROOT, "cfg/shapes-tiny.cfg"),
            cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith("0 error(s), 0 warning(s)")


def test_data_check_reports_negatives_objects_per_class_and_tiny_boxes(shapes, tmp_path):
    from darknet_py.data.labels import read_labels
    d = copy_of_the_set(shapes, tmp_path / "d")
    train = (d / "train.txt").read_text().splitlines()
    labels = [d / "labels" / (os.path.splitext(os.path.basename(p))[0] + ".txt") for p in train]
    expected = np.zeros(4, int)
    for label in labels[1:]:
        np.add.at(expected, read_labels(label)[0][:, 0].astype(int), 1)
    labels[0].write_text("")                                     # a negative sample
    with open(labels[1], "a") as f:
        f.write("2 0.5 0.5 0.005 0.3\n")                     # 0.5 px wide at 96x96
    expected[2] += 1
    cfg = tmp_path / "c.cfg"
    cfg.write_text(re.sub(r"(?m)^(width|height)=.*$", r"\1=96",
                          open(os.path.join(ROOT, "cfg/shapes-tiny.cfg")).read()))
    r = run("data", "check", str(d / "shapes.data"), str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    counts = ", ".join(f"{n} {c}" for n, c in zip(("circle", "square", "triangle", "star"),
                                                   expected))
    assert f"train: {len(train)} images (1 without objects), {expected.sum()} objects: " \
        f"{counts}" in out
    assert f"{labels[1]}: warning: 1 box(es) of the train set are under 1 pixel at the " \
        "network's 96x96" in out
    assert "boxes at the network's 96x96: median " in out and "smallest 0.5x28.8 px" in out


def test_a_region_detector_from_cfg_new_trains(shapes, tmp_path):
    out = tmp_path / "y2t.cfg"
    r = run("cfg", "new", "--from", "yolov2-tiny", "--classes", "4", "--size", "96x96",
            "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_trains_three_iterations(out, shapes)


def test_detector_valid_writes_darknets_result_files_and_recall_prints(shapes, tmp_path):
    weights = shapes / "backup" / "shapes-small_final.weights"
    if not weights.exists():
        pytest.skip("needs the training test's weights")
    r = run("detector", "valid", str(shapes / "shapes.data"), str(shapes / "shapes-small.cfg"),
            str(weights), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path / "results"))
    assert files == [f"comp4_det_test_{n}.txt" for n in ("circle", "square", "star",
                                                         "triangle")]
    valid_ids = {os.path.splitext(os.path.basename(p))[0]
                 for p in open(shapes / "set" / "valid.txt").read().split()}
    for name in files:
        for line in open(tmp_path / "results" / name):
            image_id, prob, xmin, ymin, xmax, ymax = line.split()
            assert image_id in valid_ids and 0 < float(prob) <= 1
            assert 1 <= float(xmin) <= float(xmax) <= 96 and 1 <= float(ymin) <= float(ymax) <= 96
    r = run("detector", "recall", str(shapes / "shapes.data"), str(shapes / "shapes-small.cfg"),
            str(weights), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    last = r.stdout.splitlines()[-1]
    assert re.match(r"^\s+7\s+\d+\s+\d+\tRPs/Img: [\d.]+\tIOU: [\d.]+%\tRecall:[\d.]+%$", last)


def test_stretch_mode_keeps_boxes_without_jitter(shapes):
    import numpy as np
    from darknet_py.data.detaug import augment
    from darknet_py.data.labels import label_path_for, read_labels
    path = open(shapes / "set" / "train.txt").readline().strip()
    boxes, _ = read_labels(label_path_for(path), 4)
    rng = np.random.default_rng(0)
    x, rows = augment(path, boxes, (3, 64, 128), rng, 0.0, 0.0, 1.0, 1.0, False,
                      letterbox=False)
    assert x.shape == (3, 64, 128)
    np.testing.assert_allclose(rows[:, :4], boxes[:, 1:5], atol=1e-6)   # x, y, w, h unchanged
    np.testing.assert_array_equal(rows[:, 4], boxes[:, 0])


def test_letter_box_0_makes_detection_stretch_the_image(shapes, tmp_path):
    import numpy as np
    from darknet_py import Network
    from darknet_py.detection.detect import detect_image
    from darknet_py.image import load_image_color, resize_image
    text = (shapes / "shapes-small.cfg").read_text().replace("[net]\n", "[net]\nletter_box=0\n", 1)
    (tmp_path / "s.cfg").write_text(text)
    net = Network.from_cfg(tmp_path / "s.cfg", batch=1, warn=False)
    path = open(shapes / "set" / "valid.txt").readline().strip()
    detect_image(net, path, 0.5)
    expected = resize_image(load_image_color(path), 96, 96)
    np.testing.assert_array_equal(net.input[0], expected)


def test_show_imgs_saves_the_first_mini_batch_with_its_truth_boxes(shapes, tmp_path):
    """AlexeyAB's -show_imgs: what the network is trained on, boxes drawn, to check labels;
    -dont_show and flags before the subcommand are accepted like Darknet's command lines."""
    from PIL import Image
    data = (shapes / "shapes.data").read_text()
    data = re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data)
    (tmp_path / "s.data").write_text(data)
    r = run("detector", "-dont_show", "train", str(tmp_path / "s.data"),
            str(shapes / "shapes-small.cfg"), "-show_imgs", "--max-batches", "1",
            "--device", "cpu", "--no-progress", "--seed", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = sorted((tmp_path / "bk").glob("aug_0_*.jpg"))
    assert len(saved) == 8 and "-show_imgs: 8 augmented training images" in r.stdout
    with Image.open(saved[0]) as im:
        assert im.format == "JPEG" and im.size == (96, 96)       # the network's input size


def test_letter_box_flag_letterboxes_a_stretching_cfg(shapes, tmp_path):
    """AlexeyAB's -letter_box: a letter_box=0 cfg sees the image letterboxed, as pj's default."""
    import argparse
    import numpy as np
    from PIL import Image
    from darknet_py import Network
    from darknet_py.commands import build_parser
    from darknet_py.commands.common import load_for_inference as _load_for_inference
    from darknet_py.detection.detect import detect_image
    from darknet_py.image import letterbox, load_image_color
    text = (shapes / "shapes-small.cfg").read_text()
    (tmp_path / "stretch.cfg").write_text(text.replace("[net]\n", "[net]\nletter_box=0\n", 1))
    Network.from_cfg(tmp_path / "stretch.cfg", seed=4, warn=False) \
        .save_weights(str(tmp_path / "w.weights"))
    image = str(tmp_path / "wide.png")          # not square: letterbox and stretch differ
    with Image.open(open(shapes / "set" / "valid.txt").readline().strip()) as im:
        im.crop((0, 18, 96, 78)).save(image)
    args = build_parser().parse_args(["detector", "test", "d", str(tmp_path / "stretch.cfg"),
                                      str(tmp_path / "w.weights"), "-letter_box", "-nogpu"])
    assert isinstance(args, argparse.Namespace) and args.letter_box
    net = _load_for_inference(args, args.cfg, args.weights)
    detect_image(net, image, 0.5)
    np.testing.assert_array_equal(net.input[0], letterbox(load_image_color(image), 96, 96))


def test_training_with_loader_processes(shapes, tmp_path):
    data = (shapes / "shapes.data").read_text()
    (tmp_path / "s.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data))
    r = run("detector", "train", str(tmp_path / "s.data"), str(shapes / "shapes-small.cfg"),
            "--max-batches", "2", "--loader-processes", "2", "--device", "cpu",
            "--no-progress", "--seed", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "bk" / "shapes-small_final.weights").exists()
