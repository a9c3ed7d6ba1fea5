"""Top-1 and top-k accuracy as pj's classifier validation counts them
(pj:examples/classifier.c validate_classifier_single: a hit when the truth is among
``top_k(pred, classes, topk, indexes)``).  pj:src/utils.c top_k walks the classes in order and
inserts each into a list of k that a strictly larger probability displaces, a displaced entry
moving on down the list the same way.  On ties that is not a sort: the first of equal maxima
is the top-1, but an entry displaced into a run of equal ones lands after the run, and one
pushed out of the list's end is gone (0.5, 0.5, 0.75 gives 2, 1 for k = 2).  So the list is
built exactly so here, for every row at once: NumPy on the host; on the GPU one kernel adds
each batch's hits to two device counters, read once at the end (validation then waits for the
GPU once, not per batch)."""

import numpy as np

from ..nn.backend import on_gpu, to_numpy, xp_of
from ..nn.kernels import _grid, _kernel

#: the longest list the GPU kernel keeps per thread; a longer top is counted on the host
KERNEL_TOP = 32

_SOURCE = r"""
extern "C" __global__ void dp_topk_hits(const float* p, const int* labels, long long n, int c,
                                        int top, unsigned long long* hits)
{
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float* row = p + i * c;
    int index[%d];
    for (int j = 0; j < top; ++j) index[j] = -1;
    for (int k = 0; k < c; ++k) {
        int curr = k;
        for (int j = 0; j < top; ++j) {
            int at = index[j];
            if (at < 0 || (curr >= 0 && row[curr] > row[at])) { index[j] = curr; curr = at; }
        }
    }
    int label = labels[i], hit = 0;
    for (int j = 0; j < top; ++j) hit |= index[j] == label;
    if (index[0] == label) atomicAdd(hits, 1ULL);
    if (hit) atomicAdd(hits + 1, 1ULL);
}
""" % KERNEL_TOP


def top_k_lists(probs, top):
    """pj's ``top_k`` list of every row of ``probs`` (n, classes): (n, top) class indexes,
    -1 where the list is longer than the classes."""
    n, c = probs.shape
    rows = np.arange(n)
    index = np.full((n, top), -1)
    for k in range(c):
        curr = np.full(n, k)
        for j in range(top):
            at = index[:, j].copy()
            take = (at < 0) | ((curr >= 0) & (probs[rows, curr] > probs[rows, at]))
            index[:, j] = np.where(take, curr, at)
            curr = np.where(take, at, curr)
    return index


class TopK:
    """Counts top-1 and top-``top`` hits over batches (``add``); ``counts()`` reads them."""

    def __init__(self, xp, top):
        self.top = top
        self.hits = xp.zeros(2, dtype=np.uint64)

    def add(self, probs, labels):
        """``probs`` (n, classes) and the int ``labels`` (n,) on the counters' device."""
        xp = xp_of(self.hits)
        probs = xp.ascontiguousarray(probs, dtype=np.float32)
        labels = xp.ascontiguousarray(labels, dtype=np.int32)
        if on_gpu(probs) and self.top <= KERNEL_TOP:
            grid, block = _grid(probs.shape[0])
            _kernel("dp_topk_hits", _SOURCE)(grid, block, (
                probs, labels, np.int64(probs.shape[0]), np.int32(probs.shape[1]),
                np.int32(self.top), self.hits))
            return
        index, labels = top_k_lists(to_numpy(probs), self.top), to_numpy(labels)
        hits = [(index[:, 0] == labels).sum(), (index == labels[:, None]).any(axis=1).sum()]
        self.hits += xp.asarray(np.array(hits, dtype=np.uint64))

    def counts(self):
        """(top-1 hits, top-k hits): waits for the GPU's counting."""
        hits1, hitsk = to_numpy(self.hits).tolist()
        return int(hits1), int(hitsk)
