"""How many cores the data loader and NumPy's BLAS get while training.

Worker processes (data/workers.py) pay off where there are cores to spare beside the training
thread, that is on a GPU machine; on a small machine, or when the network itself computes on the
CPU, threads load the data.  BLAS threads that outnumber the free cores do not just wait: OpenBLAS
spins them, and on a busy 2-core machine one iteration of the MNIST job went from 40 ms to 1-3 s.
So training sets BLAS to the cores the loader leaves (threadpoolctl), at least one, unless the
user chose a count in the environment.
"""

import contextlib
import os

# where a user's own choice of BLAS threads lives; training leaves it alone
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# below this many cores the loader uses threads: processes would take cores the GPU's feeding
# thread and the loader's own thread need, and each costs a Python with the dataset in memory
MIN_CORES_FOR_PROCESSES = 8
MAX_PROCESSES = 32


def usable_cores():
    """The cores this process may run on (a container's or taskset's limit included)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_loader_processes(on_gpu, cores=None):
    """Worker processes for the detector's data when ``--loader-processes`` is not given: on a
    GPU machine with at least MIN_CORES_FOR_PROCESSES cores, all cores but two (the training
    thread that drives the GPU, and the loader thread that hands batches over), at most
    MAX_PROCESSES; otherwise 0 (threads)."""
    cores = usable_cores() if cores is None else cores
    if not on_gpu or cores < MIN_CORES_FOR_PROCESSES:
        return 0
    return min(cores - 2, MAX_PROCESSES)


def blas_threads(loader_processes, cores=None):
    """BLAS threads beside a loader of ``loader_processes`` workers (0: threads): the cores
    left after the loader's processes and one for the loader's thread, at least one.  On a
    2-core machine that is one: about 2% slower than two when the machine is quiet, and no
    slower beside another busy process, where two threads took 2.2x as long
    (benchmarks/contention.py)."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores - 1 - loader_processes)


@contextlib.contextmanager
def limit_blas(threads):
    """NumPy's BLAS limited to ``threads`` inside the block; left alone when the environment
    names a count (``OPENBLAS_NUM_THREADS``, ...) or threadpoolctl is missing."""
    if any(os.environ.get(name) for name in BLAS_ENV):
        yield None
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield None
        return
    with threadpool_limits(limits=threads, user_api="blas") as limits:
        yield limits


def batches_ahead(loader_processes, batch):
    """Batches in preparation at once: with worker processes, enough for four images per
    worker -- two messages of two rows each, so that none waits for the next batch (a
    mini-batch of batch/subdivisions images is often smaller than the pool) -- and at least
    two, so that the next batch starts while the slowest image of one (a mosaic) is still in
    work; with threads, two."""
    if not loader_processes:
        return 2
    return max(2, -(-4 * loader_processes // max(1, batch)))
