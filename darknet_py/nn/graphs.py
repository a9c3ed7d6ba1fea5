"""CUDA graphs for the inference forward: each layer's kernels recorded once per input shape and
replayed as one launch (CuPy stream capture), so a small batch no longer pays Python's cost per
layer.

    net.enable_graphs()          # on a GPU network; a no-op on the CPU
    out = net.forward(x)         # the first call per shape warms up and captures, later ones replay

A captured forward owns its buffers: the input is copied into the graph's input array, the
outputs (``net.layers[i].output`` too) are the graph's arrays, valid until the next forward.
Everything the capture allocates comes from a memory pool of its own that nothing else uses,
so replaying can never write over another array.  A forward that cannot be captured (a host
synchronisation inside a layer, an API CUDA forbids while capturing) runs eagerly from then on,
after one line saying why.  A few shapes are kept (multi-scale inputs), the oldest dropped.
"""

import collections
import warnings

KEEP_SHAPES = 4


class _Captured:
    __slots__ = ("input", "graph", "output", "layer_outputs", "pool", "stream")

    def __init__(self, **parts):
        for name, value in parts.items():
            setattr(self, name, value)


class GraphedForward:
    """Replays ``net.forward(x)`` (inference) from a CUDA graph per input shape."""

    def __init__(self, net):
        self.net = net
        self.captured = collections.OrderedDict()
        self.failed = None                  # why capturing is off, once it failed

    def __call__(self, x):
        net = self.net
        if self.failed is not None:
            return net.eager_forward(x)
        x = net.as_input(x)                 # the same checks and uint8 scaling as eager
        key = tuple(x.shape)
        entry = self.captured.get(key)
        if entry is None:
            entry = self._capture(x)
            if entry is None:
                return net.eager_forward(x)
        else:
            self.captured.move_to_end(key)
        entry.input[...] = x
        entry.graph.launch()                # on the current stream: ordered with the copy
        for layer, output in zip(net.layers, entry.layer_outputs):
            layer.output = output
        return entry.output

    def _capture(self, x):
        import cupy
        net = self.net
        static = cupy.empty(x.shape, dtype=net.dtype)
        static[...] = x
        for _ in range(2):                  # compile the kernels, build the cuDNN plans, size
            net.eager_forward(static)       # the workspace: none of that may happen captured
        cupy.cuda.get_current_stream().synchronize()
        pool = cupy.cuda.MemoryPool()
        stream = cupy.cuda.Stream(non_blocking=True)
        try:
            with cupy.cuda.using_allocator(pool.malloc), stream:
                stream.begin_capture()
                try:
                    output = net.eager_forward(static)
                finally:
                    graph = stream.end_capture()
        except Exception as e:
            self.failed = str(e).splitlines()[0] if str(e) else type(e).__name__
            warnings.warn(f"CUDA graph capture of the forward failed ({self.failed}); running "
                          "it layer by layer", RuntimeWarning, stacklevel=3)
            return None
        entry = _Captured(input=static, graph=graph, output=output,
                          layer_outputs=[layer.output for layer in net.layers], pool=pool,
                          stream=stream)
        self.captured[tuple(x.shape)] = entry
        while len(self.captured) > KEEP_SHAPES:
            self.captured.popitem(last=False)
        return entry
