"""Worker processes that prepare training batches straight into shared-memory slots.

Darknet loads the next batch in pthreads beside training (pj:src/data.c load_data_in_thread,
load_threads); Python threads share the GIL, so darknet_py also offers processes.  The parent
owns a ring of shared-memory *slots*, each holding one batch -- images (n, c, h, w) and truth
(n, t), float32, or the images as bytes for the GPU to finish (data/rawimages.py) -- and sends small tasks ``(slot, row, image index, seed)``, a few rows to a
message; a worker writes each image and its truth row in place and answers when its rows are
done (or with the error of the one that failed).  No image is pickled or copied by
the parent, a slot's pages are touched once and then reused, and several batches are in flight
so that no worker waits for the slowest image of a batch.

The work is a function given by reference (``fill``), so this module knows nothing of the
datasets: ``fill(state, item, options, x_row, truth_row)`` writes one row, ``state`` is what
``init(*init_args)`` returned once in each worker.
"""

import os
import pickle
import queue
import signal
import threading
import time
import traceback
import weakref
from multiprocessing import get_context, parent_process, shared_memory

import numpy as np

from ..errors import DarknetError
from .rawimages import raw_layout, raw_views

SHM_DIR = "/dev/shm"


class Slot:
    """One shared-memory batch buffer of the parent's ring."""

    def __init__(self, index, nbytes):
        _check_room(nbytes)
        self.index, self.nbytes = index, nbytes
        self.shm = shared_memory.SharedMemory(create=True, size=nbytes)
        self.busy = False

    def close(self):
        self.shm.close()
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


def _check_room(nbytes):
    """POSIX shared memory past the size of /dev/shm is not refused: the first write to a page
    kills the process with SIGBUS.  Ask for the room first (containers often mount 64 MiB)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if nbytes > free:
        raise DarknetError(f"not enough shared memory for the loader's batch buffers: "
                           f"{nbytes >> 20} MiB needed, {free >> 20} MiB free in {SHM_DIR}; "
                           "enlarge it (docker run --shm-size=8g) or use --loader-processes 0 "
                           "(threads)")


def layout(n, shape, truth_width, raw=False):
    """(x shape, truth shape, bytes) of a batch of ``n`` images of ``shape`` in a slot; with
    ``raw`` the images are bytes to finish on the GPU (data/rawimages.py), x shape then
    ("raw", n, c, h, w)."""
    xs, ts = (n, *shape), (n, truth_width)
    if raw:
        return ("raw", *xs), ts, raw_layout(n, shape, truth_width)[2]
    return xs, ts, 4 * (int(np.prod(xs)) + int(np.prod(ts)))


def views(buf, xs, ts):
    """The (x, truth) arrays of a slot's buffer: float32, or RawImages for a raw layout."""
    if xs[0] == "raw":
        return raw_views(buf, xs[1], xs[2:], ts[1])
    nx = int(np.prod(xs))
    x = np.ndarray(xs, np.float32, buffer=buf)
    truth = np.ndarray(ts, np.float32, buffer=buf, offset=4 * nx)
    return x, truth


class PendingBatch:
    """A batch being prepared in a slot: ``result()`` waits for it and gives (x, truth), views
    of the slot, valid until ``release()`` hands the slot back to the ring."""

    def __init__(self, pool, slot, xs, ts, parts):
        self.pool, self.slot, self.xs, self.ts = pool, slot, xs, ts
        self.left, self.error, self.released = parts, None, False

    @property
    def done(self):
        return self.left == 0

    def result(self):
        self.pool._wait(self)
        if self.error is not None:
            raise self.error
        return views(self.slot.shm.buf, self.xs, self.ts)

    def release(self):
        """The slot is free again (once its tasks are done, when released early)."""
        if not self.released:
            self.released = True
            self.pool._release(self)


class ThreadBatch:
    """The same batch prepared by a thread pool (``executor``) into arrays of the parent's:
    ``fill(state, item, options, x_row, truth_row)`` per row, as a worker would."""

    def __init__(self, executor, fill, state, items, options, shape, truth_width, raw=False):
        xs, ts, nbytes = layout(len(items), shape, truth_width, raw)
        self.x, self.truth = views(np.empty(nbytes, np.uint8), xs, ts)
        self._futures = [executor.submit(fill, state, item, options, self.x[k], self.truth[k])
                         for k, item in enumerate(items)]

    def result(self):
        for f in self._futures:
            f.result()                # the first failing row's error
        return self.x, self.truth

    def release(self):
        """Nothing to hand back: the arrays are the caller's."""


class WorkerPool:
    """``processes`` spawned workers and a ring of slots; ``submit`` sends a batch's rows.

    Spawned, not forked: the workers inherit neither CUDA state nor the training threads."""

    def __init__(self, processes, init, init_args, fill):
        ctx = get_context("spawn")
        self.fill = fill
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._lock = threading.RLock()
        self._slots = []
        self._pending = {}            # token -> PendingBatch
        self._token = 0
        self._procs = [ctx.Process(target=_worker_main, name=f"darknet_py-loader-{r}",
                                   args=(self._tasks, self._results, init, init_args),
                                   daemon=True) for r in range(processes)]
        for p in self._procs:
            p.start()
        self._closer = weakref.finalize(self, _close, self._procs, self._tasks, self._slots)

    @property
    def processes(self):
        return len(self._procs)

    def submit(self, items, options, shape, truth_width, raw=False):
        """Rows ``items[k]`` of a new batch, each ``fill``-ed by a worker with ``options``
        (``raw``: images as bytes, see ``layout``)."""
        xs, ts, nbytes = layout(len(items), shape, truth_width, raw)
        with self._lock:
            slot = self._acquire(nbytes)
            self._token += 1
            token = self._token
            # each message costs the parent about 0.1 ms (pickling, a feeder thread, the
            # answer): two rows at least; at most half a worker's share, so that a slow row
            # (a mosaic) does not hold the batch while the other workers wait
            size = max(min(2, len(items)), -(-len(items) // (2 * self.processes)))
            rows = list(enumerate(items))
            chunks = [rows[j:j + size] for j in range(0, len(rows), size)]
            pending = PendingBatch(self, slot, xs, ts, len(chunks))
            self._pending[token] = pending
            for chunk in chunks:
                self._tasks.put((token, slot.index, slot.shm.name, xs, ts, self.fill, options,
                                 chunk))
        return pending

    def _acquire(self, nbytes):
        free = [s for s in self._slots if not s.busy]
        fitting = [s for s in free if s.nbytes >= nbytes]
        if fitting:
            slot = min(fitting, key=lambda s: s.nbytes)
        elif free:
            # a larger network size (multi-scale): replace the free slot by a larger one; the
            # workers drop their mapping of the old one when they see the new name
            old = free[0]
            slot = self._slots[old.index] = Slot(old.index, nbytes)
            old.close()
        else:
            slot = Slot(len(self._slots), nbytes)
            self._slots.append(slot)
        slot.busy = True
        return slot

    def _release(self, pending):
        with self._lock:
            if pending.done:
                pending.slot.busy = False

    def _wait(self, pending):
        """Collect answers (of any batch) until ``pending`` is complete."""
        while not pending.done:
            try:
                token, error = self._results.get(timeout=1.0)
            except queue.Empty:
                self._check_alive()
                continue
            with self._lock:
                other = self._pending.get(token)
                if other is None:
                    continue
                other.left -= 1
                if error is not None and other.error is None:
                    other.error = error
                if other.done:
                    del self._pending[token]
                    if other.released:
                        other.slot.busy = False

    def _check_alive(self):
        dead = [p for p in self._procs if not p.is_alive()]
        if dead:
            raise DarknetError(f"a data loader worker process died (exit code "
                               f"{dead[0].exitcode}; out of memory?); see the messages above")

    def close(self):
        self._closer()


def _close(procs, tasks, slots):
    """Stop the workers, then free the slots (at exit too: weakref.finalize runs before the
    interpreter tears modules down)."""
    for _ in procs:
        try:
            tasks.put(None)
        except (OSError, ValueError):
            break
    deadline = time.monotonic() + 5
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(1)
    for slot in slots:
        slot.close()
    slots.clear()


def _worker_main(tasks, results, init, init_args):
    """A worker: ``init`` once, then fill rows until told to stop (None) or orphaned."""
    # Ctrl-C reaches the whole process group: the parent finishes its iteration and stops
    # the workers itself, so they must not die first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _one_blas_thread()
    state = init(*init_args)
    mapped = {}                       # slot index -> (name, SharedMemory)
    parent = parent_process()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                break                 # the parent was killed: nobody will stop us
            continue
        if task is None:
            break
        token, index, name, xs, ts, fill, options, chunk = task
        error = None
        try:
            if index not in mapped or mapped[index][0] != name:
                if index in mapped:
                    mapped[index][1].close()
                mapped[index] = (name, shared_memory.SharedMemory(name=name))
            x, truth = views(mapped[index][1].buf, xs, ts)
            for row, item in chunk:
                fill(state, item, options, x[row], truth[row])
            del x, truth
        except Exception as e:        # raised by the parent, e.g. a corrupt image's one line
            error = _picklable(e)
        results.put((token, error))
    for _, shm in mapped.values():
        shm.close()


def _picklable(error):
    """``error``, or when it cannot travel to the parent, a RuntimeError with its traceback
    (the queue would drop an unpicklable one and leave the parent waiting)."""
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return RuntimeError("in a data loader worker: " + "".join(
            traceback.format_exception(type(error), error, error.__traceback__)))


def _one_blas_thread():
    """The workers do no matrix products: keep BLAS from starting a thread per core in each."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)
