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
import contextlib
import warnings

import numpy as np

KEEP_SHAPES = 4


class _Captured:
    __slots__ = ("input", "truth", "graph", "output", "layer_outputs", "refs", "pool", "stream",
                 "items", "stable", "keep")

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


def host_layers(net):
    """The layers whose training pass is not device work alone (not ``capturable``): they run
    eagerly between the captured runs of the others."""
    return [layer for layer in net.layers if not layer.capturable]


def _runs(order, islands):
    """``order`` (layer indices) cut at the islands: (run of capturable indices, the island
    after it or None), in order."""
    run = []
    for i in order:
        if i in islands:
            yield run, i
            run = []
        else:
            run.append(i)
    if run:
        yield run, None


class _CaptureFailed(Exception):
    pass


class GraphedStep:
    """Replays a training mini-batch (``Network.train_pass``: forward and backward) and the
    weight update (``Network.update``) from CUDA graphs, per (input, truth) shape.

    A network whose layers are all ``capturable`` (device work alone, in place on arrays that
    live across steps; [yolo] and [region] through their loss kernels, yolokernel.py) replays
    its whole pass as one graph; a layer's ``pass_key`` joins the graph's key ([region]'s prior
    while seen < 12800).  One with host work in some layers ([dropout] draws on the host, a
    [region] with a tree plans its deltas on the host) replays each run of capturable layers
    between them as a graph and runs those "islands" eagerly in between, forward and backward;
    an island's output and delta are copied into arrays of the graph's, where the runs after it
    read and add into them.

    A shape's first ``WARMUP`` passes run eagerly (they compile the kernels, build the cuDNN
    plans and size the workspaces; capturing would record none of that), the next is captured
    and replayed from then on: the input and truth are copied into the graph's own arrays, and
    the layers' ``output``, ``delta`` and loss are pointed back at the graph's arrays.  Every
    array a captured pass writes outside its pool -- weights, update buffers, batch-norm
    rolling statistics -- is updated in place (the layers' contract).  The update reads the
    learning rate from a device array (``UpdateArgs.rate``), so the policy's schedule holds in
    a replayed update; Adam's bias corrections are host numbers of the step count, so an Adam
    update runs eagerly.  fp16's loss scale is a number of the captured kernels, so it is part
    of a pass graph's key (a new scale, after an overflow or a growth, is captured anew); its
    finiteness check and the saving of the update buffers run eagerly around the graphs
    (nn/precision.py).  ``refusal`` says why a network trains layer by layer (None: it does
    not)."""

    WARMUP = 2

    def __init__(self, net):
        self.net = net
        self.refusal = None if net.device.on_gpu else "the network is not on a GPU"
        self.islands = frozenset(layer.index for layer in host_layers(net))
        for layer in net.layers:
            if layer.truth:
                self.refusal = f"layer {layer.index} [{layer.type}] is the truth of later layers"
        self.passes = collections.OrderedDict()
        self.updates = None                 # the captured update
        self.warm = collections.Counter()   # eager runs so far, per pass key and "update"
        # the keys whose warm-up is done (kernels compiled, plans built: process-wide caches),
        # shared with the network's resized copies (``share_warmth``): a copy made again for a
        # size met before (multi-scale training drops copies to save memory) captures at once
        self.warmed = set()

    def share_warmth(self, other):
        """Take ``other``'s (the network this one is a resized copy of) warmed keys."""
        self.warmed = other.warmed

    def forget(self):
        self.passes.clear()
        self.updates = None
        self.warm.clear()
        self.warmed = set()                 # replaced arrays: warm up again, and alone

    def _fail(self, what, error):
        self.refusal = f"CUDA graph capture of the {what} failed ({_why(error)})"
        self.forget()
        warnings.warn(f"{self.refusal}; training layer by layer", RuntimeWarning, stacklevel=4)

    def _ready(self, key):
        """True when ``key``'s graph may be captured now (its eager warm-up runs are done)."""
        if self.refusal is not None:
            return False
        if key in self.warmed:
            return True
        self.warm[key] += 1
        if self.warm[key] > self.WARMUP:
            self.warmed.add(key)
            return True
        return False

    def _lap(self, part):
        if self.net.profiler is not None:
            self.net.profiler.lap(part)

    def _captured(self):
        """--profile: a pass captured (and run) in this iteration, its time the graph's."""
        if self.net.profiler is not None:
            self.net.profiler.tally("training passes captured")
        self._lap("graph")

    def _keep(self, key, entry):
        self.passes[key] = entry
        while len(self.passes) > KEEP_SHAPES:
            self.passes.popitem(last=False)

    def train_pass(self, x, truth):
        """The forward and backward of one mini-batch from its graphs; False (nothing done)
        when the caller should run it eagerly."""
        net = self.net
        truth, truth_host = net.as_truth(truth, x.shape[0])
        key = (tuple(x.shape), None if truth is None else tuple(truth.shape),
               net.precision.loss_scale,
               tuple(layer.pass_key(net) for layer in net.layers))
        entry = self.passes.get(key)
        if entry is None:
            if not self._ready(key):
                return False
            if self.islands:                # captured and run in one go
                entry = self._capture_runs(x, truth, truth_host)
                if entry is not None:
                    self._keep(key, entry)
                    self._captured()
                return entry is not None
            entry = self._capture_pass(x, truth)
            if entry is None:
                return False
            self._keep(key, entry)
            self._captured()
        else:
            self.passes.move_to_end(key)
        entry.input[...] = x
        if truth is not None:
            entry.truth[...] = truth
        self._lap("h2d")
        if entry.items is not None:
            self._replay_runs(entry, truth_host)
            return True
        entry.graph.launch()
        self._lap("graph")
        for layer, (output, delta, loss) in zip(net.layers, entry.refs):
            layer.output, layer.delta = output, delta
            layer.set_loss_state(loss)
        net.input, net.truth, net.train = entry.input, entry.truth, True
        return True

    def _capture_pass(self, x, truth):
        net = self.net
        static_x = x.copy()
        static_truth = None if truth is None else truth.copy()

        def work():
            net.forward(static_x, train=True, truth=static_truth)
            net.backward()
        try:
            with self._unprofiled():
                graph, pool, stream, _ = _record(work)
        except Exception as e:
            self._fail("training pass", e)
            return None
        refs = [(layer.output, layer.delta, layer.loss_state()) for layer in net.layers]
        return _Captured(input=static_x, truth=static_truth, graph=graph, refs=refs,
                         pool=pool, stream=stream, items=None)

    # -- a pass in runs, with the islands run eagerly between them --------------------------
    def _capture_runs(self, x, truth, truth_host):
        """Runs this mini-batch: each run of capturable layers captured and launched at once,
        the islands eagerly between them.  Returns the entry that replays it, or None (after
        one line; the arrays the launched runs changed restored) when a capture failed."""
        net = self.net
        layers = net.layers
        saved = [(a, a.copy()) for layer in layers for a in layer.state().values()]
        draws = net.rng.bit_generator.state         # [dropout]'s, drawn again if it fails
        entry = _Captured(input=x.copy(), truth=None if truth is None else truth.copy(),
                          items=[], stable={}, keep=[])
        net.input, net.truth, net.train = entry.input, entry.truth, True
        forward = net.pass_state(entry.input, True, entry.truth, truth_host)
        backward = net.pass_state(entry.input, True, entry.truth, truth_host)
        try:
            with self._unprofiled():
                self._capture_pass_runs(entry, forward, backward)
        except _CaptureFailed as e:
            for array, copy in saved:
                array[...] = copy
            net.rng.bit_generator.state = draws
            self._fail("training pass", e.__cause__)
            return None
        entry.refs = [(i, layers[i].output, layers[i].delta, layers[i].loss_state())
                      for i in range(len(layers)) if i not in self.islands]
        return entry

    def _capture_pass_runs(self, entry, forward, backward):
        """The forward, then the backward, of the mini-batch: runs captured (and launched),
        islands run eagerly, each appended to the entry's items in the order it replays."""
        net = self.net
        for run, island in _runs(range(len(net.layers)), self.islands):
            if run:
                self._record_run(entry, lambda run=run: self._forward_run(entry, forward, run))
            if island is not None:
                self._island_forward(entry, forward, island)
                entry.items.append(("forward", island))
        for run, island in _runs(net.backward_order(), self.islands):
            if run:
                self._record_run(entry, lambda run=run: [net.backward_layer(backward, i)
                                                         for i in run])
            if island is not None:
                net.backward_layer(backward, island)
                entry.items.append(("backward", island))

    @contextlib.contextmanager
    def _unprofiled(self):
        """--profile's marks wait for the stream: not inside a capture."""
        net = self.net
        prof, net.profiler = net.profiler, None
        try:
            yield
        finally:
            net.profiler = prof

    def _run_input(self, entry, i):
        """What layer ``i`` reads in a pass: the output of the layer before it."""
        return self.net.layers[i - 1].output if i else entry.input

    def _forward_run(self, entry, state, run):
        """The forward of a run of layers, from the output of the layer before it."""
        state.input = self._run_input(entry, run[0])
        for i in run:
            self.net.forward_layer(state, i)

    def _record_run(self, entry, work):
        try:
            graph, pool, stream, _ = _record(work)
        except Exception as e:
            raise _CaptureFailed() from e
        graph.launch()
        entry.items.append(("graph", graph))
        entry.keep.append((pool, stream))

    def _island_forward(self, entry, state, i):
        """Island ``i``'s forward, its output and delta then copied into the entry's arrays
        (where the captured runs read them)."""
        net = self.net
        net.forward_layer(state, i)
        layer = net.layers[i]
        kept = entry.stable.get(i)
        if kept is None:
            kept = entry.stable[i] = (layer.output.copy(), layer.delta.copy())
        else:
            kept[0][...] = layer.output
            kept[1][...] = layer.delta
        layer.output, layer.delta = kept
        state.input = layer.output

    def _replay_runs(self, entry, truth_host):
        net = self.net
        layers = net.layers
        for i, output, delta, loss in entry.refs:
            layers[i].output, layers[i].delta = output, delta
            layers[i].set_loss_state(loss)
        net.input, net.truth, net.train = entry.input, entry.truth, True
        forward = net.pass_state(entry.input, True, entry.truth, truth_host)
        backward = net.pass_state(entry.input, True, entry.truth, truth_host)
        for kind, what in entry.items:
            if kind == "graph":
                what.launch()
            elif kind == "forward":
                forward.input = self._run_input(entry, what)
                self._island_forward(entry, forward, what)
            else:
                net.backward_layer(backward, what)
            self._lap("graph" if kind == "graph" else "loss")

    def update(self, args):
        """Every layer's update from the graph; False when the caller should run it."""
        # the SGD kernel reads the rate on the device: float32 arrays only (Layer.apply_update)
        if args.adam or args.rate is None or self.net.dtype != np.float32 or \
                any(self.net.layers[i]._params for i in self.islands):
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
