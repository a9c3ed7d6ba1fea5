"""AlexeyAB's training options: those darknet_py implements against references written from
AlexeyAB's C (plain loops), and those it does not, refused at their line by `cfg check` and at
the start of a training run."""

import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from conftest import rng_for_test
from darknet_py import Network
from darknet_py.cfg.check import check_cfg
from darknet_py.cfg.parser import parse_cfg_text
from darknet_py.data.detaug import augment, keep_aspect_crop, mosaic_of, resize_margins
from darknet_py.errors import CfgError, NotSupportedError
from darknet_py.nn.policies import current_rate
from darknet_py.train.detector import DetectorTrainer
from darknet_py.train.options import TrainOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NET = "[net]\nbatch=2\nwidth=32\nheight=32\nchannels=3\nmax_batches=100\n"
HEAD = ("[convolutional]\nfilters=12\nsize=1\nactivation=linear\n"
        "[yolo]\nmask=0,1\nnum=2\nanchors=8,8,16,16\nclasses=1\n")

# (section, option): each changes AlexeyAB's training and darknet_py does not implement it
REFUSED = [("net", "cutmix=1"), ("net", "blur=1"), ("net", "gaussian_noise=1"),
           ("net", "dynamic_minibatch=1"),
           ("net", "adversarial_lr=0.05"), ("net", "attention=1"), ("net", "contrastive=1"),
           ("yolo", "embedding_layer=-2")]


def cfg_with(option, section):
    """The small detector with ``option`` as the last line of ``section``; and its line."""
    if section == "net":
        text = NET + option + "\n" + HEAD
        return text, NET.count("\n") + 1
    text = NET + HEAD + option + "\n"
    return text, text.count("\n")


def data_file(tmp_path):
    (tmp_path / "train.txt").write_text("nothing.jpg\n")
    (tmp_path / "x.data").write_text(f"classes=1\ntrain={tmp_path / 'train.txt'}\n"
                                     f"backup={tmp_path / 'backup'}\n")
    return tmp_path / "x.data"


@pytest.mark.parametrize("section,option", REFUSED)
def test_cfg_check_and_training_refuse_an_unimplemented_option_at_its_line(tmp_path, section,
                                                                          option):
    text, line = cfg_with(option, section)
    path = tmp_path / "ab.cfg"
    path.write_text(text)
    key = option.split("=")[0]
    errors = [f for f in check_cfg(str(path)) if f.level == "error"]
    assert [(f.line, f.message.split(" ")[0]) for f in errors] == [(line, option)]
    assert "darknet_py does not implement it" in errors[0].message
    with pytest.raises(NotSupportedError) as e:
        DetectorTrainer(str(path), str(data_file(tmp_path)),
                        options=TrainOptions(device="cpu", seed=1, progress=False),
                        out=open(os.devnull, "w"))
    assert (e.value.path, e.value.line) == (str(path), line) and key in e.value.message
    assert not (tmp_path / "backup").exists()              # refused before anything is made


@pytest.mark.parametrize("section,option", [("net", "blur=0"),
                                            ("yolo", "objectness_smooth=0"),
                                            ("yolo", "resize=1")])
def test_the_values_that_ask_for_nothing_pass(tmp_path, section, option):
    text, _ = cfg_with(option, section)
    path = tmp_path / "ab.cfg"
    path.write_text(text)
    assert not [f for f in check_cfg(str(path)) if f.level == "error"]


def test_detector_train_exits_nonzero_with_one_line_naming_the_option(tmp_path):
    text, line = cfg_with("embedding_layer=-2", "yolo")
    (tmp_path / "ab.cfg").write_text(text)
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "darknet_py", "detector", "train",
                        str(data_file(tmp_path)), "ab.cfg", "--device", "cpu"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"darknet_py: ab.cfg:{line}: error: embedding_layer=-2 in [yolo] changes AlexeyAB's "
        "training")
    assert "Traceback" not in r.stderr


# -- [net] policy=sgdr -----------------------------------------------------------------------
def ab_sgdr(lr, lr_min, burn_in, power, cycle, mult, batch_num):
    """AB:src/network.c get_current_rate, case SGDR (and its burn-in), as written."""
    if batch_num < burn_in:
        return lr * math.pow(batch_num / burn_in, power)
    last_iteration_start, cycle_size = 0, cycle
    while last_iteration_start + cycle_size < batch_num:
        last_iteration_start += cycle_size
        cycle_size *= mult
    angle = float(batch_num - last_iteration_start) * 3.14159265 / cycle_size   # a double
    return lr_min + 0.5 * (lr - lr_min) * (1. + math.cos(angle))


@pytest.mark.parametrize("extra,cycle,mult", [("sgdr_cycle=7\nsgdr_mult=3\n", 7, 3),
                                              ("burn_in=5\n", 100, 2)])
def test_sgdr_policy_follows_alexeyabs_cosine_restarts(extra, cycle, mult):
    text = NET + f"policy=sgdr\nlearning_rate=0.01\nlearning_rate_min=0.0001\n{extra}" + HEAD
    net = Network(parse_cfg_text(text, "sgdr.cfg"), seed=0, warn=False)
    burn_in = 5 if "burn_in" in extra else 0
    for k in range(0, 120):
        assert current_rate(net.options, k) == pytest.approx(
            ab_sgdr(0.01, 0.0001, burn_in, 4, cycle, mult, k), rel=1e-7, abs=1e-12), k


# -- [yolo] delta_normalizer -----------------------------------------------------------------
def test_delta_normalizer_scales_the_delta_handed_back():
    """AB's backward_yolo_layer_gpu: state.delta += loss_scale * delta_normalizer * l.delta
    (loss_scale cancels in its update, see docs/notes.md)."""
    rng = rng_for_test()
    net = Network(parse_cfg_text(NET + HEAD + "delta_normalizer=0.25\n", "d.cfg"), seed=0,
                  warn=False)
    yolo = net.layers[-1]
    assert yolo.delta_normalizer == 0.25
    yolo.delta = rng.standard_normal((2, 12, 32, 32)).astype(np.float32)
    before = rng.standard_normal((2, 12, 32, 32)).astype(np.float32)
    state = types.SimpleNamespace(delta=before.copy())
    yolo.backward(state)
    expected = before.copy()
    for i in range(expected.size):                  # axpy_ongpu(n, a, x, 1, y, 1)
        expected.flat[i] += np.float32(0.25) * yolo.delta.flat[i]
    np.testing.assert_allclose(state.delta, expected, rtol=1e-6, atol=1e-7)


# -- [net] letter_box=1 in training ----------------------------------------------------------
def ab_letter_box(pleft, pright, ptop, pbot, ow, oh, w, h):
    """AB:src/data.c load_data_detection, ``if (letter_box)``: int margins, float ratios."""
    f = np.float32
    img_ar = f(ow) / f(oh)
    net_ar = f(w) / f(h)
    result_ar = img_ar / net_ar
    if result_ar > 1:
        oh_tmp = f(ow) / net_ar
        delta_h = (oh_tmp - f(oh)) / f(2)
        ptop = int(f(ptop) - delta_h)
        pbot = int(f(pbot) - delta_h)
    else:
        ow_tmp = f(oh) * net_ar
        delta_w = (ow_tmp - f(ow)) / f(2)
        pleft = int(f(pleft) - delta_w)
        pright = int(f(pright) - delta_w)
    return pleft, pright, ptop, pbot


def test_keep_aspect_margins_equal_alexeyabs_letter_box():
    rng = rng_for_test()
    for _ in range(500):
        ow, oh = (int(v) for v in rng.integers(8, 900, 2))
        w, h = (int(v) for v in rng.integers(1, 20, 2) * 32)
        margins = [int(v) for v in rng.integers(-200, 200, 4)]
        assert keep_aspect_crop(*margins, ow, oh, w, h) == \
            ab_letter_box(*margins, ow, oh, w, h)


def test_letter_box_1_pads_to_the_network_aspect_and_moves_the_boxes(tmp_path):
    """A 120x60 image into a 64x64 network, no jitter: AB's letter_box=1 crops 120x120
    (30 rows above and below the image), so the red box keeps its shape."""
    a = np.zeros((60, 120, 3), np.uint8)
    a[10:40, 30:90] = (255, 0, 0)
    Image.fromarray(a).save(tmp_path / "i.png")
    boxes = np.float32([[0, 60 / 120, 25 / 60, 60 / 120, 30 / 60]])
    x, rows = augment(str(tmp_path / "i.png"), boxes, (3, 64, 64), rng_for_test(), 0.0, 0.0,
                      1.0, 1.0, False, letterbox=False, keep_aspect=True)
    expected = [60 / 120, (25 + 30) / 120, 60 / 120, 30 / 120, 0]
    np.testing.assert_allclose(rows[0], expected, atol=1e-6)
    red = np.nonzero((x[0] > .9) & (x[2] < .1))
    ys, xs = red
    assert abs(ys.min() - 40 / 120 * 64) <= 1 and abs(ys.max() + 1 - 70 / 120 * 64) <= 1
    assert abs(xs.min() - 16) <= 1 and abs(xs.max() + 1 - 48) <= 1


def test_letter_box_1_with_mosaic_1_is_refused_as_alexeyab_does(tmp_path):
    path = tmp_path / "lb.cfg"
    path.write_text(NET + "letter_box=1\nmosaic=1\n" + HEAD)
    line = NET.count("\n") + 1
    said = [(f.line, f.message) for f in check_cfg(str(path)) if f.level == "error"]
    assert [n for n, _ in said] == [line] and "letter_box=1 with mosaic=1" in said[0][1]
    with pytest.raises(CfgError) as e:
        DetectorTrainer(str(path), str(data_file(tmp_path)),
                        options=TrainOptions(device="cpu", seed=1, progress=False),
                        out=open(os.devnull, "w"))
    assert e.value.line == line and "letter_box=1 with mosaic=1" in str(e.value)


# -- [yolo] resize -----------------------------------------------------------------------------
def ab_resize(pleft, pright, ptop, pbot, ow, oh, resize, resize_r1, resize_r2):
    """AB:src/data.c load_data_detection's resize margins, as written (float32, int)."""
    f = np.float32

    def rand_precalc_random(lo, hi, random_part):
        lo, hi = f(lo), f(hi)
        if hi < lo:
            lo, hi = hi, lo
        return f(random_part) * (hi - lo) + lo

    resize_down = resize_up = f(resize)
    if resize_down > 1.0:
        resize_down = f(1) / resize_down
    min_rdw = int(f(ow) * (f(1) - (f(1) / resize_down)) / f(2))
    min_rdh = int(f(oh) * (f(1) - (f(1) / resize_down)) / f(2))
    if resize_up < 1.0:
        resize_up = f(1) / resize_up
    max_rdw = int(f(ow) * (f(1) - (f(1) / resize_up)) / f(2))
    max_rdh = int(f(oh) * (f(1) - (f(1) / resize_up)) / f(2))
    if resize < 1:
        pleft = int(f(pleft) + rand_precalc_random(min_rdw, 0, resize_r1))
        pright = int(f(pright) + rand_precalc_random(min_rdw, 0, resize_r2))
        ptop = int(f(ptop) + rand_precalc_random(min_rdh, 0, resize_r1))
        pbot = int(f(pbot) + rand_precalc_random(min_rdh, 0, resize_r2))
    else:
        pleft = int(f(pleft) + rand_precalc_random(min_rdw, max_rdw, resize_r1))
        pright = int(f(pright) + rand_precalc_random(min_rdw, max_rdw, resize_r2))
        ptop = int(f(ptop) + rand_precalc_random(min_rdh, max_rdh, resize_r1))
        pbot = int(f(pbot) + rand_precalc_random(min_rdh, max_rdh, resize_r2))
    return pleft, pright, ptop, pbot


def test_resize_margins_equal_alexeyabs():
    rng = rng_for_test()
    for _ in range(500):
        ow, oh = (int(v) for v in rng.integers(8, 900, 2))
        resize = float(rng.choice([0.5, 0.8, 1.0, 1.25, 1.5, 2.0]))
        margins = [int(v) for v in rng.integers(-200, 200, 4)]
        r1, r2 = rng.random(), rng.random()
        assert resize_margins(*margins, ow, oh, resize, r1, r2) == \
            ab_resize(*margins, ow, oh, resize, r1, r2)


def test_resize_needs_alexeyabs_placement_in_check_and_training(tmp_path):
    path = tmp_path / "r.cfg"
    text = NET + HEAD + "resize=1.5\n"
    path.write_text(text)
    said = [(f.line, f.message) for f in check_cfg(str(path)) if f.level == "error"]
    assert [n for n, _ in said] == [text.count("\n")] and "set letter_box=0" in said[0][1]
    with pytest.raises(CfgError) as e:
        DetectorTrainer(str(path), str(data_file(tmp_path)), out=open(os.devnull, "w"),
                        options=TrainOptions(device="cpu", seed=1, progress=False))
    assert e.value.line == text.count("\n") and "resize=1.5" in e.value.message
    path.write_text(NET + "letter_box=0\n" + HEAD + "resize=1.5\n")
    assert not [f for f in check_cfg(str(path)) if f.level == "error"]


def test_resize_scales_the_crop_as_alexeyab(tmp_path):
    """With jitter 0 the crop is the resize margins' alone: a box keeps its place relative to
    the crop AB draws (the same two draws after augment's own)."""
    rng = rng_for_test()
    path = str(tmp_path / "i.png")
    Image.fromarray(np.zeros((50, 80, 3), np.uint8)).save(path)
    boxes = np.float32([[0, 0.5, 0.5, 0.25, 0.2]])
    for _ in range(10):
        seed = int(rng.integers(1 << 30))
        _, rows = augment(path, boxes, (3, 64, 64), np.random.default_rng(seed), 0.0, 0.0,
                          1.0, 1.0, False, letterbox=False, resize=1.5)
        r = np.random.default_rng(seed)
        r.random(4)                                          # augment's four jitter draws
        pl, pr, pt, pb = ab_resize(0, 0, 0, 0, 80, 50, 1.5, r.random(), r.random())
        cw, ch = 80 - pl - pr, 50 - pt - pb
        x0, x1 = max(0, (40 - 10 - pl) / cw), min(1, (40 + 10 - pl) / cw)
        y0, y1 = max(0, (25 - 5 - pt) / ch), min(1, (25 + 5 - pt) / ch)
        np.testing.assert_allclose(rows[0, :4], [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0,
                                                 y1 - y0], atol=1e-5)


# -- [net] mosaic_bound ----------------------------------------------------------------------
def test_mosaic_bound_0_clips_boxes_to_the_canvas_and_1_to_their_quadrant():
    """AB:src/data.c blend_truth_mosaic: mosaic_bound=1 clips each box to its quadrant,
    mosaic_bound=0 only to the image (the box keeps its size while it fits)."""
    W, H = 96, 64
    rng = rng_for_test()
    for trial in range(20):
        seed = int(rng.integers(1 << 30))
        bw, bh = int(rng.integers(20, 50)), int(rng.integers(15, 30))
        x0, y0 = int(rng.integers(0, W - bw)), int(rng.integers(0, H - bh))
        img = np.zeros((3, H, W), np.float32)
        rows = np.float32([[(x0 + bw / 2) / W, (y0 + bh / 2) / H, bw / W, bh / H, 1]])
        blank = (np.zeros_like(img), np.zeros((0, 5), np.float32), (0, 0, W, H))
        parts = [(img, rows, (0, 0, W, H)), blank, blank, blank]
        _, free = mosaic_of(parts, np.random.default_rng(seed), bound=False)
        _, bound = mosaic_of(parts, np.random.default_rng(seed), bound=True)
        c = np.random.default_rng(seed)             # mosaic_of's first two draws: the cut
        cut_x = int(c.integers(W * 20 // 100, W * 80 // 100 + 1))
        cut_y = int(c.integers(H * 20 // 100, H * 80 // 100 + 1))
        # quadrant 0 shows the image's bottom-right cut_x x cut_y: a shift by (cut - size)
        left, top = x0 + cut_x - W, y0 + cut_y - H
        right, bot = left + bw, top + bh
        clip = [max(left, 0), min(right, W), max(top, 0), min(bot, H)]
        quad = [max(left, 0), min(right, cut_x), max(top, 0), min(bot, cut_y)]
        for got, (l, r, t, b) in ((free, clip), (bound, quad)):
            if r - l >= 1 and b - t >= 1:
                np.testing.assert_allclose(got[0, :4] * [W, H, W, H],
                                           [(l + r) / 2, (t + b) / 2, r - l, b - t], atol=1e-3)
            else:
                assert len(got) == 0, trial


@pytest.mark.parametrize("extra,keep_aspect,letterbox,bound",
                         [("", False, True, True), ("letter_box=1\n", True, False, True),
                          ("letter_box=0\nmosaic=1\nmosaic_bound=0\n", False, False, False)])
def test_the_detector_trainer_passes_letter_box_and_mosaic_bound_to_the_loader(
        tmp_path, extra, keep_aspect, letterbox, bound):
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    data = data_file(tmp_path)
    (tmp_path / "train.txt").write_text(f"{tmp_path / 'a.png'}\n")
    path = tmp_path / "t.cfg"
    path.write_text(NET + extra + HEAD)
    trainer = DetectorTrainer(str(path), str(data), out=open(os.devnull, "w"),
                              options=TrainOptions(device="cpu", seed=1, progress=False,
                                                   loader_processes=0))
    assert (trainer.keep_aspect, trainer.letterbox, trainer.mosaic_bound) == \
        (keep_aspect, letterbox, bound)
    pending = trainer._make(0)
    x, truth = pending.result()
    assert x.shape == (2, 3, 32, 32) and (truth.reshape(2, -1, 5)[:, 0, 0] > 0).all()
    pending.release()
