"""Training charts (loss, accuracy) drawn with Pillow alone and written atomically as PNG.

    draw_chart("chart.png", {"loss": [(1, 2.31), (2, 2.28), ...], "avg loss": [...]},
               title="mnist.cfg", right_series={"top-1": [(600, 0.97), (1200, 0.98)]})

Left series share one y axis running from min(0, min y) to a robust top (1.1 x the 99th
percentile, so one early spike does not flatten the curve; points above it are clipped to the
top edge).  Right series are fractions drawn with markers against a 0..100 % axis.  NaN and inf
points are skipped; with no data at all the axes are drawn with a "no data yet" note.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import image
from ..atomic import atomic_open

LEFT_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
               (127, 127, 127), (188, 189, 34)]
RIGHT_COLORS = [(214, 39, 40), (23, 190, 207), (227, 119, 194), (0, 0, 0)]
BACKGROUND, AXIS, GRID, TEXT = (255, 255, 255), (70, 70, 70), (228, 228, 228), (30, 30, 30)
#: the least wall time between two charts of a training run (train/trainer.py; its last chart
#: is always drawn)
CHART_SECONDS = 2.0


def _finite(points):
    """The (x, y) points whose coordinates are both finite numbers, as an (n, 2) array."""
    try:
        xy = np.asarray(points if points is not None else (), dtype=np.float64)
        xy = xy.reshape(0, 2) if xy.size == 0 else xy
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError("not (x, y) points")
    except (TypeError, ValueError):     # a point that is not two numbers: dropped alone
        xy = []
        for point in points:
            try:
                x, y = point
                xy.append((float(x), float(y)))
            except (TypeError, ValueError):
                continue
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return xy[np.isfinite(xy).all(axis=1)]


def _columns(x, y):
    """The indexes of the polyline (x, y) (pixels, x ascending) to draw: in each pixel column
    its first, lowest, highest and last point (M4, Jugel et al., VLDB 2014), which a
    rasteriser draws as the whole line -- so a chart costs its width, not the run's length."""
    column = np.floor(x)
    starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
    ends = np.r_[starts[1:], len(x)] - 1
    by_height = np.lexsort((y, column))         # within each column, lowest first
    return np.unique(np.concatenate((starts, ends, by_height[starts], by_height[ends])))


def nice_ticks(lo, hi, count=5):
    """Round 1-2-5 step covering [lo, hi] in about `count` intervals: (lo, hi, step, ticks)."""
    if not hi > lo:
        lo, hi = lo - 1, hi + 1
    k = math.floor(math.log10(hi - lo))
    steps = [m * 10.0 ** e for e in range(k - 2, k + 1) for m in (1, 2, 5)]

    def intervals(s):
        return math.ceil(hi / s - 1e-9) - math.floor(lo / s + 1e-9)

    step = min(steps, key=lambda s: (abs(intervals(s) - count), -s))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return first * step, last * step, step, [i * step for i in range(first, last + 1)]


def _label(value, step):
    """Tick text: just enough decimals for `step`; 12000 -> "12k"."""
    if abs(value) >= 10000 and step >= 1000:
        return f"{value / 1000:g}k"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


def _left_range(series):
    """(lo, hi) of the left axis: min(0, min y) to 1.1 x the 99th percentile (or the max)."""
    ys = np.concatenate([np.asarray(pts, dtype=np.float64).reshape(-1, 2)[:, 1]
                         for pts in series] + [np.empty(0)])
    if not len(ys):
        return 0.0, 1.0
    rank = max(0, math.ceil(0.99 * len(ys)) - 1)
    p99, y_max = float(np.partition(ys, rank)[rank]), float(ys.max())
    top = min(y_max, 1.1 * p99) if p99 > 0 else y_max
    lo, hi = min(0.0, float(ys.min())), max(top, 0.0)
    if hi > 0:
        hi += 0.03 * (hi - lo)  # a little headroom above the data
    return lo, (hi if hi > lo else lo + 1.0)


def _bbox(draw, text, font):
    """Ink box of `text` drawn at (0, 0)."""
    try:
        return draw.textbbox((0, 0), text, font=font)
    except (ValueError, AttributeError):  # Pillow < 9.2 with a bitmap font
        return (0, 0) + tuple(font.getsize(text))


def _text_size(draw, text, font):
    box = _bbox(draw, text, font)
    return box[2] - box[0], box[3] - box[1]


def _text(draw, xy, text, font, anchor="lt", fill=TEXT):
    """Draw `text` aligned at `xy` (anchor: l/m/r then t/m/b); works with bitmap fonts too."""
    x0, y0, x1, y1 = _bbox(draw, text, font)
    x = xy[0] - x0 - {"l": 0, "m": (x1 - x0) / 2, "r": x1 - x0}[anchor[0]]
    y = xy[1] - y0 - {"t": 0, "m": (y1 - y0) / 2, "b": y1 - y0}[anchor[1]]
    draw.text((x, y), text, fill=fill, font=font)


def _save_atomic(img, path):
    """Save `img` as PNG, atomically."""
    with atomic_open(path, ".png") as f:
        img.save(f, format="PNG")


def _legend(draw, plots, font, k, left, right, top):
    """Legend box (swatch + name per series, wrapped into rows) centred above the plot;
    returns the y just below it."""
    rows, row, width = [], [], 0
    for name, _, color, marker in plots:
        w = (46 * k) + _text_size(draw, name, font)[0]
        if row and width + w > right - left:
            rows, row, width = rows + [row], [], 0
        row, width = row + [(name, color, marker, w)], width + w
    rows += [row] if row else []
    if not rows:
        return top
    row_h = _text_size(draw, "Ag", font)[1] + 10 * k
    box_w = max(sum(e[3] for e in r) for r in rows) + 6 * k
    box_x = (left + right - box_w) // 2
    bottom = top + len(rows) * row_h + 6 * k
    draw.rectangle([box_x, top, box_x + box_w, bottom], outline=(190, 190, 190),
                   fill=(250, 250, 250), width=k)
    for r, entries in enumerate(rows):
        x, cy = box_x + 10 * k, top + 3 * k + r * row_h + row_h // 2
        for name, color, marker, w in entries:
            draw.line([(x, cy), (x + 20 * k, cy)], fill=color, width=3 * k)
            if marker:
                draw.ellipse([x + 5 * k, cy - 5 * k, x + 15 * k, cy + 5 * k], fill=color)
            _text(draw, (x + 28 * k, cy), name, font, "lm")
            x += w
    return bottom


def draw_chart(path, series, title="", x_label="iteration", right_series=None, size=(900, 520)):
    """Draw `series` (name -> [(x, y)], left axis) and optional `right_series` (name ->
    [(x, fraction)], right 0..100 % axis, with markers) into the PNG `path`; returns `path`.

    Drawn at twice the size and scaled down (smooth lines) when a scalable font exists."""
    left = [(name, _finite(pts)) for name, pts in (series or {}).items()]
    right = [(name, _finite(pts)) for name, pts in (right_series or {}).items()]
    plots = [(n, p, LEFT_COLORS[i % len(LEFT_COLORS)], False) for i, (n, p) in enumerate(left)]
    plots += [(n, p, RIGHT_COLORS[i % len(RIGHT_COLORS)], True) for i, (n, p) in enumerate(right)]
    size = (int(size[0]), int(size[1]))
    k = 2 if isinstance(image.font(13), ImageFont.FreeTypeFont) else 1
    font, title_font = image.font(13 * k), image.font(17 * k)
    width, height = size[0] * k, size[1] * k
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)

    # Axis ranges and ticks.
    xs = np.concatenate([pts[:, 0] for _, pts in left + right] + [np.empty(0)])
    x_lo, x_hi = (float(xs.min()), float(xs.max())) if len(xs) else (0.0, 1.0)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - max(1.0, abs(x_lo) * 0.1), x_hi + max(1.0, abs(x_hi) * 0.1)
    x_lo, _, x_step, x_ticks = nice_ticks(x_lo, x_hi)
    x_ticks = [t for t in x_ticks if t <= x_hi + 1e-9 * x_step]
    y_lo, y_hi, y_step, y_ticks = nice_ticks(*_left_range([pts for _, pts in left]))
    y_labels = [_label(t, y_step) for t in y_ticks]

    # Layout: title, legend, plot box, with tick labels and the x label around it.
    pad, text_h = 12 * k, _text_size(draw, "0%Ag", font)[1]
    plot_l = pad + max(_text_size(draw, s, font)[0] for s in y_labels) + 10 * k
    plot_r = width - (pad + _text_size(draw, "100%", font)[0] + 10 * k if right_series is not None
                      else 24 * k)
    top = pad
    if title:
        _text(draw, (width / 2, top), title, title_font, "mt")
        top += _text_size(draw, title, title_font)[1] + 10 * k
    top = _legend(draw, plots, font, k, plot_l, plot_r, top) + 10 * k
    plot_t = top + text_h // 2
    plot_b = max(plot_t + 10 * k, height - (pad + 2 * text_h + 16 * k))

    def px(x):
        return plot_l + (x - x_lo) / (x_hi - x_lo) * (plot_r - plot_l)

    def py(y, lo=y_lo, hi=y_hi):
        y = np.clip(y, lo, hi)  # clip spikes to the top edge
        return plot_b - (y - lo) / (hi - lo) * (plot_b - plot_t)

    # Grid, ticks and tick labels.
    for t, s in zip(y_ticks, y_labels):
        y = py(t)
        draw.line([(plot_l, y), (plot_r, y)], fill=GRID, width=k)
        draw.line([(plot_l - 5 * k, y), (plot_l, y)], fill=AXIS, width=k)
        _text(draw, (plot_l - 8 * k, y), s, font, "rm")
    for t in x_ticks:
        x = px(t)
        draw.line([(x, plot_t), (x, plot_b)], fill=GRID, width=k)
        draw.line([(x, plot_b), (x, plot_b + 5 * k)], fill=AXIS, width=k)
        _text(draw, (x, plot_b + 8 * k), _label(t, x_step), font, "mt")
    if right_series is not None:
        for i in range(6):
            y = py(i / 5, 0.0, 1.0)
            draw.line([(plot_r, y), (plot_r + 5 * k, y)], fill=AXIS, width=k)
            _text(draw, (plot_r + 8 * k, y), f"{i * 20}%", font, "lm")
    if x_label:
        _text(draw, ((plot_l + plot_r) / 2, height - pad), x_label, font, "mb")

    # Data: left series as lines (thin when jagged), right series as lines with markers.
    for _, pts, color, is_right in plots:
        pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
        x, y = px(pts[:, 0]), py(pts[:, 1], 0.0, 1.0) if is_right else py(pts[:, 1])
        jagged = np.abs(np.diff(y)).sum() > 6 * (plot_b - plot_t)
        if len(x) > 1:
            keep = _columns(x, y)
            draw.line(list(zip(x[keep].tolist(), y[keep].tolist())), fill=color,
                      width=k if jagged else 2 * k, joint="curve")
        if is_right or len(x) == 1:
            r = 4.5 * k
            for cx, cy in zip(x.tolist(), y.tolist()):
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color, outline=BACKGROUND,
                             width=k)
    draw.rectangle([plot_l, plot_t, plot_r, plot_b], outline=AXIS, width=k)
    if not len(xs):
        _text(draw, ((plot_l + plot_r) / 2, (plot_t + plot_b) / 2), "no data yet", title_font,
              "mm", fill=(120, 120, 120))
    if k > 1:
        img = img.resize(size, getattr(Image, "Resampling", Image).BOX)
    _save_atomic(img, path)
    return path
