"""Training batches copied to the GPU while the previous step runs.

AlexeyAB's Darknet copies each batch from pinned host memory with cudaMemcpyAsync on a stream
of its own (src/dark_cuda.c cuda_push_array, get_cuda_memcpy_stream) so that the copy overlaps
the kernels.  Here the loader thread copies a finished batch's images into one of a ring of pinned
buffers, starts its host-to-device copy on a non-blocking stream and records an event; the
training thread's stream waits for that event (on the GPU, not the host) before its first
kernel reads the batch.  A device buffer is written again only after the stream that read it
has passed the event recorded when the consumer let it go.

The truth stays on the host (a copy the staged batch owns): the box losses plan their
truth-only work on the host (nn/layers/yololoss.py), and a device copy would have to be fetched
back in the middle of the forward -- a wait for the GPU at every [yolo] head.  The pass uploads
it (a few KB, asynchronously: ``Network.as_truth``).

Only Batches uses this, and only when the network is on the GPU: the CPU path never imports
CuPy.
"""

import threading

import numpy as np

from .rawimages import RawImages, finish_on_device


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
        """In the loader thread: ``x`` (NumPy) copied into the next ring buffer's pinned memory,
        then on its way to the device, and ``truth`` copied (the loader may reuse its memory);
        ``x`` may be RawImages (bytes and colour tables), finished into float32 images by a
        kernel on the copy stream.  Returns the staged batch, or None when stopped while
        waiting for a free buffer."""
        cp = self.cp
        b = self._ring[self._next]
        self._next = (self._next + 1) % len(self._ring)
        while not b.free.wait(0.1):
            if self._stop.is_set():
                return None
        b.free.clear()
        raw = isinstance(x, RawImages)
        parts = (x.pixels, x.tables, x.flags) if raw else (x,)
        nbytes = sum(a.nbytes for a in parts)
        nx = int(np.prod(x.shape))
        with cp.cuda.Device(self.index):
            if b.copied is not None:
                b.copied.synchronize()            # its previous copy has left the pinned buffer
            # device: the float32 images, then room for the bytes of a raw batch
            b.fit(cp, nbytes, nx * 4 + (nbytes if raw else 0), self.stream)
            at, places = 0, []
            for a in parts:
                np.copyto(b.host[at:at + a.nbytes].view(a.dtype).reshape(a.shape), a)
                places.append(at)
                at += a.nbytes
            if b.consumed is not None:            # the stream that read this buffer is done
                self.stream.wait_event(b.consumed)
            dev_x = b.device[:4 * nx].view(np.float32).reshape(x.shape)
            target = b.device[4 * nx:] if raw else b.device
            cp.cuda.runtime.memcpyAsync(target.data.ptr, b.host.ctypes.data, nbytes,
                                        cp.cuda.runtime.memcpyHostToDevice, self.stream.ptr)
            if raw:
                def dev(k):
                    a = parts[k]
                    return target[places[k]:places[k] + a.nbytes].view(a.dtype).reshape(a.shape)
                with self.stream:
                    finish_on_device(RawImages(dev(0), dev(1), dev(2)), dev_x)
            b.copied = self.stream.record()
        return Staged(cp, b, dev_x, np.array(truth))

    def close(self):
        """Wait for the copies in flight; the buffers go with this object."""
        for b in self._ring:
            if b.copied is not None:
                b.copied.synchronize()


class _Buffer:
    """A pinned host buffer and a device buffer (bytes), the events of the last copy into it
    and of its consumer letting go, and whether it may be reused."""

    def __init__(self):
        self.host = self.device = self.copied = self.consumed = None
        self.free = threading.Event()
        self.free.set()

    def fit(self, cp, host_bytes, device_bytes, stream):
        """Room for that many bytes: larger buffers when needed (multi-scale training)."""
        if self.host is not None and self.host.size >= host_bytes and \
                self.device.size >= device_bytes:
            return
        if self.consumed is not None:
            self.consumed.synchronize()           # the old device buffer is no longer read
        self.host = np.frombuffer(cp.cuda.alloc_pinned_memory(host_bytes), np.uint8,
                                  host_bytes)
        # from the copy stream's share of CuPy's pool: memory the training stream freed may
        # still be read by its queued kernels, which this stream does not wait for
        with stream:
            self.device = cp.empty(device_bytes, np.uint8)
        self.consumed = None


class Staged:
    """A batch on its way to the device."""

    def __init__(self, cp, buffer, x, truth):
        self.cp, self.buffer, self.x, self.truth = cp, buffer, x, truth

    def take(self):
        """In the training thread: its stream waits for the copy; (x on the device, truth on
        the host)."""
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
