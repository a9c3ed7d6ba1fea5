"""GPU time as CUDA events measure it: what the bench, the convolution plan tuning
(nn/cudnn.py) and the benchmarks read."""


def event_times(cp, fn, runs, warmup=0):
    """Milliseconds of each of ``runs`` calls of ``fn()`` on the GPU after ``warmup`` untimed
    ones: CUDA events on the current stream around each call, each waited for (``cp`` is
    CuPy)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return times
