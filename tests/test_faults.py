"""Faults during training (issue 15): a training process killed with SIGKILL at any instant
leaves only complete files in its backup folder, and ``--resume`` then ends with the weights
and the log of the run that was never interrupted, byte for byte.

The instants are drawn from a fixed seed over the measured length of an uninterrupted run; the
run saves a checkpoint every iteration of a tiny network, so a good share of them fall inside a
save.  The window between the checkpoint's writes is also hit on purpose, in-process, by making
the save die there.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from darknet_py.nn.weights import read_weights_file
from darknet_py.train.checkpoint import read_state
from test_train import ROOT, make_project, project, trainer  # noqa: F401  (the fixture)

ITERATIONS = 16
ARGS = ["--device", "cpu", "--seed", "5", "--backup-every", "1", "--no-progress",
        "--max-batches", str(ITERATIONS)]


def start(folder, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "darknet_py", "train",
                             str(folder / "halves.cfg"), str(folder / "halves.data"), *ARGS,
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=folder)


def copy_project(src, dst):
    """The project at ``dst``, its .data pointing at its own backup folder."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("backup"))
    data = dst / "halves.data"
    data.write_text(data.read_text().replace(str(src), str(dst)))
    return dst


def log_records(path):
    """The log's records without their timings (seconds, images/s differ run to run)."""
    out = []
    for line in open(path):
        record = json.loads(line)
        record.pop("seconds", None)
        record.pop("images_per_s", None)
        out.append(record)
    return out


def assert_only_complete_files(backup, floats):
    """Every file a killed run left: a whole .weights file of the right size, a state file
    that reads, a log whose lines parse (the last one may be cut: resume drops it)."""
    for path in backup.iterdir():
        name = path.name
        if name.endswith(".weights"):
            header, payload = read_weights_file(path)
            assert payload.size == floats, name
            assert np.isfinite(payload).all(), name
        elif name.endswith(".state.npz"):
            read_state(str(path))
        elif name.endswith(".log.jsonl"):
            lines = path.read_text().splitlines(keepends=True)
            for line in lines[:-1]:
                json.loads(line)
        elif name.startswith((".halves", ".chart_halves.png.")):
            pass            # a write the kill cut short: never read, removed by the next start
        else:
            assert name in ("halves.lock", "chart_halves.png"), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference run: its final weights, its log records, and how long its training took
    (from the log's appearance to _final's), in seconds."""
    base = make_project(tmp_path_factory.mktemp("reference"))
    p = start(base)
    log, final = base / "backup" / "halves.log.jsonl", base / "backup" / "halves_final.weights"
    began = when_it_exists(log, p)
    training = when_it_exists(final, p) - began
    assert p.wait(timeout=120) == 0, p.stderr.read()
    floats = read_weights_file(final)[1].size
    return dict(base=base, final=final.read_bytes(), log=log_records(log), training=training,
                floats=floats)


def when_it_exists(path, p):
    """The time at which ``path`` appears (or ``p`` ends), polled every 2 ms."""
    while not path.exists() and p.poll() is None:
        time.sleep(0.002)
    return time.monotonic()


def test_sigkill_at_seeded_instants_then_resume_ends_byte_identical(uninterrupted,
                                                                   tmp_path):
    ref = uninterrupted
    rng = np.random.default_rng(15)
    # more trials to hunt rare windows: DARKNET_PY_FAULT_TRIALS=100 pytest -s tests/test_faults.py
    trials = int(os.environ.get("DARKNET_PY_FAULT_TRIALS", 8))
    killed_after, windows = [], {"state ahead of the weights": 0, "a write cut": 0}
    for trial in range(trials):
        folder = copy_project(ref["base"], tmp_path / f"trial{trial}")
        # an instant of the training itself, from its start (its log appears) to its end
        instant = rng.uniform(0, ref["training"])
        p = start(folder)
        when_it_exists(folder / "backup" / "halves.log.jsonl", p)
        time.sleep(instant)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        backup = folder / "backup"
        if backup.exists():
            assert_only_complete_files(backup, ref["floats"])
            windows["a write cut"] += any(n.startswith(".") for n in os.listdir(backup))
            state, last = backup / "halves_last.state.npz", backup / "halves_last.weights"
            if state.exists() and last.exists():
                windows["state ahead of the weights"] += \
                    read_state(str(state))[0]["seen"] > read_weights_file(last)[0].seen
        final = backup / "halves_final.weights"
        if final.exists():              # killed after the run had finished its work
            killed_after.append("the end")
        else:
            resumable = (backup / "halves_last.weights").exists()
            killed_after.append(f"{instant:.3f}s" + ("" if resumable else " (before a backup)"))
            r = start(folder, *(["--resume"] if resumable else []))
            assert r.wait(timeout=120) == 0, r.stderr.read()
        assert final.read_bytes() == ref["final"], (trial, killed_after)
        assert log_records(backup / "halves.log.jsonl") == ref["log"], (trial, killed_after)
        assert not [n for n in os.listdir(backup) if n.startswith(".")], os.listdir(backup)
    print(f"\n{trials} kills: {killed_after}; {windows}")
    # the instants reached into the run (not all before its first backup)
    assert sum("before" not in k and k != "the end" for k in killed_after) >= trials // 2, \
        killed_after


# -- the window between the checkpoint's writes, hit on purpose --------------------------------
class Killed(BaseException):
    """Stands for SIGKILL inside a save (a BaseException: nothing in the trainer catches it)."""


@pytest.mark.parametrize("writes_before_death", [0, 1])
def test_a_death_between_the_checkpoints_writes_still_resumes_exactly(project, monkeypatch,
                                                                      writes_before_death):
    """The checkpoint is two files; a death after the first of them at iteration 4 (the
    second still from iteration 3) resumes to the uninterrupted run's weights."""
    import darknet_py.atomic as atomic
    assert trainer(project, max_batches=6, backup_every=1, seed=3).run() == 0
    backup = project / "backup"
    expected = (backup / "halves_final.weights").read_bytes()
    shutil.rmtree(backup)

    real = atomic.atomic_write
    writes = []

    def dying_write(path, chunks):      # checkpoint n is writes 2n - 1 (state), 2n (weights)
        name = os.path.basename(path)
        if name.startswith("halves_last."):
            writes.append(name)
            if len(writes) == 2 * 3 + 1 + writes_before_death:     # in iteration 4's
                raise Killed()
        return real(path, chunks)

    from darknet_py.nn import network
    from darknet_py.train import checkpoint
    from darknet_py.train import trainer as trainer_module
    for module in (network, checkpoint, trainer_module):
        monkeypatch.setattr(module, "atomic_write", dying_write)
    t = trainer(project, max_batches=6, backup_every=1, seed=3)
    with pytest.raises(Killed):
        t.run()
    monkeypatch.undo()
    (backup / "halves.lock").unlink(missing_ok=True)       # a killed process leaves it
    resumed = trainer(project, resume=True, max_batches=6, backup_every=1, seed=None)
    assert resumed.run() == 0
    assert (backup / "halves_final.weights").read_bytes() == expected


def test_the_backup_thread_writes_in_order_and_nothing_after_a_failed_write():
    """train/checkpoint.py BackgroundWriter: the writes run in the order asked; the first
    error reaches the training's thread (at the next submit or wait) and nothing asked after
    it is written, as after a kill."""
    from darknet_py.train.checkpoint import BackgroundWriter
    writer = BackgroundWriter()
    done = []

    def full_disk():
        raise OSError(28, "No space left on device")
    for job in (lambda: done.append(1), lambda: done.append(2), full_disk,
                lambda: done.append(4)):
        writer.submit(job)
    with pytest.raises(OSError, match="No space"):
        writer.wait()
    assert done == [1, 2]
    writer.close()


def test_a_death_inside_the_last_chart_leaves_a_resumable_run_and_no_cut_write(project,
                                                                             monkeypatch):
    """The window CI's kills once hit: the last chart half-written when the process died.
    _final is the run's last file, so such a run has no _final yet; --resume writes it and
    removes the cut chart (a finished run would never have been started again to do so)."""
    from darknet_py.train import chart
    assert trainer(project, max_batches=4, backup_every=1, seed=3).run() == 0
    backup = project / "backup"
    expected = (backup / "halves_final.weights").read_bytes()
    shutil.rmtree(backup)

    t = trainer(project, max_batches=4, backup_every=1, seed=3)
    real_finish = t._finish

    def cut_chart(img, path):           # what SIGKILL leaves: the temporary file, half full
        (backup / f".{os.path.basename(path)}.cut.png").write_bytes(b"\x89PNG")
        raise Killed()

    def finish():
        t._written()        # the charts asked before this one are drawn by the real code
        monkeypatch.setattr(chart, "_save_atomic", cut_chart)
        real_finish()
    monkeypatch.setattr(t, "_finish", finish)
    with pytest.raises(Killed):
        t.run()
    monkeypatch.undo()
    assert not (backup / "halves_final.weights").exists()
    (backup / "halves.lock").unlink(missing_ok=True)       # a killed process leaves it
    resumed = trainer(project, resume=True, max_batches=4, backup_every=1, seed=None)
    assert resumed.run() == 0
    assert (backup / "halves_final.weights").read_bytes() == expected
    assert not [n for n in os.listdir(backup) if n.startswith(".")], os.listdir(backup)
