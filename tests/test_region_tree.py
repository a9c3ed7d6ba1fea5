"""``[region] tree=`` (YOLO9000, pj:src/tree.c and region_layer.c): the tree file reader, and
the forward, the training deltas and cost, and the detections equal to libdarknet's.

pj's CPU forward runs its tree softmax over the wrong entries with a temperature of 0 (NaN), so
the oracle runs the layer in pj's GPU order (the shim's region_tree_forward: pj's softmax_cpu in
softmax_tree's layout, then pj's CPU forward and loss on that output)."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from darknet_py import Network  # noqa: E402
from darknet_py.detection.detect import get_region_detections  # noqa: E402
from darknet_py.detection.tree import (hierarchy_predictions, hierarchy_top_prediction,  # noqa: E402
                                       read_tree, tree_softmax)
from darknet_py.errors import CfgError  # noqa: E402
from oracle.darknet import DarknetOracle  # noqa: E402
from conftest import require_darknet, rng_for_test  # noqa: E402

DEBIAN = Path("/usr/share/darknet")
TREE_9K = DEBIAN / "data" / "9k.tree"
_ok, _why = DarknetOracle.available()

SMALL = "animal -1\nplant -1\nthing -1\ndog 0\ncat 0\nrose 1\ntulip 1\ndaisy 1\npuppy 3\nhound 3\n"


@pytest.fixture
def oracle():
    require_darknet(_ok, _why, "[region] tree= oracle tests")


def random_tree(rng, n):
    """A tree of n classes in pj's format: runs of siblings, some parents with two runs."""
    lines, parents = [], []
    while len(parents) < n:
        parent = -1 if len(parents) < 3 else int(rng.integers(-1, len(parents)))
        for _ in range(min(int(rng.integers(1, 6)), n - len(parents))):
            parents.append(parent)
            lines.append(f"c{len(parents) - 1} {parent}")
    return "\n".join(lines) + "\n"


def tree_cfg(tmp_path, tree_text, classes, num=2, w=4, h=3, batch=2, extra=""):
    (tmp_path / "t.tree").write_text(tree_text)
    cfg = tmp_path / "t.cfg"
    anchors = ",".join(["1,1.5", "2.5,2"][:num])
    cfg.write_text(f"[net]\nbatch={batch}\nsubdivisions=1\nchannels={num * (classes + 5)}\n"
                   f"width={w}\nheight={h}\n[region]\nclasses={classes}\ncoords=4\nnum={num}\n"
                   f"anchors={anchors}\nsoftmax=1\ntree={tmp_path / 't.tree'}\n{extra}")
    return cfg


# -- the reader -----------------------------------------------------------------------------------

def test_read_tree_groups_as_pj(tmp_path):
    (tmp_path / "s.tree").write_text(SMALL)
    t = read_tree(tmp_path / "s.tree")
    assert t.n == 10 and t.groups == 4
    assert t.group.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert t.group_offset.tolist() == [0, 3, 5, 8] and t.group_size.tolist() == [3, 2, 3, 2]
    assert t.child.tolist() == [1, 2, -1, 3, -1, -1, -1, -1, -1, -1]
    assert t.leaf.tolist() == [False, False, True, False] + [True] * 6
    assert t.name[8] == "puppy" and t.path_of(9) == [9, 3, 0]


def test_a_parent_with_two_runs_gets_its_last_group(tmp_path):
    (tmp_path / "s.tree").write_text("a -1\nb -1\nc 0\nd 1\ne 0\n")
    t = read_tree(tmp_path / "s.tree")
    assert t.group.tolist() == [0, 0, 1, 2, 3] and t.child.tolist() == [3, 2, -1, -1, -1]


def test_read_9k_tree():
    if not TREE_9K.is_file():
        pytest.skip(f"{TREE_9K} not installed")
    t = read_tree(TREE_9K)
    assert t.n == 9418 and t.groups == 1846
    assert t.group_size.sum() == 9418 and t.group_size.max() == 149
    assert t.group_size[:5].tolist() == [4, 2, 3, 3, 2]
    assert (t.group_offset[1:] == np.cumsum(t.group_size)[:-1]).all()
    assert t.leaf.sum() == 9418 - len(set(t.parent[t.parent >= 0].tolist()))


@pytest.mark.parametrize("text,line,what", [
    ("a -1\nb x\n", 2, "expected 'name parent'"),
    ("a -1\n\nb 0\n", 2, "expected 'name parent'"),
    ("a -1\nb 1\n", 2, "must be an earlier line"),
    ("a 0\n", 1, "must be an earlier line"),
])
def test_a_bad_tree_line_is_one_error_at_its_line(tmp_path, text, line, what):
    (tmp_path / "s.tree").write_text(text)
    with pytest.raises(CfgError) as e:
        read_tree(tmp_path / "s.tree")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 's.tree'}:{line}: error: ") and what in msg
    assert "\n" not in msg


def test_a_missing_tree_file_is_an_error_at_the_tree_line(tmp_path):
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[net]\nbatch=1\nchannels=15\nwidth=2\nheight=2\n[region]\nclasses=10\n"
                   "num=1\nsoftmax=1\ntree=nowhere.tree\n")
    with pytest.raises(CfgError, match=rf"^{cfg}:10: error: tree=nowhere.tree: cannot read"):
        Network.from_cfg(str(cfg), warn=False)


def test_the_tree_must_have_the_layers_classes(tmp_path):
    cfg = tree_cfg(tmp_path, SMALL, 11)
    with pytest.raises(CfgError, match=r":13: error: tree=.* has 10 classes but \[region\] "
                                       r"has classes=11"):
        Network.from_cfg(str(cfg), warn=False)


def test_the_tree_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s.tree").write_text(SMALL)
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[net]\nbatch=1\nchannels=15\nwidth=2\nheight=2\n[region]\nclasses=10\n"
                   "num=1\nsoftmax=1\ntree=data/s.tree\n")
    monkeypatch.chdir(tmp_path)
    assert Network.from_cfg(str(cfg), warn=False).layers[0].softmax_tree.groups == 4


# -- the arithmetic -------------------------------------------------------------------------------

def test_tree_softmax_sums_to_one_per_group(tmp_path):
    rng = rng_for_test()
    (tmp_path / "s.tree").write_text(random_tree(rng, 40))
    t = read_tree(tmp_path / "s.tree")
    z = rng.standard_normal((2, 3, 40, 4, 5)).astype(np.float32) * 4
    p = tree_softmax(t, z, 2)
    assert p.dtype == np.float32
    for g in range(t.groups):
        part = slice(t.group_offset[g], t.group_offset[g] + t.group_size[g])
        e = np.exp(z[:, :, part] - z[:, :, part].max(axis=2, keepdims=True))
        np.testing.assert_allclose(p[:, :, part], e / e.sum(axis=2, keepdims=True), rtol=1e-6)


def _top_loop(t, p, thresh):
    """pj hierarchy_top_prediction, one row at a time, as written in tree.c."""
    prob, group = 1.0, 0
    while True:
        best, best_i = 0.0, 0
        for i in range(t.group_size[group]):
            index = i + t.group_offset[group]
            if p[index] > best:
                best_i, best = index, p[index]
        if np.float32(prob) * np.float32(best) > np.float32(thresh):
            prob = np.float32(prob) * np.float32(best)
            group = t.child[best_i]
            if group < 0:
                return best_i
        elif group == 0:
            return best_i
        else:
            return t.parent[t.group_offset[group]]


@pytest.mark.parametrize("thresh", [0.0, 0.2, 0.5, 0.9])
def test_top_prediction_equals_pj_loop(tmp_path, thresh):
    rng = rng_for_test()
    (tmp_path / "s.tree").write_text(random_tree(rng, 60))
    t = read_tree(tmp_path / "s.tree")
    p = hierarchy_predictions(t, tree_softmax(t, rng.standard_normal((50, 60)).astype(
        np.float32) * 3, 1))
    got = hierarchy_top_prediction(t, p, thresh)
    assert got.tolist() == [_top_loop(t, row, thresh) for row in p]


# -- against libdarknet ---------------------------------------------------------------------------

def _truths(rng, classes, class_only):
    t = np.zeros((2, 30, 5), np.float32)
    for b in range(2):
        for k in range(6):
            w, h = rng.uniform(0.05, 0.6, 2)
            t[b, k] = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), w, h,
                       rng.integers(0, classes))
    t[0, 3, :2] = t[0, 2, :2]                   # two truths in one cell
    if class_only:                              # pj's mark of a classification image
        t[1, 2] = (999999, 999999, 1, 1, rng.integers(0, classes))
        t[1, 4] = (999999, 999999, 1, 1, rng.integers(0, classes))
    return t.reshape(2, -1)


@pytest.mark.darknet
@pytest.mark.parametrize("seen", [0, 20000], ids=["anchor-prior", "after-12800"])
@pytest.mark.parametrize("extra", ["bias_match=1\nrescore=1\n", "object_scale=5\n",
                                   "bias_match=1\nclass_scale=2\nmap=MAP\n"],
                         ids=["bias_match", "device-slot", "map"])
@pytest.mark.parametrize("class_only", [False, True], ids=["boxes", "class-only"])
def test_tree_forward_deltas_and_cost_equal_darknet(tmp_path, seen, extra, class_only, oracle):
    rng = rng_for_test()
    classes = 37
    if "MAP" in extra:
        (tmp_path / "t.map").write_text("".join(f"{c}\n" for c in rng.permutation(classes)))
        extra = extra.replace("MAP", str(tmp_path / "t.map"))
    cfg = tree_cfg(tmp_path, random_tree(rng, classes), classes, extra=extra)
    x = (rng.standard_normal((2, 2 * (classes + 5), 3, 4)) * 2).astype(np.float32)
    truth = _truths(rng, classes, class_only)
    _same_as_darknet(cfg, x, truth, seen, 6 if class_only else 12)


@pytest.mark.darknet
@pytest.mark.parametrize("class_only", [False, True], ids=["boxes", "class-only"])
def test_a_negative_class_writes_no_class_delta_as_darknet(tmp_path, class_only, oracle):
    """pj's ``while (class >= 0)``: a truth of class -1 gets its box and objectness deltas
    and no class delta; a class-only one picks the cell by objectness alone."""
    rng = rng_for_test()
    classes = 23
    cfg = tree_cfg(tmp_path, random_tree(rng, classes), classes, extra="bias_match=1\n")
    x = (rng.standard_normal((2, 2 * (classes + 5), 3, 4)) * 2).astype(np.float32)
    truth = _truths(rng, classes, class_only).reshape(2, 30, 5)
    truth[0, 1, 4] = truth[1, 2, 4] = -1
    _same_as_darknet(cfg, x, truth.reshape(2, -1), 20000, 6 if class_only else 12)


def _same_as_darknet(cfg, x, truth, seen, count):
    """The tree [region]'s output, deltas and cost equal pj's (its GPU order, see above)."""
    with DarknetOracle.load(cfg, batch=0) as dn:
        dn.seen = seen + 2
        cost = dn.region_tree_forward(0, x, truth)
        out, delta = dn.get(0, "output"), dn.get(0, "delta")
    layer = Network.from_cfg(str(cfg), warn=False).layers[0]
    layer.forward(SimpleNamespace(xp=np, input=x, truth=truth, train=True, delta=None,
                                  seen=seen + 2))
    np.testing.assert_allclose(layer.output.reshape(-1), out, rtol=1e-5, atol=1e-6)
    assert np.abs(layer.delta.reshape(-1) - delta).max() <= 1e-4 * np.abs(delta).max()
    assert layer.cost == pytest.approx(float((delta.astype(np.float64) ** 2).sum()), rel=1e-4)
    assert layer.cost == pytest.approx(cost, rel=1e-4)
    assert layer.stats["count"] == count


def _detection_rows(dets):
    return np.array([[*d.bbox, d.objectness, *d.prob] for d in dets], np.float32)


@pytest.mark.darknet
@pytest.mark.parametrize("hier", [0.05, 0.5, 0.9])
def test_tree_detections_equal_darknet(tmp_path, hier, oracle):
    rng = rng_for_test()
    classes = 45
    cfg = tree_cfg(tmp_path, random_tree(rng, classes), classes, batch=1)
    x = (rng.standard_normal((1, 2 * (classes + 5), 3, 4)) * 2).astype(np.float32)
    with DarknetOracle.load(cfg, batch=0) as dn:
        theirs = dn.region_tree_detect(x, 40, 25, 0.3, hier)
    net = Network.from_cfg(str(cfg), warn=False)
    net.forward(x)
    ours = _detection_rows(get_region_detections(net.layers[0], 40, 25, 4, 3, 0.3,
                                                 hier_thresh=hier))
    assert ours.shape == theirs.shape and (theirs[:, 5:] > 0).any()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.darknet
@pytest.mark.parametrize("mapped", [False, True], ids=["top-prediction", "inet9k.map"])
def test_9k_tree_detections_equal_darknet(tmp_path, mapped, oracle):
    """The 9k tree (9418 classes, 1846 groups) on a 2x2 grid; with the 200 lines of
    inet9k.map (pj's validate_detector's map)."""
    tree, imap = DEBIAN / "data" / "9k.tree", DEBIAN / "data" / "inet9k.map"
    if not (tree.is_file() and imap.is_file()):
        pytest.skip("Debian's 9k.tree / inet9k.map not installed")
    rng = rng_for_test()
    cfg = tmp_path / "t.cfg"
    cfg.write_text(f"[net]\nbatch=1\nchannels={3 * 9423}\nwidth=2\nheight=2\n[region]\n"
                   f"classes=9418\ncoords=4\nnum=3\nanchors=1,1,2,2,3,1\nsoftmax=1\n"
                   f"tree={tree}\n")
    x = (rng.standard_normal((1, 3 * 9423, 2, 2)) * 3).astype(np.float32)
    table = np.loadtxt(imap, dtype=np.int64) if mapped else None
    thresh = 1e-4 if mapped else 0.1        # a leaf's product over its path is small
    with DarknetOracle.load(cfg, batch=0) as dn:
        theirs = dn.region_tree_detect(x, 2, 2, thresh, 0.3, table)
    net = Network.from_cfg(str(cfg), warn=False)
    net.forward(x)
    ours = _detection_rows(get_region_detections(net.layers[0], 2, 2, 2, 2, thresh,
                                                 hier_thresh=0.3, map=table))
    assert (theirs[:, 5:] > 0).any()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# -- the GPU --------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_gpu_tree_forward_and_loss_equal_numpy(tmp_path):
    import cupy
    from darknet_py.nn.layers.yololoss import fetch_stats, region_loss
    rng = rng_for_test()
    classes = 37
    cfg = tree_cfg(tmp_path, random_tree(rng, classes), classes, extra="bias_match=1\n")
    layer = Network.from_cfg(str(cfg), warn=False).layers[0]
    x = (rng.standard_normal((2, 2 * (classes + 5), 3, 4)) * 2).astype(np.float32)
    truth = _truths(rng, classes, True)
    layer.forward(SimpleNamespace(xp=np, input=x, truth=None, train=False, delta=None))
    cpu = layer.output
    layer.forward(SimpleNamespace(xp=cupy, input=cupy.asarray(x), truth=None, train=False,
                                  delta=None))
    np.testing.assert_allclose(cupy.asnumpy(layer.output), cpu, rtol=1e-6, atol=1e-7)
    d_cpu, t_cpu = region_loss(layer, cpu, truth, 0)
    d_gpu, t_gpu = region_loss(layer, cupy.asarray(cpu), cupy.asarray(truth), 0)
    np.testing.assert_allclose(cupy.asnumpy(d_gpu), d_cpu, rtol=1e-6, atol=1e-7)
    assert fetch_stats(t_gpu, 1)[0] == pytest.approx(fetch_stats(t_cpu, 1)[0], rel=1e-9)


# -- the commands ---------------------------------------------------------------------------------

def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    return subprocess.run([sys.executable, "-m", "darknet_py", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_detector_test_runs_a_tree_cfg_with_hier(tmp_path, monkeypatch):
    """A small tree [region] network with random weights: detector test -hier runs."""
    from PIL import Image
    rng = rng_for_test()
    classes = 10
    (tmp_path / "s.tree").write_text(SMALL)
    (tmp_path / "t.cfg").write_text(
        "[net]\nbatch=1\nchannels=3\nwidth=64\nheight=64\n"
        "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        f"[convolutional]\nfilters={3 * (classes + 5)}\nsize=1\nstride=1\nactivation=linear\n"
        "[region]\nanchors=1,1,2,2,3,3\nclasses=10\ncoords=4\nnum=3\nsoftmax=1\n"
        "tree=s.tree\nthresh=.6\n")
    (tmp_path / "t.names").write_text(SMALL.replace(" -1", "").replace(" 0", "")
                                      .replace(" 1", "").replace(" 3", ""))
    (tmp_path / "t.data").write_text("classes=10\nnames=t.names\n")
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(tmp_path / "i.jpg")
    monkeypatch.chdir(tmp_path)         # tree=s.tree: relative to the working directory
    net = Network.from_cfg("t.cfg", warn=False)
    net.save_weights(str(tmp_path / "t.weights"))
    p = _run(["detector", "test", "t.data", "t.cfg", "t.weights", "i.jpg", "-thresh", "0.1",
              "-hier", "0.3", "-dont_show"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "i.jpg: Predicted in" in p.stdout and (tmp_path / "predictions.jpg").is_file()


def test_cfg_check_yolo9000_from_its_folder(tmp_path):
    cfg = DEBIAN / "cfg" / "yolo9000.cfg"
    if not (cfg.is_file() and TREE_9K.is_file()):
        pytest.skip("Debian's yolo9000.cfg / 9k.tree not installed")
    (tmp_path / "data").mkdir()
    for name in ("9k.tree", "coco9k.map"):
        (tmp_path / "data" / name).write_bytes((DEBIAN / "data" / name).read_bytes())
    text = cfg.read_text().replace("/usr/share/darknet/data/", "data/")
    (tmp_path / "yolo9000.cfg").write_text(text)
    p = _run(["cfg", "check", "yolo9000.cfg"], tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported" not in p.stdout


def test_detector_valid_passes_the_data_files_map(tmp_path, monkeypatch):
    """pj validate_detector: the .data file's map= picks a tree [region]'s classes."""
    from PIL import Image
    from darknet_py.detection.detect import detect_image
    from darknet_py.detection.evaluate import validation_results
    rng = rng_for_test()
    classes = 10
    (tmp_path / "s.tree").write_text(SMALL)
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[net]\nbatch=1\nchannels=3\nwidth=8\nheight=8\n[convolutional]\n"
                   "filters=15\nsize=3\nstride=4\npad=1\nactivation=linear\n[region]\n"
                   f"classes={classes}\nnum=1\nanchors=1,1\nsoftmax=1\n"
                   f"tree={tmp_path / 's.tree'}\n")
    net = Network.from_cfg(str(cfg), warn=False)
    image = (rng.integers(0, 256, (3, 8, 8)) / 255).astype(np.float32)
    table = np.array([9, 8, 5])
    _, plain = detect_image(net, image, 0.0, 0.5, 0, map=None)
    _, mapped = detect_image(net, image, 0.0, 0.5, 0, map=table)
    layer_out = net.layers[1].output.reshape(15, 4)
    obj = layer_out[4]
    p = hierarchy_predictions(net.layers[1].softmax_tree, layer_out[5:].T)
    for d, o, row in zip(mapped, obj, p):
        np.testing.assert_allclose(d.prob[:3], o * row[table], rtol=1e-6)
        assert not d.prob[3:].any()
    assert [int(np.flatnonzero(d.prob)[0]) for d in plain] == \
        hierarchy_top_prediction(net.layers[1].softmax_tree, p, 0.5).tolist()
    path = tmp_path / "i.png"
    Image.fromarray(np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(path)
    lines, _ = validation_results(net, SimpleNamespace(paths=[str(path)]), classes,
                                  map=table)
    assert all(not lines[j] for j in range(3, classes)) and lines[0]
