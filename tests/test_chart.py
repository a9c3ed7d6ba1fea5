"""darknet_py.train.chart: PNG training charts drawn with Pillow."""

import math
import os

import pytest
from PIL import Image, ImageFont

from darknet_py.train import chart
from darknet_py.train.chart import LEFT_COLORS, RIGHT_COLORS, draw_chart, nice_ticks


def count_near(path, color, tol=40):
    """Pixels of the chart within `tol` (per channel) of `color`."""
    img = Image.open(path).convert("RGB")
    return sum(n for n, c in img.getcolors(img.width * img.height)
               if all(abs(a - b) <= tol for a, b in zip(c, color)))


def loss_curve(n=300):
    return [(i, 2.0 * math.exp(-i / 80) + 0.1 + 0.05 * math.sin(i)) for i in range(1, n + 1)]


def test_valid_png_of_requested_size(tmp_path):
    path = tmp_path / "chart.png"
    assert draw_chart(path, {"loss": loss_curve()}, title="t", size=(640, 360)) == path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (640, 360)


def test_series_are_drawn(tmp_path):
    empty, drawn = tmp_path / "empty.png", tmp_path / "drawn.png"
    draw_chart(empty, {"loss": []})
    draw_chart(drawn, {"loss": loss_curve(), "avg loss": [(1, 1.0), (300, 0.5)]})
    # only the legend swatches carry series colours on the empty chart
    for color in LEFT_COLORS[:2]:
        assert count_near(drawn, color) > count_near(empty, color) + 200


def test_right_axis_series_appears(tmp_path):
    without, with_right = tmp_path / "a.png", tmp_path / "b.png"
    points = [(250 * i, 0.9 + 0.016 * (i - 1)) for i in range(1, 7)]
    draw_chart(without, {"loss": loss_curve(1500)})
    draw_chart(with_right, {"loss": loss_curve(1500)}, right_series={"top-1": points})
    assert count_near(without, RIGHT_COLORS[0]) == 0
    assert count_near(with_right, RIGHT_COLORS[0]) > 300  # line, 6 markers and a swatch


@pytest.mark.parametrize("series, right", [
    ({}, None),
    ({"loss": []}, {"top-1": []}),
    ({"loss": [(1, 2.5)]}, {"top-1": [(1, 0.5)]}),
    ({"loss": [(1, float("nan")), (2, float("inf")), (3, 1.0), (float("nan"), 2.0)]}, None),
    ({"loss": [(1, float("nan")), (2, float("-inf"))]}, {"top-1": [(5, float("nan"))]}),
    ({"loss": [(i, 0.7) for i in range(50)]}, None),
    ({"loss": [(i, 0.0) for i in range(50)]}, None),
    ({"score": [(i, -3.0 - i) for i in range(50)]}, {"acc": [(10, 1.5), (20, -0.2)]}),
    ({"loss": [(100000 + i, 1e6 * (i == 0) + 1.0) for i in range(500)]}, None),
])
def test_edge_cases_do_not_raise(tmp_path, series, right):
    path = tmp_path / "c.png"
    draw_chart(path, series, title="edge", right_series=right)
    with Image.open(path) as img:
        assert img.size == (900, 520)


def test_tiny_size_and_bitmap_font(tmp_path, monkeypatch):
    draw_chart(tmp_path / "tiny.png", {"loss": loss_curve()}, size=(120, 60))
    if hasattr(ImageFont, "load_default_imagefont"):  # Pillow >= 10.1: force the bitmap font
        monkeypatch.setattr(chart.image, "font", lambda size: ImageFont.load_default_imagefont())
    draw_chart(tmp_path / "bitmap.png", {"loss": loss_curve()}, right_series={"top-1": [(5, 0.9)]})
    with Image.open(tmp_path / "bitmap.png") as img:
        assert img.size == (900, 520)
    assert count_near(tmp_path / "bitmap.png", LEFT_COLORS[0]) > 200


def test_spike_does_not_flatten_curve(tmp_path):
    points = loss_curve(1000)
    points[2] = (3, 500.0)
    lo, hi, _, _ = nice_ticks(*chart._left_range([points]))
    assert lo == 0 and 2.0 <= hi <= 3.0


def test_nice_ticks():
    lo, hi, step, ticks = nice_ticks(0, 1500)
    assert (lo, hi, step) == (0, 1500, 500) and ticks == [0, 500, 1000, 1500]
    lo, hi, step, ticks = nice_ticks(0, 2.53)
    assert step == 0.5 and lo == 0 and hi == 3.0 and len(ticks) == 7
    for lo, hi in [(0, 1), (-7, 3), (0.001, 0.0042), (12345, 98765), (5, 5)]:
        t_lo, t_hi, step, ticks = nice_ticks(lo, hi)
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9
        assert t_lo <= lo and t_hi >= hi and 3 <= len(ticks) <= 9


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "chart.png"
    draw_chart(path, {"loss": loss_curve()}, size=(300, 200))
    inode_before = os.stat(path).st_ino
    draw_chart(path, {"loss": loss_curve()}, size=(400, 250))
    with Image.open(path) as img:
        assert img.size == (400, 250)
    assert os.stat(path).st_ino != inode_before  # a new file was renamed over the old one
    assert sorted(os.listdir(tmp_path)) == ["chart.png"]  # no temporary files left behind


def test_failed_write_leaves_old_chart_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "chart.png"
    draw_chart(path, {"loss": loss_curve()})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    import darknet_py.atomic as atomic
    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError):
        draw_chart(path, {"loss": [(1, 1.0)]})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["chart.png"]


def test_each_pixel_column_keeps_its_first_lowest_highest_and_last_point():
    import numpy as np
    x = np.array([0.1, 0.4, 0.6, 0.9, 1.2, 1.5, 3.0])
    y = np.array([5.0, 1.0, 9.0, 4.0, 2.0, 3.0, 7.0])
    # column 0: first 0, lowest 1, highest 2, last 3; column 1: 4 and 5; column 3: 6
    assert chart._columns(x, y).tolist() == [0, 1, 2, 3, 4, 5, 6]
    x = np.linspace(0, 0.99, 50)
    y = np.sin(np.arange(50.0))
    assert sorted(chart._columns(x, y).tolist()) == sorted(
        {0, 49, int(np.argmin(y)), int(np.argmax(y))})


def test_a_long_run_is_drawn_at_the_charts_width_with_the_same_pixels(tmp_path, monkeypatch):
    """500,000 iterations (an AlexeyAB-length run) cost a chart no more line points than
    its width allows, and look as the whole polyline does."""
    import numpy as np
    rng = np.random.default_rng(3)
    n = 500_000
    loss = 2 * np.exp(-np.arange(n) / 80_000) + 0.3 * rng.random(n)
    series = {"loss": list(zip(range(1, n + 1), loss.tolist()))}
    drawn = []
    line = chart.ImageDraw.ImageDraw.line

    def counting_line(self, xy, *args, **kwargs):
        drawn.append(len(xy))
        return line(self, xy, *args, **kwargs)
    monkeypatch.setattr(chart.ImageDraw.ImageDraw, "line", counting_line)
    draw_chart(tmp_path / "m4.png", series)
    k = 2 if isinstance(chart.image.font(13), ImageFont.FreeTypeFont) else 1
    assert max(drawn) <= 4 * 900 * k
    monkeypatch.setattr(chart, "_columns", lambda x, y: np.arange(len(x)))
    draw_chart(tmp_path / "whole.png", series)
    a, b = (np.asarray(Image.open(tmp_path / f).convert("RGB"), dtype=int)
            for f in ("m4.png", "whole.png"))
    assert (np.abs(a - b).max(axis=2) > 64).mean() < 0.002
