"""Property-based robustness tests for the files a dataset is made of (issue 15): ``.data``
files, list files and label files, as ``test_cfg_fuzz.py`` does for cfgs.

Every input either reads (and what is read is valid: label rows inside their ranges) or gives a
``DarknetError`` whose ``str()`` is one line naming a file, ``path:line: error: ...`` with the line
counted in ``\\n`` (Darknet's fgetl) -- never another exception.  The files are read the way the
commands read them: training's set-up (``ClassifierTrainer``/``DetectorTrainer``, before anything
is written), ``data check`` (``check_dataset``) and the parsers alone.  Examples are drawn
from fixed seeds (``derandomize``) and bounded, so each test takes seconds.
"""

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from darknet_py.data.check import check_dataset
from darknet_py.data.datacfg import DataCfg, read_lines
from darknet_py.data.detaug import DetectionSet
from darknet_py.data.labels import read_labels
from darknet_py.errors import DarknetError
from darknet_py.train.classifier import ClassifierTrainer
from darknet_py.train.detector import DetectorTrainer
from darknet_py.train.options import TrainOptions
from test_reliability import TINY_YOLO

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck))
MESSAGE = re.compile(r"^(?P<path>.+?)(?::(?P<line>\d+))?: error: \S")

CLASSIFIER_CFG = """[net]
batch=2
width=8
height=8
channels=3
max_batches=2

[connected]
output=2
activation=linear

[softmax]
"""

DETECTOR_CFG = TINY_YOLO.replace("batch=1\n", "batch=2\nmax_batches=2\n")


# -- the files the fuzzed ones point at --------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small folder of good and bad files for .data values to name: {name: path}."""
    from PIL import Image
    base = tmp_path_factory.mktemp("data_fuzz")
    (base / "images").mkdir()
    images = []
    for i, label in enumerate(("left", "right", "left")):
        path = base / "images" / f"{i}_{label}.jpg"
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(path)
        path.with_suffix(".txt").write_text("0 0.5 0.5 0.25 0.25\n")
        images.append(str(path))
    files = {
        "list": "\n".join(images) + "\n",
        "names": "left\nright\n",
        "names1": "left\n",
        "empty": "",
        "blank": "\n\n \n",
        "missing_images": f"{base}/nope.jpg\n{images[0]}\n",
        "crlf_list": "\r\n".join(images) + "\r\n",
    }
    out = {name: str(base / f"{name}.txt") for name in files}
    for name, text in files.items():
        with open(out[name], "w", newline="") as f:
            f.write(text)
    (base / "utf16.txt").write_bytes("\n".join(images).encode("utf-16"))
    (base / "binary.txt").write_bytes(bytes(range(256)))
    out.update(utf16=str(base / "utf16.txt"), binary=str(base / "binary.txt"),
               image=images[0], folder=str(base / "images"), absent=str(base / "absent.txt"),
               backup=str(base / "backup"))
    out["base"] = str(base)
    for name, text in (("classifier.cfg", CLASSIFIER_CFG), ("detector.cfg", DETECTOR_CFG)):
        (base / name).write_text(text)
    return out


def check_error(e):
    """A DarknetError as the command line shows it: one line, naming a file, a line in it."""
    msg = str(e)
    assert "\n" not in msg and "\r" not in msg, repr(msg)
    m = MESSAGE.match(msg)
    assert m and e.path is not None, f"not 'file[:line]: error: ...': {msg!r}"
    if m.group("line") is not None:
        line = int(m.group("line"))
        with open(e.path, "rb") as f:
            lines = f.read().count(b"\n") + 1
        assert 1 <= line <= lines, (line, lines, msg)


# -- .data files --------------------------------------------------------------------------------
# Each key's value is mostly a good one (so that examples get deep: into the lists, the labels,
# the images), else another file of the corpus or junk; a few junk lines come along.
FILE_NAMES = ["list", "names", "names1", "empty", "blank", "missing_images", "crlf_list",
              "utf16", "binary", "image", "folder", "absent", "backup"]
JUNK = ["", "0", "-1", "3", "1e3", "2.0", "0x2", "nan", " 2 ", "99999999999999999999",
        "\u0662", "two", "=", "a=b", "\x00", "\U0001f600", "\u00e9", "#", "1 # comment"]
JUNK_LINES = ["# a comment", "   ", "[net]", "key", "\x0c", "\u2028x=1", "eval=coco", "top=-3",
              "top=9", "saveweights=0", "Classes=2", "train ", "=x", "classes==2"]


def key_line(files, key, good):
    """A strategy for one ``key=value`` line: mostly the good value (``good``: a corpus name or
    a literal); else the key left out, another file of the corpus, junk, or a bad '='."""
    good = files.get(good, good)
    return st.tuples(st.integers(0, 15), st.sampled_from(FILE_NAMES), st.sampled_from(JUNK),
                     st.sampled_from(["==", " = ", "", ": "])).map(
        lambda t: [f"{key}={good}", f"{key}={good}", f"{key}={files[t[1]]}",
                   f"{key}={t[2]}", f"{key}{t[3]}{good}"][max(0, t[0] - 11)]
        if t[0] != 12 else None)


def data_text(files, classes, names):
    keys = [("classes", classes), ("train", "list"), ("valid", "list"),
            (names, "names" if classes == "2" else "names1"), ("backup", "backup"), ("top", "1")]
    return st.tuples(st.tuples(*(key_line(files, k, good) for k, good in keys)),
                     st.lists(st.sampled_from(JUNK_LINES), max_size=2),
                     st.integers(0, 3), st.sampled_from(["\n", "\r\n"]), st.booleans()).map(
        lambda t: ("\ufeff" if t[4] else "") + t[3].join(
            [line for line in t[0] if line is not None] + (t[1] if t[2] == 3 else [])))


def read_as_training_does(kind, cfg, path):
    trainer = {"classifier": ClassifierTrainer, "detector": DetectorTrainer}[kind]
    options = TrainOptions(device="cpu", progress=False, seed=0)
    return trainer(cfg, path, options=options, out=open(os.devnull, "w"))


@settings(FUZZ, max_examples=600)
@given(data=st.data(), encoding=st.sampled_from(["utf-8"] * 8 + ["utf-16", "latin-1"]),
       kind=st.sampled_from(["classifier", "detector", "check"]),
       names=st.sampled_from(["names", "labels"]))
def test_junk_data_files_train_check_or_are_one_line(corpus, tmp_path_factory, data, encoding,
                                                     kind, names):
    text = data.draw(data_text(corpus, "1" if kind == "detector" else "2", names))
    # the backup folder stays inside the corpus folder: a start writes nothing, but it
    # may take the lock there
    if "backup" not in text:
        text += f"\nbackup={corpus['backup']}\n"
    path = os.path.join(tmp_path_factory.mktemp("d"), "fuzz.data")
    with open(path, "wb") as f:
        f.write(text.encode(encoding, errors="replace"))
    try:
        if kind == "check":
            result = check_dataset(path)
            for level, line in result.problems:
                assert "\n" not in line and level in ("error", "warning", "info"), line
        else:
            read_as_training_does(kind, os.path.join(corpus["base"], f"{kind}.cfg"), path)
        event(f"{kind}: read")        # --hypothesis-show-statistics: how deep the examples go
    except DarknetError as e:
        check_error(e)
        event(f"{kind}: {re.sub(r'[0-9]+', 'N', e.message)[:40]}")


@FUZZ
@given(raw=st.binary(max_size=200))
@example(raw="classes=2\n".encode("utf-16"))
@example(raw=b"classes=2\ntrain=\xff\xfe\n")
def test_arbitrary_bytes_as_a_data_file(tmp_path_factory, raw):
    path = os.path.join(tmp_path_factory.mktemp("d"), "raw.data")
    with open(path, "wb") as f:
        f.write(raw)
    try:
        data = DataCfg(path)
        data.int("classes", 1)
        data.file("train")
    except DarknetError as e:
        check_error(e)


# -- list files ---------------------------------------------------------------------------------
@FUZZ
@given(raw=st.one_of(st.binary(max_size=200),
                     st.lists(st.sampled_from(["a.jpg", "", " ", "\r", "\x00", "\xff", "\u2028",
                                               "\ufeff", "images/0_left.jpg", "\t"]),
                              max_size=8).map(lambda parts: "\n".join(parts).encode())))
def test_arbitrary_list_files_read_or_are_one_line(tmp_path_factory, raw):
    path = os.path.join(tmp_path_factory.mktemp("l"), "train.txt")
    with open(path, "wb") as f:
        f.write(raw)
    try:
        lines = read_lines(path, "image list")
        assert all(line and line == line.strip() and "\n" not in line for line in lines)
    except DarknetError as e:
        check_error(e)
    try:
        DetectionSet(path, 2)
    except DarknetError as e:
        check_error(e)


# -- label files --------------------------------------------------------------------------------
FIELDS = ["0", "1", "2", "-1", "0.5", "0.25", "1.0", "0", "1e-3", "nan", "inf", "-0.1", "1.5",
          "0x1", "1,2", "a", "", "\u0661", "1e999", "0.5\r", "\x0c", "3.0"]


@FUZZ
@given(lines=st.lists(st.lists(st.sampled_from(FIELDS), max_size=7)
                      .map(lambda f: " ".join(f)), max_size=8),
       sep=st.sampled_from(["\n", "\r\n", "\n\x0c", "\x85\n", "\u2028\n"]),
       classes=st.integers(1, 3))
def test_label_files_give_valid_rows_and_one_line_problems(tmp_path_factory, lines, sep,
                                                           classes):
    text = sep.join(lines)
    path = os.path.join(tmp_path_factory.mktemp("lab"), "x.txt")
    with open(path, "wb") as f:
        f.write(text.encode())
    rows, problems = read_labels(path, classes)
    assert rows.dtype == np.float32 and rows.shape[1] == 5
    if len(rows):
        assert np.isfinite(rows).all()
        assert ((rows[:, 0] >= 0) & (rows[:, 0] < classes)).all()
        assert ((rows[:, 1:3] >= 0) & (rows[:, 1:3] <= 1)).all()
        assert ((rows[:, 3:] > 0) & (rows[:, 3:] <= 1)).all()
    newlines = text.count("\n") + 1
    for p in problems:
        shown = str(p)
        assert "\n" not in shown and "\r" not in shown, repr(shown)
        assert shown.startswith(f"{path}:{p.line}: "), shown
        assert 1 <= p.line <= newlines, (p.line, newlines, repr(text))


def test_label_lines_count_newlines_only(tmp_path):
    """pj reads labels with fscanf, and a user's editor counts '\\n': a form feed or U+2028
    inside a line must not shift the line that a problem names."""
    path = tmp_path / "x.txt"
    path.write_text("0 0.5 0.5 0.2 0.2\x0c\n0 0.5 0.5 0.2 0.2\u2028\n7 0.5 0.5 0.2 0.2\n")
    rows, problems = read_labels(path, 2)
    assert [(p.line, p.kind) for p in problems] == [(3, "class")]
    assert len(rows) == 2
