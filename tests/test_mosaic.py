"""AlexeyAB's mosaic (mosaic=1): four images in four quadrants, boxes moved with their pixels."""

import numpy as np
import pytest

from conftest import rng_for_test
from darknet_py.data.detaug import DetectionSet, mosaic_of

W, H = 96, 64


def test_quadrants_split_between_20_and_80_percent_and_keep_each_image():
    colours = np.float32([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    parts = [(np.broadcast_to(col[:, None, None], (3, H, W)).copy(), np.zeros((0, 5)),
              (0, 0, W, H)) for col in colours]
    out, rows = mosaic_of(parts, np.random.default_rng(4))
    assert out.shape == (3, H, W) and rows.shape == (0, 5)
    cut_x = int(np.argmax(out[0, 0] != 1))               # where red stops on the top row
    cut_y = int(np.argmax(out[2, :, 0] != 0))            # where red meets blue below it
    assert .2 * W <= cut_x <= .8 * W and .2 * H <= cut_y <= .8 * H
    for (y, x), col in zip([(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)], colours):
        np.testing.assert_array_equal(out[:, y, x], col)
    np.testing.assert_array_equal(out[:, cut_y - 1, cut_x - 1], colours[0])
    np.testing.assert_array_equal(out[:, cut_y, cut_x], colours[3])


def test_a_box_moves_with_its_pixels_and_is_clipped_to_its_quadrant():
    img = np.zeros((3, H, W), np.float32)
    img[0, 20:60, 30:80] = 1                              # a red object, x 30..80, y 20..60
    rows = np.float32([[55 / W, 40 / H, 50 / W, 40 / H, 2]])
    blank = np.zeros_like(img)
    parts = [(img, rows, (0, 0, W, H))] + [(blank, np.zeros((0, 5), np.float32), (0, 0, W, H))
                                           for _ in range(3)]
    out, moved = mosaic_of(parts, np.random.default_rng(1))
    # quadrant 0 shows the bottom-right cut_x x cut_y of image 0: the object's pixels there
    red = out[0] == 1
    ys, xs = np.nonzero(red)
    assert len(moved) == 1 and moved[0, 4] == 2
    x, y, w, h = moved[0, :4] * [W, H, W, H]
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == \
        pytest.approx((x - w / 2, x + w / 2, y - h / 2, y + h / 2), abs=1e-4)


@pytest.mark.parametrize("letterbox", [False, True])
def test_every_mosaic_box_covers_its_object_and_every_object_has_a_box(tmp_path, letterbox):
    """Images with red boxes on blue: after mosaics (jitter, flips, resizing), the red pixels
    are those inside the truth boxes -- labels and pixels moved together."""
    from PIL import Image
    rng = rng_for_test()
    lines = []
    for i in range(6):
        iw, ih = int(rng.integers(60, 140)), int(rng.integers(60, 140))
        a = np.zeros((ih, iw, 3), np.uint8)
        a[..., 2] = 255
        rows = []
        for _ in range(2):
            bw, bh = int(rng.integers(12, iw // 2)), int(rng.integers(12, ih // 2))
            x0, y0 = int(rng.integers(0, iw - bw)), int(rng.integers(0, ih - bh))
            a[y0:y0 + bh, x0:x0 + bw] = (255, 0, 0)
            rows.append(f"0 {(x0 + bw / 2) / iw} {(y0 + bh / 2) / ih} {bw / iw} {bh / ih}")
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text("\n".join(rows) + "\n")
        lines.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    data = DetectionSet(str(tmp_path / "train.txt"), 1)
    x, truth = data.batch(list(range(6)) * 3, (3, H, W), np.random.default_rng(3), jitter=.2,
                          letterbox=letterbox, mosaic=True)
    for img, t in zip(x, truth):
        rows = t.reshape(-1, 5)
        rows = rows[rows[:, 2] > 0]
        inside = np.zeros((H, W), bool)
        for cx, cy, bw, bh, _ in rows:
            x0, x1 = int(round((cx - bw / 2) * W)), int(round((cx + bw / 2) * W))
            y0, y1 = int(round((cy - bh / 2) * H)), int(round((cy + bh / 2) * H))
            core = img[:, y0 + 1:y1 - 1, x0 + 1:x1 - 1]
            if core.size:
                assert (core[0] > .5).mean() > .9          # the box is red inside
            inside[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True
        red = (img[0] > .6) & (img[2] < .4)
        # no red object without a box: what is left are slivers under a pixel, dropped
        assert (red & ~inside).sum() <= H * W // 100


def test_mixup_blends_two_images_and_keeps_the_boxes_of_both(tmp_path):
    """AlexeyAB's mixup=1: half the images are the average of two, with both sets of boxes."""
    from PIL import Image
    lines = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (W, H), colour).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(f"{i} 0.5 0.5 0.5 0.5\n")
        lines.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    data = DetectionSet(str(tmp_path / "train.txt"), 2)
    x, truth = data.batch([0] * 16, (3, H, W), np.random.default_rng(2), jitter=0, flip=False,
                          letterbox=False, mixup=True)
    pairs = 0
    for k in range(16):
        rows = truth[k].reshape(-1, 5)
        classes = sorted(rows[rows[:, 2] > 0, 4].astype(int).tolist())
        pixel = x[k, :, 5, 5]
        if classes == [0, 1]:                     # blended with the blue image
            pairs += 1
            np.testing.assert_allclose(pixel, [0.5, 0, 0.5], atol=1 / 255)
        else:                                     # alone, or blended with itself
            assert classes in ([0], [0, 0])
            np.testing.assert_allclose(pixel, [1, 0, 0], atol=1 / 255)
    assert 0 < pairs < 16


def test_worker_processes_prepare_the_same_batch_as_threads(tmp_path):
    """The process pool (no GIL) gives the thread pool's batch bit for bit, mosaics and
    mixups included: each image's draws come from its own seed."""
    from PIL import Image
    rng = rng_for_test()
    lines = []
    for i in range(5):
        a = rng.integers(0, 256, (50 + 7 * i, 70, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.3\n0 0.3 0.3 0.2 0.2\n")
        lines.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    data = DetectionSet(str(tmp_path / "train.txt"), 2)
    kw = dict(jitter=.2, hue=.1, saturation=1.5, exposure=1.5, mosaic=True)
    threads = data.batch([0, 1, 2, 3, 4, 0, 1, 2], (3, H, W), np.random.default_rng(7), **kw)
    procs = data.batch([0, 1, 2, 3, 4, 0, 1, 2], (3, H, W), np.random.default_rng(7),
                       processes=2, **kw)
    for a, b in zip(threads, procs):
        np.testing.assert_array_equal(a, b)
    kw["mosaic"], kw["mixup"] = False, True
    threads = data.batch([4, 3, 2, 1], (3, H, W), np.random.default_rng(8), **kw)
    procs = data.batch([4, 3, 2, 1], (3, H, W), np.random.default_rng(8), processes=2, **kw)
    for a, b in zip(threads, procs):
        np.testing.assert_array_equal(a, b)
