"""--profile: the table and the log record, parts that add up to the wall time, time charged
to the part that spent it, and nothing changed (or synchronised) without it."""

import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from darknet_py.commands import build_parser
from darknet_py.data.idx import write_idx
from darknet_py.nn.backend import CPU
from darknet_py.train.classifier import ClassifierTrainer
from darknet_py.train.options import TrainOptions
from darknet_py.train.profile import DEFAULT_ITERATIONS, PARTS, Profiler, profile_table

from test_train import CFG, halves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def project(tmp_path, rng):
    for split, n in (("train", 64), ("t10k", 32)):
        images, labels = halves(n, rng)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    (tmp_path / "halves.data").write_text(
        f"classes=2\ntrain={tmp_path}/train-images-idx3-ubyte.gz\n"
        f"valid={tmp_path}/t10k-images-idx3-ubyte.gz\nbackup={tmp_path}/backup\n")
    (tmp_path / "halves.cfg").write_text(CFG.format(lr=0.05))
    return tmp_path


def trainer(project, out, **kw):
    kw.setdefault("seed", 7)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return ClassifierTrainer(str(project / "halves.cfg"), str(project / "halves.data"), None,
                             TrainOptions(**kw), out=out)


def profile_record(project):
    records = [json.loads(line) for line in open(project / "backup" / "halves.log.jsonl")]
    found = [r for r in records if "profile" in r]
    assert len(found) == 1
    return found[0]


def test_the_window_follows_a_warm_up_and_shrinks_to_fit_the_run():
    def window(iterations, start, max_batches):
        p = Profiler.for_run(CPU, iterations, start, max_batches)
        return p.first + 1, p.first + p.count        # the iterations as printed
    assert window(DEFAULT_ITERATIONS, 0, 3000) == (11, 110)
    assert window(4, 0, 6) == (3, 6)
    assert window(100, 0, 3) == (1, 3)
    assert window(100, 50, 60) == (51, 60)          # resumed at 50
    p = Profiler.for_run(CPU, 4, 0, 100)
    assert [k for k in range(100) if p.covers(k)] == [10, 11, 12, 13]


def test_the_table_and_the_record_add_up_to_the_wall_time_around_them(project):
    """6 iterations after 2 of warm-up: the parts sum to the profiled ms per iteration, and
    that matches the time measured around the same iterations from outside."""
    out = io.StringIO()
    t = trainer(project, out, profile=6, profile_warmup=2, max_batches=12)
    outer = {}
    train_iteration, profiled = t._train_iteration, t._profiled

    # from the entry of the first timed iteration to the entry of the last one's _profiled
    # (its end; the report printed after it is not timed: on a loaded machine it would be
    # the outside clock's alone)
    def timed_train_iteration(batches):
        if t.iteration == 2:
            outer["start"] = time.perf_counter()
        return train_iteration(batches)

    def timed_profiled(k, log, stopping):
        if k == 8:
            outer["end"] = time.perf_counter()
        return profiled(k, log, stopping)

    t._train_iteration, t._profiled = timed_train_iteration, timed_profiled
    assert t.run() == 0
    record = profile_record(project)
    assert record["iteration"] == 8
    report = record["profile"]
    assert report["iterations"] == [3, 8] and report["device"] == "cpu"
    parts = report["parts_ms"]
    assert list(parts) == [k for k, _ in PARTS if k not in ("allreduce", "graph")]
    wall = report["ms_per_iteration"]
    assert sum(parts.values()) == pytest.approx(wall, rel=0.03)
    assert wall * 6 == pytest.approx((outer["end"] - outer["start"]) * 1e3, rel=0.05)
    assert report["images_per_s"] == pytest.approx(8 / wall * 1e3, rel=1e-3)
    text = out.getvalue().splitlines()
    head = text.index("profile of iterations 3-8 on cpu: "
                      f"{wall:.2f} ms per iteration, {report['images_per_s']:.1f} images/s")
    rows = text[head + 2:head + 2 + len(parts)]
    for (key, ms), row in zip(parts.items(), rows):
        assert row.split()[-2:] == [f"{ms:.2f}", f"{report['parts_percent'][key]:.1f}"], row
    assert rows[0].strip().startswith("data wait") and rows[4].strip().startswith("backward")


def test_time_is_charged_to_the_part_that_spent_it(project, monkeypatch):
    """Sleeps put into the loader (30 ms per mini-batch), the loss layer's forward (10 ms),
    one layer's update (5 ms) and validation (30 ms, once in the 6 iterations) show up there."""
    from darknet_py.nn.layers.softmax import SoftmaxLayer
    t = trainer(project, io.StringIO(), profile=6, profile_warmup=2, max_batches=12)
    forward = SoftmaxLayer.forward

    def slow_loss(self, net):
        if net.train:
            time.sleep(0.010)
        return forward(self, net)

    monkeypatch.setattr(SoftmaxLayer, "forward", slow_loss)
    make, evaluate, update = t._make, t._evaluate, t.net.layers[0].update
    t._make = lambda k: time.sleep(0.030) or make(k)
    t._evaluate = lambda k: time.sleep(0.030) or evaluate(k)
    t.net.layers[0].update = lambda args: time.sleep(0.005) or update(args)
    assert t.run() == 0
    ms = profile_record(project)["profile"]["parts_ms"]
    assert ms["loss"] >= 2 * 10 > ms["forward"]           # two mini-batches per iteration
    assert ms["update"] >= 5
    assert ms["validate"] >= 30 / 6                          # the epoch's top-1 at iteration 8
    assert ms["data"] >= 15             # 60 ms of loading against about 30 of the rest
    assert ms["backward"] < 10 and ms["log"] < 5


def test_without_profile_the_output_and_the_weights_are_the_same(project, monkeypatch):
    """The same seeded run with and without --profile: the same lines (but for the profile's
    and the timings), log records and weights; without it no profiler mark is ever made."""
    def lines(out):
        return [re.sub(r"[\d.]+ seconds", "S seconds", line) for line in
                out.getvalue().splitlines()]

    def fail(*args):
        raise AssertionError("a profiler mark without --profile")

    with monkeypatch.context() as m:
        for name in ("begin", "lap", "end"):
            m.setattr(Profiler, name, fail)
        plain = io.StringIO()
        assert trainer(project, plain, max_batches=12, darknet_lines=True).run() == 0
    log = project / "backup" / "halves.log.jsonl"
    plain_log = [json.loads(line) for line in open(log)]
    plain_weights = (project / "backup" / "halves_final.weights").read_bytes()
    profiled = io.StringIO()
    assert trainer(project, profiled, max_batches=12, darknet_lines=True, profile=4,
                   profile_warmup=2).run() == 0
    got = lines(profiled)
    head = next(i for i, line in enumerate(got) if line.startswith("profile of iterations"))
    table = len(profile_record(project)["profile"]["parts_ms"]) + 2
    assert got[:head] + got[head + table:] == lines(plain)
    assert (project / "backup" / "halves_final.weights").read_bytes() == plain_weights
    timing = ("seconds", "images_per_s")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in plain_log]
    assert not any("profile" in r for r in plain_log)
    assert [{k: v for k, v in r.items() if k not in timing}
            for r in map(json.loads, open(log)) if "profile" not in r] == strip


def test_a_profiled_run_resumes_and_its_loss_curve_keeps_one_point_per_iteration(project):
    """The profile record sits in the log among the iterations' records: --resume reads the
    log back (checkpoint.read_log) and must skip it."""
    assert trainer(project, io.StringIO(), max_batches=8, profile=3).run() == 0
    t = trainer(project, io.StringIO(), max_batches=12, resume=True)
    assert [k for k, _, _ in t.losses] == list(range(1, 9))
    assert t.run() == 0
    assert profile_record(project)["profile"]["iterations"] == [6, 8]


def test_cli_profile_flag(project):
    assert build_parser().parse_args(["train", "c.cfg", "d.data", "--profile"]).profile == \
        DEFAULT_ITERATIONS
    assert build_parser().parse_args(["train", "c.cfg", "d.data"]).profile == 0
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "darknet_py", "train", "halves.cfg", "halves.data",
                        "--profile", "3", "--max-batches", "5", "--device", "cpu",
                        "--no-progress", "--seed", "1"], capture_output=True, text=True,
                       env=env, cwd=project)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^profile of iterations 3-5 on cpu: [\d.]+ ms per iteration", r.stdout,
                     re.M)
    assert re.search(r"^  loss layers' forward +[\d.]+ +[\d.]+$", r.stdout, re.M)
    assert profile_record(project)["profile"]["iterations"] == [3, 5]


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [True, False])
def test_on_the_gpu_the_parts_add_up_with_the_device_synchronised(project, graphs):
    out = io.StringIO()
    t = trainer(project, out, device="gpu", profile=6, profile_warmup=1, max_batches=12,
                graphs=graphs)
    assert t.run() == 0
    report = profile_record(project)["profile"]
    assert report["device"] == "gpu:0"
    assert sum(report["parts_ms"].values()) == pytest.approx(report["ms_per_iteration"],
                                                             rel=0.03)
    parts = report["parts_ms"]
    if graphs:                  # the pass replayed from its CUDA graph
        assert parts["graph"] > 0 and parts["forward"] < parts["graph"]
        # subdivisions=2: iteration 1's two passes run eagerly (graphs.WARMUP), the window
        # (iterations 2-7) starts with the capture; the other passes replay it
        assert report["events"] == {"training passes captured": 1}
    else:
        assert parts["forward"] > 0 and parts["backward"] > 0 and "graph" not in parts
        assert report["events"] == {}


def test_a_loss_read_after_the_next_iteration_logs_what_reading_it_at_once_logs(project):
    """The trainer reads an iteration's loss after queuing the next one (reading waits for the
    GPU) unless something after it needs it; Darknet's lines read every loss at once.  The two
    logs hold the same iterations, losses, averages, rates and counts, and end in the same
    weights."""
    runs = {}
    for darknet_lines in (False, True):
        out = io.StringIO()
        t = trainer(project, out, max_batches=11, backup_every=5, darknet_lines=darknet_lines)
        assert t.run() == 0
        backup = project / "backup"
        records = [json.loads(line) for line in open(backup / "halves.log.jsonl")]
        seconds = sorted(r["seconds"] for r in records if "loss" in r)
        # each an iteration's wall time, not the read's (a loaded machine spreads them)
        assert seconds[0] > 0.05 * seconds[len(seconds) // 2]
        runs[darknet_lines] = ([{k: r[k] for k in ("iteration", "loss", "avg_loss", "rate",
                                                   "seen")}
                                for r in records if "loss" in r],
                               (backup / "halves_final.weights").read_bytes())
        for path in backup.iterdir():
            path.unlink()
    (deferred, weights), (at_once, same_weights) = runs[False], runs[True]
    assert [r["iteration"] for r in deferred] == list(range(1, 12))
    assert deferred == at_once and weights == same_weights


def test_the_table_ends_with_what_happened_in_the_window():
    """Events that cost time (captures, eager passes, multi-scale copies) follow the parts."""
    p = Profiler(CPU, 0, 2)
    for _ in range(2):
        p.begin()
        p.lap("forward")
        p.end()
    p.tally("multi-scale copies made")
    p.tally("multi-scale copies made")
    p.tally("training passes captured")
    report = p.report(8)
    assert report["events"] == {"multi-scale copies made": 2, "training passes captured": 1}
    assert profile_table(report)[-1] == \
        "  in these iterations: multi-scale copies made: 2; training passes captured: 1"
    assert "in these iterations" not in "\n".join(profile_table(Profiler(CPU, 0, 1).report(8)))
