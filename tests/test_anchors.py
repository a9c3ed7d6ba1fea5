"""k-means anchors with 1 - IoU (ab:src/detector.c calc_anchors) and the cfg report: masks per [yolo] layer, filters."""

import os
import re

import numpy as np
import pytest

from darknet_py.detection.anchors import (anchors_report, boxes_wh_from_labels, calc_anchors,
                                format_anchors, split_masks, wh_iou)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CENTRES = np.array([[12.0, 16.0], [60.0, 45.0], [200.0, 180.0]])


def _clusters(seed=0, per=300):
    rng = np.random.default_rng(seed)
    wh = np.concatenate([c * rng.uniform(0.93, 1.07, (per, 2)) for c in CENTRES])
    return wh[rng.permutation(len(wh))]


def test_wh_iou():
    np.testing.assert_allclose(wh_iou([[2, 2]], [[1, 4], [2, 2], [4, 4]]), [[1 / 3, 1, 0.25]])


def test_recovers_three_clusters():
    wh = _clusters()
    anchors, avg_iou = calc_anchors(wh, 3, seed=0)
    assert anchors.shape == (3, 2)
    areas = anchors.prod(axis=1)
    assert np.all(np.diff(areas) > 0)                     # sorted by area
    np.testing.assert_allclose(anchors, CENTRES, rtol=0.03)
    assert avg_iou > 0.88
    # AB's average IoU: mean over boxes of the best IoU with any anchor
    assert avg_iou == pytest.approx(wh_iou(wh, anchors).max(axis=1).mean())
    again, again_iou = calc_anchors(wh, 3, seed=0)
    np.testing.assert_array_equal(anchors, again)
    assert again_iou == avg_iou


def test_random_init_and_more_anchors():
    wh = _clusters(1)
    anchors, avg_iou = calc_anchors(wh, 3, seed=2, init="random")
    assert np.all(np.diff(anchors.prod(axis=1)) >= 0) and 0 < avg_iou <= 1
    six, iou6 = calc_anchors(wh, 6, seed=0)
    three, iou3 = calc_anchors(wh, 3, seed=0)
    assert iou6 >= iou3                                  # more anchors never fit worse here


def test_errors():
    with pytest.raises(ValueError):
        calc_anchors(np.ones((2, 2)), 3)
    with pytest.raises(ValueError):
        calc_anchors(np.array([[1.0, 2.0], [0.0, 3.0], [4.0, 4.0]]), 2)
    with pytest.raises(ValueError):
        calc_anchors(np.ones((4, 3)), 2)
    with pytest.raises(ValueError):
        split_masks(2, 3)


def test_split_masks():
    assert split_masks(6, 2) == [[3, 4, 5], [0, 1, 2]]            # yolov3-tiny
    assert split_masks(9, 3) == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]  # yolov3
    assert split_masks(9, 3, first="fine") == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # yolov4
    assert split_masks(7, 2) == [[4, 5, 6], [0, 1, 2, 3]]
    assert split_masks(5, 1) == [[0, 1, 2, 3, 4]]


def test_report_matches_yolov3_tiny_cfg():
    text = open(os.path.join(ROOT, "cfg", "yolov3-tiny.cfg")).read()
    cfg_anchors = re.search(r"^anchors\s*=\s*(.+)$", text, re.M).group(1).strip()
    cfg_masks = [[int(v) for v in m.split(",")]
                 for m in re.findall(r"^mask\s*=\s*(.+)$", text, re.M)]
    sections = re.split(r"^(?=\[)", text, flags=re.M)
    cfg_filters = [int(re.search(r"^filters\s*=\s*(\d+)", prev, re.M).group(1))
                   for prev, sec in zip(sections, sections[1:]) if sec.startswith("[yolo]")]
    anchors = np.array([int(v) for v in cfg_anchors.split(",")]).reshape(-1, 2)
    report = anchors_report(anchors, 2, classes=80)
    lines = report.splitlines()
    assert lines[0] == "anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319"
    assert re.sub(r"\s+", "", lines[0].split("=", 1)[1]) == re.sub(r"\s+", "", cfg_anchors)
    assert lines[1] == "num = 6"
    masks = [[int(v) for v in re.search(r"mask = ([\d,]+)", ln).group(1).split(",")]
             for ln in lines if ln.startswith("[yolo]")]
    assert masks == cfg_masks == [[3, 4, 5], [0, 1, 2]]
    filters = [int(re.search(r"filters=(\d+)", ln).group(1)) for ln in lines
               if ln.startswith("[yolo]")]
    assert filters == [255, 255]
    assert filters == cfg_filters
    assert lines[2].startswith("[yolo] layer 1 (largest anchors: coarsest grid): mask = 3,4,5")
    assert "# anchors 81x82, 135x169, 344x319" in lines[2]


def test_report_classes_masks_and_avg_iou():
    anchors = np.array([[10, 12], [20, 25], [40, 30], [60, 70], [100, 90], [150, 200],
                        [200, 180], [300, 260], [380, 350]], float)
    rep = anchors_report(anchors, 3, classes=4, avg_iou=0.7123)
    lines = rep.splitlines()
    assert lines[0] == "avg IoU = 71.23 %"
    yolo = [ln for ln in lines if ln.startswith("[yolo]")]
    assert [re.search(r"mask = ([\d,]+)", ln).group(1) for ln in yolo] == \
        ["6,7,8", "3,4,5", "0,1,2"]
    assert all("filters=27 " in ln for ln in yolo)                 # 3 * (4 + 5)
    rep = anchors_report(anchors[:3], [[1, 2], [0]], classes=1)
    yolo = [ln for ln in rep.splitlines() if ln.startswith("[yolo]")]
    assert "mask = 1,2   filters=12" in yolo[0] and "mask = 0   filters=6" in yolo[1]
    with pytest.raises(ValueError):
        anchors_report(anchors[:3], [[3]], classes=1)


def test_format_anchors():
    assert format_anchors([[10.4, 13.6], [0.3, 2.0]], decimals=0) == "10,14,  1,2"
    assert format_anchors([[0.57273, 0.677385], [1.87446, 2.06253]]) == \
        "0.5727,0.6774,  1.8745,2.0625"


def test_boxes_from_label_files(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("0 0.5 0.5 0.25 0.5\n1 0.5 0.5 0.1 0.2\nbad line\n")
    q = tmp_path / "b.txt"
    q.write_text("")
    wh = boxes_wh_from_labels([str(p), str(q), np.array([[0, 0.5, 0.5, 0.5, 0.5]])], 416, 416)
    np.testing.assert_allclose(wh, [[104, 208], [41.6, 83.2], [208, 208]], rtol=1e-6)
