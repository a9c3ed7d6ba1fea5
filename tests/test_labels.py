"""Image -> label path rules (pj:src/data.c fill_truth_detection, ab:src/utils.c replace_image_to_label) and label-file checks."""

import numpy as np
import pytest

from darknet_py.data.labels import (ab_label_path, label_path_candidates, label_path_for,
                               pj_label_path, read_labels)


@pytest.mark.parametrize("image, pj, ab", [
    # PascalVOC layout: both forks agree
    ("/d/VOCdevkit/VOC2007/JPEGImages/000001.jpg", "/d/VOCdevkit/VOC2007/labels/000001.txt",
     "/d/VOCdevkit/VOC2007/labels/000001.txt"),
    # COCO layout: both forks agree
    ("/d/coco/images/train2014/COCO_1.jpg", "/d/coco/labels/train2014/COCO_1.txt",
     "/d/coco/labels/train2014/COCO_1.txt"),
    ("/d/coco/images/val2017/1.jpg", "/d/coco/labels/val2017/1.txt",
     "/d/coco/labels/val2017/1.txt"),
    # a plain images/ directory: PJ rewrites it, AB looks next to the image
    ("data/obj/images/a.png", "data/obj/labels/a.txt", "data/obj/images/a.txt"),
    # same-directory layout (AB's recommendation): both agree
    ("data/obj/a.jpg", "data/obj/a.txt", "data/obj/a.txt"),
    # PJ's first-occurrence trap: a parent named my_images / raw_data is rewritten instead
    ("/home/u/my_images/set/images/a.jpg", "/home/u/my_labels/set/images/a.txt",
     "/home/u/my_images/set/images/a.txt"),
    ("/data/raw_data/x.jpg", "/data/labels_data/x.txt", "/data/raw_data/x.txt"),
    # extensions PJ does not map keep their extension; AB maps them (at the end only)
    ("data/a.jpeg", "data/a.jpeg", "data/a.txt"),
    ("data/a.bmp", "data/a.bmp", "data/a.txt"),
    ("data/a.JPEG", "data/a.txt", "data/a.txt"),
    ("data/a.PNG", "data/a.PNG", "data/a.txt"),
    # PJ replaces the first '.jpg'/'.png' anywhere; AB only a suffix
    ("data/a.png.jpg", "data/a.txt.txt", "data/a.png.txt"),
    ("data/x.jpg_dir/a.png", "data/x.txt_dir/a.txt", "data/x.jpg_dir/a.txt"),
    # Windows paths (AB's backslash patterns)
    ("C:\\data\\JPEGImages\\x.jpg", "C:\\data\\labels\\x.txt", "C:\\data\\labels\\x.txt"),
    ("C:\\coco\\images\\val2014\\x.jpg", "C:\\coco\\labels\\val2014\\x.txt",
     "C:\\coco\\labels\\val2014\\x.txt"),
])
def test_pj_and_ab_rules(image, pj, ab):
    assert pj_label_path(image) == pj
    assert ab_label_path(image) == ab


def test_pj_variants():
    # detector recall uses a shorter list: no 'raw', no '.png'
    assert pj_label_path("raw/images/a.png", "recall") == "raw/labels/a.png"
    # the detector list applies 'images' and then 'raw' as well: both directories are rewritten
    assert pj_label_path("raw/images/a.png") == "labels/labels/a.txt"
    assert pj_label_path("raw/a.png", "region") == "raw/a.txt"


def test_ab_trims_and_reports_unsupported_extension():
    assert ab_label_path(" data/a.jpg\t") == "data/a.txt"
    assert ab_label_path("data/a.gif") == "data/a.gif"          # AB: "Failed to infer label file"


def _touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_label_path_for_layouts(tmp_path):
    # PJ layout: images/ -> labels/
    img = str(tmp_path / "pj" / "images" / "a.jpg")
    lab = _touch(tmp_path / "pj" / "labels" / "a.txt")
    assert label_path_for(img) == lab
    # AB layout: next to the image (PJ's path does not exist)
    img = str(tmp_path / "ab" / "images" / "b.jpg")
    lab = _touch(tmp_path / "ab" / "images" / "b.txt")
    assert label_path_for(img) == lab
    # both exist: PJ's wins (what pjreddie/darknet would read)
    _touch(tmp_path / "ab" / "labels" / "b.txt")
    assert label_path_for(img) == str(tmp_path / "ab" / "labels" / "b.txt")
    # VOC layout
    img = str(tmp_path / "voc" / "JPEGImages" / "c.png")
    lab = _touch(tmp_path / "voc" / "labels" / "c.txt")
    assert label_path_for(img) == lab
    # the PJ trap: a parent named my_images; the component-wise rule finds labels/
    img = str(tmp_path / "my_images" / "images" / "d.jpg")
    lab = _touch(tmp_path / "my_images" / "labels" / "d.txt")
    assert pj_label_path(img) != lab and ab_label_path(img) != lab
    assert label_path_for(img) == lab
    # lower-case .jpeg next to the image (PJ cannot map it, AB can)
    img = str(tmp_path / "j" / "e.jpeg")
    lab = _touch(tmp_path / "j" / "e.txt")
    assert label_path_for(img) == lab
    # upper-case .Jpg in images/ -> labels/ (only the case-insensitive component rule maps it)
    img = str(tmp_path / "k" / "images" / "f.Jpg")
    lab = _touch(tmp_path / "k" / "labels" / "f.txt")
    assert label_path_for(img) == lab


def test_label_path_for_missing_returns_pj_path(tmp_path):
    img = str(tmp_path / "none" / "images" / "a.jpg")
    assert label_path_for(img) == str(tmp_path / "none" / "labels" / "a.txt")
    # PJ cannot produce a .txt for .bmp: never return the image itself
    img = str(tmp_path / "none" / "images" / "a.bmp")
    got = label_path_for(img)
    assert got.endswith(".txt") and got != img
    cands = label_path_candidates(img)
    assert img not in cands and all(c.endswith(".txt") for c in cands)
    assert label_path_for("x/a.jpg", exists=lambda p: p == "x/a.txt") == "x/a.txt"


def test_read_labels_valid_crlf_blank(tmp_path):
    p = _touch(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.3\r\n\r\n3\t0.25 0.75 0.1 0.1\r\n\n")
    arr, problems = read_labels(p, classes=4)
    assert problems == []
    assert arr.dtype == np.float32 and arr.shape == (2, 5)
    np.testing.assert_allclose(arr, [[0, 0.5, 0.5, 0.2, 0.3], [3, 0.25, 0.75, 0.1, 0.1]])


def test_read_labels_empty_is_negative(tmp_path):
    for text in ("", "\n\n", "   \n"):
        arr, problems = read_labels(_touch(tmp_path / "e.txt", text), classes=2)
        assert arr.shape == (0, 5) and problems == []


def test_read_labels_problems_with_line_numbers(tmp_path):
    text = "\n".join([
        "0 0.5 0.5 0.2 0.2",        # 1 ok
        "1 0.5 0.5 0.2",            # 2 malformed: 4 fields
        "x 0.5 0.5 0.2 0.2",        # 3 malformed: class not an integer
        "5 0.5 0.5 0.2 0.2",        # 4 class out of range (classes=3)
        "-1 0.5 0.5 0.2 0.2",       # 5 negative class
        "0 1.5 0.5 0.2 0.2",        # 6 centre outside [0, 1]
        "0 0.5 0.5 0 0.2",          # 7 size <= 0
        "0 0.5 0.5 1.2 0.2",        # 8 size > 1
        "2 0.95 0.5 0.2 0.2",       # 9 extends past the right edge: kept, reported
        "0 0.5 nan 0.2 0.2",        # 10 NaN
        "0 0.5 0.5 0.2 0.2 7",      # 11 malformed: 6 fields
        "",                         # 12 blank: fine
        "1 0.1 0.1 0.2 0.2",        # 13 ok (edges exactly at 0)
        "1.0 0.5 0.5 0.2 0.2",      # 14 malformed: class 1.0
    ]) + "\n"
    p = _touch(tmp_path / "bad.txt", text)
    arr, problems = read_labels(p, classes=3)
    got = {(q.line, q.kind) for q in problems}
    assert got == {(2, "malformed"), (3, "malformed"), (4, "class"), (5, "class"),
                   (6, "center"), (7, "size"), (8, "size"), (9, "outside"), (10, "malformed"),
                   (11, "malformed"), (14, "malformed")}
    np.testing.assert_allclose(arr[:, 0], [0, 2, 1])             # lines 1, 9, 13 kept
    by_line = {q.line: q for q in problems}
    assert str(by_line[4]) == f"{p}:4: class_id = 5 is out of range: it must be from 0 to 2"
    assert by_line[9].dropped is False and by_line[4].dropped is True
    assert str(by_line[2]).startswith(f"{p}:2: expected 5 fields")
    # without classes, class 5 is accepted
    arr2, problems2 = read_labels(p)
    assert (4, "class") not in {(q.line, q.kind) for q in problems2}
    assert len(arr2) == 4


def test_read_labels_missing_file(tmp_path):
    arr, problems = read_labels(tmp_path / "nope.txt")
    assert arr.shape == (0, 5)
    assert len(problems) == 1 and problems[0].kind == "missing" and problems[0].line is None
    assert str(problems[0]).startswith(str(tmp_path / "nope.txt") + ": cannot open label file")
