"""``[rnn]`` (pj:src/rnn_layer.c, AB:src/rnn_layer.c): a vanilla recurrent layer of three
[connected] parts, run once per time step (see recurrent.py for the steps and the parts).

forward, step t (h_{-1}: zeros when training, else the state the last forward left):
    a_t = input_layer(x_t)          inputs -> hidden, ``activation``
    b_t = self_layer(h_{t-1})       hidden -> hidden, ``activation`` (AB ``logistic=1``: logistic,
                                    ``logistic=2``: loggy)
    h_t = a_t + b_t  (+ h_{t-1} with ``shortcut=1``)
    y_t = output_layer(h_t)         hidden -> output, ``activation``
backward through time, t = T-1 .. 0, with dh the (negative) gradient of h_t:
    dh_t = output_layer's input gradient + dh from step t+1
    input_layer backward (dh_t) -> the network's delta of x_t
    self_layer backward (dh_t)  -> dh_{t-1} (+ dh_t with shortcut); none at t = 0
``batch_normalize`` normalises each part over one step's rows.  ``hidden`` is AlexeyAB's; pj
has none and uses ``output`` (so does darknet_py when it is not set: AB's default 1 would be a
one-unit state; docs/notes.md).  The exact gradient of the forward is computed where pj's CPU
backward is not (docs/notes.md): pj hands the self_layer's delta *after* its activation
gradient and batch norm to the input_layer, and recomputes h_t without the shortcut term.
Weights: input_layer, self_layer, output_layer, each a [connected] record (pj save_weights).
"""

from ..backend import xp_of
from .connected import ConnectedLayer
from .convolutional import read_activation
from .recurrent import RecurrentLayer, step_backward, step_forward


class RnnLayer(RecurrentLayer):
    type = "rnn"
    cfg_keys = frozenset("output hidden activation batch_normalize shortcut logistic".split())
    parts = ("input_layer", "self_layer", "output_layer")

    @classmethod
    def check_options(cls, sec):
        sec.int("output", 1, minimum=1)
        sec.int("hidden", 1, minimum=1)
        sec.choice("logistic", "0", ("0", "1", "2"))

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.built(section, ctx)
        layer.hidden = section.int("hidden", layer.out_c, minimum=1)
        layer.activation = read_activation(section, "logistic")
        layer.shortcut = section.bool("shortcut")
        layer.logistic = int(section.choice("logistic", "0", ("0", "1", "2")))
        self_activation = {0: layer.activation, 1: "logistic", 2: "loggy"}[layer.logistic]
        layer.make_parts(ctx, section, self_activation)
        return layer

    def make_parts(self, ctx, section, self_activation):
        bn = self.batch_normalize
        self.state_shape = (self.hidden, 1, 1)
        self.input_layer = ConnectedLayer.part(ctx, self.inputs, self.hidden, self.activation,
                                               bn)
        self.self_layer = ConnectedLayer.part(ctx, self.hidden, self.hidden, self_activation, bn)
        self.output_layer = ConnectedLayer.part(ctx, self.hidden, self.out_c, self.activation,
                                                bn)

    def forward(self, net):
        steps, b = self.steps_of(net.input)
        xp = net.xp
        x = net.input.reshape(steps, b, self.inputs)
        h = self.last_state
        shape = (b,) + self.state_shape
        if net.train or h is None or h.shape != shape or h.dtype != x.dtype:
            h = xp.zeros(shape, dtype=x.dtype)
        self.states, self.kept, outs = [h], [], []
        for t in range(steps):
            kept_in = step_forward(self.input_layer, x[t], net.train)
            kept_self = step_forward(self.self_layer, h, net.train)
            new = (self.input_layer.output + self.self_layer.output).reshape(shape)
            h = new + h if self.shortcut else new
            kept_out = step_forward(self.output_layer, h, net.train)
            outs.append(self.output_layer.output)
            self.kept.append((kept_in, kept_self, kept_out))
            self.states.append(h)
        # pj: training starts from (and leaves) a zero state; inference carries it on
        self.last_state = xp.zeros_like(h) if net.train else h
        self.output = xp.concatenate(outs).reshape((steps * b,) + self.out_shape)

    def backward(self, net):
        steps, b = self.steps_of(self.output)
        xp = xp_of(self.output)
        x = net.input.reshape(steps, b, self.inputs)
        dx = None if net.delta is None else net.delta.reshape(steps, b, self.inputs)
        delta = self.delta.reshape((steps, b) + self.out_shape)
        carry = xp.zeros((b,) + self.state_shape, dtype=self.output.dtype)
        for t in range(steps - 1, -1, -1):
            kept_in, kept_self, kept_out = self.kept[t]
            dh = carry
            step_backward(self.output_layer, kept_out, self.states[t + 1], delta[t].copy(), dh)
            step_backward(self.input_layer, kept_in, x[t], dh.copy(),
                          None if dx is None else dx[t])
            prev = xp.zeros_like(dh) if t > 0 else None
            step_backward(self.self_layer, kept_self, self.states[t], dh.copy(), prev)
            if t > 0:
                carry = prev + dh if self.shortcut else prev

    def describe(self):
        return (f"rnn    {self.hidden:5d} hidden                {self.inputs:4d}  ->  "
                f"{self.out_c:4d}  x {self.steps} steps")
