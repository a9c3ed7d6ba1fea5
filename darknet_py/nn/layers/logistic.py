"""``[logistic]`` (pj:src/logistic_layer.c): y = sigmoid(x) with a binary cross-entropy loss.

With truth t: err = -t log y - (1-t) log(1-y), delta = t - y, cost = sum(err).
"""

from ..activations import activate
from .base import Layer


class LogisticLayer(Layer):
    capturable = True
    type = "logistic"
    cfg_keys = frozenset()                # no keys of its own

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.cost = 0.0
        return layer

    def forward(self, net):
        xp = net.xp
        x = net.input.reshape(net.input.shape[0], *self.out_shape)
        y = activate(x, "logistic")
        self.output = y
        self.cost = 0.0
        if net.truth is not None:
            t = self.truth_for(net, y.shape)
            eps = 1e-7    # as Darknet's GPU, so y = 0 or 1 gives a finite loss
            err = -t * xp.log(y + eps) - (1 - t) * xp.log(1 - y + eps)
            self.cost = err.sum()           # read when asked (Layer.cost)
            self.delta = t - y

    def backward(self, net):
        if net.delta is not None:
            net.delta += self.delta.reshape(net.delta.shape)

    def describe(self):
        return f"logistic x entropy                             {self.inputs:4d}"
