"""A synthetic detection dataset: coloured circles, squares, triangles and stars on textured,
noisy backgrounds, with YOLO label files -- small enough to train a detector in minutes.

    from darknet_py.data.shapes import make_shapes
    make_shapes("data/shapes", 1000)        # or: darknet_py data shapes data/shapes --n 1000

Layout written under OUT (the PascalVOC layout, which both pjreddie's and AlexeyAB's label-path
rules map correctly -- ``JPEGImages`` -> ``labels``, see ``labels.py``)::

    OUT/JPEGImages/000000.jpg ...   images (JPEG quality 90 without chroma subsampling, so thin
                                    star tips keep their colour; or PNG: image_format="png")
    OUT/labels/000000.txt ...       one line per object: class x_center y_center width height
    OUT/shapes.names                circle, square, triangle, star (class ids 0..3)
    OUT/shapes.data                 classes=4, train=, valid=, names=, backup=backup/
    OUT/train.txt, OUT/valid.txt    image paths, one a line

Paths inside ``shapes.data`` and the lists are written the way OUT was given: a relative OUT
gives paths relative to the working directory at generation time (run from the repository root
with ``data/shapes`` and they work from the repository root, as Darknet resolves them from the
working directory); an absolute OUT (or ``absolute=True``) gives absolute paths that work from
anywhere.  ``backup=backup/`` is relative to the working directory, as in ``data/mnist.data``.
If a parent directory's name would trip Darknet's substring rules (e.g. ``my_images`` or
``raw_data`` for pjreddie's ``images``/``raw`` replacements), the summary's ``warnings`` say so.

Scenes: 1 to 5 objects, each 8% to 45% of the shorter image side across (the longer side of its
tight box), drawn without anti-aliasing so a box is exactly the extent of the object's pixels.
Later objects may overlap earlier ones but must leave at least half of each earlier object
visible and must not cover any pixel on an earlier object's box edges -- so every box is tight to
its *visible* pixels too.  Object colours are saturated and kept away from the background under
them and from the objects they touch; backgrounds are two-colour gradients plus one texture
(smooth blobs, stripes, checks or grain); all of it gets Gaussian pixel noise.  Everything is
drawn from ``numpy.random.default_rng([seed, index])`` per image, so image i is the same whatever
``n`` is, and a dataset is identical for the same seed (same Pillow build).
"""

import argparse
import colorsys
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASSES", "add_shapes_arguments", "draw_labels", "image_rng", "main", "make_shapes",
           "render_scene", "run_shapes"]

CLASSES = ("circle", "square", "triangle", "star")
_MIN_COLOR_DISTANCE = 90.0


def image_rng(seed, index):
    """The random generator of image ``index`` of the dataset made with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def _polygon(cls, rng):
    """Unit-size vertices (m, 2) of a square, triangle or star, randomly rotated."""
    if cls == 1:
        base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        angle = rng.uniform(0, np.pi / 2)
    elif cls == 2:
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        base = np.stack([np.cos(a), np.sin(a)], 1) * rng.uniform(0.9, 1.1, (3, 1))
        angle = rng.uniform(0, 2 * np.pi)
    else:
        inner = rng.uniform(0.38, 0.5)
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        base = np.stack([np.cos(a) * r, np.sin(a) * r], 1)
        angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    return base @ np.array([[c, s], [-s, c]])


def _shape_mask(cls, extent, rng):
    """A tight boolean mask of a shape whose larger side is about ``extent`` pixels."""
    pad = 2
    if cls == 0:
        d = max(3, int(round(extent)))
        im = Image.new("L", (d + 2 * pad, d + 2 * pad), 0)
        ImageDraw.Draw(im).ellipse([pad, pad, pad + d - 1, pad + d - 1], fill=255)
    else:
        v = _polygon(cls, rng)
        v -= v.min(axis=0)
        v *= (max(3.0, extent) - 1) / v.max()
        v += pad
        size = int(np.ceil(v.max())) + pad + 1
        im = Image.new("L", (size, size), 0)
        ImageDraw.Draw(im).polygon([tuple(p) for p in v], fill=255)
    m = np.asarray(im) > 0
    rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
    return m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _background(rng, w, h):
    """A float32 planar (3, H, W) background: a two-colour gradient plus one texture."""
    c1, c2 = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    t = x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle))
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    bg = c1[:, None, None] + (c2 - c1)[:, None, None] * t[None]
    kind = int(rng.integers(4))
    amp = np.float32(rng.uniform(10, 35))
    if kind == 0:                                   # smooth colour blobs
        g = int(rng.integers(3, 9))
        small = Image.fromarray(rng.integers(0, 256, (g, g, 3), dtype=np.uint8))
        blobs = np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.float32)
        bg += (blobs.transpose(2, 0, 1) - 128) * (amp / 128)
    elif kind == 1:                                 # stripes
        f = rng.uniform(3, 16)
        b = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * f * (x * np.float32(np.cos(b)) + y * np.float32(np.sin(b)))
                      + np.float32(rng.uniform(0, 2 * np.pi)))
        bg += (amp * rng.uniform(-1, 1, 3).astype(np.float32))[:, None, None] * wave[None]
    elif kind == 2:                                 # checks
        fx, fy = rng.uniform(2, 10, 2)
        check = np.sign(np.sin(2 * np.pi * fx * x) * np.sin(2 * np.pi * fy * y)).astype(np.float32)
        bg += (amp * 0.6 * rng.uniform(-1, 1, 3).astype(np.float32))[:, None, None] * check[None]
    else:                                           # blocky grain
        gx = int(rng.integers(6, 33))
        gy = max(2, int(round(gx * h / w)))
        small = Image.fromarray(rng.integers(0, 256, (gy, gx), dtype=np.uint8))
        grain = np.asarray(small.resize((w, h), Image.NEAREST), dtype=np.float32)
        bg += ((grain - 128) * (amp / 192))[None]
    return bg


def _pick_color(rng, avoid):
    """A saturated colour at least _MIN_COLOR_DISTANCE from every colour in ``avoid``
    (else the farthest of the tries)."""
    best, best_d = None, -1.0
    for _ in range(12):
        rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.55, 1.0),
                                           rng.uniform(0.45, 1.0))) * 255
        d = min((float(np.linalg.norm(rgb - a)) for a in avoid), default=1e9)
        if d >= _MIN_COLOR_DISTANCE:
            return rgb
        if d > best_d:
            best, best_d = rgb, d
    return best


def render_scene(rng, size=(256, 256), max_objects=5, min_frac=0.08, max_frac=0.45,
                 min_visible=0.5):
    """Draw one scene with ``rng``: ``(image uint8 (H, W, 3), objects)``.

    Each object is a dict: ``class_id``, ``name``, ``box`` = (x0, y0, x1, y1) in pixels with x1,
    y1 exclusive (the tight extent of its pixels), ``color`` (r, g, b floats before noise) and
    ``mask``, the object's *visible* pixels inside its box (bool, (y1 - y0, x1 - x0)).
    """
    w, h = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    canvas = _background(rng, w, h)
    owner = np.full((h, w), -1, dtype=np.int16)
    objects = []
    target = int(rng.integers(1, max_objects + 1))
    attempts = 0
    while len(objects) < target and attempts < 25 * target:
        attempts += 1
        cls = int(rng.integers(len(CLASSES)))
        m = _shape_mask(cls, rng.uniform(min_frac, max_frac) * min(w, h), rng)
        mh, mw = m.shape
        if mh > h or mw > w:
            continue
        y0, x0 = int(rng.integers(0, h - mh + 1)), int(rng.integers(0, w - mw + 1))
        region = owner[y0:y0 + mh, x0:x0 + mw]
        hit = region[m]
        hit = hit[hit >= 0]
        ok = True
        under = {}
        if hit.size:
            ids, counts = np.unique(hit, return_counts=True)
            for j, cnt in zip(ids.tolist(), counts.tolist()):
                o = objects[j]
                if o["visible"] - cnt < min_visible * o["area"]:
                    ok = False
                    break
                ey, ex = o["edge"]
                iy, ix = ey - y0, ex - x0
                inside = (iy >= 0) & (iy < mh) & (ix >= 0) & (ix < mw)
                if inside.any() and m[iy[inside], ix[inside]].any():
                    ok = False
                    break
                under[j] = cnt
        if not ok:
            continue
        patch = canvas[:, y0:y0 + mh, x0:x0 + mw]
        avoid = [patch[:, m].mean(axis=1)] + [np.array(objects[j]["color"]) for j in under]
        color = _pick_color(rng, avoid)
        patch[:, m] = color.astype(np.float32)[:, None]
        region[m] = len(objects)
        for j, cnt in under.items():
            objects[j]["visible"] -= cnt
        edge = np.zeros_like(m)
        edge[0], edge[-1], edge[:, 0], edge[:, -1] = m[0], m[-1], m[:, 0], m[:, -1]
        ey, ex = np.nonzero(edge)
        objects.append({"class_id": cls, "name": CLASSES[cls],
                        "box": (x0, y0, x0 + mw, y0 + mh), "color": tuple(float(c) for c in color),
                        "area": int(m.sum()), "visible": int(m.sum()),
                        "edge": (ey + y0, ex + x0)})
    # pixel noise: triangular (sum of two uniform bytes), standard deviation sigma; faster
    # than Gaussian draws and just as good for this purpose
    sigma = np.float32(rng.uniform(1.0, 6.0))
    u = rng.integers(0, 256, (2, 3, h, w), dtype=np.uint8)
    noise = u[0].astype(np.int16)
    noise += u[1]
    canvas += (noise - np.float32(255)) * (sigma / np.float32(104.1))
    canvas += np.float32(0.5)
    np.clip(canvas, 0, 255, out=canvas)
    image = np.ascontiguousarray(canvas.astype(np.uint8).transpose(1, 2, 0))
    out = []
    for i, o in enumerate(objects):
        x0, y0, x1, y1 = o["box"]
        out.append({"class_id": o["class_id"], "name": o["name"], "box": o["box"],
                    "color": o["color"], "mask": owner[y0:y1, x0:x1] == i})
    return image, out


def _label_lines(objects, w, h):
    lines = []
    for o in objects:
        x0, y0, x1, y1 = o["box"]
        lines.append(f"{o['class_id']} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                     f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n")
    return "".join(lines)


def _write_one(args):
    seed, index, size, image_path, label_path, image_format, quality = args
    image, objects = render_scene(image_rng(seed, index), size)
    im = Image.fromarray(image)
    if image_format == "png":
        im.save(image_path, format="PNG", compress_level=1)
    else:
        im.save(image_path, format="JPEG", quality=quality, subsampling=0)
    with open(label_path, "w", newline="\n") as f:
        f.write(_label_lines(objects, image.shape[1], image.shape[0]))
    return [o["class_id"] for o in objects]


def _parse_size(size):
    if isinstance(size, str):
        parts = size.lower().replace(",", "x").split("x")
        size = tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0])
    if np.isscalar(size):
        size = (int(size), int(size))
    w, h = int(size[0]), int(size[1])
    if w < 32 or h < 32:
        raise ValueError(f"image size {w}x{h} is too small (at least 32x32)")
    return w, h


def make_shapes(out_dir, n, size=(256, 256), seed=0, valid_fraction=0.2, image_format="jpg",
                quality=90, absolute=None, workers=1):
    """Write ``n`` shape images, their labels, ``shapes.names``, ``shapes.data``, ``train.txt``
    and ``valid.txt`` under ``out_dir`` (see the module docstring).

    ``size`` is (width, height), an int, or ``"WxH"``.  ``round(n * valid_fraction)`` images,
    chosen with the seed, go to ``valid.txt``, the rest to ``train.txt``.  ``absolute=None`` keeps
    paths relative when ``out_dir`` is relative.  ``workers > 1`` renders in that many processes
    (same files).  Returns a summary dict: ``data``, ``names``, ``train``, ``valid`` (paths as
    written), ``images``, ``train_images``, ``valid_images``, ``objects``, ``objects_per_class``,
    ``seconds``, ``warnings``.
    """
    from .labels import ab_label_path, pj_label_path

    start = time.perf_counter()
    n = int(n)
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0 <= valid_fraction < 1:
        raise ValueError("valid_fraction must be in [0, 1)")
    image_format = image_format.lower().lstrip(".")
    if image_format == "jpeg":
        image_format = "jpg"
    if image_format not in ("jpg", "png"):
        raise ValueError("image_format must be 'jpg' or 'png'")
    w, h = _parse_size(size)
    out_dir = os.fspath(out_dir)
    if absolute is None:
        absolute = os.path.isabs(out_dir)
    base = os.path.abspath(out_dir) if absolute else os.path.normpath(out_dir)
    img_dir = os.path.join(base, "JPEGImages")
    lbl_dir = os.path.join(base, "labels")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lbl_dir, exist_ok=True)

    digits = max(6, len(str(n - 1)))
    image_paths = [os.path.join(img_dir, f"{i:0{digits}d}.{image_format}") for i in range(n)]
    label_paths = [os.path.join(lbl_dir, f"{i:0{digits}d}.txt") for i in range(n)]
    jobs = [(seed, i, (w, h), image_paths[i], label_paths[i], image_format, quality)
            for i in range(n)]
    if workers and workers > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            classes_per_image = list(ex.map(_write_one, jobs, chunksize=max(1, n // (8 * workers))))
    else:
        classes_per_image = [_write_one(j) for j in jobs]

    n_valid = int(round(n * valid_fraction))
    split_rng = np.random.default_rng([int(seed), 0x5EED, n])
    valid_set = set(split_rng.choice(n, size=n_valid, replace=False).tolist()) if n_valid else set()
    train_list = os.path.join(base, "train.txt")
    valid_list = os.path.join(base, "valid.txt")
    names_path = os.path.join(base, "shapes.names")
    data_path = os.path.join(base, "shapes.data")
    with open(train_list, "w", newline="\n") as f:
        f.writelines(p + "\n" for i, p in enumerate(image_paths) if i not in valid_set)
    with open(valid_list, "w", newline="\n") as f:
        f.writelines(p + "\n" for i, p in enumerate(image_paths) if i in valid_set)
    with open(names_path, "w", newline="\n") as f:
        f.writelines(c + "\n" for c in CLASSES)
    with open(data_path, "w", newline="\n") as f:
        f.write(f"classes={len(CLASSES)}\ntrain={train_list}\nvalid={valid_list}\n"
                f"names={names_path}\nbackup=backup/\n")

    warnings = []
    for rule, fn in (("pjreddie", pj_label_path), ("AlexeyAB", ab_label_path)):
        got = fn(image_paths[0])
        if got != label_paths[0]:
            warnings.append(f"{rule}/darknet would look for the labels of {image_paths[0]} at "
                            f"{got}, not {label_paths[0]}: rename the directories above "
                            f"{base} or use another OUT")
    per_class = np.bincount(np.array([c for cs in classes_per_image for c in cs], dtype=np.int64),
                            minlength=len(CLASSES)).tolist()
    return {
        "data": data_path, "names": names_path, "train": train_list, "valid": valid_list,
        "images": n, "train_images": n - len(valid_set), "valid_images": len(valid_set),
        "objects": int(sum(per_class)), "objects_per_class": per_class,
        "size": (w, h), "seconds": time.perf_counter() - start, "warnings": warnings,
    }


def draw_labels(image, labels, names=CLASSES, width=2):
    """An RGB PIL image with ``labels`` ((n, 5) class, x, y, w, h relative) drawn as boxes."""
    im = image.copy() if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    im = im.convert("RGB")
    draw = ImageDraw.Draw(im)
    palette = [(255, 0, 0), (0, 200, 0), (0, 80, 255), (255, 200, 0), (255, 0, 255),
               (0, 220, 220)]
    W, H = im.size
    for row in np.asarray(labels, dtype=np.float64).reshape(-1, 5):
        c = int(row[0])
        x0, y0 = (row[1] - row[3] / 2) * W, (row[2] - row[4] / 2) * H
        x1, y1 = (row[1] + row[3] / 2) * W, (row[2] + row[4] / 2) * H
        col = palette[c % len(palette)]
        # PIL's rectangle includes x1, y1: step back one pixel to outline the tight box
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=col, width=width)
        name = names[c] if names is not None and c < len(names) else str(c)
        draw.text((x0 + 2, max(0, y0 - 11)), name, fill=col)
    return im


def add_shapes_arguments(p):
    """The command-line options of ``darknet_py data shapes`` (shared with darknet_py.commands)."""
    p.add_argument("out", help="output directory (relative paths stay relative to the working "
                               "directory in shapes.data and the lists)")
    p.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    p.add_argument("--size", default="256", help="image size: S or WxH (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--valid-fraction", type=float, default=0.2,
                   help="fraction of images listed in valid.txt (default 0.2)")
    p.add_argument("--format", dest="image_format", default="jpg", choices=("jpg", "png"))
    p.add_argument("--absolute", action="store_true", help="write absolute paths")
    p.add_argument("--workers", type=int, default=0,
                   help="processes to render with (default 0: one per CPU, at most 8, when there "
                        "are 4 CPUs or more and 200 images or more; the files are the same "
                        "either way)")
    return p


def run_shapes(args):
    """Run ``darknet_py data shapes`` with parsed ``args``; returns the exit status."""
    workers = args.workers
    if workers < 0:
        print(f"darknet_py data shapes: error: argument --workers: expected a whole number >= 0, "
              f"not {workers}", file=sys.stderr)
        return 2
    if workers == 0:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:
            cpus = os.cpu_count() or 1
        workers = min(8, cpus) if args.n >= 200 and cpus >= 4 else 1
    try:
        s = make_shapes(args.out, args.n, size=args.size, seed=args.seed,
                        valid_fraction=args.valid_fraction, image_format=args.image_format,
                        absolute=args.absolute or None, workers=workers)
    except ValueError as e:
        print(f"darknet_py data shapes: error: {e}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{name} {c}" for name, c in zip(CLASSES, s["objects_per_class"]))
    print(f"shapes: {s['images']} images {s['size'][0]}x{s['size'][1]} ({s['train_images']} train, "
          f"{s['valid_images']} valid), {s['objects']} objects ({counts}) in {s['seconds']:.1f} s")
    print(f"data file: {s['data']}")
    for wmsg in s["warnings"]:
        print(f"warning: {wmsg}", file=sys.stderr)
    return 0


def main(argv=None):
    """``darknet_py data shapes OUT --n N [--size S] [--seed K]``."""
    p = argparse.ArgumentParser(
        prog="darknet_py data shapes",
        description="Write a synthetic detection dataset of circles, squares, triangles and stars "
                    "(images, YOLO labels, shapes.names, shapes.data, train.txt, valid.txt).")
    return run_shapes(add_shapes_arguments(p).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
