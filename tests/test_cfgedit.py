"""darknet_py.cfg.edit (lossless cfg editing/building) and darknet_py.cfg.new (new_cfg recipes)."""

import difflib
import glob
import os
import stat

import numpy as np
import pytest

from darknet_py.cfg.parser import parse_cfg_text
from darknet_py.cfg.edit import CfgDocument, CfgValueError, format_value
from darknet_py.cfg.new import TEMPLATES, new_cfg, template_dir, template_path
from darknet_py.nn.network import Network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_CFGS = sorted(glob.glob(os.path.join(ROOT, "cfg", "*.cfg")))
SYSTEM_CFGS = sorted(glob.glob("/usr/share/darknet/cfg/*.cfg"))


def build(text, **kw):
    kw.setdefault("warn", False)
    return Network(parse_cfg_text(text, "t.cfg"), seed=0, **kw)


def changed_lines(before, after):
    """(removed, added) line lists of a diff (line endings kept)."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(True), after.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def assert_agrees_with_parser(doc):
    """What the document reports is what darknet_py.cfg.parser.parse_cfg_text reads."""
    cfg = doc.cfg()
    assert [(s.name, s.line) for s in cfg.sections] == [(s.name, s.line) for s in doc.sections]
    for sec, parsed in zip(doc.sections, cfg.sections):
        first = {}
        for opt in parsed.options:
            first.setdefault(opt.key, opt.value)
        assert sec.to_dict() == first
        assert sec.keys() == list(first)


# -- byte-identical round trips ----------------------------------------------------------------
def _roundtrip(path, tmp_path):
    data = open(path, "rb").read()
    doc = CfgDocument.load(path)
    assert doc.to_bytes() == data
    out = tmp_path / "out.cfg"
    doc.save(out)
    assert out.read_bytes() == data
    assert CfgDocument.parse(data.decode("utf-8")).text() == data.decode("utf-8")
    return doc


@pytest.mark.parametrize("path", REPO_CFGS, ids=os.path.basename)
def test_repo_cfgs_round_trip_byte_identical(path, tmp_path):
    doc = _roundtrip(path, tmp_path)
    assert_agrees_with_parser(doc)


@pytest.mark.parametrize("path", SYSTEM_CFGS or [None],
                         ids=lambda p: os.path.basename(p) if p else "none")
def test_system_darknet_cfgs_round_trip_byte_identical(path, tmp_path):
    if path is None:
        pytest.skip("/usr/share/darknet/cfg/*.cfg is absent (Debian's darknet package)")
    doc = _roundtrip(path, tmp_path)
    assert_agrees_with_parser(doc)


SYNTHETIC = {
    "crlf": "[net]\r\nbatch=1\r\nwidth=8\r\n\r\n[convolutional]\r\nfilters=4\r\n",
    "no_final_newline": "[net]\nbatch=1\n\n[maxpool]\nsize=2",
    "crlf_no_final_newline": "[net]\r\nbatch=1\r\n[maxpool]\r\nsize=2",
    "bom": "\ufeff[net]\nbatch=1\n",
    "bom_crlf": "\ufeff# top\r\n[net]\r\nbatch=1\r\n",
    "odd_spacing": "[net]\n  batch  =   64   \n\twidth\t=\t416\t\nanchors = 10,14,  23,27\n"
                   "[ convolutional ]\nfilters= 16\nsize =3\n",
    "inline_comments": "[net] # the net\nbatch=64 # per step\nhue=.1;semicolon\n"
                       "[convolutional]\nactivation=leaky   # inline\n; a ; comment\n",
    "trailing_whitespace": "[net]   \nbatch=1 \t \n   \n[maxpool]\t\nsize=2  \n",
    "mixed_endings": "[net]\r\nbatch=1\nwidth=2\r\n\n",
    "blank_lines_only_end": "[net]\nbatch=1\n\n\n\n",
    "empty": "",
    "only_comments": "# nothing\n; here\n",
    "preamble": "# header\n\n# more\n[net]\nbatch=1\n",
    "empty_value_and_dupes": "[net]\nbatch=\nbatch=4\nbatch=8\nnovalue\n",
    "lone_cr_end": "[net]\nbatch=1\r",
    "form_feed": "[net]\nbatch=1\x0c\n",
}


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_synthetic_round_trip(name, tmp_path):
    text = SYNTHETIC[name]
    doc = CfgDocument.parse(text, "s.cfg")
    assert doc.text() == text
    path = tmp_path / "s.cfg"
    path.write_bytes(text.encode("utf-8"))
    doc = CfgDocument.load(path)
    assert doc.to_bytes() == text.encode("utf-8")
    doc.save()
    assert path.read_bytes() == text.encode("utf-8")
    if doc.sections:
        assert_agrees_with_parser(doc)


def test_invalid_utf8_bytes_round_trip(tmp_path):
    data = b"[net]\n# caf\xe9 latin-1 comment\nbatch=1\n"
    path = tmp_path / "l1.cfg"
    path.write_bytes(data)
    doc = CfgDocument.load(path)
    doc.save(tmp_path / "out.cfg")
    assert (tmp_path / "out.cfg").read_bytes() == data


def test_odd_cases_read_like_the_parser():
    doc = CfgDocument.parse(SYNTHETIC["odd_spacing"])
    assert doc.net.get("batch", type=int) == 64
    assert doc.net.get("anchors", type=list) == [10, 14, 23, 27]
    assert doc.sections[1].name == "convolutional" and doc.sections[1].type == "convolutional"
    doc = CfgDocument.parse(SYNTHETIC["inline_comments"])
    assert doc.net["batch"] == "64" and doc.net["hue"] == ".1"
    assert doc.sections[1]["activation"] == "leaky"
    doc = CfgDocument.parse(SYNTHETIC["empty_value_and_dupes"])
    assert doc.net.get("batch", type=int) == 4          # empty skipped, first real one wins
    assert "novalue" not in doc.net and doc.net.keys() == ["batch"]


# -- sections and lookups ----------------------------------------------------------------------
def test_sections_index_line_type_and_find():
    doc = CfgDocument.load(os.path.join(ROOT, "cfg", "yolov3-tiny.cfg"))
    cfg = parse_cfg_text(doc.text(), "x")
    assert doc.net is doc.sections[0] and doc.net.index == -1 and doc.net.line == 1
    assert [s.index for s in doc.sections] == list(range(-1, len(doc.sections) - 1))
    assert [s.line for s in doc.sections] == [s.line for s in cfg.sections]
    yolos = doc.find("yolo")
    assert [y.index for y in yolos] == [16, 23]
    assert len(doc.find("conv")) == len(doc.find("convolutional")) == 13
    assert doc.layer(16) is yolos[0] and doc.layers[0].type == "convolutional"
    y = yolos[0]
    assert y.get("mask", type=list) == [3, 4, 5]
    assert y.get("anchors", type=list)[:4] == [10, 14, 23, 27]
    assert y.get("ignore_thresh", type=float) == 0.7
    assert y.get("classes", type=int) == 80 and y["classes"] == "80"
    assert y.get("random", type=bool) is True
    assert y.get("missing", 5) == 5 and "missing" not in y and "num" in y
    with pytest.raises(KeyError):
        y["missing"]
    assert y.keys()[:3] == ["mask", "anchors", "classes"]
    assert doc.find("route")[1].get("layers", type=list) == [-1, 8]


def test_bad_value_type_raises_with_line():
    doc = CfgDocument.parse("[net]\nbatch=64\n\n[conv]\nfilters=3x\n", "bad.cfg")
    with pytest.raises(CfgValueError) as e:
        doc.sections[1].get("filters", type=int)
    assert isinstance(e.value, ValueError) and "bad.cfg:5" in str(e.value)


# -- editing keeps everything else byte-identical ----------------------------------------------
def test_set_existing_keeps_spacing_and_comments():
    text = ("[net]\r\nmax_batches = 500200\r\nhue=.1   \r\nbatch=1 # testing\r\n\r\n"
            "[convolutional]\r\nactivation=leaky ; old\r\nfilters= 255\r\n")
    doc = CfgDocument.parse(text)
    doc.net.set("max_batches", 6000)
    doc.net.set("hue", 0.1)
    doc.net.set("batch", 64, comment="training")
    conv = doc.sections[1]
    conv.set("activation", "linear")
    conv["filters"] = 24
    removed, added = changed_lines(text, doc.text())
    assert removed == ["max_batches = 500200\r\n", "hue=.1   \r\n", "batch=1 # testing\r\n",
                       "activation=leaky ; old\r\n", "filters= 255\r\n"]
    assert added == ["max_batches = 6000\r\n", "hue=0.1   \r\n", "# training\r\n",
                     "batch=64 # testing\r\n", "activation=linear ; old\r\n",
                     "filters= 24\r\n"]
    assert_agrees_with_parser(doc)
    assert doc.net.get("batch", type=int) == 64


def test_set_new_key_goes_after_the_last_option_with_the_file_newline():
    text = "[net]\r\nbatch=1\r\n# trailing comment\r\n\r\n\r\n[maxpool]\r\nsize=2\r\n"
    doc = CfgDocument.parse(text)
    doc.net.set("subdivisions", 2, comment="why")
    assert doc.text() == ("[net]\r\nbatch=1\r\n# why\r\nsubdivisions=2\r\n"
                          "# trailing comment\r\n\r\n\r\n[maxpool]\r\nsize=2\r\n")
    assert doc.sections[1].line == 8


def test_set_at_end_of_file_without_final_newline():
    doc = CfgDocument.parse("[net]\nbatch=1\n\n[maxpool]\nsize=2")
    doc.sections[1].set("stride", 2)
    assert doc.text() == "[net]\nbatch=1\n\n[maxpool]\nsize=2\nstride=2"
    doc.sections[1].remove("stride")
    doc.sections[1].remove("size")
    assert doc.text() == "[net]\nbatch=1\n\n[maxpool]"


def test_set_on_an_empty_value_and_duplicates():
    doc = CfgDocument.parse("[net]\nwidth = \nbatch=2\nbatch=8\n")
    doc.net.set("width", 32)
    doc.net.set("batch", 4)
    assert doc.text() == "[net]\nwidth = 32\nbatch=4\nbatch=8\n"
    assert doc.net.remove("batch") == 2 and doc.net.remove("batch") == 0
    with pytest.raises(KeyError):
        del doc.net["batch"]
    assert doc.text() == "[net]\nwidth = 32\n"


def test_remove_and_edit_on_a_real_cfg_touch_only_those_lines():
    path = os.path.join(ROOT, "cfg", "yolov3-tiny.cfg")
    before = open(path).read()
    doc = CfgDocument.load(path)
    doc.find("yolo")[1].remove("random")
    doc.net.set("learning_rate", 1e-05)
    removed, added = changed_lines(before, doc.text())
    assert sorted(removed) == ["learning_rate=0.001\n", "random=1\n"]
    assert added == ["learning_rate=1e-05\n"]
    assert_agrees_with_parser(doc)


def test_insert_append_and_remove_sections():
    path = os.path.join(ROOT, "cfg", "mnist.cfg")
    before = open(path).read()
    doc = CfgDocument.load(path)
    drop = doc.insert(doc.find("connected")[1], "dropout", probability=0.5)
    assert drop.index == 5 and drop.type == "dropout"
    assert [s.type for s in doc.layers][4:7] == ["connected", "dropout", "connected"]
    removed, added = changed_lines(before, doc.text())
    assert removed == [] and added == ["[dropout]\n", "probability=0.5\n", "\n"]
    build(doc.text())
    assert_agrees_with_parser(doc)

    gone = doc.remove(drop)
    assert gone.index is None and gone.line is None
    assert doc.text() == before
    cost = doc.append("cost", type="sse")
    assert doc.text() == before + "\n[cost]\ntype=sse\n"
    assert cost.index == len(doc.layers) - 1
    assert doc.remove(-1).name == "cost"
    assert doc.text() == before
    # a copy of another document's section, at a negative position
    other = CfgDocument.load(os.path.join(ROOT, "cfg", "yolov3-tiny.cfg"))
    sec = doc.insert(-2, other.find("maxpool")[0], stride=1)
    assert sec.doc is doc and sec.get("stride", type=int) == 1 and sec.get("size") == "2"
    assert doc.layers[-3] is sec


def test_insert_into_crlf_file_uses_crlf_and_keeps_missing_final_newline():
    text = "[net]\r\nbatch=1\r\n\r\n[maxpool]\r\nsize=2"
    doc = CfgDocument.parse(text)
    doc.insert(1, "conv", filters=4)
    doc.append("softmax")
    assert doc.text() == ("[net]\r\nbatch=1\r\n\r\n[conv]\r\nfilters=4\r\n\r\n[maxpool]\r\nsize=2"
                          "\r\n\r\n[softmax]")


def test_unknown_section_name_is_an_error():
    with pytest.raises(ValueError, match="did you mean 'convolutional'"):
        CfgDocument.new().append("convolutinal")


# -- building from scratch ---------------------------------------------------------------------
def test_build_from_scratch_parses_and_builds():
    doc = CfgDocument.new()
    doc.append("net", batch=64, subdivisions=1, width=28, height=28, channels=1,
               learning_rate=0.001, momentum=0.9, decay=0.0005, policy="steps",
               steps=[800, 900], scales=[0.1, 0.1], max_batches=1000, adam=False)
    doc.append("convolutional", filters=16, size=3, stride=1, pad=1, batch_normalize=1,
               activation="leaky")
    doc.append("convolutional", filters=16, size=3, stride=1, pad=1, batch_normalize=True,
               activation="leaky")
    doc.append("shortcut", from_=-2, activation="linear")
    doc.append("route", layers=[-1, -3])
    doc.append("maxpool", size=2, stride=2)
    doc.append("connected", {"output": 10}, activation="linear")
    doc.append("softmax")
    text = doc.text()
    assert text.startswith("[net]\nbatch=64\nsubdivisions=1\nwidth=28\n")
    assert "learning_rate=0.001\nmomentum=0.9\ndecay=0.0005\npolicy=steps\n" in text
    assert "steps=800,900\nscales=0.1,0.1\nmax_batches=1000\nadam=0\n\n[convolutional]\n" in text
    assert "\n\n[shortcut]\nfrom=-2\nactivation=linear\n\n[route]\nlayers=-1,-3\n" in text
    assert text.endswith("[connected]\noutput=10\nactivation=linear\n\n[softmax]\n")
    assert text.count("\n\n[") == 7
    net = build(text, batch=2)
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert net.forward(x).shape[:2] == (2, 10)
    assert [s.index for s in doc.sections] == list(range(-1, 7))
    assert_agrees_with_parser(doc)


def test_save_is_atomic_keeps_mode_and_follows_symlinks(tmp_path):
    doc = CfgDocument.new()
    with pytest.raises(ValueError, match="no path"):
        doc.save()
    doc.append("net", batch=1, width=8, height=8, channels=3)
    path = tmp_path / "a.cfg"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    link = tmp_path / "link.cfg"
    link.symlink_to(path)
    doc.save(link)
    assert link.is_symlink() and path.read_text() == doc.text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cfg", "link.cfg"]   # no temp left
    assert doc.path == str(link)


@pytest.mark.parametrize("value,text", [
    (True, "1"), (False, "0"), (3, "3"), (3.0, "3"), (0.001, "0.001"), (1e-05, "1e-05"),
    (0.5, "0.5"), (-1, "-1"), (np.float32(0.1), "0.1"), (np.int64(7), "7"),
    ([1, 2, 3], "1,2,3"), ((0.1, 0.1), "0.1,0.1"), ([(10, 14), (23, 27)], "10,14,  23,27"),
    (np.array([1.5, 2]), "1.5,2"), ("leaky", "leaky"), (1e20, "1e+20")])
def test_format_value(value, text):
    assert format_value(value) == text
    assert isinstance(format_value(value), str)


@pytest.mark.parametrize("value", ["a#b", "x;y", "two\nlines", "", [], float("nan"),
                                   float("inf")])
def test_format_value_rejects_what_darknet_cannot_read(value):
    with pytest.raises(ValueError):
        format_value(value)


def test_bad_keys_are_rejected():
    sec = CfgDocument.new().append("net")
    for key in ("", "a b", "a=b", "#x", "[x"):
        with pytest.raises(ValueError):
            sec.set(key, 1)


# -- new_cfg -----------------------------------------------------------------------------------
def _conv_before(doc, sec):
    return doc.sections[doc.sections.index(sec) - 1]


def test_new_cfg_yolov3_tiny_3_classes():
    path = os.path.join(ROOT, "cfg", "yolov3-tiny.cfg")
    before = open(path, "rb").read()
    doc = new_cfg("yolov3-tiny", 3)
    assert open(path, "rb").read() == before and doc.path is None
    for yolo in doc.find("yolo"):
        assert yolo.get("classes", type=int) == 3
        conv = _conv_before(doc, yolo)
        assert conv.type == "convolutional" and conv.get("filters", type=int) == 24
    assert doc.net.get("max_batches", type=int) == 6000
    assert doc.net.get("steps", type=list) == [4800, 5400]
    assert doc.net.get("batch", type=int) == 64 and doc.net.get("subdivisions", type=int) == 2
    text = doc.text()
    assert text.count("# classes=3: filters = 3 * (3 + 5); was 255\nfilters=24\n") == 2
    assert "# classes=3: max(2000 * classes, 6000) for a detector" in text
    assert "max_batches = 6000\n" in text
    assert "steps=4800,5400\n" in text          # no inline comment: Darknet would read it
    removed, added = changed_lines(before.decode(), text)
    # 8 edited lines, each after its own '# why' line, and the header comment
    assert len(removed) == 8 and len(added) == 17
    assert sum(line.startswith("# ") for line in added) == 9
    assert all("#" not in line for line in added if not line.startswith("#"))
    assert added[0].startswith("# darknet_py cfg new --from yolov3-tiny --classes 3")
    net = build(text, batch=1)
    assert [net.layers[y.index].out_shape for y in doc.find("yolo")] == [(24, 13, 13),
                                                                          (24, 26, 26)]


def test_new_cfg_more_classes_and_idempotent(tmp_path):
    doc = new_cfg("yolov3-tiny", 5)
    assert doc.net.get("max_batches", type=int) == 10000
    assert doc.net.get("steps", type=list) == [8000, 9000]
    assert {_conv_before(doc, y).get("filters", type=int) for y in doc.find("yolo")} == {30}
    out = tmp_path / "five.cfg"
    doc.save(out)
    again = new_cfg(str(out), 5)          # already adapted: only the header comment is new
    removed, added = changed_lines(out.read_text(), again.text())
    assert removed == [] and len(added) == 1 and added[0].startswith("# darknet_py cfg new")


def test_new_cfg_yolov2_tiny_region():
    doc = new_cfg("yolov2-tiny", 3)
    region = doc.find("region")[0]
    assert region.get("classes", type=int) == 3
    assert _conv_before(doc, region).get("filters", type=int) == 40      # 5 * (4 + 1 + 3)
    assert "# classes=3: filters = 5 * (4 + 1 + 3); was 425" in doc.text()
    assert doc.net.get("max_batches", type=int) == 6000
    net = build(doc.text(), batch=1)
    assert net.layers[region.index].out_shape == (40, 13, 13)


def test_new_cfg_mnist_classifier():
    doc = new_cfg("mnist", 4)
    last = doc.find("connected")[-1]
    assert last.get("output", type=int) == 4
    assert doc.find("connected")[0].get("output", type=int) == 128
    assert "# classes=4: one output per class; was 10\noutput=4\n" in doc.text()
    # AlexeyAB's 2000-per-class rule is for detectors: the template's schedule stays
    assert doc.net.get("max_batches", type=int) == 3000
    assert doc.net.get("steps", type=list) == [2000, 2600]
    assert doc.net.get("batch", type=int) == 64                      # already a training cfg
    net = build(doc.text(), batch=2)
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert net.forward(x).shape[:2] == (2, 4)
    assert new_cfg("mnist", 20).net.get("max_batches", type=int) == 3000
    with pytest.raises(ValueError, match="at least 2 classes"):
        new_cfg("mnist", 1)


def test_new_cfg_size():
    doc = new_cfg("yolov3-tiny", 3, size=(608, 320))
    assert doc.net.get("width", type=int) == 608 and doc.net.get("height", type=int) == 320
    assert "# size=608x320 (a multiple of the network stride 32); was 416\nwidth=608\n" \
        in doc.text()
    net = build(doc.text(), batch=1)
    assert net.layers[doc.find("yolo")[0].index].out_shape == (24, 10, 19)
    assert new_cfg("yolov2-tiny", 2, size="320x320").net.get("width", type=int) == 320
    assert new_cfg("yolov3-tiny", 2, size=416).net.get("height", type=int) == 416
    mnist = new_cfg("mnist", 10, size=(32, 32))
    build(mnist.text(), batch=1)


@pytest.mark.parametrize("size,match", [
    ((600, 600), r"multiples of 32.*608x608"), ((416, 400), "multiples of 32"),
    ("416x", "not WxH"), ((0, 416), "positive"), ((416.0, 416), "whole pixels"),
    (12, "multiples of 32")])
def test_new_cfg_bad_size(size, match):
    with pytest.raises(ValueError, match=match):
        new_cfg("yolov3-tiny", 3, size=size)


def test_new_cfg_anchors_split_like_yolov3_tiny():
    anchors = [(344, 319), (10, 14), (81, 82), (23, 27), (135, 169), (37, 58)]   # any order
    doc = new_cfg("yolov3-tiny", 3, anchors=anchors)
    coarse, fine = doc.find("yolo")
    for y in (coarse, fine):
        assert y.get("anchors", type=list) == [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]
        assert y.get("num", type=int) == 6
    assert coarse.get("mask", type=list) == [3, 4, 5] and fine.get("mask", type=list) == [0, 1, 2]
    # the shipped anchors in the shipped order: no anchor line changes
    removed, _ = changed_lines(new_cfg("yolov3-tiny", 3).text(), doc.text())
    assert removed == ["# darknet_py cfg new --from yolov3-tiny --classes 3: each edited line "
                       "follows a '# why' line\n"]

    doc = new_cfg("yolov3-tiny", 3, anchors=np.array([[5, 5], [12, 12], [20, 30], [40, 40],
                                                      [80, 60], [100, 100], [200, 150],
                                                      [300, 300.5]]))
    coarse, fine = doc.find("yolo")
    assert coarse.get("mask", type=list) == [4, 5, 6, 7] and fine.get("mask", type=list) == [0, 1,
                                                                                          2, 3]
    assert coarse.get("num", type=int) == 8
    assert coarse["anchors"].endswith("300,300.5")
    for y in (coarse, fine):
        assert _conv_before(doc, y).get("filters", type=int) == 32      # 4 * (3 + 5)
    assert "filters = 4 * (3 + 5)" in doc.text()
    assert "# anchors 4-7 (the largest) for this stride-32 layer" in doc.text()
    build(doc.text(), batch=1)


def test_new_cfg_region_anchors_in_grid_cells():
    doc = new_cfg("yolov2-tiny", 3, anchors=[(32, 64), (64, 32), (96, 96)])
    region = doc.find("region")[0]
    assert region.get("anchors", type=list) == [1, 2, 2, 1, 3, 3]
    assert region.get("num", type=int) == 3
    assert _conv_before(doc, region).get("filters", type=int) == 24    # 3 * (4 + 1 + 3)
    build(doc.text(), batch=1)


@pytest.mark.parametrize("template,anchors,match", [
    ("yolov3-tiny", [(10, 10)] * 5, "cannot be split evenly over the 2"),
    ("yolov3-tiny", [(10, 10)], "cannot be split evenly"),
    ("yolov3-tiny", [], "empty"),
    ("yolov3-tiny", [(10, 0)] * 2, "positive"),
    ("yolov3-tiny", [1, 2, 3], "pairs"),
    ("mnist", [(10, 10)] * 2, "only apply"),
])
def test_new_cfg_bad_anchors(template, anchors, match):
    with pytest.raises(ValueError, match=match):
        new_cfg(template, 3, anchors=anchors)


def test_new_cfg_templates_and_errors(tmp_path):
    assert template_path("mnist") == os.path.join(template_dir(), "mnist.cfg")
    assert template_path("mnist-nobn").endswith("mnist-nobn.cfg")
    assert new_cfg(os.path.join(ROOT, "cfg", "mnist-nobn.cfg"), 3).find("connected")[-1][
        "output"] == "3"
    with pytest.raises(ValueError, match="unknown template 'yolov9'"):
        new_cfg("yolov9", 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="classes"):
            new_cfg("yolov3-tiny", bad)
    odd = tmp_path / "odd.cfg"
    odd.write_text("[net]\nwidth=8\nheight=8\nchannels=1\n[conv]\nfilters=2\n")
    with pytest.raises(ValueError, match="cannot tell"):
        new_cfg(str(odd), 3)
    broken = tmp_path / "broken.cfg"
    broken.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[conv]\nfilters=2\n[maxpool]\n"
                      "[yolo]\nmask=0\nnum=1\n")
    with pytest.raises(ValueError, match=r"broken.cfg:8: \[yolo\] must come right after"):
        new_cfg(str(broken), 3)


def test_new_cfg_gaussian_yolo_uses_classes_plus_9(tmp_path):
    path = tmp_path / "g.cfg"
    path.write_text("[net]\nbatch=64\nwidth=64\nheight=64\nchannels=3\nmax_batches=100\n"
                    "[convolutional]\nstride=32\nsize=1\nfilters=255\n"
                    "[Gaussian_yolo]\nmask=0,1,2\nnum=3\nclasses=80\n")
    doc = new_cfg(str(path), 2)
    assert doc.find("convolutional")[0].get("filters", type=int) == 33     # 3 * (2 + 9)
    assert doc.net.get("max_batches", type=int) == 6000
    assert "steps" not in doc.net                       # no steps policy: none added


def test_the_broken_corpus_round_trips_byte_identical():
    import glob
    from darknet_py.cfg.edit import CfgDocument
    files = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "cfg_corpus", "broken",
                                          "*.cfg")))
    assert len(files) >= 60
    for path in files:
        data = open(path, "rb").read()
        assert CfgDocument.load(path).to_bytes() == data, path


def test_cfg_new_yolov3_tiny_3_classes_passes_cfg_check(tmp_path):
    from darknet_py.cfg.new import new_cfg
    from darknet_py.cfg.check import check_cfg
    out = tmp_path / "three.cfg"
    new_cfg("yolov3-tiny", 3).save(out)
    assert not [f for f in check_cfg(str(out)) if f.level == "error"]


def test_the_public_import_path_is_darknet_py_cfgedit():
    """README's `from darknet_py.cfgedit import CfgDocument` names the editor in darknet_py.cfg."""
    import darknet_py.cfg.edit as edit
    import darknet_py.cfgedit as public
    assert public.CfgDocument is edit.CfgDocument and set(public.__all__) == set(edit.__all__)


def test_templates_are_package_data_read_through_importlib_resources():
    """An installed copy (``pip install .``, not ``-e``) finds its templates: every template is
    in setup.cfg's package_data and template_dir() is what importlib.resources gives."""
    import configparser
    import fnmatch
    import importlib.resources
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    patterns = setup["options.package_data"]["darknet_py"].split()
    folder = importlib.resources.files("darknet_py.cfg") / "templates"
    shipped = sorted(p.name for p in folder.iterdir() if p.name.endswith(".cfg"))
    assert set(TEMPLATES.values()) <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(f"cfg/templates/{name}", p) for p in patterns), name
        assert (folder / name).read_text().lstrip().startswith(("[", "#"))
    assert template_dir() == os.fspath(folder)
    assert template_path("yolov3-tiny") == os.path.join(os.fspath(folder), "yolov3-tiny.cfg")


@pytest.mark.parametrize("template,heads,new_coords", [("yolov4-tiny", 2, 0),
                                                      ("yolov7-tiny", 3, 1)])
def test_alexeyab_templates_give_clean_cfgs_darknet_py_builds(tmp_path, template, heads,
                                                                new_coords):
    """AlexeyAB's yolov4-tiny and yolov7-tiny (new_coords=1) as cfg new templates: the
    classes, the filters before each [yolo] and the schedule change; the result is clean (no
    AlexeyAB training option darknet_py lacks is left set) and builds and trains a step."""
    import numpy as np
    from darknet_py.cfg.check import check_cfg
    from darknet_py.cfg.parser import parse_cfg_text
    from darknet_py.nn.network import Network
    doc = new_cfg(template, 2, size=(64, 64))
    out = tmp_path / f"{template}.cfg"
    doc.save(str(out))
    assert check_cfg(str(out)) == []
    text = out.read_text().replace("batch=64", "batch=2")
    net = Network(parse_cfg_text(text, str(out)), seed=0, warn=False)
    yolos = [l for l in net.layers if l.type == "yolo"]
    assert len(yolos) == heads and all(l.classes == 2 and l.c == 3 * 7 for l in yolos)
    assert all(l.new_coords == new_coords for l in yolos)
    assert not any(l.unimplemented for l in yolos)
    truth = np.zeros((2, 450), np.float32)
    truth[:, :5] = (0.5, 0.5, 0.3, 0.4, 1)
    net.train_step(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32), truth)
    assert np.isfinite(net.cost)
