"""Detection training data (pj:src/data.c load_data_detection), prepared by threads or by
worker processes writing into shared memory (data/workers.py).

Per image, as Darknet: a canvas of the network size filled with 0.5; a random aspect change of up
to ``jitter``; the image resized to (nw, nh) and placed at a random offset; hue / saturation /
exposure distortion; a horizontal flip with probability 1/2; the YOLO boxes moved, clipped to
[0, 1] and dropped when smaller than 0.001.  Truth rows are (x, y, w, h, class), at most
``max_boxes`` per image (shuffled first), the rest zeros.
"""

import os

import numpy as np
from PIL import Image

from ..errors import DarknetError
from ..image import apply_hsv, hsv_tables, letterbox, load_image_color, open_image
from .datacfg import read_lines
from .datasets import thread_pool
from .labels import label_path_for, read_labels
from .rawimages import RawImages
from .workers import ThreadBatch, WorkerPool


class DetectionSet:
    def __init__(self, list_path, classes, max_boxes=90):
        self.list_path = list_path
        self.paths = read_lines(list_path, "image list")
        if not self.paths:
            raise DarknetError("the image list is empty: it must name at least one image, one "
                               "path a line", list_path)
        self.classes, self.max_boxes = classes, max_boxes
        self._pools = {}             # worker count -> its WorkerPool, started on first use
        self.boxes = []
        problems = []
        for p in self.paths:
            lp = label_path_for(p) if os.path.exists(p) else None
            if lp is None or not os.path.exists(lp):
                problems.append(f"{p}: image does not exist" if lp is None
                                else f"{lp}: label file missing for {p}")
                self.boxes.append(np.zeros((0, 5), np.float32))
                continue
            boxes, issues = read_labels(lp, classes)
            # boxes that stick out of the image a little are kept and clipped (as Darknet does);
            # only problems that drop a line stop training
            problems.extend(str(i) for i in issues if i.dropped)
            self.boxes.append(boxes)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DarknetError(f"{len(problems)} problem(s) in the training data; first: "
                               f"{problems[0]}{more}; run 'darknet_py data check' for the list",
                               list_path)

    def __len__(self):
        return len(self.paths)

    def submit(self, indexes, shape, rng, jitter=0.2, hue=0.0, saturation=1.0, exposure=1.0,
               flip=True, letterbox=True, mosaic=False, mixup=False, processes=None,
               keep_aspect=False, mosaic_bound=True, resize=1.0, raw=False):
        """Start preparing augmented images and truths: a pending batch whose ``result()`` is
        (x, truth) and whose ``release()`` hands its buffers back.  Threads prepare it, or with
        ``processes`` a pool of that many worker processes (which the GIL does not limit) writing
        into shared memory.  Each image has its own generator, seeded from ``rng``: the result
        depends on neither.  ``mosaic``: half of the images are AlexeyAB's 4-image mosaics (the
        batch's image and three drawn from the whole set); ``mixup``: half are AlexeyAB's mixup,
        the image blended half and half with another one drawn from the set, with the boxes of
        both.  ``keep_aspect``, ``resize`` and ``mosaic_bound``: see ``augment`` and
        ``mosaic_of``.  ``raw``: hand the images over as bytes with their colour tables, for
        the GPU to finish (data/rawimages.py; colour images without mosaic or mixup only,
        else ignored)."""
        seeds = rng.integers(0, 2 ** 63, len(indexes))
        raw = raw and shape[0] == 3 and not mosaic and not mixup
        options = dict(shape=tuple(shape), jitter=jitter, hue=hue, saturation=saturation,
                       exposure=exposure, flip=flip, letterbox=letterbox, mosaic=mosaic,
                       mixup=mixup, max_boxes=self.max_boxes, keep_aspect=keep_aspect,
                       mosaic_bound=mosaic_bound, resize=resize)
        items = [(int(indexes[k]), int(seeds[k])) for k in range(len(indexes))]
        if processes:
            return self._workers(processes).submit(items, options, shape, self.max_boxes * 5,
                                                   raw)
        return ThreadBatch(thread_pool(), fill_row, (self.paths, self.boxes), items, options,
                           shape, self.max_boxes * 5, raw)

    def batch(self, indexes, shape, rng, jitter=0.2, hue=0.0, saturation=1.0, exposure=1.0,
              flip=True, letterbox=True, mosaic=False, mixup=False, processes=None,
              keep_aspect=False, mosaic_bound=True, resize=1.0):
        """``submit``'s batch, waited for: (x, truth) arrays of its own."""
        pending = self.submit(indexes, shape, rng, jitter, hue, saturation, exposure, flip,
                              letterbox, mosaic, mixup, processes, keep_aspect, mosaic_bound,
                              resize)
        try:
            x, truth = pending.result()
            return (x.copy(), truth.copy()) if processes else (x, truth)
        finally:
            pending.release()

    def close(self):
        """Stop this set's worker processes (they also stop at exit)."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _workers(self, processes):
        """This set's pool of ``processes`` workers, started on first use."""
        if processes not in self._pools:
            self._pools[processes] = WorkerPool(processes, worker_state,
                                                (self.paths, self.boxes), fill_row)
        return self._pools[processes]

    def plain(self, index, shape):
        """The image letterboxed for evaluation, and its boxes."""
        image = load_image_color(self.paths[index])
        c, h, w = shape
        return letterbox(image, w, h), image.shape[2], image.shape[1], self.boxes[index]


def prepare(paths, boxes, i, seed, options, out=None):
    """Training image i with its generator's draws (the same in a thread or a process):
    a plain augmented image, a mosaic or a mixup; returns (image, shuffled truth rows), the
    image written into ``out`` when given."""
    r = np.random.default_rng(seed)
    o = options

    def load(j, into=None):
        return augment(paths[j], boxes[j], o["shape"], r, o["jitter"], o["hue"],
                       o["saturation"], o["exposure"], o["flip"], o["letterbox"],
                       placement=True, out=into, keep_aspect=o.get("keep_aspect", False),
                       resize=o.get("resize", 1.0))

    if o["mosaic"] and r.random() < 0.5:
        others = r.integers(0, len(paths), 3)
        parts = [load(j) for j in [i, *others]]
        order = r.permutation(4)                      # the batch's image in any quadrant
        image, rows = mosaic_of([parts[q] for q in order], r, out,
                                o.get("mosaic_bound", True))
    elif o["mixup"] and r.random() < 0.5:
        (a, rows_a, _), (b, rows_b, _) = load(i), load(int(r.integers(len(paths))))
        image = np.add(a, b, out=out)
        image *= np.float32(0.5)
        rows = np.concatenate([rows_a, rows_b])
    else:
        image, rows, _ = load(i, out)
    return image, rows[r.permutation(len(rows))][:o["max_boxes"]]


def worker_state(paths, boxes):
    """What ``fill_row`` needs of the set, once in each worker process."""
    return paths, boxes


def fill_row(state, item, options, x_row, truth_row):
    """Image ``item`` = (index, seed) prepared into ``x_row`` (a row of the batch, in a
    worker's shared memory or the parent's array), its truth into ``truth_row``."""
    paths, boxes = state
    _, rows = prepare(paths, boxes, *item, options, out=x_row)
    truth_row[:] = 0
    truth_row[:rows.size] = rows.ravel()


def augment(path, boxes, shape, rng, jitter, hue, saturation, exposure, flip, letterbox=True,
            placement=False, out=None, keep_aspect=False, resize=1.0):
    """One training image: pj's placement (letterbox=True: aspect jitter, resize, random offset
    on a 0.5 canvas) or AlexeyAB's stretch (letter_box=0: a crop jittered by up to ``jitter`` of
    each side, resized to the network size); ``keep_aspect`` (AlexeyAB's letter_box=1, with
    letterbox=False): that crop first widened on both sides, by the same amount, to the
    network's aspect ratio (AB:src/data.c load_data_detection, ``if (letter_box)``).
    ``resize`` (AlexeyAB's [yolo] resize, AB's placement only): the crop's margins also moved
    by a random scale of the image (``resize_margins``), before ``keep_aspect``.  Returns (c, h, w) floats and YOLO rows
    (x, y, w, h, class), and with ``placement`` also where the image lies on the canvas:
    (left, top, right, bottom) in pixels, the rest being padding.  ``out``: a (c, h, w)
    float32 array to write the image into (a row of the batch), or a RawImages row: then the
    canvas bytes and the colour tables go there, the distortion left to the GPU."""
    c, h, w = shape
    deferred = isinstance(out, RawImages)
    tables = None
    with open_image(path) as im:
        im = im.convert("RGB" if c == 3 else "L")
        iw, ih = im.size
        fill = 127 if c == 1 else (127, 127, 127)
        distort = c == 3 and (hue or saturation != 1 or exposure != 1)
        if letterbox:
            dw, dh = jitter * iw, jitter * ih
            ar = (iw + rng.uniform(-dw, dw)) / (ih + rng.uniform(-dh, dh))
            if ar < 1:
                nh = h
                nw = max(1, int(nh * ar))
            else:
                nw = w
                nh = max(1, int(nw / ar))
            # pj rand_uniform(0, w - nw) swaps its bounds when the image is the larger
            dx = int(rng.uniform(min(0, w - nw), max(0, w - nw)))
            dy = int(rng.uniform(min(0, h - nh), max(0, h - nh)))
            placed, at = im.resize((nw, nh), Image.BILINEAR), (dx, dy)
            if distort:
                # the colour distortion maps each pixel alone: the visible part of the image
                # and the padding's colour distorted apart make the distorted canvas, without
                # converting the padding (a quarter of the canvas on average) to HSV and back
                box = (max(0, -dx), max(0, -dy), min(nw, w - dx), min(nh, h - dy))
                if box != (0, 0, nw, nh):
                    placed, at = placed.crop(box), (max(0, dx), max(0, dy))
                tables = hsv_tables(rng, hue, saturation, exposure)
                if not deferred:
                    placed = apply_hsv(placed, tables)
                    fill = apply_hsv(Image.new("RGB", (1, 1), fill), tables).getpixel((0, 0))
                distort = False
            canvas = Image.new(im.mode, (w, h), fill)
            canvas.paste(placed, at)
        else:
            pl, pr = (int(rng.uniform(-jitter, jitter) * iw) for _ in range(2))
            pt, pb = (int(rng.uniform(-jitter, jitter) * ih) for _ in range(2))
            if resize != 1:
                pl, pr, pt, pb = resize_margins(pl, pr, pt, pb, iw, ih, resize, rng.random(),
                                                rng.random())
            if keep_aspect:
                pl, pr, pt, pb = keep_aspect_crop(pl, pr, pt, pb, iw, ih, w, h)
            cw, chh = max(1, iw - pl - pr), max(1, ih - pt - pb)
            crop = Image.new(im.mode, (cw, chh), fill)
            crop.paste(im, (-pl, -pt))
            canvas = crop.resize((w, h), Image.BILINEAR)
            nw, nh = w * iw / cw, h * ih / chh           # the whole image's size on the canvas
            dx, dy = -pl * w / cw, -pt * h / chh
    if distort:
        tables = hsv_tables(rng, hue, saturation, exposure)       # distort_hsv's draws
        if not deferred:
            canvas = apply_hsv(canvas, tables)
    a = np.asarray(canvas)
    flipped = flip and rng.random() < 0.5
    if deferred:
        out.set(a[:, ::-1] if flipped else a, tables)
        a = out
    else:
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if flipped:
            a = a[:, :, ::-1]
        # byte / 255 in float32, flipped and laid out as (c, h, w) in one pass over the output
        a = np.divide(a, np.float32(255), out=np.empty((c, h, w), np.float32) if out is None
                      else out, dtype=np.float32)
    rows = boxes.astype(np.float64).copy()
    if len(rows):
        sx, sy = nw / w, nh / h
        left = (rows[:, 1] - rows[:, 3] / 2) * sx + dx / w
        right = (rows[:, 1] + rows[:, 3] / 2) * sx + dx / w
        top = (rows[:, 2] - rows[:, 4] / 2) * sy + dy / h
        bottom = (rows[:, 2] + rows[:, 4] / 2) * sy + dy / h
        if flipped:
            left, right = 1 - right, 1 - left
        left, right = np.clip(left, 0, 1), np.clip(right, 0, 1)
        top, bottom = np.clip(top, 0, 1), np.clip(bottom, 0, 1)
        out = np.stack([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top,
                        rows[:, 0]], axis=1)
        rows = out[(out[:, 2] >= 0.001) & (out[:, 3] >= 0.001)]
    else:
        rows = np.zeros((0, 5))
    rows = rows.astype(np.float32)
    if not placement:
        return a, rows
    left, right = max(0.0, dx), min(float(w), dx + nw)
    if flipped:
        left, right = w - right, w - left
    return a, rows, (left, max(0.0, dy), right, min(float(h), dy + nh))


def resize_margins(pl, pr, pt, pb, iw, ih, resize, r1, r2):
    """AlexeyAB's [yolo] resize: the crop margins of an ``iw x ih`` image moved by up to
    (1 - resize) / 2 of its size (growing the crop, the image shrinks) and, for resize > 1,
    up to (1 - 1/resize) / 2 (shrinking it); ``r1`` draws the left and top moves, ``r2`` the
    right and bottom ones (C's float32 and int truncation, AB:src/data.c load_data_detection)."""
    f = np.float32
    down = up = f(resize)
    if down > 1:
        down = f(1) / down
    if up < 1:
        up = f(1) / up
    lo_w, lo_h = (int(f(s) * (f(1) - f(1) / down) / f(2)) for s in (iw, ih))      # <= 0
    hi_w, hi_h = (int(f(s) * (f(1) - f(1) / up) / f(2)) for s in (iw, ih))        # >= 0
    if resize < 1:                                                              # down only
        hi_w = hi_h = 0

    def draw(lo, hi, r):                       # AB rand_precalc_random
        lo, hi = min(lo, hi), max(lo, hi)
        return f(r) * f(hi - lo) + f(lo)

    return (int(f(pl) + draw(lo_w, hi_w, r1)), int(f(pr) + draw(lo_w, hi_w, r2)),
            int(f(pt) + draw(lo_h, hi_h, r1)), int(f(pb) + draw(lo_h, hi_h, r2)))


def keep_aspect_crop(pl, pr, pt, pb, iw, ih, w, h):
    """AlexeyAB's letter_box=1 crop margins: those of an ``iw x ih`` image, shifted on both
    sides by half the padding that gives the crop the ``w x h`` network's aspect ratio (C's
    float32 ratios and truncation toward zero, AB:src/data.c load_data_detection)."""
    f = np.float32
    img_ar, net_ar = f(iw) / f(ih), f(w) / f(h)
    if img_ar / net_ar > 1:                  # too wide: taller crop
        delta = (f(iw) / net_ar - f(ih)) / f(2)
        return pl, pr, int(f(pt) - delta), int(f(pb) - delta)
    delta = (f(ih) * net_ar - f(iw)) / f(2)
    return int(f(pl) - delta), int(f(pr) - delta), pt, pb


def mosaic_of(parts, rng, out=None, bound=True):
    """AlexeyAB's mosaic (data.c load_data_detection, mosaic=1) of four augmented images
    ``(image, rows, placement)``: a split point uniform in [20%, 80%] of the width and height
    cuts the canvas into four quadrants (top-left, top-right, bottom-left, bottom-right); each
    takes the part of its image nearest the split, moved inward past the image's padding (AB's
    left/right/top/bot_shift).  Boxes move with their pixels and are clipped to their quadrant
    (``bound``: AB's mosaic_bound=1) or, with ``bound=False`` (AB's mosaic_bound=0), only to
    the canvas, so that a box may reach into a neighbour's pixels (AB:src/data.c
    blend_truth_mosaic); those under one pixel are dropped.  The image is written into ``out``
    when given."""
    c, h, w = parts[0][0].shape
    cut_x = int(rng.integers(w * 20 // 100, w * 80 // 100 + 1))
    cut_y = int(rng.integers(h * 20 // 100, h * 80 // 100 + 1))
    if out is None:
        out = np.empty((c, h, w), np.float32)
    kept = []
    for q, (img, rows, (left, top, right, bottom)) in enumerate(parts):
        east, south = q in (1, 3), q in (2, 3)
        qw, qh = (w - cut_x if east else cut_x), (h - cut_y if south else cut_y)
        # source corner: the east quadrants start at the image's left edge (past its padding),
        # the west ones end at its right edge; likewise vertically
        sx = min(cut_x, max(0, int(left))) if east else \
            w - cut_x - min(w - cut_x, max(0, int(w - right)))
        sy = min(cut_y, max(0, int(top))) if south else \
            h - cut_y - min(h - cut_y, max(0, int(h - bottom)))
        ox, oy = (cut_x if east else 0), (cut_y if south else 0)
        out[:, oy:oy + qh, ox:ox + qw] = img[:, sy:sy + qh, sx:sx + qw]
        if not len(rows):
            continue
        r = rows.astype(np.float64)
        x_lo, x_hi, y_lo, y_hi = (ox, ox + qw, oy, oy + qh) if bound else (0, w, 0, h)
        x0 = np.clip((r[:, 0] - r[:, 2] / 2) * w - sx + ox, x_lo, x_hi)
        x1 = np.clip((r[:, 0] + r[:, 2] / 2) * w - sx + ox, x_lo, x_hi)
        y0 = np.clip((r[:, 1] - r[:, 3] / 2) * h - sy + oy, y_lo, y_hi)
        y1 = np.clip((r[:, 1] + r[:, 3] / 2) * h - sy + oy, y_lo, y_hi)
        moved = np.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h,
                          r[:, 4]], axis=1)
        kept.append(moved[(x1 - x0 >= 1) & (y1 - y0 >= 1)])
    rows = np.concatenate(kept) if kept else np.zeros((0, 5))
    return out, rows.astype(np.float32)
