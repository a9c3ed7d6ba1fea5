"""Detector training on the generated shapes set (CPU, short): the loss falls, the commands work."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from darknet_py.data.shapes import make_shapes
from darknet_py.errors import DarknetError
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
    saved = (tmp_path / "anchors.txt").read_text()            # AlexeyAB's file, the same line
    assert saved.count(",") == 2 * 6 - 1 and f"anchors = {saved.strip()}" in r.stdout


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


def _head_cfg(head, filters):
    return ("[net]\nbatch=1\nwidth=64\nheight=48\nchannels=3\n\n[convolutional]\n"
            f"filters={filters}\nsize=1\nstride=1\npad=0\nactivation=linear\n\n{head}")


HEADS = {
    "yolo": _head_cfg("[yolo]\nmask=0,1\nanchors=8,8, 16,16\nclasses=3\nnum=2\n", 16),
    "region": _head_cfg("[region]\nanchors=1,1, .5,2\nclasses=3\nnum=2\n", 16),
    "region background": _head_cfg("[region]\nanchors=1,1, .5,2\nclasses=3\nnum=2\n"
                                   "background=1\n", 16),
    "region coords=6": _head_cfg("[region]\nanchors=1,1, .5,2\nclasses=3\nnum=2\ncoords=6\n",
                                 20),
}


def _rows_after_nms(net, dets, classes, thresh):
    from darknet_py.detection.detect import network_nms
    network_nms(net, dets, 0.45)
    return [(c, d.prob[c], *d.bbox) for d in dets for c in range(classes) if d.prob[c] > thresh]


def _check_boxes_fetched_above_the_threshold(head, rng, monkeypatch, device):
    import numpy as np
    from conftest import build
    from darknet_py.detection import detect
    from darknet_py.nn.backend import to_numpy
    net = build(HEADS[head], device=device)
    sizes = [(64, 48), (30, 100), (100, 30), (1, 1000), (640, 480)]
    net.forward(rng.random((len(sizes), 3, 48, 64), dtype=np.float32) * 4 - 2)
    layer = net.layers[-1]
    out = np.array(to_numpy(layer.output)).reshape(len(sizes), layer.n, -1, layer.out_h,
                                                   layer.out_w)
    obj = 4 if layer.type == "yolo" else layer.coords
    shape = out[:, :, obj].shape
    out[:, :, obj] = np.where(rng.random(shape) < .7, rng.random(shape) * .01, out[:, :, obj])
    out[:, :, obj][rng.random(shape) < .05] = 0
    out[:, :, 2][rng.random(shape) < .05] = 200               # exp(200): an infinite width
    out[:, :, 0][rng.random(shape) < .02] = np.nan
    out[:, :, obj + 1:] = np.round(out[:, :, obj + 1:], 1)      # ties for NMS's stable sort
    layer.output = net.xp.asarray(out.reshape(layer.output.shape))
    fetched = []
    fetch = detect._fetch
    monkeypatch.setattr(detect, "_fetch", lambda v, w: fetched.append(len(w)) or fetch(v, w))
    for thresh in (0.005, 0.2):
        fetched.clear()
        with np.errstate(all="ignore"):
            batch = detect.network_boxes_for_nms(net, sizes, thresh)
            batch_fetched = list(fetched)
            for b, (w, h) in enumerate(sizes):
                every = detect.get_network_boxes(net, w, h, thresh, .5, 1, batch_index=b)
                assert _rows_after_nms(net, batch[b], 3, thresh) == \
                    _rows_after_nms(net, every, 3, thresh), (thresh, b)
        if head == "yolo":          # only the cells above the threshold leave the device
            assert batch_fetched == [int((out[:, :, 4] > np.float32(thresh)).sum())]
    assert batch[0] and batch[3]     # (1, 1000) letterboxes to a 1-pixel column (pj: 0, no box)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_boxes_fetched_above_the_threshold_give_nms_the_rows_of_every_box(head, rng,
                                                                          monkeypatch):
    """network_boxes_for_nms (the batch's cells above thresh, from the device) against
    get_network_boxes (every box of one image), both through NMS: the same rows in the same
    order, with objectness-0 cells, NaN and infinite boxes and tied probabilities among them,
    letterboxed images of every shape (one 1 x 1000, a column of one pixel on the canvas)."""
    _check_boxes_fetched_above_the_threshold(head, rng, monkeypatch, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("head", sorted(HEADS))
def test_boxes_fetched_above_the_threshold_on_the_gpu(head, rng, monkeypatch):
    _check_boxes_fetched_above_the_threshold(head, rng, monkeypatch, "gpu")


def test_map_detections_equal_the_per_image_decoding_of_every_box(shapes):
    """detections_for_map's rows and mAP against the same batches decoded image by image from
    every box on the host (get_network_boxes), on a network whose objectness straddles the
    threshold; 8 images in batches of 3."""
    import numpy as np
    from darknet_py.data.detaug import DetectionSet
    from darknet_py.detection.detect import get_network_boxes
    from darknet_py.detection.evaluate import detections_for_map
    from darknet_py.detection.mapeval import evaluate_map
    from darknet_py.image import fit_image, load_image_color
    from darknet_py.nn.network import Network
    net = Network.from_cfg(str(shapes / "shapes-small.cfg"), seed=2, warn=False)
    for layer in net.layers:
        if layer.type == "yolo":       # objectness around sigmoid(-5): about half above .005
            net.layers[layer.index - 1].biases.reshape(layer.n, -1)[:, 4] -= 5
    valid = DetectionSet(str(shapes / "set" / "valid.txt"), 4)
    got, truths = detections_for_map(net, valid, batch=3)
    want = []
    for start in range(0, len(valid), 3):
        images = [load_image_color(p) for p in valid.paths[start:start + 3]]
        net.forward(np.stack([fit_image(im, 96, 96) for im in images]))
        for b, im in enumerate(images):
            dets = get_network_boxes(net, im.shape[2], im.shape[1], .005, .5, 1, batch_index=b)
            want.append(_rows_after_nms(net, dets, 4, .005))
    assert len(got) == len(want) == len(valid) == len(truths)
    assert [[(c, p, x, y, w, h) for c, p, x, y, w, h in rows] for rows in got] == want
    assert 0 < sum(map(len, got)) < len(valid) * 2 * 3 * (6 * 6 + 12 * 12)
    assert evaluate_map(got, truths, 4) == evaluate_map(want, truths, 4)


def test_map_runs_while_the_loader_keeps_preparing_training_batches(shapes, tmp_path):
    """-map at the end of the run (96 images, about a second): the training loader, slowed to
    a batch every 0.25 s so that it is still behind when mAP starts, goes on making the next
    batches meanwhile -- mAP neither pauses nor drains it."""
    import time
    valid = tmp_path / "valid.txt"
    valid.write_text((shapes / "set" / "train.txt").read_text() * 3)
    data = (shapes / "shapes.data").read_text()
    data = re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data)
    data = re.sub(r"(?m)^valid=.*$", f"valid={valid}", data)
    (tmp_path / "s.data").write_text(data)
    trainer = DetectorTrainer(str(shapes / "shapes-small.cfg"), str(tmp_path / "s.data"),
                              options=TrainOptions(device="cpu", seed=1, max_batches=2,
                                                   progress=False),
                              out=open(os.devnull, "w"))
    made, window = [], []
    make, evaluate = trainer._make, trainer._evaluate

    def slow_make(k):
        if k >= 2:                  # the batches after the run's two
            time.sleep(0.25)
        batch = make(k)
        made.append(time.perf_counter())
        return batch

    def timed_evaluate(k):
        start = time.perf_counter()
        result = evaluate(k)
        window.extend([start, time.perf_counter()])
        return result

    trainer._make, trainer._evaluate = slow_make, timed_evaluate
    assert trainer.run() == 0
    start, end = window
    assert sum(start < t < end for t in made) >= 2, (len(made), end - start)


def test_profile_times_the_yolo_heads_loss_and_the_map(shapes, tmp_path):
    import io
    data = (shapes / "shapes.data").read_text()
    (tmp_path / "s.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data))
    out = io.StringIO()
    trainer = DetectorTrainer(str(shapes / "shapes-small.cfg"), str(tmp_path / "s.data"),
                              options=TrainOptions(device="cpu", seed=1, max_batches=3,
                                                   progress=False, profile=2),
                              out=out)
    assert trainer.run() == 0
    log = tmp_path / "bk" / "shapes-small.log.jsonl"
    report, = [json.loads(line)["profile"] for line in open(log) if '"profile"' in line]
    assert report["iterations"] == [2, 3] and "profile of iterations 2-3" in out.getvalue()
    ms = report["parts_ms"]
    assert ms["loss"] > 0 and ms["forward"] > 0     # the two [yolo] heads apart from the rest
    assert ms["validate"] > 0                       # -map's mAP after the last iteration


def test_profile_counts_the_multi_scale_copies_made(shapes, tmp_path):
    """random=1 trains each size on a copy of the network; --profile's report counts the
    copies made in its window (and, on the GPU, the ones dropped, the captures, the eager
    passes): the events behind a slow window."""
    from darknet_py.train.profile import Profiler
    cfg = (shapes / "shapes-small.cfg").read_text().replace("random=0", "random=1")
    cfg = re.sub(r"(?m)^max_batches=.*$", "max_batches=500", cfg)
    (tmp_path / "r.cfg").write_text(cfg)
    data = (shapes / "shapes.data").read_text()
    (tmp_path / "s.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data))
    trainer = DetectorTrainer(str(tmp_path / "r.cfg"), str(tmp_path / "s.data"),
                              options=TrainOptions(device="cpu", seed=1, progress=False),
                              out=open(os.devnull, "w"))
    trainer._prof = prof = Profiler(trainer.net.device, 0, 100)
    sizes = {trainer._size_for(k) for k in range(0, 100)}
    for k in range(0, 100):
        trainer._train_net(k)
        trainer._train_net(k)                           # met again: no copy
    base = (trainer.net.options.width, trainer.net.options.height)
    assert len(sizes - {base}) >= 2
    assert prof.report(8)["events"] == {"multi-scale copies made": len(sizes - {base})}


def test_multi_scale_sizes_follow_alexeyabs_rule(shapes, tmp_path):
    """AB's train_detector (ab:src/detector.c): every 10 iterations r = rand_scale(f), f =
    random= (1.4 for random=1); each side round(r side / 32 + 1) 32 (float32, C's roundl), the
    cfg's size where r < 1 would make a side larger; the largest size, round(f side / 32 + 1) 32,
    in the first 10 iterations and the last 100."""
    from darknet_py.image import rand_scale
    from darknet_py.train import detector
    assert detector._largest_size(416, 416, 1.4) == (608, 608)
    assert detector._largest_size(416, 320, 1.2) == (544, 416)      # round(16.6), round(13)
    cfg = (shapes / "shapes-small.cfg").read_text().replace("random=0", "random=1")
    cfg = re.sub(r"(?m)^max_batches=.*$", "max_batches=500", cfg)
    cfg = re.sub(r"(?m)^(width|height)=.*$", r"\1=416", cfg)
    (tmp_path / "r.cfg").write_text(cfg)
    for value, factor in (("1", 1.4), ("1.2", 1.2), ("0", 0.0)):
        (tmp_path / "r.cfg").write_text(re.sub(r"(?m)^random=.*$", f"random={value}", cfg))
        trainer = DetectorTrainer(str(tmp_path / "r.cfg"), str(shapes / "shapes.data"),
                                  options=TrainOptions(device="cpu", seed=4, progress=False),
                                  out=open(os.devnull, "w"))
        assert trainer.random == factor
        if not factor:
            assert {trainer._size_for(k) for k in range(500)} == {(416, 416)}
            continue
        largest = detector._largest_size(416, 416, factor)
        assert trainer._size_for(0) == trainer._size_for(9) == largest      # the first 10
        assert {trainer._size_for(k) for k in range(410, 500)} == {largest}   # blocks > 400
        for k in range(10, 410, 10):
            r = np.float32(rand_scale(np.random.default_rng([4, k // 10, 11]),
                                      float(np.float32(factor))))
            side = int(np.floor(float(r * np.float32(416) / np.float32(32) + np.float32(1))
                                + 0.5)) * 32
            want = (416, 416) if r < 1 and side > 416 else (side, side)
            assert trainer._size_for(k) == trainer._size_for(k + 9) == want, k
            assert want[0] % 32 == 0 and 288 <= want[0] <= largest[0]
    from darknet_py.errors import DarknetError
    from darknet_py.nn.network import Network
    (tmp_path / "r.cfg").write_text(re.sub(r"(?m)^random=.*$", "random=-1", cfg))
    with pytest.raises(DarknetError, match=r"r\.cfg:\d+: .*random"):
        Network.from_cfg(str(tmp_path / "r.cfg"))


def _backups_of(shapes, tmp_path, savelast, flag):
    """The iterations at which a 6-iteration detector training wrote ``_last``."""
    data = re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk",
                  (shapes / "shapes.data").read_text())
    if savelast is not None:
        data += f"savelast={savelast}\n"
    (tmp_path / "s.data").write_text(data)
    trainer = DetectorTrainer(str(shapes / "shapes-small.cfg"), str(tmp_path / "s.data"),
                              options=TrainOptions(device="cpu", seed=1, max_batches=6,
                                                   progress=False, map=False,
                                                   backup_every=flag),
                              out=open(os.devnull, "w"))
    assert trainer.per_epoch < 6            # an epoch ends inside the run
    saved, save_last = [], trainer.save_last
    trainer.save_last = lambda: saved.append(trainer.iteration) or save_last()
    assert trainer.run() == 0
    return saved


@pytest.mark.parametrize("savelast, flag, expected", [(None, None, [6]), (4, None, [4, 6]),
                                                      (4, 3, [3, 6]), (2, None, [2, 4, 6])])
def test_a_detector_saves_last_every_savelast_iterations_not_at_each_epoch(
        shapes, tmp_path, savelast, flag, expected):
    """AlexeyAB's train_detector: ``_last`` every ``savelast=`` iterations of the .data file
    (100), ``--backup-every`` first; and at the end."""
    assert _backups_of(shapes, tmp_path, savelast, flag) == expected


def test_savelast_below_one_is_an_error_at_its_line(shapes, tmp_path):
    with pytest.raises(DarknetError, match=r"savelast=0: expected a whole number >= 1") as e:
        _backups_of(shapes, tmp_path, 0, None)
    assert e.value.path == str(tmp_path / "s.data") and e.value.line is not None
