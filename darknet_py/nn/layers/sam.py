"""AlexeyAB's ``[sam]`` (ab:src/sam_layer.c): spatial attention, an elementwise product.

out = act(prev * from), ``from`` naming a layer of the previous layer's shape (AlexeyAB
asserts it).  Backward, the exact gradient: the previous delta gets delta * from, ``from``'s
delta gets delta * prev.  AlexeyAB's CPU backward overwrites ``from``'s delta (``=``) where its
GPU kernel adds (``+=``); darknet_py adds, as the gradient wants (docs/notes.md).
"""

from ..activations import ACTIVATIONS, NEEDS_INPUT, activate, gradient
from ...errors import CfgError
from .base import Field, Layer


class SamLayer(Layer):
    capturable = True
    type = "sam"
    cfg_keys = frozenset("from activation".split())
    needs_image = True
    refs_key = "from"
    refs_doc = "the layer to multiply with, e.g. from=-2"

    @classmethod
    def output_shape(cls, sec, inp, refs):
        if len(refs) != 1:
            raise CfgError(f"from={sec.str('from')} in [{sec.name}] must name one layer",
                           sec.path, sec.line_of("from"))
        i, src = refs[0]
        if src.flat or (src.c, src.h, src.w) != (inp.c, inp.h, inp.w):
            raise CfgError(f"[{sec.name}] multiplies the previous layer ({inp}) with layer {i} "
                           f"({src}) element by element: they must have the same shape",
                           sec.path, sec.line_of("from"))
        return src

    @classmethod
    def field(cls, sec, prev, refs, extent):
        """``from``'s steps; each output also sees what its scale saw (the whole image after
        a global [avgpool])."""
        return Field(max(prev.rf, refs[0].rf), refs[0].jump)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.source = layer.refs[0]
        layer.activation = section.choice("activation", "linear", ACTIVATIONS)
        return layer

    def forward(self, net):
        src = net.layers[self.source].output
        out = self.input_image(net.input) * src.reshape(src.shape[0], *self.out_shape)
        self.activation_input = out if self.activation in NEEDS_INPUT else None
        self.output = activate(out, self.activation)

    def backward(self, net):
        delta = self.delta * gradient(self.output, self.activation_input, self.activation)
        src = net.layers[self.source]
        if net.delta is not None:
            net.delta += (delta * src.output.reshape(delta.shape)).reshape(net.delta.shape)
        if src.delta is not None:
            src.delta += (delta * self.input_image(net.input)).reshape(src.delta.shape)

    def describe(self):
        return (f"scale Layer: {self.source:d}     {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
