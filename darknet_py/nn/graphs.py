"""CUDA graphs: each layer's kernels recorded once per input shape and replayed as one launch
(CuPy stream capture), so a small batch no longer pays Python's cost per layer.

    net.enable_graphs()          # on a GPU network; a no-op on the CPU
    out = net.forward(x)         # the first call per shape warms up and captures, later ones replay
    net.train_step(x, truth)     # the same for a training pass and for the weight update

GraphedForward replays the inference forward; GraphedStep a training mini-batch (forward and
backward: ``Network.train_pass``) and the update (``Network.update``).

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
    __slots__ = ("input", "truth", "graph", "output", "layer_outputs", "refs", "pool", "stream")

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
        try:
            graph, pool, stream, output = _record(lambda: net.eager_forward(static))
        except Exception as e:
            self.failed = _why(e)
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


def _record(work):
    """Capture ``work()`` on a stream of its own into a graph (not run: ``launch`` runs it);
    everything it allocates comes from a pool of its own.  Returns (graph, pool, stream,
    what work returned)."""
    import cupy
    cupy.cuda.get_current_stream().synchronize()
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.using_allocator(pool.malloc), stream:
        stream.begin_capture()
        try:
            result = work()
        finally:
            graph = stream.end_capture()
    return graph, pool, stream, result


def _why(error):
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def step_refusal(net):
    """Why ``net``'s training step cannot be replayed from a graph, or None when it can."""
    if not net.device.on_gpu:
        return "the network is not on a GPU"
    return host_layer(net)


def host_layer(net):
    """What says the first layer whose training pass is not all device work, or None."""
    for layer in net.layers:
        if not layer.capturable:
            return f"layer {layer.index} [{layer.type}] runs host code in its training pass"
    return None


class GraphedStep:
    """Replays a training mini-batch (``Network.train_pass``: forward and backward) and the
    weight update (``Network.update``) from CUDA graphs, one pass graph per (input, truth)
    shape and one update graph.

    fp16's loss scale is a number of the captured kernels, so it is part of a pass graph's key
    (a new scale, after an overflow or a growth, is captured anew); its finiteness check and
    the saving of the update buffers run eagerly around the graphs (nn/precision.py).

    A shape's first ``WARMUP`` passes run eagerly (they compile the kernels, build the cuDNN
    plans and size the workspaces; capturing would record none of that), the next is captured
    and then replayed: the input and truth are copied into the graph's own arrays, one launch
    runs every layer, and the layers' ``output``, ``delta`` and loss are pointed back at the
    graph's arrays.  Every array a captured pass writes outside its pool -- weights, update
    buffers, batch-norm rolling statistics -- is updated in place (the layers' contract,
    ``Layer.capturable``).  The update reads the learning rate from a device array
    (``UpdateArgs.rate``), so the policy's schedule holds in a replayed update; Adam's
    bias corrections are host numbers of the step count, so an Adam update runs eagerly.
    ``refusal`` says why a network trains layer by layer (None: it does not)."""

    WARMUP = 2

    def __init__(self, net):
        self.net = net
        self.refusal = step_refusal(net)
        self.passes = collections.OrderedDict()
        self.updates = None                 # the captured update
        self.warm = collections.Counter()   # eager runs so far, per pass key and "update"

    def forget(self):
        self.passes.clear()
        self.updates = None
        self.warm.clear()

    def _fail(self, what, error):
        self.refusal = f"CUDA graph capture of the {what} failed ({_why(error)})"
        self.forget()
        warnings.warn(f"{self.refusal}; training layer by layer", RuntimeWarning, stacklevel=4)

    def _ready(self, key):
        """True when ``key``'s graph may be captured now (its eager warm-up runs are done)."""
        if self.refusal is not None:
            return False
        self.warm[key] += 1
        return self.warm[key] > self.WARMUP

    def train_pass(self, x, truth):
        """The forward and backward of one mini-batch from its graph; False (nothing done)
        when the caller should run it eagerly."""
        net = self.net
        if truth is not None:
            truth = net.xp.asarray(truth, dtype=net.dtype).reshape(x.shape[0], -1)
        key = (tuple(x.shape), None if truth is None else tuple(truth.shape),
               net.precision.loss_scale)
        entry = self.passes.get(key)
        if entry is None:
            if not self._ready(key):
                return False
            entry = self._capture_pass(x, truth, key)
            if entry is None:
                return False
        else:
            self.passes.move_to_end(key)
        entry.input[...] = x
        if truth is not None:
            entry.truth[...] = truth
        prof = net.profiler
        if prof is not None:
            prof.lap("h2d")
        entry.graph.launch()
        if prof is not None:
            prof.lap("graph")
        for layer, (output, delta, cost) in zip(net.layers, entry.refs):
            layer.output, layer.delta, layer.cost = output, delta, cost
        net.input, net.truth, net.train = entry.input, entry.truth, True
        return True

    def _capture_pass(self, x, truth, key):
        net = self.net
        static_x = x.copy()
        static_truth = None if truth is None else truth.copy()

        def work():
            net.forward(static_x, train=True, truth=static_truth)
            net.backward()
        prof, net.profiler = net.profiler, None     # its marks wait for the stream: not here
        try:
            graph, pool, stream, _ = _record(work)
        except Exception as e:
            self._fail("training pass", e)
            return None
        finally:
            net.profiler = prof
        refs = [(layer.output, layer.delta, layer._cost) for layer in net.layers]
        entry = _Captured(input=static_x, truth=static_truth, graph=graph, refs=refs,
                          pool=pool, stream=stream)
        self.passes[key] = entry
        while len(self.passes) > KEEP_SHAPES:
            self.passes.popitem(last=False)
        return entry

    def update(self, args):
        """Every layer's update from the graph; False when the caller should run it."""
        if args.adam or args.rate is None:
            return False
        if self.updates is None:
            if not self._ready("update"):
                return False
            layers = self.net.layers
            try:
                graph, pool, stream, _ = _record(lambda: [layer.update(args) for layer in layers])
            except Exception as e:
                self._fail("update", e)
                return False
            self.updates = _Captured(graph=graph, pool=pool, stream=stream)
        self.updates.graph.launch()
        return True
