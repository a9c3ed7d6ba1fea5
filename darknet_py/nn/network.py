"""The network: built from a cfg, a loop over layers (pj:src/network.c, src/parser.c).

    net = Network.from_cfg("cfg/mnist.cfg")
    net.load_weights("mnist.weights")
    probs = net.forward(x)                 # x: (N, C, H, W) float32, NCHW as Darknet
    net.layers[3].output                   # each layer's output, NCHW
    loss = net.train_step(x, truth)        # forward, backward, update every `subdivisions`
    net = Network.from_cfg_text(text)      # a cfg held in a string

``forward`` and ``train_step`` take float images in [0, 1], NCHW (or flat, C*H*W values per
image); a uint8 array is taken as 0-255 pixels and divided by 255.  Float values are not
range-checked (gradient checks and layer tests feed any numbers).
"""

import numbers
import os
import warnings

import numpy as np

from .backend import resolve_device
from ..cfg.parser import Diagnostics, parse_cfg_text, read_cfg
from ..errors import CfgError, DarknetError, NotSupportedError
from .layers import REGISTRY
from .layers.batchnorm import BN_EPSILON
from .graphs import GraphedForward, GraphedStep
from .layers.base import Field, PendingCost, UpdateArgs, device_rate, next_field
from .netoptions import COMMON_KEYS, UNSUPPORTED_SECTIONS, NetOptions
from .policies import current_rate
from .precision import Precision, check_precision
from ..atomic import atomic_write
from .weights import (DEFAULT_VERSION, WeightsWarning, nonfinite_arrays, nonfinite_summary,
                      read_weights_into, weights_file_chunks)

class InputShapeError(DarknetError, ValueError):
    """An input that is not the (N, C, H, W) images the network takes."""


class InputTypeError(DarknetError, TypeError):
    """An input whose dtype is not images' (float, or uint8 pixels)."""


class _BuildContext:
    def __init__(self, xp, rng, net_options):
        self.xp, self.rng, self.net = xp, rng, net_options
        self.layers = []
        self.index = 0
        self.shape = net_options.input_shape
        self.flat = self.shape[1:] == (1, 1) and net_options.height * net_options.width == 0


class _State:
    """What a layer sees during a pass (Darknet's by-value ``network net``)."""

    def __init__(self, network, x, train, truth):
        self.xp = network.xp
        self.layers = network.layers
        self.input = x
        self.delta = None
        self.train = train
        self.truth = truth
        self.truth_host = None         # the same truth as a host array, when it came as one
        self.index = 0
        self.seen = network.seen       # images seen, including this mini-batch when training
        self.precision = network.precision


class Network:
    #: a train.profile.Profiler while ``--profile`` times this network's training passes: the
    #: passes mark where their parts end (None: no marks, no device synchronisation)
    profiler = None
    #: a GraphedForward after enable_graphs() (GPU inference)
    graphs = None
    #: a GraphedStep after enable_graphs() (GPU training passes and updates)
    step_graphs = None
    #: UpdateArgs.rate on the GPU: learning_rate / batch on the device (``_rate_value`` on the
    #: host), filled at the updates where it changes
    _rate = None
    _rate_value = None
    #: the cfg text of a network built by from_cfg_text (resized() re-reads it, not a file)
    cfg_text = None

    def __init__(self, cfgfile, batch=None, device="cpu", strict=False, seed=None, warn=True,
                 device_index=0, precision=None):
        self.path = cfgfile.path
        self.device = resolve_device(device, device_index)
        self.xp = self.device.xp
        self.diagnostics = Diagnostics(cfgfile.path, strict=strict, echo=warn)
        for level, line, message in cfgfile.diagnostics:
            if level == "error":
                raise CfgError(message, cfgfile.path, line)
            self.diagnostics.warn(line, message)
        self.options = NetOptions(cfgfile.net)
        self.diagnostics.report_unused(cfgfile.net)
        self.batch = _checked_batch(batch) if batch is not None else self.options.batch
        #: nn/precision.py: the convolutions' arithmetic (``precision=`` in [net], or the
        #: argument, which wins: --precision)
        self.precision = Precision(self.options.precision if precision is None
                                   else check_precision(precision))
        self.subdivisions = self.options.subdivisions
        self.seen = 0
        self.t = 0              # number of weight updates (Adam's t)
        self.version = DEFAULT_VERSION
        self.nonfinite = []          # NaN/inf found by the last load_weights (see there)
        self.rng = np.random.default_rng(seed)
        self.layers = []
        ctx = _BuildContext(self.xp, self.rng, self.options)
        for index, section in enumerate(cfgfile.layers):
            ctx.index = index
            self.layers.append(self._build_layer(section, ctx))
            layer = self.layers[-1]
            ctx.layers = self.layers
            ctx.shape, ctx.flat = layer.out_shape, layer.flat
        if not self.layers:
            raise CfgError("the cfg has a [net] section but no layers", cfgfile.path,
                           cfgfile.net.line)
        self.input = self.truth = None
        self.dtype = np.float32     # float64 is for gradient checks
        self.world_size = 1         # data-parallel replicas (darknet_py.train.parallel)
        for layer in self.layers:       # Layer.state(): Adam's moments too when adam=1
            layer.register_state(adam=self.options.adam)

    def _build_layer(self, section, ctx):
        if section.type in UNSUPPORTED_SECTIONS:
            raise NotSupportedError(f"[{section.name}] layers are not supported by darknet_py "
                                    "yet", section.path, section.line)
        cls = REGISTRY[section.type]
        section.reads = cls.cfg_keys | frozenset(cls.unsupported) | COMMON_KEYS
        section.index = ctx.index
        try:
            layer = cls.from_cfg(section, ctx)
        except (MemoryError, ValueError) as e:
            # e.g. filters=100000000000: numpy cannot allocate (or even describe) the arrays
            if isinstance(e, ValueError) and "too big" not in str(e) \
                    and "Maximum allowed" not in str(e):
                raise
            detail = str(e).splitlines()[0] if str(e) else "out of memory"
            raise CfgError(f"[{section.name}] is too large to build ({detail})",
                           section.path, section.line) from None
        layer.index = ctx.index
        layer.path, layer.line, layer.section_name = section.path, section.line, section.name
        layer.section = section          # its options, for the shape and field rules
        layer.truth = section.bool("truth")
        section.bool("onlyforward")
        layer.stopbackward = section.bool("stopbackward")
        layer.dontsave = section.bool("dontsave")
        layer.dontload = section.bool("dontload")
        layer.dontloadscales = section.bool("dontloadscales")
        layer.learning_rate_scale = section.float("learning_rate", 1.0)
        section.float("smooth", 0.0)
        self.diagnostics.report_unused(section)
        return layer

    @classmethod
    def from_cfg(cls, path, batch=None, device="cpu", strict=False, seed=None, warn=True,
                 device_index=0, precision=None):
        """Build a network from a Darknet .cfg file (weights randomly initialised as Darknet).

        ``device``: ``cpu`` (NumPy), ``gpu`` (CuPy + cuDNN) or ``auto`` (the GPU when CuPy sees
        one); ``device_index`` picks the GPU (Darknet's ``-i``).  A ``backend.Device`` is taken
        as it is (its index, not ``device_index``).  The result is ``net.device``.
        ``precision``: fp32 (exact), tf32, fp16 or bf16 (nn/precision.py); None takes the
        cfg's ``precision=`` (default fp32).
        """
        if hasattr(path, "read"):
            return cls.from_cfg_text(path.read(), getattr(path, "name", "<cfg>"), batch=batch,
                                     device=device, strict=strict, seed=seed, warn=warn,
                                     device_index=device_index, precision=precision)
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Network.from_cfg expects the path of a .cfg file (str or "
                            f"os.PathLike) or an open file, not {type(path).__name__}")
        if isinstance(path, str) and ("\n" in path or path.lstrip().startswith("[")):
            raise ValueError("Network.from_cfg expects the path of a .cfg file, and this looks "
                             "like cfg text: use Network.from_cfg_text(text)")
        return cls(read_cfg(path), batch=batch, device=device, strict=strict, seed=seed,
                   warn=warn, device_index=device_index, precision=precision)

    @classmethod
    def from_cfg_text(cls, text, path="<cfg>", batch=None, device="cpu", strict=False,
                      seed=None, warn=True, device_index=0, precision=None):
        """:meth:`from_cfg` from the text of a cfg (``str`` or UTF-8 ``bytes``); ``path``
        names it in messages."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ValueError(f"{path}: the cfg bytes are not UTF-8 text") from None
        if not isinstance(text, str):
            raise TypeError(f"Network.from_cfg_text expects the cfg's text (str or bytes), not "
                            f"{type(text).__name__}")
        net = cls(parse_cfg_text(text, str(path)), batch=batch, device=device, strict=strict,
                  seed=seed, warn=warn, device_index=device_index, precision=precision)
        net.cfg_text = text
        return net

    def resized(self, width, height):
        """The same network at another input size, on the same device and sharing every
        layer's ``state()`` (multi-scale training, pj resize_network): updates through either
        change both.  Graphs are on in the copy when they are here."""
        cfg = read_cfg(self.path) if self.cfg_text is None else \
            parse_cfg_text(self.cfg_text, self.path)
        for key, value in (("width", width), ("height", height)):
            opt = cfg.net.find(key)
            if opt is not None:
                opt.value = str(value)
        other = Network(cfg, batch=self.batch, device=self.device, seed=0, warn=False)
        other.dtype, other.cfg_text = self.dtype, self.cfg_text
        other.precision = self.precision      # and its loss scale
        for mine, theirs in zip(self.layers, other.layers):
            theirs.share_state(mine)
            if hasattr(mine, "batch_normalize"):
                theirs.batch_normalize = mine.batch_normalize
        other.seen, other.t = self.seen, self.t
        if self.graphs is not None:
            other.enable_graphs()
            other.step_graphs.share_warmth(self.step_graphs)
        return other

    # -- shapes --------------------------------------------------------------------------
    @property
    def input_shape(self):
        return self.options.input_shape

    @property
    def output_layer(self):
        """The last layer that is not [cost] (pj get_network_output_layer)."""
        for layer in reversed(self.layers):
            if layer.type != "cost":
                return layer
        return self.layers[-1]

    # -- passes --------------------------------------------------------------------------
    def as_input(self, x):
        """``x`` as an (N, C, H, W) array of the network's dtype; what cannot be the images
        the network takes is a ValueError/TypeError, not a silent reinterpretation."""
        dtype = getattr(x, "dtype", None)
        if dtype is None:
            x = np.asarray(x)
            dtype = x.dtype
        if dtype == np.uint8:       # 0-255 pixels
            x = self.xp.asarray(x, dtype=self.dtype) / 255
        elif dtype.kind != "f":
            raise InputTypeError(f"input has dtype {dtype}; the network takes float images "
                                 "in [0, 1] (or uint8 pixels 0-255, divided by 255)")
        x = self.xp.asarray(x, dtype=self.dtype)
        shape = self.input_shape
        want = f"(N, {', '.join(map(str, shape))})"
        if x.ndim == 3 and x.shape == shape:
            return x.reshape((1,) + shape)
        if x.ndim >= 3 and x.shape[-3:] != shape:
            c, h, w = shape
            nhwc = " (this is NHWC: use x.transpose(0, 3, 1, 2))" \
                if x.shape[-3:] == (h, w, c) and c != w else ""
            raise InputShapeError(f"input has shape {tuple(x.shape)}; the network takes {want}, "
                             f"NCHW order{nhwc}")
        n = x.shape[0] if x.ndim > 1 else 1
        if x.size != n * self.options.inputs:
            raise InputShapeError(f"input has shape {tuple(x.shape)}; the network takes {want}")
        return x.reshape((n,) + shape)

    def forward(self, x, train=False, truth=None):
        """Run every layer; returns the output layer's output (NCHW, on the network's device).
        After :meth:`enable_graphs`, an inference forward replays a CUDA graph."""
        if self.graphs is not None and not train and truth is None:
            return self.graphs(x)
        return self.eager_forward(x, train, truth)

    def enable_graphs(self):
        """Replay the inference forward, the training passes and the updates from CUDA graphs
        (``nn/graphs.py``); a no-op on the CPU.  Returns whether graphs are on;
        ``step_graphs.refusal`` says why training still runs layer by layer, if it does."""
        if self.device.on_gpu:
            self.graphs = GraphedForward(self)
            self.step_graphs = GraphedStep(self)
        return self.graphs is not None

    def forget_graphs(self):
        """Drop the captured graphs (after arrays were replaced, not updated in place)."""
        if self.graphs is not None:
            self.graphs.captured.clear()
        if self.step_graphs is not None:
            self.step_graphs.forget()

    def eager_forward(self, x, train=False, truth=None):
        """:meth:`forward`, one layer after the other."""
        x = self.as_input(x)
        truth, host_truth = self.as_truth(truth, x.shape[0])
        state = self.pass_state(x, train, truth, host_truth)
        self.input, self.truth, self.train = x, truth, train
        prof = self.profiler
        if prof is not None:
            prof.lap("h2d")             # train_step's and these copies of x and truth
        for i in range(len(self.layers)):
            self.forward_layer(state, i)
        if prof is not None:
            prof.lap("forward")
        return self.output_layer.output

    def backward(self, input_delta=None):
        """Propagate deltas from the last layer to the first (pj backward_network).

        Darknet gives layer 0 no input delta; pass ``input_delta`` (an array shaped like the
        input, normally zeros) to have the gradient with respect to the input added into it.
        """
        state = self.pass_state(self.input, True, self.truth)
        for i in self.backward_order():
            self.backward_layer(state, i, input_delta)
        if self.profiler is not None:
            self.profiler.lap("backward")

    # -- a pass, a layer at a time (the loops above; nn/graphs.py runs them in pieces) ------
    def as_truth(self, truth, n):
        """A pass's truth for ``n`` images as (the device array, the host array it came as or
        None): the loader's host truth is kept, the box losses plan on the host."""
        if truth is None:
            return None, None
        host = np.asarray(truth, dtype=self.dtype).reshape(n, -1) \
            if isinstance(truth, np.ndarray) else None
        return self.xp.asarray(truth, dtype=self.dtype).reshape(n, -1), host

    def pass_state(self, x, train, truth, truth_host=None):
        """What the layers of one pass see: ``x``, the truth on the device and as the host
        array it came as (None: it came on the device)."""
        self.precision.activate(self.xp)
        state = _State(self, x, train, truth)
        state.truth_host = truth_host
        return state

    def forward_layer(self, state, i):
        """Layer ``i``'s part of a forward pass (the body of pj forward_network's loop)."""
        layer = self.layers[i]
        state.index = i
        layer.delta = None
        prof = self.profiler
        # a loss layer sets its own delta (truth - output); --profile times it apart
        if prof is not None and layer.cost is not None:
            prof.lap("forward")
            layer.forward(state)
            prof.lap("loss")
        else:
            layer.forward(state)
        if state.train and layer.delta is None:
            # zeroed in the forward pass so later layers can add into it (pj forward_network)
            layer.delta = self.xp.zeros_like(layer.output)
        state.input = layer.output
        if layer.truth:
            state.truth, state.truth_host = layer.output, None

    def backward_layer(self, state, i, input_delta=None):
        """Layer ``i``'s part of a backward pass (the body of pj backward_network's loop)."""
        if i > 0:
            state.input = self.layers[i - 1].output
            state.delta = self.layers[i - 1].delta
        else:
            state.input, state.delta = self.input, input_delta
        state.index = i
        self.layers[i].backward(state)

    def backward_order(self):
        """The layers a backward pass runs, last first: down to the first with stopbackward
        (not included)."""
        order = []
        for i in range(len(self.layers) - 1, -1, -1):
            if self.layers[i].stopbackward:
                break
            order.append(i)
        return order

    @property
    def cost(self):
        """Mean over the layers with a loss of their summed cost (pj calc_network_cost)."""
        return PendingCost([l.cost for l in self.layers if l.cost is not None]).value()

    def pending_cost(self):
        """The last pass's ``cost``, to read later without waiting for the GPU now: its loss
        layers' values, their transfers queued right behind the pass (a replayed pass writes
        the layers' own arrays again; nn/graphs.py)."""
        costs = (layer.cost_now() for layer in self.layers)
        return PendingCost([c for c in costs if c is not None])

    @property
    def update_batch(self):
        """B of Darknet's update: images per weight update, over every data-parallel replica."""
        return self.batch * self.subdivisions * self.world_size

    def current_rate(self):
        return current_rate(self.options, self.seen // self.update_batch)

    def update(self):
        """Every layer applies its own accumulated updates (pj update_network).  In fp16,
        an iteration whose gradients overflowed is skipped (nn/precision.py LossScale):
        returns False then, else True."""
        scale = self.precision.scale
        if scale is not None and not scale.finish(self.layers):
            if self.profiler is not None:
                self.profiler.lap("update")
            return False
        o = self.options
        self.t += 1
        rate = self.current_rate()
        if self.device.on_gpu and rate / self.update_batch != self._rate_value:
            # filled when it changes (a fill is a launch: a tenth of a small net's iteration)
            self._rate = device_rate(self.xp, rate / self.update_batch, self._rate)
            self._rate_value = rate / self.update_batch
        args = UpdateArgs(rate, o.momentum, o.decay, self.update_batch, adam=o.adam, t=self.t,
                          b1=o.b1, b2=o.b2, eps=o.eps, rate=self._rate)
        if self.step_graphs is None or not self.step_graphs.update(args):
            for layer in self.layers:
                layer.update(args)
        if self.profiler is not None:
            self.profiler.lap("update")
        return True

    def train_step(self, x, truth, update=True):
        """One mini-batch (pj train_network_datum); updates after every `subdivisions` calls
        (``update=False``: the caller does, e.g. after an all-reduce of the gradients).

        ``seen`` counts the images of every data-parallel replica (``world_size``).
        Returns the loss per image of this mini-batch.
        """
        x = self.as_input(x)
        losses = [layer for layer in self.layers if layer.cost is not None]
        if truth is None and losses:   # the loss would be 0 and the update decay alone
            head = losses[-1]
            wanted = "boxes (x, y, w, h, class) per image" if head.type in ("yolo", "region") \
                else f"a (N, {head.inputs}) one-hot array"
            raise ValueError(f"train_step needs the truth for layer {head.index}'s loss "
                             f"({head.type}): {wanted}, not None")
        self.train_pass(x, truth)
        if update and self.update_due():
            self.update()
        return self.cost / x.shape[0]

    def train_pass(self, x, truth):
        """The forward and backward of one mini-batch, counted in ``seen``; the loss is left
        for ``cost`` to read (reading it waits for the GPU: the caller queues the update
        first)."""
        x = self.as_input(x)
        scale = self.precision.scale
        # an iteration's first mini-batch (the last one ended with an update): keep its buffers
        if scale is not None and self.update_due():
            scale.save(self.layers)
        self.seen += x.shape[0] * self.world_size
        if self.step_graphs is None or not self.step_graphs.train_pass(x, truth):
            if self.step_graphs is not None and self.profiler is not None:
                self.profiler.tally("passes run eagerly (graphs warming up or refused)")
            self.forward(x, train=True, truth=truth)
            self.backward()

    def update_due(self):
        """True after the last mini-batch of an iteration (every ``subdivisions``)."""
        return (self.seen // (self.batch * self.world_size)) % self.subdivisions == 0

    # -- weights -------------------------------------------------------------------------
    def astype(self, dtype):
        """Cast every layer's ``state()`` (gradient checks run in float64)."""
        self.dtype = dtype
        for layer in self.layers:
            for name, array in layer.state().items():
                setattr(layer, name, array.astype(dtype))
        self.forget_graphs()          # they hold the replaced arrays' addresses
        return self

    def fold_batchnorm(self):
        """Fold each conv/connected batch norm into its weights and biases, for inference.

        With s = scales / sqrt(rolling_variance + 1e-5) (computed in float64, as AlexeyAB's
        fuse_conv_batchnorm): W *= s per output channel, biases = biases - rolling_mean * s;
        the layer then has ``batch_normalize = False``.  In inference mode the outputs do not
        change; returns the number of layers folded.
        """
        folded = 0
        for layer in self.layers:
            if layer.type not in ("convolutional", "connected") or not layer.batch_normalize:
                continue
            if getattr(layer, "share", None) is not None:
                layer.batch_normalize = False     # share_index: its arrays fold with theirs
                continue
            xp = self.xp
            s = layer.scales.astype(xp.float64) / xp.sqrt(
                layer.rolling_variance.astype(xp.float64) + BN_EPSILON)
            shape = (-1,) + (1,) * (layer.weights.ndim - 1)
            layer.weights = (layer.weights * s.reshape(shape)).astype(layer.weights.dtype)
            layer.biases = (layer.biases - layer.rolling_mean * s).astype(layer.biases.dtype)
            layer.batch_normalize = False
            for name in ("scales", "rolling_mean", "rolling_variance"):
                layer.remove_persistent(name)
            folded += 1
        self.forget_graphs()          # they hold the replaced arrays' addresses
        return folded

    def load_weights(self, path, partial=False, cutoff=None, fuse=False):
        """Load a Darknet .weights file; returns the number of layers filled.

        A file shorter or longer than the cfg needs is an error naming the layer, unless
        ``partial=True`` (Darknet's ``*.conv.N`` pre-trained backbones), which loads the
        layers the file covers and leaves the rest as initialised.  ``fuse=True`` then folds
        every batch norm into its layer's weights (an inference-only network).
        """
        filled = read_weights_into(self, path, partial, cutoff)
        if self.nonfinite:    # Darknet loads them without a word and prints garbage
            warnings.warn(WeightsWarning(
                f"{path}: warning: {nonfinite_summary(self.nonfinite)}: the outputs will be "
                "NaN or garbage; these weights are broken (saved by a training that "
                "diverged?)"), stacklevel=2)
        if fuse:
            self.fold_batchnorm()
        self.forget_graphs()          # they hold the replaced arrays' addresses
        return filled

    def save_weights(self, path, cutoff=None, allow_nonfinite=False, arrays=getattr):
        """Write a Darknet .weights file (header 0.2.x, 64-bit seen), atomically.  Weights
        holding NaN or inf are refused (NonFiniteWeights, ``path`` untouched) unless
        ``allow_nonfinite``: nothing useful is made of them, and a diverged training's weights
        would replace the last good ones.  ``arrays(layer, name)`` gives the array written
        for each name of a layer's weights record (train/ema.py: AlexeyAB's _ema.weights)."""
        layers = self.layers if cutoff is None else self.layers[:cutoff]
        atomic_write(path, self.weights_chunks(layers, arrays,
                                               refuse=None if allow_nonfinite else str(path)))

    def weights_chunks(self, layers=None, arrays=getattr, refuse=None):
        """The bytes of a .weights file of ``layers`` (all) as they are now: the header, then
        each layer's weights record (``save_weights``; the trainer writes them in a thread).
        ``refuse``: the path the bytes are for, NonFiniteWeights naming it when an array
        holds NaN or inf."""
        return weights_file_chunks(self, self.layers if layers is None else layers, arrays,
                                   refuse)

    def nonfinite_arrays(self, layers=None, arrays=getattr):
        """[(layer index, type, array name, count)] of the saved arrays holding NaN or inf."""
        return nonfinite_arrays(self.layers if layers is None else layers, arrays, self.xp)

    # -- presentation --------------------------------------------------------------------
    def receptive_fields(self):
        """Per layer, its :class:`Field` (receptive field in input pixels, input pixels per
        output step), from each layer class's window (the rule `cfg check` uses too)."""
        extent = max(self.options.width, self.options.height, 1)
        fields = []
        for layer in self.layers:
            prev = fields[-1] if fields else Field.input()
            refs = [fields[i] for i in getattr(layer, "refs", ())]
            fields.append(next_field(type(layer), layer.section, layer.shape, prev, refs, extent))
        return fields

    def summary(self):
        """Darknet's layer table with receptive field, output memory, parameter counts, totals."""
        lines = ["layer     filters    size              input                output"
                 "                              rf    out/img      params"]
        total_flops = 0.0
        total_params = 0
        total_bytes = 0
        for layer, field in zip(self.layers, self.receptive_fields()):
            rf = int(field.rf)
            params = layer.n_params()
            total_flops += layer.bflops()
            total_params += params
            out_bytes = layer.outputs * 4
            total_bytes += out_bytes
            lines.append(f"{layer.index:5d} {layer.describe():<78s} {rf:5d} "
                         f"{_size(out_bytes):>10s} {params:>11,d}")
        lines.append(f"Total BFLOPs {total_flops:.3f}, parameters {total_params:,d} "
                     f"({_size(total_params * 4)}), layer outputs {_size(total_bytes)} per image")
        return "\n".join(lines)


def _checked_batch(batch):
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral):
        raise TypeError(f"batch must be an int, not {type(batch).__name__} ({batch!r})")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    return int(batch)


def _size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
