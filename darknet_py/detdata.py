"""Detection training data (pj:src/data.c load_data_detection), loaded in a background thread.

Per image, as Darknet: a canvas of the network size filled with 0.5; a random aspect change of up
to ``jitter``; the image resized to (nw, nh) and placed at a random offset; hue / saturation /
exposure distortion; a horizontal flip with probability 1/2; the YOLO boxes moved, clipped to
[0, 1] and dropped when smaller than 0.001.  Truth rows are (x, y, w, h, class), at most
``max_boxes`` per image (shuffled first), the rest zeros.
"""

import os

import numpy as np

from .data import open_image, read_lines
from .errors import DarknetError
from .labels import label_path_for, read_labels


class DetectionSet:
    def __init__(self, list_path, classes, max_boxes=90):
        self.list_path = list_path
        self.paths = read_lines(list_path, "image list")
        self.classes, self.max_boxes = classes, max_boxes
        self.boxes = []
        problems = []
        for p in self.paths:
            if not os.path.exists(p):
                problems.append(f"{p}: image does not exist")
                self.boxes.append(np.zeros((0, 5), np.float32))
                continue
            lp = label_path_for(p)
            if not os.path.exists(lp):
                problems.append(f"{lp}: label file missing for {p}")
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

    def batch(self, indexes, shape, rng, jitter=0.2, hue=0.0, saturation=1.0, exposure=1.0,
              flip=True, letterbox=True):
        """Augmented images and truths; images are prepared in parallel threads, each with its
        own generator drawn from ``rng``, so the result does not depend on the thread count."""
        c, h, w = shape
        x = np.empty((len(indexes), c, h, w), np.float32)
        truth = np.zeros((len(indexes), self.max_boxes * 5), np.float32)
        seeds = rng.integers(0, 2 ** 63, len(indexes))

        def one(k):
            r = np.random.default_rng(seeds[k])
            i = indexes[k]
            x[k], rows = augment(self.paths[i], self.boxes[i], (c, h, w), r, jitter, hue,
                                 saturation, exposure, flip, letterbox)
            rows = rows[r.permutation(len(rows))][:self.max_boxes]
            truth[k, :rows.size] = rows.ravel()

        list(_pool().map(one, range(len(indexes))))
        return x, truth

    def plain(self, index, shape):
        """The image letterboxed for evaluation, and its boxes."""
        from .detect import letterbox, load_image_color
        image = load_image_color(self.paths[index])
        c, h, w = shape
        return letterbox(image, w, h), image.shape[2], image.shape[1], self.boxes[index]


_POOL = None


def _pool():
    """Threads for image decoding and resizing (Pillow releases the GIL for both)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                   thread_name_prefix="darknet_py-data")
    return _POOL


def rand_scale(rng, s):
    """Darknet's rand_scale: u ~ U(1, s), or 1/u with probability 1/2."""
    u = rng.uniform(1, s) if s > 1 else 1.0
    return u if rng.random() < 0.5 else 1.0 / u


def augment(path, boxes, shape, rng, jitter, hue, saturation, exposure, flip, letterbox=True):
    """One training image: pj's placement (letterbox=True: aspect jitter, resize, random offset
    on a 0.5 canvas) or AlexeyAB's stretch (letter_box=0: a crop jittered by up to ``jitter`` of
    each side, resized to the network size).  Returns (c, h, w) floats and YOLO rows."""
    from PIL import Image
    c, h, w = shape
    with open_image(path) as im:
        im = im.convert("RGB" if c == 3 else "L")
        iw, ih = im.size
        fill = 127 if c == 1 else (127, 127, 127)
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
            canvas = Image.new(im.mode, (w, h), fill)
            canvas.paste(im.resize((nw, nh), Image.BILINEAR), (dx, dy))
        else:
            pl, pr = (int(rng.uniform(-jitter, jitter) * iw) for _ in range(2))
            pt, pb = (int(rng.uniform(-jitter, jitter) * ih) for _ in range(2))
            cw, chh = max(1, iw - pl - pr), max(1, ih - pt - pb)
            crop = Image.new(im.mode, (cw, chh), fill)
            crop.paste(im, (-pl, -pt))
            canvas = crop.resize((w, h), Image.BILINEAR)
            nw, nh = w * iw / cw, h * ih / chh           # the whole image's size on the canvas
            dx, dy = -pl * w / cw, -pt * h / chh
    if c == 3 and (hue or saturation != 1 or exposure != 1):
        # h += hue shift (mod 256), s *= saturation scale, v *= exposure scale, each clipped to
        # a byte: a function of the byte value alone, so applied as 256-entry tables by Pillow
        v = np.arange(256, dtype=np.float32)
        h_lut = (v + np.float32(rng.uniform(-hue, hue) * 256)) % 256
        s_lut = v * np.float32(rand_scale(rng, saturation))
        v_lut = v * np.float32(rand_scale(rng, exposure))
        lut = np.clip(np.concatenate([h_lut, s_lut, v_lut]), 0, 255).astype(np.uint8)
        canvas = canvas.convert("HSV").point(lut.tolist()).convert("RGB")
    a = np.asarray(canvas)
    a = (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).astype(np.float32)
    a /= np.float32(255)
    flipped = flip and rng.random() < 0.5
    if flipped:
        a = a[:, :, ::-1]
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
    return np.ascontiguousarray(a), rows.astype(np.float32)
