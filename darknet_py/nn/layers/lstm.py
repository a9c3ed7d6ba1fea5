"""``[lstm]`` (pj:src/lstm_layer.c): a long short-term memory layer of eight linear [connected]
parts, run once per time step (see recurrent.py for the steps and the parts).

forward, step t (h, c: the output and the cell, ``output`` values each; Darknet carries both
from one forward to the next, training or not, and never resets them):
    f = logistic(wf(h) + uf(x_t))     i = logistic(wi(h) + ui(x_t))
    g = tanh(wg(h) + ug(x_t))         o = logistic(wo(h) + uo(x_t))
    c = f * c + i * g                 y_t = h = o * tanh(c)
backward through time: the exact gradient (docs/notes.md), dy_t plus the gradients from step
t+1 into h and c, down to step 0 (none into the state before step 0, as Darknet).
``batch_normalize`` normalises each part over one step's rows.
Weights: wi, wf, wo, wg, ui, uf, uo, ug (pj save_weights; AlexeyAB writes wf, wi, wg, wo, uf,
ui, ug, uo: docs/notes.md).
"""

from ..activations import activate, gradient
from ..backend import xp_of
from .recurrent import RecurrentLayer, step_backward, step_forward

GATES = (("f", "logistic"), ("i", "logistic"), ("g", "tanh"), ("o", "logistic"))


class LstmLayer(RecurrentLayer):
    type = "lstm"
    cfg_keys = frozenset("output batch_normalize".split())
    parts = ("wi", "wf", "wo", "wg", "ui", "uf", "uo", "ug")

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.built(section, ctx)
        layer.add_linear_parts(ctx, ("uf", "ui", "ug", "uo", "wf", "wi", "wg", "wo"))
        return layer

    def forward(self, net):
        steps, b = self.steps_of(net.input)
        xp = net.xp
        x = net.input.reshape(steps, b, self.inputs)
        if self.last_state is None or self.last_state[0].shape != (b, self.out_c) \
                or self.last_state[0].dtype != x.dtype:
            self.last_state = (xp.zeros((b, self.out_c), dtype=x.dtype),) * 2
        h, c = self.last_state
        self.steps_kept, outs = [], []
        for t in range(steps):
            kept, gate = {}, {}
            for g, act in GATES:
                pre = 0
                for name, inp in (("w" + g, h), ("u" + g, x[t])):
                    part = getattr(self, name)
                    kept[name] = (step_forward(part, inp, net.train), inp)
                    pre = pre + part.output.reshape(b, self.out_c)
                gate[g] = activate(pre, act)
            c_prev = c
            c = gate["f"] * c + gate["i"] * gate["g"]
            tc = xp.tanh(c)
            h = gate["o"] * tc
            self.steps_kept.append((kept, gate, c_prev, tc))
            outs.append(h)
        self.last_state = (h, c)
        self.output = xp.concatenate(outs).reshape(steps * b, self.out_c, 1, 1)

    def backward(self, net):
        steps, b = self.steps_of(self.output)
        xp = xp_of(self.output)
        dx = None if net.delta is None else net.delta.reshape(steps, b, self.inputs)
        delta = self.delta.reshape(steps, b, self.out_c)
        carry_h = carry_c = xp.zeros((b, self.out_c), dtype=self.output.dtype)
        for t in range(steps - 1, -1, -1):
            kept, gate, c_prev, tc = self.steps_kept[t]
            dh = delta[t] + carry_h
            dc = dh * gate["o"] * (1 - tc * tc) + carry_c
            dgate = {"f": dc * c_prev, "i": dc * gate["g"], "g": dc * gate["i"], "o": dh * tc}
            dh_prev = xp.zeros_like(dh)
            for g, act in GATES:
                d = (dgate[g] * gradient(gate[g], None, act)).reshape(b, self.out_c, 1, 1)
                for name, into in (("w" + g, dh_prev), ("u" + g, None if dx is None else dx[t])):
                    part_kept, inp = kept[name]
                    step_backward(getattr(self, name), part_kept, inp, d.copy(), into)
            carry_h, carry_c = dh_prev, dc * gate["f"]

    def describe(self):
        return f"lstm                                 {self.inputs:4d}  ->  {self.out_c:4d}  " \
               f"x {self.steps} steps"
