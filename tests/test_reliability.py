"""Bad starts, faults and API misuse (issue 15): each is one line naming the file, an exit status
other than 0, no traceback, and nothing of an earlier run touched."""

import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from darknet_py.data.detaug import DetectionSet
from darknet_py.errors import DarknetError
from darknet_py.nn.network import Network
from darknet_py.train.classifier import ClassifierTrainer
from test_train import project, run_cli, trainer  # noqa: F401  (project: the fixture)


def files_of(folder):
    """{name: bytes} of every file in ``folder``: what an earlier run left."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def assert_one_line_error(r, *fragments):
    assert r.returncode != 0, r.stdout
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, r.stderr
    for fragment in fragments:
        assert fragment in err, err


# -- a start that fails its checks -----------------------------------------------------------
def test_a_start_that_fails_its_checks_leaves_the_earlier_run_untouched(project):
    assert trainer(project, max_batches=3).run() == 0
    backup = project / "backup"
    before = files_of(backup)
    assert "halves.log.jsonl" in before
    final = str(backup / "halves_final.weights")
    with pytest.raises(DarknetError, match="already at iteration 3"):
        trainer(project, final, max_batches=3)
    data = project / "halves.data"
    data.write_text(data.read_text().replace("train-images", "missing-images"))
    with pytest.raises(DarknetError, match="no such file"):
        trainer(project)
    r = run_cli("train", str(project / "halves.cfg"), str(data), "--device", "cpu")
    assert_one_line_error(r, f"{data}:2: error: train=")
    assert files_of(backup) == before


def test_a_resume_that_fails_its_checks_keeps_the_log_it_would_cut(project):
    """--resume cuts the log back to the weights' iteration only once the run starts."""
    assert trainer(project, max_batches=4, backup_every=2).run() == 0
    backup = project / "backup"
    log = backup / "halves.log.jsonl"
    with open(log, "a") as f:          # iterations after the last backup, as after a kill
        f.write(json.dumps({"iteration": 5, "loss": 1.0, "avg_loss": 1.0}) + "\n")
    before = files_of(backup)
    with pytest.raises(DarknetError, match="max_batches"):
        trainer(project, resume=True, max_batches=4, seed=None)
    assert files_of(backup) == before


# -- two trainings in one backup folder ------------------------------------------------------
def test_a_second_training_of_the_same_cfg_into_the_same_backup_is_refused(project, capsys):
    backup = project / "backup"
    backup.mkdir()
    lock = backup / "halves.lock"
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{first.pid}\n")
        with pytest.raises(DarknetError, match=rf"halves.lock: error: another training "
                                               rf"\(PID {first.pid}\) is writing"):
            trainer(project, max_batches=2).run()
        r = run_cli("train", str(project / "halves.cfg"), str(project / "halves.data"),
                    "--device", "cpu", "--max-batches", "2")
        assert_one_line_error(r, f"PID {first.pid}")
        assert files_of(backup) == {"halves.lock": f"{first.pid}\n".encode()}
    finally:
        first.kill()
        first.wait()
    capsys.readouterr()
    # the first one is gone (killed): its lock is stale, taken over with a note, then released
    assert trainer(project, max_batches=2).run() == 0
    assert f"taking over the lock of a training that is no longer running (PID {first.pid})" \
        in capsys.readouterr().err
    assert not lock.exists() and (backup / "halves_final.weights").exists()


def test_the_lock_is_per_cfg_and_released_when_the_run_stops(project, monkeypatch):
    backup = project / "backup"
    backup.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (backup / "other.lock").write_text(f"{other.pid}\n")
        monkeypatch.setattr(ClassifierTrainer, "_make", _raise_data_error)
        with pytest.raises(DarknetError, match="bad image"):
            trainer(project, max_batches=2).run()
        assert not (backup / "halves.lock").exists()
        assert (backup / "other.lock").exists()
    finally:
        other.kill()
        other.wait()


def _raise_data_error(self, k):
    raise DarknetError("bad image", "x.png")


# -- Ctrl-C at the end -----------------------------------------------------------------------
def test_ctrl_c_during_the_final_validation_still_writes_final(project, monkeypatch):
    real = ClassifierTrainer._evaluate

    def ctrl_c_at_the_end(self, k):
        if k == self.max_batches:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, k)

    monkeypatch.setattr(ClassifierTrainer, "_evaluate", ctrl_c_at_the_end)
    out = io.StringIO()
    t = ClassifierTrainer(str(project / "halves.cfg"), str(project / "halves.data"),
                          options=_options(max_batches=3),
                          out=out)
    assert t.run() == 0
    assert (project / "backup" / "halves_final.weights").exists()
    assert "--resume" not in out.getvalue()


def _options(**kw):
    from darknet_py.train.options import TrainOptions
    return TrainOptions(device="cpu", progress=False, seed=7, **kw)


def test_resume_of_a_run_stopped_before_final_writes_final(project):
    assert trainer(project, max_batches=3).run() == 0
    backup = project / "backup"
    final = backup / "halves_final.weights"
    expected = final.read_bytes()
    os.remove(final)                 # killed between _last and _final
    resumed = trainer(project, resume=True, max_batches=3, seed=None)
    assert resumed.run() == 0
    assert final.read_bytes() == expected
    with pytest.raises(DarknetError, match="nothing to train; raise max_batches"):
        trainer(project, resume=True, max_batches=3, seed=None)


# -- resume after a crash mid-write ----------------------------------------------------------
def test_resume_drops_a_torn_last_log_line_and_says_so(project, capsys):
    assert trainer(project, max_batches=4).run() == 0
    log = project / "backup" / "halves.log.jsonl"
    with open(log, "a") as f:
        f.write('{"iteration": 5, "loss": 0.6')
    resumed = trainer(project, resume=True, max_batches=6, seed=None)
    assert f"{log}:5: note: the last line was cut" in capsys.readouterr().err
    assert [k for k, _, _ in resumed.losses] == [1, 2, 3, 4]
    assert resumed.run() == 0
    assert [json.loads(line)["iteration"] for line in open(log)] == list(range(1, 7))


def test_a_broken_line_inside_the_log_names_its_line(project):
    assert trainer(project, max_batches=4).run() == 0
    log = project / "backup" / "halves.log.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:1] + ["{oops\n"] + lines[2:]))
    with pytest.raises(DarknetError, match=rf"{log}:2: error: not a log record"):
        trainer(project, resume=True, max_batches=6, seed=None)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut", b"not a zip file", b"garbage\n"])
def test_a_broken_state_file_is_refused_with_what_to_do(project, content):
    assert trainer(project, max_batches=3).run() == 0
    backup = project / "backup"
    state = backup / "halves_last.state.npz"
    state.write_bytes(content)
    before = files_of(backup)
    r = run_cli("train", str(project / "halves.cfg"), str(project / "halves.data"),
                "--device", "cpu", "--resume", "--max-batches", "5")
    assert_one_line_error(r, f"{state}: error: --resume: the state file is broken",
                          "remove it to resume from the weights alone")
    if content and not content.startswith(b"PK"):         # not NumPy's word about pickles
        assert "not a .npz archive" in r.stderr
    assert files_of(backup) == before


# -- the Python API --------------------------------------------------------------------------
SMALL = """[net]
batch=2
width=16
height=16
channels=3

[convolutional]
filters=2
size=3
stride=1
pad=1
activation=logistic
"""


@pytest.fixture
def small_cfg(tmp_path):
    path = tmp_path / "small.cfg"
    path.write_text(SMALL)
    return path


def test_batch_must_be_a_positive_int(small_cfg, tmp_path):
    with pytest.raises(ValueError, match="batch must be at least 1, not 0"):
        Network.from_cfg(str(small_cfg), batch=0, warn=False)
    with pytest.raises(TypeError, match=r"batch must be an int, not str \('8'\)"):
        Network.from_cfg(str(small_cfg), batch="8", warn=False)
    net = Network.from_cfg(str(small_cfg), batch=np.int64(3), warn=False)
    net.save_weights(tmp_path / "w.weights")
    net.load_weights(tmp_path / "w.weights")
    assert net.batch == 3


def test_forward_refuses_nhwc_and_integers_and_takes_uint8_as_pixels(small_cfg, rng):
    net = Network.from_cfg(str(small_cfg), warn=False, seed=1)
    pixels = rng.integers(0, 256, (1, 3, 16, 16)).astype(np.uint8)
    with pytest.raises(ValueError, match=r"shape \(1, 16, 16, 3\); the network takes "
                                         r"\(N, 3, 16, 16\), NCHW order \(this is NHWC"):
        net.forward(pixels.transpose(0, 2, 3, 1).astype(np.float32) / 255)
    with pytest.raises(TypeError, match="dtype int64; the network takes float images"):
        net.forward(pixels.astype(np.int64))
    scaled = np.array(net.forward(pixels.astype(np.float32) / 255))
    assert np.array_equal(np.array(net.forward(pixels)), scaled)
    assert np.array_equal(np.array(net.forward(pixels[0].astype(np.float32) / 255)), scaled)


def test_from_cfg_says_it_takes_a_path_and_from_cfg_text_takes_text(small_cfg):
    with pytest.raises(ValueError, match=r"expects the path of a \.cfg file, and this looks "
                                         r"like cfg text: use Network\.from_cfg_text"):
        Network.from_cfg(SMALL)
    with pytest.raises(TypeError, match="not int"):
        Network.from_cfg(3)
    net = Network.from_cfg_text(SMALL, warn=False)
    assert net.input_shape == (3, 16, 16) and net.resized(32, 32).input_shape == (3, 32, 32)
    with open(small_cfg) as f:
        assert Network.from_cfg(f, warn=False).path == str(small_cfg)
    with pytest.raises(DarknetError, match=r"mine\.cfg:"):
        Network.from_cfg_text(SMALL.replace("filters=2", "filters=two"), "mine.cfg")


# -- .data and list files --------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_data_file_is_one_line(project, encoding):
    data = project / "halves.data"
    data.write_bytes(data.read_text().encode(encoding))
    r = run_cli("train", str(project / "halves.cfg"), str(data), "--device", "cpu")
    assert_one_line_error(r, f"{data}:", "error: ", "UTF")
    assert not (project / "backup").exists()


def test_a_utf16_or_binary_list_file_is_one_line(project):
    listed = project / "train.list"
    listed.write_text("a.png\nb.png\n", encoding="utf-16")
    data = project / "halves.data"
    data.write_text(data.read_text().replace(f"{project}/train-images-idx3-ubyte.gz",
                                             str(listed)))
    r = run_cli("train", str(project / "halves.cfg"), str(data), "--device", "cpu")
    assert_one_line_error(r, f"{listed}:1: error: cannot read train list: not a UTF-8")
    listed.write_bytes(bytes(range(256)))      # the first byte over 127 is on line 2
    with pytest.raises(DarknetError, match=rf"{listed}:2: error: cannot read image list"):
        DetectionSet(str(listed), 2)


def test_an_empty_train_list_is_one_line(project):
    listed = project / "train.list"
    listed.write_text("\n\n")
    data = project / "halves.data"
    data.write_text(data.read_text().replace(f"{project}/train-images-idx3-ubyte.gz",
                                             str(listed)))
    r = run_cli("train", str(project / "halves.cfg"), str(data), "--device", "cpu")
    assert_one_line_error(r, f"{listed}: error: the train list is empty")
    with pytest.raises(DarknetError, match=rf"{listed}: error: the image list is empty"):
        DetectionSet(str(listed), 2)


# -- images: one size policy on every path that opens one ------------------------------------
TINY_YOLO = """[net]
batch=1
width=32
height=32
channels=3

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,4, 8,8, 16,16
classes=1
num=3
"""


@pytest.fixture
def bad_images(tmp_path):
    """Image files that are bad in each way the size policy covers, and the reason it gives."""
    from PIL import Image
    from test_images import png_header
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8)).save(good)
    files = {"bomb.png": (png_header(50000, 50000), "the image is 2,500,000,000 pixels, over"),
             "big.png": (png_header(9500, 9500), "the image is 9500x9500 = 90,250,000 pixels"),
             "empty.jpg": (b"", "an empty file (0 bytes)"),
             "cut.jpg": (good.read_bytes()[:len(good.read_bytes()) // 2],
                         "cannot read image: image file is truncated")}
    out = {}
    for name, (content, reason) in files.items():
        (tmp_path / name).write_bytes(content)
        out[name] = (tmp_path / name, reason)
    return out


def test_bad_images_are_one_line_in_detect_classify_and_predict(bad_images, tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_YOLO)
    Network.from_cfg(str(cfg), warn=False, seed=1).save_weights(tmp_path / "tiny.weights")
    (tmp_path / "c.names").write_text("".join(f"{i}\n" for i in range(18)))
    (tmp_path / "c.data").write_text(f"classes=18\nnames={tmp_path}/c.names\n")
    bomb, big, cut = (bad_images[k] for k in ("bomb.png", "big.png", "cut.jpg"))
    for args, (path, reason) in (
            (("detect", cfg, tmp_path / "tiny.weights"), bomb),
            (("classify", cfg, tmp_path / "tiny.weights"), big),
            (("classifier", "predict", tmp_path / "c.data", cfg, tmp_path / "tiny.weights"),
             cut)):
        r = run_cli(*map(str, args), str(path), "--device", "cpu")
        assert_one_line_error(r, f"{path}: error: {reason}")


def test_data_check_decodes_every_image_under_the_same_policy(bad_images, tmp_path):
    listed = tmp_path / "train.txt"
    names = sorted(bad_images)
    listed.write_text("".join(f"{bad_images[n][0]}\n" for n in names))
    for n in names:
        bad_images[n][0].with_suffix(".txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "d.data").write_text(f"classes=1\ntrain={listed}\n")
    r = run_cli("data", "check", str(tmp_path / "d.data"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "warning" not in r.stderr
    for i, n in enumerate(names, start=1):
        path, reason = bad_images[n]
        assert f"{listed}:{i}: error: image {path}: {reason}" in r.stdout + r.stderr, n


def test_a_detector_training_image_under_the_policy_is_one_error(bad_images):
    from darknet_py.data.detaug import augment
    path, reason = bad_images["bomb.png"]
    with pytest.raises(DarknetError, match=f"^{path}: error: {reason}"):
        augment(str(path), np.zeros((0, 5), np.float32), (3, 32, 32), np.random.default_rng(0),
                0.2, 0, 1, 1, True)


# -- weights holding NaN/inf -----------------------------------------------------------------
def _poisoned(src, dst, where, values):
    """A copy of the .weights file ``src`` with ``values`` written at float offsets ``where``."""
    from darknet_py.nn.weights import read_weights_file
    header, payload = read_weights_file(src)
    payload = payload.copy()
    payload[where] = values
    raw = open(src, "rb").read()
    dst.write_bytes(raw[:header.size] + payload.astype("<f4").tobytes())
    return dst


@pytest.fixture
def nan_weights(project):
    """halves' weights after 3 iterations, and a copy with NaN/inf in layer 0's biases."""
    assert trainer(project, max_batches=3).run() == 0
    good = project / "backup" / "halves_final.weights"
    # layer 0 = [convolutional] batch_normalize=1 filters=4: biases are the file's first floats
    bad = _poisoned(good, project / "nan.weights", [0, 1, 2], [np.nan, np.inf, -np.inf])
    return good, bad


def test_loading_nan_weights_warns_naming_the_layer(nan_weights, project):
    _, bad = nan_weights
    net = Network.from_cfg(str(project / "halves.cfg"), warn=False)
    with pytest.warns(UserWarning, match=rf"{bad}: warning: 3 NaN/inf value\(s\): layer 0 "
                                         r"\(convolutional\) biases has 3 of them: the outputs"):
        net.load_weights(bad)
    assert net.nonfinite == [(0, "convolutional", "biases", 3)]
    image = project / "probe.png"
    from PIL import Image
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(image)
    r = run_cli("classify", str(project / "halves.cfg"), str(bad), str(image), "--device", "cpu")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0].startswith(f"{bad}: warning: 3 NaN/inf value(s): layer 0 ")


@pytest.mark.parametrize("command", [("fuse", "out.cfg", "out.weights"),
                                     ("partial", "out.weights", "9"),
                                     ("reset", "out.weights"), ("rgbgr", "out.weights")])
def test_weight_tools_refuse_to_write_nan_weights(project, command):
    cfg = project / "rgb.cfg"          # rgbgr needs a first conv of 3 channels
    cfg.write_text((project / "halves.cfg").read_text().replace("channels=1", "channels=3"))
    net = Network.from_cfg(str(cfg), warn=False, seed=1)
    net.layers[0].biases[:3] = [np.nan, np.inf, -np.inf]
    bad = project / "nan.weights"
    net.save_weights(bad, allow_nonfinite=True)
    with pytest.raises(DarknetError, match="refusing to write weights holding 3 NaN/inf"):
        net.save_weights(project / "out.weights")
    name, *outs = command
    r = run_cli(name, str(cfg), str(bad), *(str(project / o) if "." in o else o for o in outs))
    assert_one_line_error(r, f"{bad}: error: the weights hold 3 NaN/inf value(s): layer 0 "
                             "(convolutional) biases has 3 of them: ", "not written")
    assert not (project / "out.weights").exists() and not (project / "out.cfg").exists()


def test_partial_keeps_the_layers_before_a_nan(nan_weights, project):
    good, _ = nan_weights
    from darknet_py.nn.weights import read_weights_file
    n = read_weights_file(good)[1].size
    bad = _poisoned(good, project / "tail.weights", [n - 1], [np.nan])    # in the last layer
    r = run_cli("partial", str(project / "halves.cfg"), str(bad), str(project / "out.weights"),
                "1")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr and (project / "out.weights").exists()


def test_training_refuses_to_start_from_nan_weights(nan_weights, project):
    _, bad = nan_weights
    backup = project / "backup"
    before = files_of(backup)
    r = run_cli("train", str(project / "halves.cfg"), str(project / "halves.data"), str(bad),
                "--device", "cpu", "-clear")
    assert_one_line_error(r, f"{bad}: error: the weights hold 3 NaN/inf value(s): layer 0",
                          "training cannot start from them")
    assert files_of(backup) == before


def test_weights_that_become_nan_with_a_finite_loss_are_not_saved(project, capsys):
    """An update that leaves NaN in the weights while the loss was still finite: the backup
    due at that iteration is refused, the last good one stays, the run stops naming it."""
    t = trainer(project, max_batches=6, backup_every=2)
    real = t.net.update

    def update_then_poison(*a, **kw):
        out = real(*a, **kw)
        if t.net.seen // t.images_per_iteration == 4:
            t.net.layers[0].biases[0] = np.nan
        return out

    t.net.update = update_then_poison
    assert t.run() == 1
    err = capsys.readouterr().err
    assert "the weights became NaN/inf (refusing to write weights holding 1 NaN/inf value(s): " \
           "layer 0 (convolutional) biases has 1 of them;" in err
    assert "at iteration 4" in err and "(iteration 2)" in err
    backup = project / "backup"
    from darknet_py.train.checkpoint import saved_iteration
    assert saved_iteration(str(backup / "halves_last.weights"), t.images_per_iteration) == 2
    from darknet_py.nn.weights import read_weights_file
    assert np.isfinite(read_weights_file(backup / "halves_last.weights")[1]).all()


# -- found by tests/test_data_fuzz.py --------------------------------------------------------
def test_classes_below_one_is_one_line_at_its_line(project):
    data = project / "halves.data"
    data.write_text(data.read_text().replace("classes=2", "classes=-1"))
    for args in (("data", "check", str(data)),
                 ("train", str(project / "halves.cfg"), str(data), "--device", "cpu")):
        r = run_cli(*args)
        assert_one_line_error(r, f"{data}:1: error: classes=-1: expected a whole number >= 1")


def test_a_backup_that_is_a_file_says_it_must_be_a_folder(project):
    data = project / "halves.data"
    (project / "notadir").write_text("x")
    data.write_text(data.read_text().replace(f"backup={project}/backup",
                                             f"backup={project}/notadir"))
    r = run_cli("train", str(project / "halves.cfg"), str(data), "--device", "cpu")
    assert_one_line_error(r, f"{data}:5: error: backup={project}/notadir: a file, not a folder")
    assert (project / "notadir").read_text() == "x"


def test_a_missing_or_short_names_file_is_said_at_its_line(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_YOLO.replace("classes=1", "classes=2").replace("filters=18",
                                                                       "filters=21"))
    Network.from_cfg(str(cfg), warn=False, seed=1).save_weights(tmp_path / "tiny.weights")
    from PIL import Image
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    data = tmp_path / "t.data"
    data.write_text(f"classes=2\nnames={tmp_path}/no.names\n")
    r = run_cli("detector", "test", str(data), str(cfg), str(tmp_path / "tiny.weights"),
                str(tmp_path / "a.png"), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{data}:2: warning: names={tmp_path}/no.names: no such file; classes are shown " \
           "by number" in r.stderr
    (tmp_path / "one.names").write_text("left\n")
    data.write_text(f"classes=2\nnames={tmp_path}/one.names\n")
    r = run_cli("data", "check", str(data))
    assert f"{data}:2: warning: {tmp_path}/one.names has 1 names but there are 2 classes" \
        in r.stdout + r.stderr


def test_train_step_without_truth_is_refused_before_it_changes_the_weights(project):
    net = Network.from_cfg(str(project / "halves.cfg"), warn=False, seed=1)
    before = net.layers[0].weights.copy()
    x = np.zeros((net.batch, 1, 12, 12), np.float32)
    with pytest.raises(ValueError, match=r"train_step needs the truth for layer \d+'s loss "
                                         r"\(softmax\): a \(N, 2\) one-hot array, not None"):
        net.train_step(x, None)
    assert np.array_equal(net.layers[0].weights, before) and net.seen == 0


STRIDED_YOLO = """[net]
batch=2
width={w}
height=32
channels=3
max_batches=1

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[upsample]
stride=2

[route]
layers=-1,-3

[convolutional]
filters=27
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,4, 8,8, 16,16
classes=4
num=3
"""


@pytest.mark.parametrize("width, level", [(33, "error"), (33, "warning"), (32, None)])
def test_a_size_off_the_stride_is_named_when_training_starts(tmp_path, capsys, width, level):
    """width=33 with a stride of 2: the route after the upsample cannot join 33 and 34
    columns; the error names width= and the multiples to use, not the [route].  Without the
    route it builds, and the training says so once (AlexeyAB warns too)."""
    from darknet_py.data.shapes import make_shapes
    from darknet_py.errors import CfgError
    from darknet_py.train.detector import DetectorTrainer
    from darknet_py.train.options import TrainOptions
    make_shapes(tmp_path / "set", 4, size=(32, 32), seed=1, absolute=True)
    data = tmp_path / "set" / "shapes.data"
    data.write_text(data.read_text().replace("backup=backup/", f"backup={tmp_path}/backup"))
    cfg = tmp_path / "s.cfg"
    text = STRIDED_YOLO.format(w=width)
    if level == "warning":
        text = text.replace("[upsample]\nstride=2\n\n[route]\nlayers=-1,-3\n", "")
    cfg.write_text(text)
    options = TrainOptions(device="cpu", progress=False, seed=1)
    if level == "error":
        with pytest.raises(CfgError, match=rf"^{cfg}:3: error: width=33 is not a multiple of 2, "
                                           "the network's total stride .*use width=32 or 34$"):
            DetectorTrainer(str(cfg), str(data), options=options, out=open(os.devnull, "w"))
    else:
        DetectorTrainer(str(cfg), str(data), options=options, out=open(os.devnull, "w"))
        err = capsys.readouterr().err
        if level == "warning":
            assert f"{cfg}:3: warning: width=33 is not a multiple of 2" in err, err
        else:
            assert "stride" not in err


def test_a_batch_larger_than_the_dataset_is_said_and_every_batch_is_full(project, capsys):
    from darknet_py.data.datasets import epoch_order
    cfg = project / "halves.cfg"
    cfg.write_text(cfg.read_text().replace("batch=8", "batch=200"))     # 100 per subdivision
    t = trainer(project, max_batches=1)
    assert f"{cfg}:2: warning: a mini-batch of 100 images (batch/subdivisions) is more than the " \
           "64 training images" in capsys.readouterr().err
    for k in range(3):
        idx = epoch_order(64, 100, 7, k)
        assert len(idx) == 100 and set(idx) == set(range(64))
    assert np.array_equal(epoch_order(64, 8, 7, 3), np.random.default_rng([7, 0])
                          .permutation(64)[24:32])       # batch <= n: as before
    # an epoch's order is drawn once and its batches are slices of it, read-only
    assert np.array_equal(np.concatenate([epoch_order(64, 8, 7, k) for k in range(8, 16)]),
                          np.random.default_rng([7, 1]).permutation(64))
    assert not epoch_order(64, 8, 7, 9).flags.writeable
    assert t.run() == 0
