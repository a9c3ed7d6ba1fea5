"""``[avgpool]`` (pj:src/avgpool_layer.c): global average, (c, h, w) -> (c, 1, 1)."""

from .base import Layer, Shape


class AvgpoolLayer(Layer):
    capturable = True
    type = "avgpool"
    cfg_keys = frozenset()                # no keys of its own
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        return Shape(inp.c, 1, 1)

    @classmethod
    def window(cls, sec):
        return None

    @classmethod
    def from_cfg(cls, section, ctx):
        return cls.build_shape(section, ctx, cls())

    def forward(self, net):
        x = self.input_image(net.input)
        self.output = x.mean(axis=(2, 3), keepdims=True)

    def backward(self, net):
        if net.delta is not None:
            d = net.delta.reshape(-1, self.c, self.h, self.w)
            d += self.delta / (self.h * self.w)

    def describe(self):
        return f"avg                     {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  {self.c:4d}"
