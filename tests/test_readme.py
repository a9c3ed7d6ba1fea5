"""The README's examples run as written: every ```python block, and the commands of its
"Predict from Python, export to ONNX, run on a video" section, in a folder laid out as a clone
(cfg/, data/) plus what a user would download, made here instead: yolov3-tiny.weights
(seeded random weights whose heads find nothing, so that the run stays fast), dog.jpg,
digit.png, backup/mnist_final.weights and a short video.mp4."""

import os
import re
import shlex
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from darknet_py import Network  # noqa: E402
from darknet_py.commands import main  # noqa: E402

README = os.path.join(ROOT, "README.md")
SECTION = "### Predict from Python, export to ONNX, run on a video"


def _blocks(text, language):
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def _section(text, title):
    start = text.index(title)
    end = re.search(r"^#{2,3} ", text[start + len(title):], re.M)
    return text[start:start + len(title) + (end.start() if end else len(text))]


def _commands(block):
    """The command lines of a sh block (continuations joined, comments cut)."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()
            and not line.lstrip().startswith("#")]


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A folder with the repository's cfg/ and data/ and the files the README downloads."""
    shutil.copytree(os.path.join(ROOT, "cfg"), tmp_path / "cfg")       # written to by examples
    shutil.copytree(os.path.join(ROOT, "data"), tmp_path / "data",
                    ignore=shutil.ignore_patterns("mnist"))
    os.symlink(os.path.join(ROOT, "data", "mnist"), tmp_path / "data" / "mnist")
    rng = np.random.default_rng(14)
    net = Network.from_cfg(str(tmp_path / "cfg" / "yolov3-tiny.cfg"), batch=1, seed=14,
                           warn=False)
    for before, layer in zip(net.layers, net.layers[1:]):
        if layer.type == "yolo":            # no objects anywhere: quick, and finite
            before.weights[:] = 0
            before.biases[:] = -10
    net.save_weights(str(tmp_path / "yolov3-tiny.weights"))
    os.makedirs(tmp_path / "backup")
    Network.from_cfg(str(tmp_path / "cfg" / "mnist.cfg"), batch=1, seed=14,
                     warn=False).save_weights(str(tmp_path / "backup" / "mnist_final.weights"))
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "digit.png")
    photo = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "dog.jpg")
    try:
        import imageio.v2 as imageio
        with imageio.get_writer(str(tmp_path / "video.mp4"), fps=5) as writer:
            for i in range(3):
                writer.append_data(np.roll(photo, 8 * i, axis=1))
    except ImportError:
        pass                                # the demo command then says how to install it
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_python_blocks_run(clone, capsys):
    with open(README) as f:
        text = f.read()
    blocks = _blocks(text, "python")
    assert len(blocks) >= 5
    if "onnxruntime" in text:
        pytest.importorskip("onnxruntime", reason="the [onnx] extra")
    # the section's commands first: its Python reads the ONNX file its export writes
    commands = [c for b in _blocks(_section(text, SECTION), "sh") for c in _commands(b)]
    assert [c[:2] for c in commands] == [["darknet_py", "export"], ["darknet_py", "detector"]]
    if any("demo" in c for c in commands):
        pytest.importorskip("imageio_ffmpeg", reason="the [video] extra")
    for command in commands:
        assert main(command[1:]) == 0, command
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "Wrote yolov3-tiny.onnx" in out and "Wrote out.mp4" in out
    assert "[(2, 255, 13, 13), (2, 255, 26, 26)]" in out      # the shapes the README shows
    assert os.path.exists(clone / "cfg" / "mnist-mish.cfg")
