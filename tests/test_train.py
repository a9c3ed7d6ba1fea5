"""Classifier training end to end: backups, logs, Ctrl-C + --resume, NaN, predict."""

import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from darknet_py.data.datasets import Batches
from darknet_py.data.idx import write_idx
from darknet_py.nn.backend import Device
from darknet_py.nn.network import Network
from darknet_py.train.classifier import ClassifierTrainer
from darknet_py.train.options import TrainOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CFG = """[net]
batch=8
subdivisions=2
width=12
height=12
channels=1
learning_rate={lr}
momentum=0.9
decay=0.0005
max_batches=12
policy=steps
steps=8
scales=.1

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[dropout]
probability=0.2

[connected]
output=2
activation=linear

[softmax]
"""


def halves(n, rng):
    """Class 0: the left half is bright; class 1: the right half."""
    labels = rng.integers(0, 2, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 12, 12)).astype(np.uint8)
    for img, lab in zip(images, labels):
        if lab == 0:
            img[:, :6] += 150
        else:
            img[:, 6:] += 150
    return images, labels


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def make_project(tmp_path):
    """The halves dataset (IDX files), its .data (backup in the folder) and cfg in ``tmp_path``."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        images, labels = halves(n, rng)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    (tmp_path / "halves.names").write_text("left\nright\n")
    (tmp_path / "halves.data").write_text(
        f"classes=2\ntrain={tmp_path}/train-images-idx3-ubyte.gz\n"
        f"valid={tmp_path}/t10k-images-idx3-ubyte.gz\nnames={tmp_path}/halves.names\n"
        f"backup={tmp_path}/backup\ntop=1\n")
    (tmp_path / "halves.cfg").write_text(CFG.format(lr=0.05))
    return tmp_path


def trainer(project, weights=None, **kw):
    kw.setdefault("seed", 7)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return ClassifierTrainer(str(project / "halves.cfg"), str(project / "halves.data"), weights,
                             TrainOptions(**kw), out=open(os.devnull, "w"))


def test_training_writes_backups_log_and_chart_and_learns(project):
    t = trainer(project)
    assert t.run() == 0
    backup = project / "backup"
    for name in ("halves_last.weights", "halves_best.weights", "halves_final.weights",
                 "halves_last.state.npz", "chart_halves.png", "halves.log.jsonl"):
        assert (backup / name).exists(), name
    records = [json.loads(line) for line in open(backup / "halves.log.jsonl")]
    assert [r["iteration"] for r in records] == list(range(1, 13))
    assert records[-1]["seen"] == 12 * 8          # batch=8 images per iteration
    first = records[0]["avg_loss"]
    assert records[1]["avg_loss"] == pytest.approx(0.9 * first + 0.1 * records[1]["loss"])
    assert t.accuracy[-1][1] >= 0.9       # top-1 on the held-out images
    assert (backup / "chart_halves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the last backup's weights (taken from the state snapshot) are the final network's
    assert (backup / "halves_last.weights").read_bytes() == \
        (backup / "halves_final.weights").read_bytes()


def test_numbered_snapshots_follow_alexeyabs_saveweights_rule(project):
    """<cfg>_N.weights every saveweights= iterations (of the .data file, or the flag); by
    default every 1000 (10000 when max_batches >= 10000)."""
    from darknet_py.train.checkpoint import snapshot_every
    from darknet_py.data.datacfg import DataCfg
    data = DataCfg(str(project / "halves.data"))
    assert (snapshot_every(3000, data), snapshot_every(10000, data)) == (1000, 10000)
    with open(project / "halves.data", "a") as f:
        f.write("saveweights=5\n")
    t = trainer(project)
    assert t.run() == 0
    backup = project / "backup"
    assert sorted(p.name for p in backup.glob("halves_[0-9]*.weights")) == \
        ["halves_10.weights", "halves_5.weights"]
    t = trainer(project, save_weights_every=4, max_batches=8, chart=str(project / "c.png"))
    assert t.run() == 0
    assert (backup / "halves_4.weights").exists() and (backup / "halves_8.weights").exists()
    assert (project / "c.png").exists()


def test_weights_already_at_max_batches_are_an_error_not_an_instant_final(project):
    """Darknet saves _final at once and stops; darknet_py says why and what to do."""
    from darknet_py.errors import DarknetError
    assert trainer(project, max_batches=3).run() == 0
    final = str(project / "backup" / "halves_final.weights")
    with pytest.raises(DarknetError, match=r"halves_final.weights: error: the weights are "
                                           r"already at iteration 3, not below max_batches=3: "
                                           r"nothing to train; add -clear"):
        trainer(project, final, max_batches=3, seed=None)
    with pytest.raises(DarknetError, match="raise max_batches"):
        trainer(project, max_batches=3, resume=True)
    fine_tune = trainer(project, final, max_batches=2, clear=True, seed=None)
    assert fine_tune.run() == 0 and fine_tune.iteration == 2


def test_out_of_memory_says_to_raise_subdivisions(project, monkeypatch):
    """CuPy's OutOfMemoryError is a MemoryError: training stops with Darknet users' fix."""
    from darknet_py.errors import DarknetError
    from darknet_py.nn.network import Network
    t = trainer(project, max_batches=5)

    def no_memory(self, *a, **kw):
        raise MemoryError("out of memory to allocate 123 bytes")
    monkeypatch.setattr(Network, "train_pass", no_memory)
    with pytest.raises(DarknetError) as e:
        t.run()
    assert str(e.value).startswith(f"{project / 'halves.cfg'}:")
    assert "out of host memory at iteration 1 with a mini-batch of 4 images at 12x12: " \
           "raise subdivisions (now 2) in [net]" in str(e.value)
    assert "the last backup is " in str(e.value) and "(iteration none yet)" in str(e.value)


def test_backup_names_use_darknets_basecfg():
    from darknet_py.train.checkpoint import basecfg
    assert basecfg("cfg/yolov3.tiny.cfg") == "yolov3" and basecfg("x/mnist.cfg") == "mnist"


def test_ctrl_c_then_resume_ends_with_the_same_weights(project, monkeypatch):
    reference = trainer(project)
    assert reference.run() == 0
    expected = (project / "backup" / "halves_final.weights").read_bytes()
    os.remove(project / "backup" / "halves_final.weights")

    calls = {"n": 0}
    real_next = Batches.next

    def next_then_ctrl_c(self):
        calls["n"] += 1
        if calls["n"] == 7:            # during iteration 4 (2 subdivisions per iteration)
            os.kill(os.getpid(), signal.SIGINT)
        return real_next(self)

    monkeypatch.setattr(Batches, "next", next_then_ctrl_c)
    interrupted = trainer(project)
    assert interrupted.run() == 130
    assert interrupted.iteration == 4
    assert not (project / "backup" / "halves_final.weights").exists()
    monkeypatch.setattr(Batches, "next", real_next)

    resumed = trainer(project, resume=True, seed=None)   # the seed comes from the state file
    assert resumed.iteration == 4
    assert resumed.run() == 0
    assert (project / "backup" / "halves_final.weights").read_bytes() == expected
    log = [json.loads(line) for line in open(project / "backup" / "halves.log.jsonl")]
    assert [r["iteration"] for r in log] == list(range(1, 13))


ADAM_CFG = CFG.format(lr=0.01).replace("momentum=", "adam=1\nmomentum=")


def test_adam_resume_ends_with_the_weights_of_an_uninterrupted_run(project):
    """The state file holds Adam's moments: 12 iterations straight equal 5, then 7 resumed."""
    (project / "halves.cfg").write_text(ADAM_CFG)
    assert trainer(project).run() == 0
    expected = (project / "backup" / "halves_final.weights").read_bytes()
    shutil.rmtree(project / "backup")
    assert trainer(project, max_batches=5).run() == 0
    resumed = trainer(project, resume=True, seed=None)
    assert resumed.iteration == 5
    assert resumed.run() == 0
    assert (project / "backup" / "halves_final.weights").read_bytes() == expected


def test_a_state_file_without_adams_moments_resumes_and_says_so(project):
    """A state file written without the moments still resumes, and one line says so."""
    (project / "halves.cfg").write_text(ADAM_CFG)
    assert trainer(project, max_batches=3).run() == 0
    state = project / "backup" / "halves_last.state.npz"
    with np.load(state) as saved:
        kept = {k: saved[k] for k in saved.files if not k.endswith(("_m", "_v"))}
    np.savez(state, **kept)
    out = io.StringIO()
    resumed = ClassifierTrainer(str(project / "halves.cfg"), str(project / "halves.data"),
                                options=TrainOptions(device="cpu", resume=True, max_batches=4,
                                                     progress=False), out=out)
    assert out.getvalue() == (
        f"Resuming from {project}/backup/halves_last.weights at iteration 3 (with its counters, "
        f"but {state} has no 0/weights_m and 9 more: they start from zero, so the run will not "
        "match an uninterrupted one)\n")
    assert resumed.seed == 7 and resumed.net.t == 3
    assert resumed.run() == 0


def test_multi_scale_copies_stay_on_the_gpu_of_their_network(project, monkeypatch):
    """random=1 trains on resized() copies: with -i 1 (or on rank 1 of -gpus) they must be
    built on GPU 1, not 0.  The CuPy here is NumPy that records each GPU made current."""
    used = []

    class FakeGpu:
        def __init__(self, index):
            self.index = index

        def use(self):
            used.append(self.index)

    cupy = types.ModuleType("cupy")
    cupy.__getattr__ = lambda name: getattr(np, name)
    cupy.cuda = types.SimpleNamespace(Device=FakeGpu, runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 2))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    net = Network.from_cfg(str(project / "halves.cfg"), device="gpu", device_index=1, warn=False)
    assert used == [1] and net.device == Device("gpu", 1)
    small = net.resized(8, 8)
    assert small.input_shape == (1, 8, 8) and used == [1, 1] and small.device == net.device


def test_non_finite_loss_stops_and_keeps_the_last_good_weights(project, capsys):
    (project / "halves.cfg").write_text(CFG.format(lr=1e30))
    t = trainer(project, backup_every=1)
    assert t.run() == 1
    err = capsys.readouterr().err
    assert "loss became" in err and "last good weights" in err
    last = project / "backup" / "halves_last.weights"
    from darknet_py.nn.weights import read_weights_file
    header, payload = read_weights_file(last)
    assert np.isfinite(payload).all()


def test_resume_without_a_backup_is_a_clear_error(project):
    from darknet_py.errors import DarknetError
    with pytest.raises(DarknetError, match="--resume: .* does not exist"):
        trainer(project, resume=True)


def test_classes_mismatch_names_the_cfg_line(project):
    from darknet_py.errors import DarknetError
    (project / "halves.data").write_text((project / "halves.data").read_text()
                                         .replace("classes=2", "classes=3"))
    with pytest.raises(DarknetError, match=r"halves\.cfg:30: error: the network ends with 2 "
                                           r"outputs but .* says classes=3: set output=3 in "
                                           r"this \[connected\]"):
        trainer(project)


def run_cli(*args, cwd=ROOT, stdin=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "darknet_py", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, input=stdin)


def halves_image_files(folder, n=48):
    """The halves images as PNG files in Darknet's list-file layout (images/<label>/i.png);
    returns their paths."""
    from PIL import Image
    images, labels = halves(n, np.random.default_rng(1))
    lines = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        sub = folder / "images" / ("left", "right")[lab]
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"{i}.png")
        lines.append(str(sub / f"{i}.png"))
    return lines


def test_cli_train_then_predict_a_list_file_dataset(tmp_path):
    """Darknet's list-file layout: labels found in the image paths; predict prints top-k."""
    from PIL import Image
    lines = halves_image_files(tmp_path)
    (tmp_path / "train.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.txt").write_text("left\nright\n")
    (tmp_path / "h.data").write_text(f"classes=2\ntrain={tmp_path}/train.list\n"
                                     f"valid={tmp_path}/train.list\nlabels={tmp_path}/labels.txt\n"
                                     f"backup={tmp_path}/backup\n")
    (tmp_path / "h.cfg").write_text(CFG.format(lr=0.05))
    r = run_cli("train", str(tmp_path / "h.cfg"), str(tmp_path / "h.data"), "--seed", "3",
                "--device", "cpu", "--darknet-lines")
    assert r.returncode == 0, r.stderr
    lines_out = r.stdout.splitlines()
    assert any(line.startswith("1, 0.167: ") and line.endswith(" 8 images") for line in lines_out)
    weights = str(tmp_path / "backup" / "h_final.weights")
    probe = tmp_path / "probe.png"
    right = np.zeros((12, 12), np.uint8)
    right[:, 6:] = 220
    Image.fromarray(right).save(probe)
    r = run_cli("classifier", "predict", str(tmp_path / "h.data"), str(tmp_path / "h.cfg"),
                weights, str(probe), "-t", "2", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    name, *top = r.stdout.splitlines()          # pj's order: the image, then its top classes
    assert name.startswith(f"{probe}: Predicted in ")
    assert len(top) == 2 and top[0].endswith(": right") and top[1].endswith(": left")
    pct = float(top[0].split("%")[0])
    assert 50 < pct <= 100
    # no image on the command line: paths are read from stdin, as Darknet's prompt loop
    r = run_cli("classifier", "predict", str(tmp_path / "h.data"), str(tmp_path / "h.cfg"),
                weights, "--device", "cpu", stdin=f"{probe}\n")
    assert "Enter Image Path: " in r.stdout and ": right" in r.stdout


def test_a_corrupt_image_stops_training_with_one_line_and_keeps_the_work(tmp_path):
    """A bad file met mid-training (images are read lazily) is a one-line error naming it,
    after the weights so far are saved for --resume."""
    lines = halves_image_files(tmp_path)
    bad = tmp_path / "images" / "left" / "40.png"
    bad.write_bytes(bad.read_bytes()[:30])                  # truncated mid-file
    (tmp_path / "train.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.txt").write_text("left\nright\n")
    (tmp_path / "h.data").write_text(f"classes=2\ntrain={tmp_path}/train.list\n"
                                     f"labels={tmp_path}/labels.txt\nbackup={tmp_path}/backup\n")
    (tmp_path / "h.cfg").write_text(CFG.format(lr=0.05))
    r = run_cli("train", str(tmp_path / "h.cfg"), str(tmp_path / "h.data"), "--seed", "3",
                "--device", "cpu", "--no-progress")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert err[-1] == f"darknet_py: {bad}: error: not an image file Pillow can read", r.stderr
    assert "Traceback" not in r.stderr
    stopped = [line for line in err if line.startswith("Training stopped by a data error")]
    assert stopped and "h_last.weights at iteration" in stopped[0], r.stderr
    assert (tmp_path / "backup" / "h_last.weights").exists()


def test_list_file_labels_must_match_exactly_one(tmp_path):
    from darknet_py.data.datasets import match_labels
    from darknet_py.errors import DarknetError
    assert list(match_labels(["d/train/cat/1.png", "d/2_dog.png"], ["cat", "dog"], "l")) == [0, 1]
    with pytest.raises(DarknetError, match=r"1 image\(s\) match no label \(first: d/train/x.png\)"):
        match_labels(["d/train/x.png"], ["rain", "cat"], "l")   # Darknet would match 'rain'
    with pytest.raises(DarknetError, match="match several labels"):
        match_labels(["d/cat/dog.png"], ["cat", "dog"], "l")


def test_backup_folder_is_relative_to_the_working_directory(project, tmp_path, monkeypatch):
    (tmp_path / "elsewhere" / "backup").mkdir(parents=True)     # a parent has a backup/ too
    work = tmp_path / "elsewhere" / "work"
    work.mkdir()
    (project / "halves.data").write_text(
        (project / "halves.data").read_text().replace(f"backup={project}/backup", "backup=bk"))
    monkeypatch.chdir(work)
    t = trainer(project, max_batches=1)
    assert t.run() == 0
    assert (work / "bk" / "halves_final.weights").exists()


def test_data_paths_fall_back_to_the_data_files_folder_and_say_so(tmp_path, capsys):
    """Darknet reads .data paths from the working directory only; darknet_py also tries the
    .data file's folder (and its parents) and says which file it used, once per key."""
    from darknet_py.data.datacfg import DataCfg
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "train.txt").write_text("a.jpg\n")
    (tmp_path / "x.data").write_text("classes=1\ntrain=sets/train.txt\n")
    data = DataCfg(str(tmp_path / "x.data"))
    found = data.file("train")
    assert found == str(tmp_path / "sets" / "train.txt") and data.file("train") == found
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{tmp_path / 'x.data'}:2: note: train=sets/train.txt is not under "
                          f"the working directory; using {found}")


def test_multi_scale_drops_the_least_recently_used_sizes_when_gpu_memory_runs_short():
    """On a GPU, random=1 keeps a copy of the network (arrays, graphs) per size while a
    quarter of the memory is free (before any copy's size is measured); below, the blocks CuPy's pool keeps for reuse are given
    back first, then the sizes used least recently go, never the size about to train.  The
    GPU here has 100 units: 20 in use, 30 per kept copy, and what the pool keeps."""
    import collections
    from darknet_py.train.detector import DetectorTrainer
    freed, cached = [], [0]

    def free_all_blocks():
        freed.append(len(nets))
        cached[0] = 0
    nets = collections.OrderedDict((s, object()) for s in [(320, 320), (352, 352), (384, 384)])
    runtime = types.SimpleNamespace(memGetInfo=lambda: (80 - 30 * len(nets) - cached[0], 100))
    xp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime),
                               get_default_memory_pool=lambda: types.SimpleNamespace(
                                   free_all_blocks=free_all_blocks))
    events = []                                          # --profile counts them
    fake = types.SimpleNamespace(net=types.SimpleNamespace(xp=xp), _nets=nets,
                                 _count=events.append, _bytes_per_pixel=0.0)     # unmeasured
    DetectorTrainer._make_room(fake, (320, 320))         # -10, then 20 free: 352, 384 go
    assert list(nets) == [(320, 320)] and freed == [3, 2, 1]
    assert events == ["multi-scale copies dropped"] * 2
    nets[(352, 352)] = object()                          # 20 free: 320 goes, 352 stays
    DetectorTrainer._make_room(fake, (352, 352))
    assert list(nets) == [(352, 352)] and freed == [3, 2, 1, 2, 1]
    DetectorTrainer._make_room(fake, (448, 448))         # 50 free: enough, nothing freed
    assert list(nets) == [(352, 352)] and freed == [3, 2, 1, 2, 1]
    cached[0] = 30                                       # 20 free, 50 once the pool gives back
    DetectorTrainer._make_room(fake, (448, 448))
    assert list(nets) == [(352, 352)] and freed == [3, 2, 1, 2, 1, 1]
    assert len(events) == 3


def _multi_scale_fake(free, used, on_gpu=True):
    """A DetectorTrainer's multi-scale state on a fake GPU (``free()`` and ``used[0]``
    units), its net 416x416; returns (trainer, the sizes it drew, the events it counted)."""
    import collections

    from darknet_py.train.detector import DetectorTrainer
    sizes, events = [], []
    pool = types.SimpleNamespace(used_bytes=lambda: used[0], free_all_blocks=lambda: None)
    xp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
        memGetInfo=lambda: (free(), 10 ** 9))), get_default_memory_pool=lambda: pool)
    net = types.SimpleNamespace(xp=xp, device=types.SimpleNamespace(on_gpu=on_gpu),
                                options=types.SimpleNamespace(width=416, height=416),
                                resized=lambda w, h: ("copy", w, h))
    t = types.SimpleNamespace(net=net, _nets=collections.OrderedDict(), _count=events.append,
                              _bytes_per_pixel=0.0, _growing=None,
                              _size_for=lambda k: sizes[k])
    t._make_room = functools.partial(DetectorTrainer._make_room, t)
    return t, sizes, events


def test_multi_scale_measures_a_copys_memory_and_makes_room_for_new_copies_only():
    """The first copy's footprint (the pool's growth from its making to the next size) sets
    the need of every later new copy: its pixels x the most per pixel x ROOM_SLACK.  Going
    back to a size whose copy is kept takes no memory and drops nothing."""
    from darknet_py.train import detector
    from darknet_py.train.detector import DetectorTrainer
    used, free = [1000], [10 ** 6]
    t, sizes, events = _multi_scale_fake(lambda: free[0], used)
    train_net = functools.partial(DetectorTrainer._train_net, t)
    sizes += [(608, 608), (608, 608), (320, 320), (416, 416), (320, 320), (352, 352)]
    assert train_net(0) == ("copy", 608, 608) and t._growing == ((608, 608), 1000)
    used[0] += 608 * 608 * 4                   # its passes and graphs: 4 units a pixel
    assert train_net(1) == ("copy", 608, 608) and t._bytes_per_pixel == 0
    free[0] = 0                                # the first switch measures, then makes room
    assert train_net(2) == ("copy", 320, 320)
    assert t._bytes_per_pixel == 4 and list(t._nets) == [(320, 320)]
    assert events == ["multi-scale copies made", "multi-scale copies dropped",
                      "multi-scale copies made"]
    assert train_net(3) is t.net and train_net(4) == ("copy", 320, 320)    # kept: no room
    assert len(events) == 3
    need = 352 * 352 * 4 * detector.ROOM_SLACK
    t._nets[(608, 608)] = ("copy", 608, 608)
    t._nets.move_to_end((320, 320))
    free[0] = need                             # exactly what 352's copy needs: nothing goes
    assert train_net(5) == ("copy", 352, 352)
    assert list(t._nets) == [(608, 608), (320, 320), (352, 352)] and len(events) == 4


def test_multi_scale_on_the_cpu_keeps_every_copy_and_reads_no_gpu_memory():
    from darknet_py.train.detector import DetectorTrainer

    def no_gpu():
        raise AssertionError("read the GPU's memory")
    t, sizes, events = _multi_scale_fake(no_gpu, None, on_gpu=False)
    t.net.xp = None
    sizes += [(608, 608), (320, 320), (608, 608)]
    for k in range(3):
        DetectorTrainer._train_net(t, k)
    assert list(t._nets) == [(320, 320), (608, 608)] and t._growing is None
    assert events == ["multi-scale copies made"] * 2


def test_a_classifier_saves_last_at_each_epoch_and_every_savelast_iterations(project):
    """Its top-1 is measured at each epoch (8 iterations of the 64 images here): _last is
    written there too, beside AlexeyAB's ``savelast=`` rule and the end."""
    with open(project / "halves.data", "a") as f:
        f.write("savelast=5\n")
    t = trainer(project)
    saved, save_last = [], t.save_last
    t.save_last = lambda: saved.append(t.iteration) or save_last()
    assert t.per_epoch == 8 and t.max_batches == 12
    assert t.run() == 0
    assert saved == [5, 8, 10, 12]


@pytest.mark.parametrize("seconds, charted", [(0.0, [8, 12, 12]), (1e9, [8, 12])])
def test_charts_are_redrawn_at_most_every_chart_seconds_and_at_the_end(project, monkeypatch,
                                                                      seconds, charted):
    """The chart is asked for at each validation (iterations 8 and 12 here) and at the end;
    within CHART_SECONDS of the last one it is skipped, except the end's."""
    from darknet_py.train import chart
    monkeypatch.setattr(chart, "CHART_SECONDS", seconds)
    t = trainer(project)
    drawn = []
    real = chart.draw_chart
    monkeypatch.setattr(chart, "draw_chart", lambda path, series, **kw: (
        drawn.append(series["loss"][-1][0]), real(path, series, **kw))[1])
    assert t.run() == 0
    assert drawn == charted
    assert os.path.exists(t.chart_path)


def test_a_resident_batch_is_the_loaders_batch(project):
    """An in-memory set kept on the device (ClassifierTrainer._batches on the GPU) gives each
    mini-batch as ``_make`` does: the same images, values and truth, across the epochs whose
    indexes it uploads at once, from a start inside one (here NumPy and host_batch stand in
    for the device and its kernels); a set of another size than the network's is not kept
    (its batches are resized on the host)."""
    from darknet_py.data.datasets import (ClassificationSet, ResidentBatches, ResidentSet,
                                          host_batch)
    t = trainer(project)
    assert t.train_set.fits(t.net.input_shape) and not t.train_set.fits((1, 14, 14))
    assert t._per_epoch_minibatches() == 16         # 8 iterations of 2 subdivisions
    batches = ResidentBatches(ResidentSet(t.train_set, np, host_batch), t._indexes, 16, 5)
    for k in range(5, 37):               # three epochs' uploads
        x, truth = batches.next()
        want_x, want_truth = t._make(k)
        assert x.dtype == want_x.dtype == np.float32 and x.shape == want_x.shape
        np.testing.assert_array_equal(x.view(np.uint32), want_x.view(np.uint32))
        np.testing.assert_array_equal(truth, want_truth)
    batches.close()
    colour = ClassificationSet(np.zeros((4, 12, 12, 3), np.uint8), np.zeros(4, np.int64), 2, "")
    assert colour.fits((3, 12, 12)) and not colour.fits((1, 12, 12))
    assert not ClassificationSet(None, np.zeros(4, np.int64), 2, "", ["a.png"] * 4).fits(
        (3, 12, 12))
    batches = t._batches(0)
    try:
        assert isinstance(batches, Batches)              # on the CPU: the loader thread
    finally:
        batches.close()


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(50, 9, 7), (50, 9, 7, 3)])
def test_gpu_idx_batch_equals_host_batch(shape):
    """nn/kernels.py idx_batch (the gather of a resident set's mini-batch) equals
    data.datasets.host_batch bit for bit: grey and colour (NHWC -> NCHW) images, repeated
    indexes, labels up to the last class."""
    import cupy
    from darknet_py.data.datasets import host_batch
    from darknet_py.nn.kernels import idx_batch
    rng = np.random.default_rng(12)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = rng.integers(0, 6, shape[0])
    labels[7] = 5
    idx = np.concatenate([rng.permutation(shape[0])[:13], [7, 7, 0, shape[0] - 1]])
    x, truth = idx_batch(cupy.asarray(images), cupy.asarray(labels, dtype=np.int32), 6,
                         cupy.asarray(idx))
    want_x, want_truth = host_batch(images, labels, 6, idx)
    assert x.shape == want_x.shape and truth.shape == want_truth.shape
    np.testing.assert_array_equal(cupy.asnumpy(x).view(np.uint32), want_x.view(np.uint32))
    np.testing.assert_array_equal(cupy.asnumpy(truth), want_truth)


@pytest.mark.gpu
def test_gpu_training_on_a_resident_set_equals_training_from_the_loader(project):
    """On the GPU the IDX set stays on the device (no loader thread): its batches equal the
    loader's bit for bit, and a run gives the weights a run through the loader gives (within
    float32 rounding: cuDNN's engines may sum in another order from run to run)."""
    import cupy
    from darknet_py.data.datasets import ResidentBatches
    from darknet_py.train.trainer import Trainer
    t = trainer(project, device="gpu", max_batches=6)
    batches = t._batches(3)
    assert isinstance(batches, ResidentBatches)
    for k in range(3, 20):               # across an epoch's upload (16 mini-batches)
        x, truth = batches.next()
        want_x, want_truth = t._make(k)
        assert isinstance(x, cupy.ndarray) and isinstance(truth, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(x).view(np.uint32), want_x.view(np.uint32))
        np.testing.assert_array_equal(cupy.asnumpy(truth), want_truth)
    batches.close()

    def final_weights():
        data = (project / "backup" / "halves_final.weights").read_bytes()
        return data[:20], np.frombuffer(data[20:], np.float32)     # header: the seen count
    assert t.run() == 0
    resident = final_weights()
    shutil.rmtree(project / "backup")
    t = trainer(project, device="gpu", max_batches=6)
    t._batches = types.MethodType(Trainer._batches, t)
    assert t.run() == 0
    header, weights = final_weights()
    assert header == resident[0]
    np.testing.assert_allclose(weights, resident[1], rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_validation_on_a_resident_set_equals_validation_from_host_batches(project):
    """Classifier validation on the GPU gathers the kept validation set there and counts the
    hits on the device: the same images, labels and accuracies as host batches and NumPy's
    count, over batches that do not divide the set."""
    import cupy
    from darknet_py.data.datasets import ResidentSet
    from darknet_py.nn.kernels import idx_batch
    from darknet_py.train.classifier import evaluate
    from darknet_py.train.topk import top_k_lists
    t = trainer(project, device="gpu", max_batches=3)
    assert t.run() == 0
    valid = t.valid_set
    gather = ResidentSet(valid, cupy, idx_batch)
    idx = np.array([0, 5, 31, 7, 7])
    x, labels = gather(idx)
    want_x, _ = valid.batch(idx, t.net.input_shape, validation=True)
    np.testing.assert_array_equal(cupy.asnumpy(x).view(np.uint32), want_x.view(np.uint32))
    np.testing.assert_array_equal(cupy.asnumpy(labels), valid.labels[idx])
    probs = cupy.asnumpy(t.net.forward(valid.batch(np.arange(len(valid)), t.net.input_shape,
                                                   validation=True)[0]))
    for top in (1, 2):
        lists = top_k_lists(probs.reshape(len(valid), -1), top)
        want = ((lists[:, 0] == valid.labels).mean(),
                (lists == valid.labels[:, None]).any(axis=1).mean())
        assert evaluate(t.net, valid, top, batch=10) == pytest.approx(want)
        assert evaluate(t.net, valid, top, batch=10, gather=gather) == pytest.approx(want)
