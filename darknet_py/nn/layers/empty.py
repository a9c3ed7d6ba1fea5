"""AlexeyAB's ``[empty]`` (alias ``[silence]``; ab:src/parser.c): the previous layer's output,
unchanged; backward adds the delta into the previous one's (AlexeyAB shares both arrays)."""

from .base import Layer


class EmptyLayer(Layer):
    type = "empty"

    def forward(self, net):
        self.output = net.input.reshape(net.input.shape[0], *self.out_shape)

    def backward(self, net):
        if net.delta is not None:
            net.delta += self.delta.reshape(net.delta.shape)

    @classmethod
    def from_cfg(cls, section, ctx):
        return cls.build_shape(section, ctx, cls())

    def describe(self):
        return "empty"
