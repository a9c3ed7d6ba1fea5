"""``[activation]`` (pj:src/activation_layer.c): y = act(x), default ``linear``.

Backward adds act'(y) * delta into the previous delta (Darknet overwrites it, which drops any
gradient a route had already added there).
"""

from ..activations import ACTIVATIONS, NEEDS_INPUT, activate, gradient
from .base import Layer


class ActivationLayer(Layer):
    capturable = True
    type = "activation"
    cfg_keys = frozenset("activation".split())

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.activation = section.choice("activation", "linear", ACTIVATIONS)
        return layer

    def forward(self, net):
        x = net.input.reshape(net.input.shape[0], *self.out_shape)
        self.activation_input = x if self.activation in NEEDS_INPUT else None
        self.output = activate(x, self.activation)

    def backward(self, net):
        if net.delta is not None:
            d = self.delta * gradient(self.output, self.activation_input, self.activation)
            net.delta += d.reshape(net.delta.shape)

    def describe(self):
        return f"activation {self.activation:<12s}                  {self.inputs:4d}"
