"""Detector training on the generated shapes set (CPU, short): the loss falls, the commands work."""

import json
import os
import re
import subprocess
import sys

import pytest

from darknet_py.shapes import make_shapes
from darknet_py.train import DetectorTrainer

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
                              device="cpu", seed=1, progress=False, out=open(os.devnull, "w"))
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
