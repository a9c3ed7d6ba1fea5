"""``[gru]`` (pj:src/gru_layer.c): a gated recurrent unit of six linear [connected] parts, run
once per time step (see recurrent.py for the steps and the parts).

forward, step t (s: the state, ``output`` values; Darknet carries it from one forward to the
next, training or not, and never resets it):
    z = logistic(uz(x_t) + wz(s))           update gate
    r = logistic(ur(x_t) + wr(s))           reset gate
    c = act(uh(x_t) + wh(r * s))            act: tanh with ``tanh=1``, else logistic (pj)
    y_t = s = z * s + (1 - z) * c           (pj weighted_sum)
backward through time (pj backward_gru_layer_gpu; its CPU backward is empty): the exact
gradient, dy_t plus the gradient from step t+1 into s, down to step 0 (none into the state
before step 0, as Darknet).  ``batch_normalize`` normalises each part over one step's rows.
Weights: wz, wr, wh, uz, ur, uh (pj save_weights).  AlexeyAB writes uz, ur, uh, wz, wr, wh
(its input_*/state_* layers) and never reads ``tanh``: docs/notes.md.
"""

from ..activations import activate, gradient
from ..backend import xp_of
from .recurrent import RecurrentLayer, step_backward, step_forward


class GruLayer(RecurrentLayer):
    type = "gru"
    cfg_keys = frozenset("output batch_normalize tanh".split())
    parts = ("wz", "wr", "wh", "uz", "ur", "uh")

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.built(section, ctx)
        layer.candidate = "tanh" if section.bool("tanh") else "logistic"
        layer.add_linear_parts(ctx, cls.parts)
        return layer

    def forward(self, net):
        steps, b = self.steps_of(net.input)
        xp = net.xp
        x = net.input.reshape(steps, b, self.inputs)
        s = self.last_state
        if s is None or s.shape != (b, self.out_c) or s.dtype != x.dtype:
            s = xp.zeros((b, self.out_c), dtype=x.dtype)
        self.steps_kept, outs = [], []
        for t in range(steps):
            kept = {}

            def run(name, inp):
                kept[name] = (step_forward(getattr(self, name), inp, net.train), inp)
                return getattr(self, name).output.reshape(b, self.out_c)

            z = activate(run("uz", x[t]) + run("wz", s), "logistic")
            r = activate(run("ur", x[t]) + run("wr", s), "logistic")
            c = activate(run("uh", x[t]) + run("wh", r * s), self.candidate)
            y = z * s + (1 - z) * c
            self.steps_kept.append((kept, s, z, r, c))
            outs.append(y)
            s = y
        self.last_state = s
        self.output = xp.concatenate(outs).reshape(steps * b, self.out_c, 1, 1)

    def backward(self, net):
        steps, b = self.steps_of(self.output)
        xp = xp_of(self.output)
        dx = None if net.delta is None else net.delta.reshape(steps, b, self.inputs)
        delta = self.delta.reshape(steps, b, self.out_c)
        carry = xp.zeros((b, self.out_c), dtype=self.output.dtype)
        for t in range(steps - 1, -1, -1):
            kept, s, z, r, c = self.steps_kept[t]

            def back(name, d, into):
                part_kept, inp = kept[name]
                step_backward(getattr(self, name), part_kept, inp,
                              d.reshape(b, self.out_c, 1, 1).copy(), into)

            dy = delta[t] + carry
            ds = dy * z
            dh = dy * (1 - z) * gradient(c, None, self.candidate)
            dz = dy * (s - c) * gradient(z, None, "logistic")
            df = xp.zeros_like(s)
            back("wh", dh, df)
            ds += df * r
            dr = df * s * gradient(r, None, "logistic")
            for name, d in (("wr", dr), ("wz", dz)):
                back(name, d, ds)
            for name, d in (("uh", dh), ("ur", dr), ("uz", dz)):
                back(name, d, None if dx is None else dx[t])
            carry = ds

    def describe(self):
        return f"gru                                  {self.inputs:4d}  ->  {self.out_c:4d}  " \
               f"x {self.steps} steps"
