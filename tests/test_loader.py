"""The data pipeline: worker processes writing into a ring of shared-memory slots, Batches with
several batches in flight, the worker and BLAS thread counts."""

import os

import numpy as np
import pytest

from conftest import rng_for_test
from darknet_py.data.datasets import Batches
from darknet_py.data.detaug import DetectionSet
from darknet_py.data.threads import (batches_ahead, blas_threads, default_loader_processes,
                                     limit_blas)
from darknet_py.errors import DarknetError

H, W = 48, 64
AUG = dict(jitter=.2, hue=.1, saturation=1.5, exposure=1.5)


def _dataset(tmp_path, n=6, corrupt=None):
    """``n`` random images with two boxes each; image ``corrupt`` cut short after its header."""
    from PIL import Image
    rng = rng_for_test()
    lines = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 5 * i, 60, 3), dtype=np.uint8)).save(path)
        if i == corrupt:
            path.write_bytes(path.read_bytes()[:200])
        (tmp_path / f"{i}.txt").write_text(f"{i % 3} 0.5 0.5 0.4 0.3\n1 0.3 0.3 0.2 0.2\n")
        lines.append(str(path))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return DetectionSet(str(tmp_path / "train.txt"), 3)


def test_batches_in_flight_through_a_small_ring_equal_the_threads(tmp_path):
    """Several pending batches at once, slots reused and enlarged for a larger network size
    (multi-scale): every batch is the thread pool's, bit for bit."""
    data = _dataset(tmp_path)
    seed = int(rng_for_test().integers(1 << 30))
    shapes = [(3, H, W), (3, H, W), (3, 2 * H, W), (3, H, W), (3, 2 * H, 2 * W), (3, H, W)]

    def args(k):
        idx = np.random.default_rng([seed, k]).integers(0, len(data), 5)
        return idx, shapes[k], np.random.default_rng([seed, k, 1])

    pending = [data.submit(*args(k), mosaic=k % 2 == 0, processes=3, **AUG) for k in range(3)]
    for k in range(len(shapes)):
        x, truth = pending[k].result()
        want_x, want_truth = data.batch(*args(k), mosaic=k % 2 == 0, **AUG)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(truth, want_truth)
        pending[k].release()
        if k + 3 < len(shapes):
            pending.append(data.submit(*args(k + 3), mosaic=(k + 3) % 2 == 0, processes=3,
                                       **AUG))
    pool = data._workers(3)
    # never more slots than batches held at once; a released one is reused
    assert len(pool._slots) <= 3
    assert not any(slot.busy for slot in pool._slots)


def test_a_corrupt_image_in_a_worker_is_the_one_line_error_naming_it(tmp_path):
    data = _dataset(tmp_path, corrupt=2)
    with pytest.raises(DarknetError) as e:
        data.batch([0, 1, 2, 3], (3, H, W), np.random.default_rng(1), processes=2, **AUG)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / '2.png'}: error: cannot read image")
    assert "\n" not in message
    # the pool goes on with good images
    x, _ = data.batch([0, 1], (3, H, W), np.random.default_rng(2), processes=2, **AUG)
    assert x.shape == (2, 3, H, W)


def test_a_dead_worker_is_an_error_not_a_hang(tmp_path):
    data = _dataset(tmp_path)
    data.batch([0], (3, H, W), np.random.default_rng(3), processes=2)
    pool = data._workers(2)
    for p in pool._procs:
        p.kill()
        p.join(5)
    pending = data.submit([0, 1, 2], (3, H, W), np.random.default_rng(4), processes=2)
    with pytest.raises(DarknetError, match="worker process died"):
        pending.result()


def test_closing_the_pool_stops_the_workers_and_frees_the_slots(tmp_path):
    data = _dataset(tmp_path)
    data.batch([0, 1], (3, H, W), np.random.default_rng(5), processes=2)
    pool = data._workers(2)
    names = [slot.shm.name for slot in pool._slots]
    assert names and all(os.path.exists(f"/dev/shm/{n}") for n in names)
    pool.close()
    assert not any(p.is_alive() for p in pool._procs)
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in names)


class _Pending:
    """A pending batch that records what happened to it."""

    def __init__(self, k, log):
        self.k, self.log = k, log

    def result(self):
        self.log.append(("result", self.k))
        return np.full((2, 3), self.k, np.float32), np.full((2, 1), -self.k, np.float32)

    def release(self):
        self.log.append(("release", self.k))


def test_batches_keep_several_in_flight_and_hand_each_back_after_the_next():
    log, made = [], []
    start = int(rng_for_test().integers(0, 100))

    def make(k):
        made.append(k)
        return _Pending(k, log)

    batches = Batches(make, start, prefetch=1, ahead=3)
    for k in range(start, start + 5):
        x, truth = batches.next()
        assert x[0, 0] == k and truth[0, 0] == -k
        # what next() returned stays valid (unreleased) until the following next()
        assert ("release", k) not in log and (k == start or ("release", k - 1) in log)
    batches.close()
    assert made[:7] == list(range(start, start + 7))      # in order, ahead of the consumer
    assert ("release", start + 4) in log                   # close hands back the last one
    results = [k for what, k in log if what == "result"]
    assert all(("release", k) in log for k in results)    # nothing prepared is leaked


def test_batches_pass_a_makers_error_to_the_consumer():
    def make(k):
        if k == 2:
            raise DarknetError("bad image", "x.png")
        return np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)

    batches = Batches(make, 0, ahead=2)
    batches.next()
    batches.next()
    with pytest.raises(DarknetError, match="bad image"):
        batches.next()
    batches.close()


@pytest.mark.parametrize("cores,on_gpu,processes", [
    (2, True, 0), (4, True, 0), (8, True, 6), (16, True, 14), (64, True, 32), (16, False, 0)])
def test_default_loader_processes(cores, on_gpu, processes):
    assert default_loader_processes(on_gpu, cores) == processes


def test_blas_gets_the_cores_the_loader_leaves():
    assert blas_threads(0, cores=2) == 1
    assert blas_threads(0, cores=8) == 7
    assert blas_threads(14, cores=16) == 1
    assert blas_threads(30, cores=16) == 1
    assert batches_ahead(0, 4) == 2
    assert batches_ahead(14, 4) == 14          # four images per worker of 4-image mini-batches
    assert batches_ahead(14, 64) == 2


def test_limit_blas_sets_the_thread_count_unless_the_environment_chose(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    np.ones((4, 4)) @ np.ones((4, 4))             # BLAS is loaded
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("NumPy without a BLAS threadpoolctl knows")
    with limit_blas(1) as limits:
        assert limits is not None
        assert all(i["num_threads"] == 1 for i in threadpoolctl.threadpool_info()
                   if i["user_api"] == "blas")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with limit_blas(1) as limits:
        assert limits is None


def test_training_stops_on_a_corrupt_image_with_its_one_line_error(tmp_path):
    """Through the command, as a user sees it: the workers' error is the file's one line."""
    import re
    import subprocess
    import sys
    from darknet_py.data.shapes import make_shapes
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    make_shapes(tmp_path / "set", 12, size=(64, 64), seed=int(rng_for_test().integers(100)),
                absolute=True)
    bad = (tmp_path / "set" / "train.txt").read_text().split()[0]
    with open(bad, "rb") as f:
        head = f.read(300)
    with open(bad, "wb") as f:
        f.write(head)
    data = (tmp_path / "set" / "shapes.data").read_text()
    (tmp_path / "s.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data))
    r = subprocess.run([sys.executable, "-m", "darknet_py", "detector", "train",
                        str(tmp_path / "s.data"), os.path.join(root, "cfg", "shapes-tiny.cfg"),
                        "--max-batches", "2", "--loader-processes", "2", "--device", "cpu",
                        "--no-progress", "--seed", "1"], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=root))
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"darknet_py: {bad}: error: cannot read image"), r.stderr
    assert "Traceback" not in r.stderr


def test_the_detector_trainer_chooses_its_loader_when_not_told(tmp_path):
    """loader_processes=None: the rule of data/threads.py (threads when training on the CPU);
    a count given is kept, and the batches in flight follow it."""
    import re
    from darknet_py.data.shapes import make_shapes
    from darknet_py.train.detector import DetectorTrainer
    from darknet_py.train.options import TrainOptions
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    make_shapes(tmp_path / "set", 8, size=(64, 64), seed=int(rng_for_test().integers(100)),
                absolute=True)
    data = (tmp_path / "set" / "shapes.data").read_text()
    (tmp_path / "s.data").write_text(re.sub(r"(?m)^backup=.*$", f"backup={tmp_path}/bk", data))
    cfg = os.path.join(root, "cfg", "shapes-tiny.cfg")
    quiet = dict(device="cpu", seed=1, progress=False)
    auto = DetectorTrainer(cfg, str(tmp_path / "s.data"),
                           options=TrainOptions(loader_processes=None, **quiet),
                           out=open(os.devnull, "w"))
    assert (auto.loader_processes, auto.loader_ahead) == (0, 2)
    told = DetectorTrainer(cfg, str(tmp_path / "s.data"),
                           options=TrainOptions(loader_processes=40, **quiet),
                           out=open(os.devnull, "w"))
    assert told.net.batch == 32 and told.loader_processes == 40
    assert told.loader_ahead == 5             # four images for each of 40 workers: 160 / 32
