"""Training batches copied to the GPU while the previous step runs.

AlexeyAB's Darknet copies each batch from pinned host memory with cudaMemcpyAsync on a stream
of its own (src/dark_cuda.c cuda_push_array, get_cuda_memcpy_stream) so that the copy overlaps
the kernels.  Here the loader thread copies a finished batch into one of a ring of pinned
buffers, starts its host-to-device copy on a non-blocking stream and records an event; the
training thread's stream waits for that event (on the GPU, not the host) before its first
kernel reads the batch.  A device buffer is written again only after the stream that read it
has passed the event recorded when the consumer let it go.

Only Batches uses this, and only when the network is on the GPU: the CPU path never imports
CuPy.
"""

import threading

import numpy as np


class DeviceStaging:
    """A ring of ``depth`` (pinned host, device) buffer pairs on GPU ``device_index``."""

    def __init__(self, device_index, depth, stop=None):
        import cupy
        self.cp, self.index = cupy, device_index
        self._stop = stop if stop is not None else threading.Event()
        with cupy.cuda.Device(device_index):
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self._ring = [_Buffer() for _ in range(depth)]
        self._next = 0

    def put(self, x, truth):
        """In the loader thread: ``x`` and ``truth`` (NumPy) copied into the next ring buffer's
        pinned memory, then on their way to the device.  Returns the staged batch, or None
        when stopped while waiting for a free buffer."""
        cp = self.cp
        b = self._ring[self._next]
        self._next = (self._next + 1) % len(self._ring)
        while not b.free.wait(0.1):
            if self._stop.is_set():
                return None
        b.free.clear()
        with cp.cuda.Device(self.index):
            if b.copied is not None:
                b.copied.synchronize()            # its previous copy has left the pinned buffer
            nx, nt = x.size, truth.size
            b.fit(cp, nx + nt, self.stream)
            np.copyto(b.host[:nx].reshape(x.shape), x)
            np.copyto(b.host[nx:nx + nt].reshape(truth.shape), truth)
            if b.consumed is not None:            # the stream that read this buffer is done
                self.stream.wait_event(b.consumed)
            cp.cuda.runtime.memcpyAsync(b.device.data.ptr, b.host.ctypes.data, 4 * (nx + nt),
                                        cp.cuda.runtime.memcpyHostToDevice, self.stream.ptr)
            b.copied = self.stream.record()
        return Staged(cp, b, b.device[:nx].reshape(x.shape),
                      b.device[nx:nx + nt].reshape(truth.shape))

    def close(self):
        """Wait for the copies in flight; the buffers go with this object."""
        for b in self._ring:
            if b.copied is not None:
                b.copied.synchronize()


class _Buffer:
    """A pinned host buffer, a device buffer of the same size (float32 elements), the events of
    the last copy into it and of its consumer letting go, and whether it may be reused."""

    def __init__(self):
        self.host = self.device = self.copied = self.consumed = None
        self.free = threading.Event()
        self.free.set()

    def fit(self, cp, count, stream):
        """Room for ``count`` floats: larger buffers when needed (multi-scale training)."""
        if self.host is not None and self.host.size >= count:
            return
        if self.consumed is not None:
            self.consumed.synchronize()           # the old device buffer is no longer read
        self.host = np.frombuffer(cp.cuda.alloc_pinned_memory(4 * count), np.float32, count)
        # from the copy stream's share of CuPy's pool: memory the training stream freed may
        # still be read by its queued kernels, which this stream does not wait for
        with stream:
            self.device = cp.empty(count, np.float32)
        self.consumed = None


class Staged:
    """A batch on its way to the device."""

    def __init__(self, cp, buffer, x, truth):
        self.cp, self.buffer, self.x, self.truth = cp, buffer, x, truth

    def take(self):
        """In the training thread: its stream waits for the copy; (x, truth) on the device."""
        self.cp.cuda.get_current_stream().wait_event(self.buffer.copied)
        return self.x, self.truth

    def release(self):
        """The training thread is done with it: the buffer may be written once its stream has
        passed this point."""
        if self.buffer is None:
            return
        self.buffer.consumed = self.cp.cuda.get_current_stream().record()
        self.buffer.free.set()
        self.buffer = self.x = self.truth = None
