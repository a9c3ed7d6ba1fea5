"""Data-parallel training: one process per GPU, gradients summed with NCCL before each update.

Every replica starts from the same weights, trains on its own shard of each iteration's images,
and before ``update`` the gradients of this iteration are summed over the replicas; the update
then divides by the images of *all* replicas (``Network.world_size``), so every replica applies
the same update and the weights stay identical -- the same as one GPU with the whole batch.

Only this iteration's contribution is all-reduced, not the ``*_updates`` buffers as they are:
they also hold ``momentum`` times the previous update, which is the same on every replica and
must not be counted world_size times.  Batch-norm statistics stay per replica (as Darknet).
The learning rate is not multiplied by the number of GPUs (Darknet does; a frequent NaN).

Communicators: ``SingleProcess`` (world size 1), ``ThreadGroup`` (in-process replicas, for
tests on the CPU) and ``NcclCommunicator`` (CuPy's NCCL bindings; rank/world from the
torchrun-style environment RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
"""

import os
import threading
import time
from multiprocessing.connection import Client, Listener

import numpy as np


def gradient_buffers(net):
    """The (layer, name) of every update buffer (``Layer.update_buffers``, a part of its
    ``state()``), in a fixed order: the same on every rank."""
    return [(layer, name) for layer in net.layers for name in layer.update_buffers()]


def snapshot(net):
    """The update buffers before this iteration's backward passes (momentum x last update)."""
    return [getattr(layer, name).copy() for layer, name in gradient_buffers(net)]


def allreduce_gradients(net, comm, before):
    """Sum this iteration's gradient contributions over the replicas, in place."""
    buffers = gradient_buffers(net)
    grads = [getattr(layer, name) - old for (layer, name), old in zip(buffers, before)]
    comm.allreduce_sum(grads)
    for (layer, name), old, g in zip(buffers, before, grads):
        getattr(layer, name)[...] = old + g


class SingleProcess:
    rank, world_size = 0, 1

    def allreduce_sum(self, arrays):
        """Nothing to add with one replica."""

    def barrier(self):
        pass


class ThreadGroup:
    """``world_size`` replicas as threads of one process; ``member(rank)`` is each one's
    communicator.  Sums in float64, the same order on every rank."""

    def __init__(self, world_size):
        self.world_size = world_size
        self._barrier = threading.Barrier(world_size)
        self._slots = [None] * world_size

    def member(self, rank):
        group = self

        class Member:
            def __init__(self):
                self.rank, self.world_size = rank, group.world_size

            def allreduce_sum(self, arrays):
                group._slots[rank] = [np.array(a, dtype=np.float64) for a in arrays]
                group._barrier.wait()
                for k, a in enumerate(arrays):
                    a[...] = sum(slot[k] for slot in group._slots).astype(a.dtype)
                group._barrier.wait()

            def barrier(self):
                group._barrier.wait()
        return Member()


class NcclCommunicator:
    """NCCL over CuPy (``cupy.cuda.nccl``).  Rank 0 makes the NCCL id and hands it to the
    others through a socket at MASTER_ADDR:MASTER_PORT (torchrun's variables)."""

    def __init__(self, rank, world_size, addr, port):
        import cupy
        from cupy.cuda import nccl
        self.cp, self.nccl = cupy, nccl
        self.rank, self.world_size = rank, world_size
        key = b"darknet_py"
        if rank == 0:
            uid = nccl.get_unique_id()
            with Listener((addr, port), authkey=key) as listener:
                for _ in range(world_size - 1):
                    with listener.accept() as conn:
                        conn.send(uid)
        else:
            for attempt in range(600):
                try:
                    conn = Client((addr, port), authkey=key)
                    break
                except ConnectionRefusedError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"rank {rank}: no rank 0 at {addr}:{port}")
            with conn:
                uid = conn.recv()
        self.comm = nccl.NcclCommunicator(world_size, uid, rank)

    def allreduce_sum(self, arrays):
        stream = self.cp.cuda.get_current_stream().ptr
        self.nccl.groupStart()
        for a in arrays:
            self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self.nccl.NCCL_FLOAT32,
                                self.nccl.NCCL_SUM, stream)
        self.nccl.groupEnd()

    def barrier(self):
        one = self.cp.zeros(1, dtype=self.cp.float32)
        self.allreduce_sum([one])
        self.cp.cuda.get_current_stream().synchronize()


def communicator_from_env():
    """NCCL when WORLD_SIZE > 1 is set (torchrun / darknet_py -gpus), else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SingleProcess()
    return NcclCommunicator(int(os.environ["RANK"]), world,
                            os.environ.get("MASTER_ADDR", "127.0.0.1"),
                            int(os.environ.get("MASTER_PORT", "29500")))
