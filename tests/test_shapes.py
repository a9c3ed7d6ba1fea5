"""The synthetic shapes dataset: deterministic, consistent files, tight boxes, fast."""

import os

import numpy as np
from PIL import Image

from darknet_py.data.datacfg import DataCfg
from darknet_py.data.labels import ab_label_path, label_path_for, pj_label_path, read_labels
from darknet_py.data.shapes import CLASSES, image_rng, main, make_shapes, render_scene


def _listing(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if rel.endswith((".txt", ".jpg", ".png")) and rel not in ("train.txt", "valid.txt"):
                with open(p, "rb") as fh:
                    out[rel] = fh.read()
    return out


def _pixel_box(row, w, h):
    """Label row -> integer pixel edges (x0, y0, x1, y1), checking they are whole pixels."""
    _, x, y, bw, bh = (float(v) for v in row)
    edges = np.array([(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h])
    assert np.allclose(edges, np.round(edges), atol=0.01), edges
    return tuple(int(v) for v in np.round(edges))


def test_deterministic_and_independent_of_n(tmp_path):
    make_shapes(tmp_path / "a", 10, size=96, seed=3)
    make_shapes(tmp_path / "b", 10, size=96, seed=3)
    make_shapes(tmp_path / "c", 4, size=96, seed=3)
    make_shapes(tmp_path / "d", 10, size=96, seed=4)
    a, b, c, d = (_listing(tmp_path / k) for k in "abcd")
    assert a == b
    assert (tmp_path / "a" / "valid.txt").read_text().replace("/a/", "/b/") == \
        (tmp_path / "b" / "valid.txt").read_text()
    for name, data in c.items():                  # image i does not depend on n
        if name.startswith(("JPEGImages", "labels")):
            assert a[name] == data
    labels_a = {k: v for k, v in a.items() if k.startswith("labels")}
    labels_d = {k: v for k, v in d.items() if k.startswith("labels")}
    assert labels_a != labels_d


def test_files_consistent(tmp_path):
    n = 40
    s = make_shapes(tmp_path / "shapes", n, size=128, seed=1)
    assert s["warnings"] == []
    data = DataCfg(s["data"])
    assert data["classes"] == "4" and data["backup"] == "backup/"
    names = open(data.file("names")).read().splitlines()
    assert names == list(CLASSES)
    train = open(data.file("train")).read().splitlines()
    valid = open(data.file("valid")).read().splitlines()
    assert len(valid) == round(0.2 * n) and len(train) + len(valid) == n
    assert not set(train) & set(valid)
    per_class = np.zeros(4, int)
    for p in train + valid:
        assert os.path.exists(p)
        with Image.open(p) as im:
            assert im.size == (128, 128)
        lp = label_path_for(p)
        assert lp == pj_label_path(p) == ab_label_path(p)        # VOC layout: both rules agree
        assert os.path.dirname(lp).endswith("labels")
        labels, problems = read_labels(lp, classes=4)
        assert problems == []
        assert 1 <= len(labels) <= 5
        side = np.maximum(labels[:, 3], labels[:, 4])
        assert np.all(side >= 0.07) and np.all(side <= 0.46), side
        for row in labels:
            _pixel_box(row, 128, 128)
        per_class += np.bincount(labels[:, 0].astype(int), minlength=4)
    assert per_class.sum() == s["objects"] and per_class.tolist() == s["objects_per_class"]
    assert np.all(per_class > 0)


def test_render_boxes_tight_and_visible():
    for i in range(40):
        rng = image_rng(7, i)
        image, objects = render_scene(rng, (160, 120))
        assert image.shape == (120, 160, 3) and image.dtype == np.uint8
        assert 1 <= len(objects) <= 5
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            m = o["mask"]
            assert m.shape == (y1 - y0, x1 - x0)
            # the visible pixels touch all four sides of the box: tight and not occluded there
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            # visible pixels carry the object's colour (up to the pixel noise, |noise| < 16)
            pix = image[y0:y1, x0:x1][m].astype(float)
            assert np.abs(pix - np.array(o["color"])).max() <= 16
            assert m.sum() >= 10


def _edge_has_color(img, box, color, depth, tol):
    x0, y0, x1, y1 = box
    strips = [img[y0:y0 + depth, x0:x1], img[y1 - depth:y1, x0:x1],
              img[y0:y1, x0:x0 + depth], img[y0:y1, x1 - depth:x1]]
    return [bool((np.abs(s.astype(float) - color).max(axis=-1) <= tol).any()) for s in strips]


def test_files_boxes_tight_png_and_jpeg(tmp_path):
    seed, n, size = 5, 15, (128, 128)
    for fmt, depth, tol, need in (("png", 1, 16, 1.0), ("jpg", 2, 40, 1.0)):
        s = make_shapes(tmp_path / fmt, n, size=size, seed=seed, image_format=fmt,
                        valid_fraction=0)
        ok = total = 0
        for i, p in enumerate(open(s["train"]).read().splitlines()):
            img = np.asarray(Image.open(p).convert("RGB"))
            labels, _ = read_labels(label_path_for(p), classes=4)
            _, objects = render_scene(image_rng(seed, i), size)
            assert len(objects) == len(labels)
            for row, o in zip(labels, objects):
                assert int(row[0]) == o["class_id"]
                box = _pixel_box(row, *size)
                assert box == o["box"]
                # each side of the box touches pixels of the object's colour
                res = _edge_has_color(img, box, np.array(o["color"]), depth, tol)
                ok += sum(res)
                total += len(res)
        assert ok >= need * total, (fmt, ok, total)


def test_two_hundred_images_each_with_its_label_file(tmp_path):
    """A set of the size the detector tests use (its speed is a benchmark's business: a
    wall-clock bound in a test fails on a loaded machine, not on slow code)."""
    s = make_shapes(tmp_path / "set", 200, size=256, seed=0)
    assert s["images"] == 200
    listing = _listing(tmp_path / "set")
    images = [n for n in listing if n.endswith((".jpg", ".png"))]
    labels = {n for n in listing if n.endswith(".txt")}
    assert len(images) == 200 == len(labels)
    for name in images:
        label = label_path_for(str(tmp_path / "set" / name))
        assert os.path.relpath(label, tmp_path / "set") in labels, label


def test_main_and_relative_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["rel/shapes", "--n", "5", "--size", "64x48", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "5 images 64x48" in out and "data file: rel/shapes/shapes.data" in out
    text = open("rel/shapes/shapes.data").read()
    assert "train=rel/shapes/train.txt" in text and "names=rel/shapes/shapes.names" in text
    first = open("rel/shapes/train.txt").readline().strip()
    assert first.startswith("rel/shapes/JPEGImages/") and os.path.exists(first)
    with Image.open(first) as im:
        assert im.size == (64, 48)
    assert main(["x", "--n", "0"]) == 2
