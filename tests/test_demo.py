"""``detector demo DATA CFG WEIGHTS VIDEO -out_filename OUT.mp4`` on a small generated clip: the
written video has every frame, each drawn with the detections darknet_py.Detector finds in the
frame as decoded, and the command prints the frames per second of each step."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

imageio = pytest.importorskip("imageio.v2", reason="the [video] extra (pip install imageio "
                              "imageio-ffmpeg)")
pytest.importorskip("imageio_ffmpeg", reason="the [video] extra (pip install imageio-ffmpeg)")

from PIL import Image  # noqa: E402

from conftest import build  # noqa: E402
from darknet_py import Detector  # noqa: E402
from darknet_py.commands import main  # noqa: E402
from darknet_py.detection.detect import detect_image  # noqa: E402
from darknet_py.image import draw_detections  # noqa: E402
from test_predict import NAMES, YOLO_CFG, _tune  # noqa: E402

FRAMES, W, H = 6, 90, 64


def _clip(path, rng):
    """A smooth random background (H.264 keeps it well) with a bright square moving across."""
    ramp = np.linspace(0, 1, W)[None, :, None] * rng.uniform(40, 120, 3)
    with imageio.get_writer(path, fps=5, macro_block_size=1) as writer:
        for i in range(FRAMES):
            frame = (ramp + np.linspace(0, 60, H)[:, None, None] + 10 * i).astype(np.uint8)
            frame = np.broadcast_to(frame, (H, W, 3)).copy()
            frame[10:40, 5 + 10 * i:35 + 10 * i] = 230
            writer.append_data(frame)


def _frames(path):
    with imageio.get_reader(str(path)) as reader:
        return [frame for frame in reader]        # (list() would trust its length: inf)


def test_demo_writes_every_frame_drawn_and_prints_fps(tmp_path, rng, capsys):
    (tmp_path / "yolo.cfg").write_text(YOLO_CFG)
    net = build(YOLO_CFG, seed=14)
    _tune(net, np.random.default_rng(14))
    net.save_weights(str(tmp_path / "yolo.weights"))
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    (tmp_path / "shapes.data").write_text("classes=3\nnames=names.txt\n")
    _clip(str(tmp_path / "clip.mp4"), rng)
    source = _frames(tmp_path / "clip.mp4")
    det = Detector(tmp_path / "yolo.cfg", tmp_path / "yolo.weights", names=NAMES, device="cpu")
    # a threshold that leaves a few boxes of the random weights' many weak ones: drawn boxes
    # and labels stay a small part of the frame
    thresh = float(np.float32(sorted(d.confidence for d in det(source[0]))[-4]) - 1e-6)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["detector", "demo", "shapes.data", "yolo.cfg", "yolo.weights", "clip.mp4",
                     "-out_filename", "out.mp4", "-thresh", str(thresh), "-nogpu",
                     "-dont_show"]) == 0
    finally:
        os.chdir(old)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{FRAMES} frames, FPS: ") and "decode" in out[0] \
        and "network" in out[0] and "draw" in out[0]
    assert out[1] == "Wrote out.mp4"
    written = _frames(tmp_path / "out.mp4")
    assert len(written) == FRAMES and written[0].shape == source[0].shape
    found = 0
    for frame, got in zip(source, written):
        dets = det(frame, thresh=thresh)
        found += len(dets)
        _, raw = detect_image(det.net, frame, thresh)
        want = np.asarray(draw_detections(Image.fromarray(frame), raw, NAMES, thresh),
                          np.float64)
        # H.264 is lossy (most on the drawn edges and letters): the written frame is much
        # closer to the expected drawing than to the undrawn frame where boxes were drawn,
        # and as close as a re-encoding where none were
        err = np.abs(got - want).mean()
        undrawn = np.abs(got - frame.astype(np.float64)).mean()
        assert err < (0.5 * undrawn if dets else 3), (err, undrawn, len(dets))
    assert found > 0


def test_demo_without_a_readable_video_is_one_line(tmp_path, capsys):
    (tmp_path / "yolo.cfg").write_text(YOLO_CFG)
    build(YOLO_CFG, seed=1).save_weights(str(tmp_path / "yolo.weights"))
    (tmp_path / "a.data").write_text("classes=3\n")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert main(["detector", "demo", str(tmp_path / "a.data"), str(tmp_path / "yolo.cfg"),
                 str(tmp_path / "yolo.weights"), str(tmp_path / "bad.mp4"), "-nogpu",
                 "-out_filename", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.mp4" in err[0] and "cannot read the video" in err[0], err


def test_demo_without_the_video_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a))
    (tmp_path / "yolo.cfg").write_text(YOLO_CFG)
    build(YOLO_CFG, seed=1).save_weights(str(tmp_path / "yolo.weights"))
    (tmp_path / "a.data").write_text("classes=3\n")
    assert main(["detector", "demo", str(tmp_path / "a.data"), str(tmp_path / "yolo.cfg"),
                 str(tmp_path / "yolo.weights"), str(tmp_path / "v.mp4"), "-nogpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["darknet_py: error: detector demo reads videos with imageio and its ffmpeg "
                   "plugin: pip install 'darknet_py[video]' (or pip install imageio "
                   "imageio-ffmpeg)"]
