"""What Darknet's recurrent layers share: they hold ordinary layers as parts and run them once
per time step (pj:src/rnn_layer.c, gru_layer.c, lstm_layer.c, crnn_layer.c; AB:src/ the same).

* ``[net] time_steps=T`` makes the network batch ``batch / subdivisions * T`` (pj parse_net);
  a recurrent layer reads its input as T consecutive blocks of ``batch`` rows, step 0 first
  (pj make_rnn_layer: ``batch = batch / steps``), and writes its output the same way.
* Each part is a layer of its own (a [connected] or [convolutional] built without a section),
  run on one step's rows; what its forward records for its backward is kept per step
  (:func:`step_forward`) and put back before that step's backward (:func:`step_backward`),
  where Darknet moves the parts' output/delta pointers along (pj increment_layer).
* The parts' arrays are this layer's persistent state under ``part__name`` (``input_layer__
  weights``), so the weights file, ``astype``, ``resized`` and the all-reduce see them without
  knowing about parts; the weights record is the parts' records in Darknet's save order.
"""

from types import SimpleNamespace

from ...errors import DarknetError
from .base import Layer, Shape
from .connected import ConnectedLayer

_MISSING = object()


def step_forward(part, x, train):
    """Run ``part`` on one step's input ``x``; returns what its forward set (output, the
    activation input, the batch statistics) for :func:`step_backward`.  Its persistent arrays
    (rolling statistics) are updated in place and are not part of it."""
    before = dict(part.__dict__)
    part.forward(SimpleNamespace(input=x, train=train, delta=None))
    return {k: v for k, v in part.__dict__.items()
            if before.get(k, _MISSING) is not v and k not in part._persistent}


def step_backward(part, kept, x, delta, dx):
    """The backward of one step of ``part``: ``kept`` from its :func:`step_forward`, ``delta``
    the (negative) gradient of that step's output, ``dx`` an array the input's is added into
    (None: not needed).  ``delta`` is the part's own from here on (the backward may scale it)."""
    part.__dict__.update(kept)
    part.delta = delta
    part.backward(SimpleNamespace(input=x, train=True, delta=dx))


class RecurrentLayer(Layer):
    """A layer made of parts (attribute names in ``parts``, in the weights file's order)."""

    parts = ()
    needs_input = False

    @classmethod
    def output_shape(cls, sec, inp, refs):
        """pj make_rnn/gru/lstm_layer: ``output`` values per row, flat."""
        return Shape(sec.int("output", 1, minimum=1), 1, 1, True)

    @classmethod
    def window(cls, sec):
        return None         # each output sees the whole input, as [connected]

    @classmethod
    def built(cls, section, ctx):
        """The layer with its shapes, ``steps`` ([net] time_steps) and ``batch_normalize``, and
        no state yet (``last_state``: what the last forward left for the next)."""
        layer = cls.build_shape(section, ctx, cls())
        layer.steps = ctx.net.time_steps
        layer.batch_normalize = section.bool("batch_normalize")
        layer.last_state = None
        return layer

    def add_linear_parts(self, ctx, names):
        """The gates' linear [connected] parts of [gru] and [lstm], made in the order of
        ``names`` (pj's make order: their initial weights are drawn in it): ``u*`` from the
        inputs, ``w*`` from the output, each to the output."""
        n = self.out_c
        for name in names:
            fan_in = self.inputs if name[0] == "u" else n
            setattr(self, name, ConnectedLayer.part(ctx, fan_in, n, "linear",
                                                    self.batch_normalize))

    def __getattr__(self, name):
        part, sep, attr = name.partition("__")
        if sep and part in type(self).parts and part in self.__dict__:
            return getattr(self.__dict__[part], attr)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name, value):
        part, sep, attr = name.partition("__")
        if sep and part in type(self).parts:
            setattr(self.__dict__[part], attr, value)
        else:
            object.__setattr__(self, name, value)

    def part_layers(self):
        return [getattr(self, p) for p in self.parts]

    def steps_of(self, x):
        """(steps, rows per step) of an input or output with ``x.shape[0]`` rows."""
        rows = x.shape[0]
        if rows % self.steps:
            raise DarknetError(f"layer {self.index} [{self.type}] needs a batch that is a multiple "
                               f"of time_steps={self.steps}, got {rows} rows", self.path,
                               self.line)
        return self.steps, rows // self.steps

    # -- the parts' state is this layer's ------------------------------------------------
    def register_state(self, adam=False):
        for name, part in zip(self.parts, self.part_layers()):
            part.index, part.path, part.line = self.index, self.path, self.line
            part.register_state(adam)
            for key in part.state():
                self._persistent[f"{name}__{key}"] = None

    def share_state(self, other):
        for mine, theirs in zip(self.part_layers(), other.part_layers()):
            mine.share_state(theirs)
        self._persistent = dict(other._persistent)

    def update_buffers(self):
        return {f"{name}__{k}": v for name, part in zip(self.parts, self.part_layers())
                for k, v in part.update_buffers().items()}

    def update(self, args):
        """Each part's own update (pj update_rnn_layer: update_connected_layer of each)."""
        for part in self.part_layers():
            part.update(args)

    def weight_record(self):
        return tuple(f"{name}__{key}" for name, part in zip(self.parts, self.part_layers())
                     for key in part.weight_record())

    def n_params(self):
        return sum(part.n_params() for part in self.part_layers())

    def bflops(self):
        return sum(part.bflops() for part in self.part_layers())   # per row, as connected
