"""What every layer has: shapes, ``forward``/``backward``/``update``, and its weights record.

Conventions are Darknet's (pj:src/network.c):
* ``output`` and ``delta`` are NCHW arrays ``(batch, out_c, out_h, out_w)``; a flat layer (softmax,
  cost, a route of mismatched maps) has ``out_h = out_w = 1`` and ``flat = True``.
* ``delta`` holds the **negative** gradient of the loss with respect to ``output``; the network
  zeroes it before the forward pass, later layers *add* into it during the backward pass.
* ``*_updates`` accumulate ``-dL/dparam`` summed over every image since the last update; only
  ``update`` changes parameters.
* ``state()`` is every persistent array by name, registered once after the layer is built
  (``register_state``): the weights record, each trained parameter's ``*_updates`` buffer and,
  in a network built with ``adam=1``, the parameter's Adam moments (and, in a training with
  ``ema_alpha``, the [convolutional] EMA arrays: train/ema.py).  Checkpoints, ``astype``,
  ``resized`` and the multi-GPU all-reduce read it; nothing is found by its name.
"""

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from ..backend import HostCopy, on_gpu, xp_of
from ...errors import CfgError, DarknetError, NotSupportedError
from .. import kernels

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7


class Shape(NamedTuple):
    """A layer's output as Darknet sees it: ``c x h x w``, or a flat vector of ``c`` values."""

    c: int
    h: int
    w: int
    flat: bool = False

    @property
    def size(self):
        return self.c * self.h * self.w

    def __str__(self):
        return f"a flat vector of {self.c} values" if self.flat else f"{self.w}x{self.h}x{self.c}"


class Field(NamedTuple):
    """Where one output value of a layer looks in the network input: ``rf`` input pixels across
    (its receptive field, at most the input) and ``jump``, the input pixels (x, y) between two
    neighbouring outputs, exact Fractions; None once the layer has seen the whole input (global
    pooling, a dense or flat layer)."""

    rf: Fraction
    jump: tuple | None

    @classmethod
    def input(cls):
        return cls(Fraction(1), (Fraction(1), Fraction(1)))


def next_field(cls, sec, shape, prev, refs, extent):
    """The :class:`Field` of a layer of class ``cls`` (section ``sec``, output ``shape``) after
    ``prev`` (the previous layer's), ``refs`` (those of the layers its ``refs_key`` names) and
    an input ``extent`` pixels across.  A flat output has seen the whole input."""
    if shape is not None and shape.flat:
        return Field(Fraction(extent), None)
    return cls.field(sec, prev, refs, extent)


class PendingCost:
    """A pass's loss (Network.pending_cost): its loss layers' costs (floats or arrays of one
    value, as ``Layer.cost_now`` gives them) fetched as the GPU's work stands when it is made
    (backend.HostCopy: reading it waits for that pass, not for work queued after it);
    ``value`` averages them (pj calc_network_cost)."""

    def __init__(self, values):
        self.values = HostCopy(values)

    def value(self):
        costs = [float(c.item()) for c in self.values.get()]     # each holds one value
        return sum(costs) / len(costs) if costs else float("nan")


class UpdateArgs:
    """What ``update_network`` hands to each layer (pj: update_args)."""

    def __init__(self, learning_rate, momentum, decay, batch, adam=False, t=0,
                 b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS, rate=None):
        self.learning_rate = learning_rate
        #: GPU: a one-element float32 device array holding learning_rate / batch, which the
        #: SGD kernel reads (a replayed update graph follows it); None: made when needed
        self.rate = rate
        self.momentum = momentum
        self.decay = decay
        self.batch = batch          # B = mini-batch x subdivisions
        self.adam = adam
        self.t = t
        self.b1, self.b2, self.eps = b1, b2, eps


class Layer:
    type = "layer"
    #: the section keys ``from_cfg`` reads (besides netoptions.COMMON_KEYS): reading another one
    #: is a programming error, and ``cfg check`` calls any other Darknet key unsupported
    cfg_keys = frozenset()
    #: keys of Darknet's training this layer reads but does not implement, with the value
    #: that changes nothing (None: any); a training run and `cfg check` refuse the ones set
    training_unimplemented = {}
    #: False for a layer darknet_py runs for inference only (refused at training start)
    trains = True
    #: the parameters ``update`` may train, each with its ``UPDATE_NAMES`` buffer; those the
    #: weights record holds are registered (conv's ``scales`` only with batch_normalize)
    params = ()
    #: True when the layer's training pass and update are device work alone, in place on
    #: arrays that live across steps (no host reads, host randomness or host-planned
    #: indices), so that a CUDA graph may record and replay them (nn/graphs.py GraphedStep)
    capturable = False
    #: the previous layer must give an image (c, h, w), not a flat vector
    needs_image = False
    #: the output shape can be known without the input's (the input's only size is checked)
    needs_input = True
    #: the option naming earlier layers whose outputs this one reads (route: layers), and
    #: what they are for (for the error when it is missing)
    refs_key = None
    refs_doc = ""
    #: keys Darknet reads that darknet_py cannot compute, with the value that asks for nothing
    #: (None: any value asks; a frozenset: the values that work) and what the option is;
    #: building refuses them, `cfg check` names them: ``{key: (harmless, description)}``
    unsupported = {}

    # -- what the cfg says, before anything is allocated -----------------------------------
    @classmethod
    def check_options(cls, sec):
        """Check the option values that do not depend on the input (raises CfgError at the
        option's line); ``cfg check`` runs it even when the input's shape is unknown."""

    @classmethod
    def output_shape(cls, sec, inp, refs):
        """Darknet's shape rule for this section (pj make_*_layer): ``sec`` gives the options
        (typed lookups; ``sec.index`` is the layer's position), ``inp`` is the previous layer's
        :class:`Shape`, ``refs`` (index, Shape) of the layers ``refs_key`` names.
        Raises CfgError at the line of the option that does not fit.  The default keeps the
        input's shape."""
        return inp

    @classmethod
    def window(cls, sec):
        """How the output samples the input, in input steps: ``(size, stride_x, stride_y)``
        (a stride below 1 upsamples), or None when each output sees the whole input."""
        return (1, 1, 1)

    @classmethod
    def field(cls, sec, prev, refs, extent):
        """This layer's :class:`Field` from the previous layer's (``prev``) and its window."""
        window = cls.window(sec)
        if window is None or prev.jump is None:
            return Field(Fraction(extent), None)
        size, sx, sy = window
        jx, jy = prev.jump
        return Field(min(prev.rf + (size - 1) * max(jx, jy), Fraction(extent)),
                     (jx * Fraction(sx), jy * Fraction(sy)))

    @classmethod
    def unsupported_in(cls, sec):
        """(key, value, line, message) of each option set that darknet_py cannot compute."""
        found = []
        for key, (harmless, what) in cls.unsupported.items():
            opt = sec.find(key)
            if opt is None or harmless is not None and (
                    opt.value in harmless if isinstance(harmless, frozenset)
                    else _same_value(opt.value, harmless)):
                continue
            shown = f"{key}=" if harmless is None else f"{key}={opt.value}"
            about = f" ({what})" if what else ""
            found.append((key, opt.value, opt.line, f"{shown} in [{sec.name}]{about} is valid "
                                                    "Darknet but not supported by darknet_py"))
        return found

    @classmethod
    def refuse_unsupported(cls, sec):
        """Building: an option darknet_py cannot compute is an error at its line."""
        for _key, _value, line, message in cls.unsupported_in(sec):
            raise NotSupportedError(message, sec.path, line)

    @property
    def cost(self):
        """The summed loss of the last forward, a float (None for a layer without a loss).  A
        loss layer may leave it as a 0-d array on its device: it is read when first asked for,
        since reading waits for the GPU, and asked for in the forward it would keep the CPU
        from queuing the backward while the GPU works (Network.cost asks after the step)."""
        c = self._cost
        if c is not None and not isinstance(c, float):
            c = self._cost = float(c)
        return c

    @cost.setter
    def cost(self, value):
        self._cost = value

    def pass_key(self, net):
        """What besides the shapes this layer's training pass depends on, for a CUDA graph's
        key (nn/graphs.py; None: nothing)."""
        return None

    def loss_state(self):
        """What a CUDA graph's replay points this layer's loss back at (nn/graphs.py): the
        arrays its captured forward wrote."""
        return self._cost

    def set_loss_state(self, state):
        self._cost = state

    def cost_now(self):
        """``cost`` as it stands, without waiting for the GPU: a float, the array that holds it
        (Network.pending_cost fetches a device one before another pass is queued), or None."""
        return self._cost

    def set_output(self, shape):
        self.out_c, self.out_h, self.out_w, self.flat = shape

    def __init__(self):
        self.index = 0
        self.unimplemented = []      # (key, value, line): see training_unimplemented
        self.c = self.h = self.w = 0
        self.out_c = self.out_h = self.out_w = 0
        self.flat = False
        self.output = None
        self.delta = None
        self.cost = None            # a float for layers with a loss (see cost)
        self.learning_rate_scale = 1.0
        self.stopbackward = False
        self.dontsave = self.dontload = self.dontloadscales = False
        self.truth = False
        self.line = 0
        self.path = ""
        self._persistent = {}       # the names state() returns, in registration order
        self._params = []           # the trained parameters among them

    # -- shapes ----------------------------------------------------------------------------
    @property
    def inputs(self):
        return self.c * self.h * self.w

    @property
    def outputs(self):
        return self.out_c * self.out_h * self.out_w

    @property
    def out_shape(self):
        return (self.out_c, self.out_h, self.out_w)

    def set_input(self, shape, flat, section):
        """Record the input shape; layers that need an image refuse a flat input."""
        self.c, self.h, self.w = shape
        if self.needs_image and (flat or self.c * self.h * self.w == 0):
            raise CfgError(f"[{section.name}] needs an image input (channels x height x width), "
                           "but the previous layer gives a flat vector", section.path, section.line)

    @classmethod
    def build_shape(cls, section, ctx, layer):
        """Building: refuse what darknet_py cannot compute, record the input, and set the
        output shape from :meth:`output_shape` (the rule `cfg check` uses too)."""
        cls.refuse_unsupported(section)
        cls.check_options(section)
        layer.set_input(ctx.shape, ctx.flat, section)
        refs = []
        if cls.refs_key is not None:
            layer.refs = resolve_refs(section, cls.refs_key, cls.refs_doc)
            refs = [(i, ctx.layers[i].shape) for i in layer.refs]
        layer.set_output(cls.output_shape(section, Shape(*ctx.shape, ctx.flat), refs))
        return layer

    @property
    def shape(self):
        return Shape(self.out_c, self.out_h, self.out_w, self.flat)

    def input_image(self, x):
        """The previous layer's output as this layer's (N, c, h, w)."""
        return x.reshape(x.shape[0], self.c, self.h, self.w)

    def truth_for(self, net, shape):
        """The truth as ``shape``; a clear error when it has the wrong number of values."""
        per_image = int(np.prod(shape[1:]))
        if net.truth.size != shape[0] * per_image:
            raise DarknetError(f"layer {self.index} [{self.type}] needs {per_image} truth values "
                               f"per image but got {net.truth.size // max(shape[0], 1)}",
                               self.path, self.line)
        return net.truth.reshape(shape)

    # -- the three steps -------------------------------------------------------------------
    def forward(self, net):
        raise NotImplementedError

    def backward(self, net):
        """Add this layer's input gradient into ``net.delta`` (may be None for layer 0)."""

    def update(self, args):
        """Apply the accumulated ``*_updates`` (SGD with momentum and decay, or Adam)."""

    # -- weights file ----------------------------------------------------------------------
    def weight_record(self):
        """Names of the arrays this layer stores in a .weights file, in file order."""
        return ()

    # -- summary ---------------------------------------------------------------------------
    def describe(self):
        """Darknet's summary line body for this layer (pj make_*_layer fprintf)."""
        return f"{self.type:<8s}"

    def bflops(self):
        return 0.0

    def n_params(self):
        return sum(int(np.prod(getattr(self, name).shape)) for name in self.weight_record()
                   if name not in ("rolling_mean", "rolling_variance"))

    # -- persistent state -------------------------------------------------------------------
    def register_state(self, adam=False):
        """Register this layer's persistent arrays, once, when its network is built: the
        weights record, each trained parameter's update buffer and, with ``adam``, zeroed
        Adam moments (allocated up front as pj make_convolutional_layer does when net->adam)."""
        record = self.weight_record()
        for name in record:
            self.add_persistent(name, getattr(self, name))
        self._params = [p for p in self.params if p in record]
        for p in self._params:
            self.add_persistent(UPDATE_NAMES[p], getattr(self, UPDATE_NAMES[p]))
        if adam:
            for p in self._params:
                w = getattr(self, p)
                for name in adam_moments(p):
                    self.add_persistent(name, xp_of(w).zeros_like(w))

    def add_persistent(self, name, value):
        """Set ``name`` to ``value`` and register it as persistent (chainer's add_persistent)."""
        self._persistent[name] = None
        setattr(self, name, value)

    def remove_persistent(self, name):
        """Unregister ``name`` and set it to None; a trained parameter takes its update buffer
        and Adam moments with it (a batch norm folded into the weights)."""
        names = [name]
        if name in self._params:
            self._params.remove(name)
            names += [UPDATE_NAMES[name], *adam_moments(name)]
        for n in names:
            if n in self._persistent:
                del self._persistent[n]
                setattr(self, n, None)

    def state(self):
        """Every persistent array of this layer by name, in registration order."""
        return {name: getattr(self, name) for name in self._persistent}

    def update_buffers(self):
        """The part of ``state()`` that accumulates gradients: each trained parameter's
        ``*_updates`` buffer, by name."""
        return {UPDATE_NAMES[p]: getattr(self, UPDATE_NAMES[p]) for p in self._params}

    def share_state(self, other):
        """Hold ``other``'s persistent arrays themselves, not copies: the same layer at another
        input size (pj resize_network) trains the same parameters."""
        for name in [n for n in self._persistent if n not in other._persistent]:
            self.remove_persistent(name)
        self._params = list(other._params)
        for name, array in other.state().items():
            self.add_persistent(name, array)

    # -- the update rule, shared by every layer with parameters ----------------------------
    def apply_update(self, param, args, decay):
        """Darknet's update of one parameter array, in place (pj update_convolutional_layer).

        SGD (momentum m, decay d, B = batch x subdivisions, lr = rate x layer scale)::

            U += -d * B * w        # weights only (decay=True)
            w += lr / B * U
            U *= m

        i.e. PyTorch SGD on the batch-mean gradient with weight_decay d.  Adam (pj
        adam_update_gpu): lr is not divided by B and decay applies to every array.
        """
        w = getattr(self, param)
        u = getattr(self, UPDATE_NAMES[param])
        lr = args.learning_rate * self.learning_rate_scale
        if args.adam:
            m_name, v_name = adam_moments(param)
            if m_name not in self._persistent:
                raise DarknetError(f"layer {self.index}: an Adam update, but the network was "
                                   "built without adam=1 (no moments)", self.path, self.line)
            m, v = getattr(self, m_name), getattr(self, v_name)
            m *= args.b1
            v *= args.b2
            u += -args.decay * args.batch * w
            m += (1 - args.b1) * u
            v += (1 - args.b2) * u * u
            t = max(args.t, 1)
            mhat = m / (1 - args.b1 ** t)
            vhat = v / (1 - args.b2 ** t)
            w += lr * mhat / ((vhat ** 0.5) + args.eps)
            u *= 0
            return
        if on_gpu(w) and w.dtype == np.float32 and u.flags.c_contiguous:
            if args.rate is None:
                args.rate = device_rate(xp_of(w), args.learning_rate / args.batch)
            kernels.sgd_update(w, u, args.rate, self.learning_rate_scale,
                               args.decay * args.batch if decay else 0.0,
                               args.momentum)       # the three lines below in one pass
            return
        if decay:
            u += -args.decay * args.batch * w
        w += (lr / args.batch) * u
        u *= args.momentum


def device_rate(xp, value, out=None):
    """``value`` in a one-element float32 ``xp`` array (``out``, filled in place, when given):
    UpdateArgs.rate."""
    if out is None:
        out = xp.empty(1, dtype=np.float32)
    out.fill(value)
    return out


UPDATE_NAMES = {"weights": "weight_updates", "biases": "bias_updates", "scales": "scale_updates"}


def adam_moments(param):
    """The names of ``param``'s Adam moments, first and second (pj l.m and l.v, bias_m, ...)."""
    return (param + "_m", param + "_v")


def _same_value(text, value):
    try:
        return float(text) == float(value)
    except ValueError:
        return text == str(value)


def resolve_refs(sec, key, doc):
    """Darknet's layer references in option ``key`` of the layer at ``sec.index`` (negative:
    relative to it); each must name an earlier layer.  ``doc`` says what they are for."""
    values = sec.int_list(key)
    if not values:
        raise CfgError(f"[{sec.name}] needs {key}= ({doc}); Darknet crashes without it",
                       sec.path, sec.line)
    here = sec.index
    out = []
    for v in values:
        i = here + v if v < 0 else v
        if not here:
            problem = "this is layer 0, there is no earlier layer to use"
        elif i < 0:
            problem = (f"points at layer {i}, before the first layer: this is layer {here}, so "
                       f"relative indices go from -{here} to -1")
        elif i >= here:
            problem = (f"points at layer {i}, which is not before this layer (layer {here}): "
                       f"only earlier layers can be used (0..{here - 1}, or -{here}..-1)")
        else:
            out.append(i)
            continue
        sep = ": " if not here else " "
        raise CfgError(f"{key}={v} in [{sec.name}]{sep}{problem}", sec.path, sec.line_of(key))
    return out


def asks_for_something(value, default):
    """Whether the value of a key darknet_py's training does not implement differs from what
    it does anyway (``default``; None: any value asks for something)."""
    if default is None:
        return True
    if isinstance(default, str):
        return value != default
    try:
        return float(value) != default
    except ValueError:
        return True


def unimplemented_message(key, value, section_name):
    """The error for a training option darknet_py does not implement (``cfg check`` and the
    start of a training run say the same)."""
    return (f"{key}={value} in [{section_name}] changes AlexeyAB's training and darknet_py does "
            f"not implement it: remove it to train here (or set the value that asks for "
            f"nothing); inference does not use it")


def refuse_unimplemented(net):
    """Training: the first option set that darknet_py's training does not implement is an
    error at its line (NotSupportedError), checked before anything is prepared."""
    for layer in net.layers:
        if not layer.trains:
            raise NotSupportedError(f"training a [{layer.section_name}] is not supported by "
                                    "darknet_py (it runs it for detection only)", net.path,
                                    layer.line)
    found = [("net", row) for row in net.options.unimplemented] + \
        [(layer.section_name, row) for layer in net.layers for row in layer.unimplemented]
    if found:
        name, (key, value, line) = min(found, key=lambda f: f[1][2])
        raise NotSupportedError(unimplemented_message(key, value, name), net.path, line)


def unimplemented_in(section, table):
    """(key, value, line) of the keys of ``table`` that ``section`` sets to something that
    matters (they are marked read)."""
    return [(key, opt.value, opt.line) for key, default in table.items()
            if (opt := section.find(key)) is not None and asks_for_something(opt.value, default)]
