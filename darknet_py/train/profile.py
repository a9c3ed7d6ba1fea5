"""``--profile``: where the time of a training iteration goes.  Darknet prints only the whole
iteration's time (pj:examples/detector.c train_detector, ``what_time_is_it_now() - time``);
this splits it into the parts below.

The trainer and the network mark the end of each part as it runs (``lap``): the time since the
previous mark is charged to that part, so the parts add up to the iterations' wall time.  On the
GPU every mark first waits for the training stream: kernels run asynchronously, and without the
wait a kernel's time would be charged to whichever later step happens to wait for it (the
loss's copy to the host, say).  A run without ``--profile`` has no profiler: nothing is marked and
nothing waits.  The first iterations are left out (cuDNN plans, memory pools, caches).
"""

import time

#: (key, label), in the order printed
PARTS = (
    ("data", "data wait"),
    ("h2d", "host->device copy"),
    ("forward", "forward"),
    ("loss", "loss layers' forward"),
    ("backward", "backward"),
    ("graph", "forward and backward (CUDA graph)"),
    ("allreduce", "all-reduce"),
    ("update", "update"),
    ("log", "logging"),
    ("validate", "validation"),
    ("checkpoint", "chart, checkpoints"),
    ("other", "other (loop, multi-scale copies)"),
)
LABELS = dict(PARTS)
#: iterations run before the profiled ones, when the run is long enough
WARMUP = 10
#: iterations profiled by a bare --profile
DEFAULT_ITERATIONS = 100


def _synchronizer(device):
    """A function that waits for the work queued on the GPU by the calling (training) thread:
    its current stream, which also waits for the copy of the batch it was handed.  Not the whole
    device: the loader copies later batches on a stream of its own meanwhile (data/staging.py),
    and waiting for those would charge them to whatever part ends then.  None on the CPU."""
    if not device.on_gpu:
        return None
    import cupy

    def synchronize():
        cupy.cuda.get_current_stream().synchronize()
    return synchronize


class Profiler:
    """Times ``count`` iterations after the first ``first`` of a run (iteration numbers as the
    trainer counts them: iteration k + 1 runs when k are done)."""

    def __init__(self, device, first, count):
        self.first, self.count = first, count
        self.device = device
        self._sync = _synchronizer(device)
        self.seconds = {}
        self.events = {}        # what happened in the window, counted (``tally``)
        self.done = 0
        self._start = self._last = self._end = None

    @classmethod
    def for_run(cls, device, iterations, start, max_batches, warmup=WARMUP):
        """The window of a run from iteration ``start`` to ``max_batches``: ``iterations`` after
        up to ``warmup`` untimed ones, fewer of both when the run is shorter."""
        remaining = max_batches - start
        count = min(iterations, remaining)
        return cls(device, start + min(warmup, remaining - count), count)

    def covers(self, k):
        """Whether the iteration that starts with ``k`` done is one of the profiled ones."""
        return self.first <= k < self.first + self.count

    def _now(self):
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    def begin(self):
        """An iteration starts; the time since the last one ended is the loop's ('other')."""
        now = self._now()
        if self._start is None:
            self._start = self._last = now

    def lap(self, part):
        """Charge the time since the previous mark to ``part``."""
        now = self._now()
        self.seconds[part] = self.seconds.get(part, 0.0) + (now - self._last)
        self._last = now

    def tally(self, event, n=1):
        """Count an event of the timed iterations that explains where time went (a CUDA graph
        captured, a pass run eagerly, a multi-scale copy made or dropped)."""
        self.events[event] = self.events.get(event, 0) + n

    def end(self):
        """An iteration ends (after its logging, validation and checkpoints); True when it was
        the last one to time."""
        self.lap("checkpoint")
        self._end = self._last
        self.done += 1
        return self.done >= self.count

    def report(self, images_per_iteration):
        """The JSON-able summary: ms per iteration in all and per part, and % of the wall."""
        n = max(self.done, 1)
        wall = (self._end - self._start) / n if self.done else 0.0
        keys = [k for k, _ in PARTS if k in self.seconds or k not in ("allreduce", "graph")]
        parts = {k: self.seconds.get(k, 0.0) / n for k in keys}
        return {
            "iterations": [self.first + 1, self.first + self.done],
            "device": self.device.kind if not self.device.on_gpu else f"gpu:{self.device.index}",
            "ms_per_iteration": round(wall * 1e3, 3),
            "images_per_s": round(images_per_iteration / wall, 1) if wall > 0 else None,
            "parts_ms": {k: round(v * 1e3, 3) for k, v in parts.items()},
            "parts_percent": {k: round(100 * v / wall, 1) if wall > 0 else 0.0
                              for k, v in parts.items()},
            "events": dict(self.events),
        }


def profile_table(report):
    """The printed form of ``Profiler.report``: a heading and one line per part."""
    first, last = report["iterations"]
    ips = report["images_per_s"]
    lines = [f"profile of iterations {first}-{last} on {report['device']}: "
             f"{report['ms_per_iteration']:.2f} ms per iteration"
             f"{f', {ips:.1f} images/s' if ips else ''}",
             f"  {'part':<34s} {'ms/iteration':>12s} {'% wall':>7s}"]
    for key, ms in report["parts_ms"].items():
        lines.append(f"  {LABELS[key]:<34s} {ms:12.2f} {report['parts_percent'][key]:7.1f}")
    if report.get("events"):
        lines.append("  in these iterations: " + "; ".join(
            f"{event}: {n}" for event, n in report["events"].items()))
    return lines
