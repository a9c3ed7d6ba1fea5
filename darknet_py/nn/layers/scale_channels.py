"""AlexeyAB's ``[scale_channels]`` (ab:src/scale_channels_layer.c): squeeze-and-excitation's
multiply.

The previous layer gives one scale per channel, (c, 1, 1), and ``from`` names the layer whose
maps (c, h, w) are scaled; ``scale_wh=1`` instead gives one scale per position, (1, h, w), shared
by every channel of ``from``::

    out[b, k, y, x] = act(s[b, k] * from[b, k, y, x])            # scale_wh=0
    out[b, k, y, x] = act(s[b, y, x] * from[b, k, y, x])         # scale_wh=1

The output has ``from``'s shape.  Backward, the exact gradient: the previous delta gets the sum
of delta * from over the scaled positions (channels), ``from``'s delta gets delta * s.
AlexeyAB's GPU kernel divides the scale_wh gradient by h*w (its CPU code does not); see
docs/notes.md.
"""

from ..activations import ACTIVATIONS, NEEDS_INPUT, activate, gradient
from ...errors import CfgError
from .base import Field, Layer


class ScaleChannelsLayer(Layer):
    capturable = True
    type = "scale_channels"
    cfg_keys = frozenset("from scale_wh activation".split())
    needs_image = True
    refs_key = "from"
    refs_doc = "the layer whose maps it scales, e.g. from=-4"

    @classmethod
    def output_shape(cls, sec, inp, refs):
        if len(refs) != 1:
            raise CfgError(f"from={sec.str('from')} in [{sec.name}] must name one layer",
                           sec.path, sec.line_of("from"))
        i, src = refs[0]
        if src.flat:
            raise CfgError(f"from={sec.str('from')} in [{sec.name}]: layer {i} gives {src}, "
                           "not an image", sec.path, sec.line_of("from"))
        if sec.bool("scale_wh"):
            if (inp.c, inp.h, inp.w) != (1, src.h, src.w):
                raise CfgError(f"[{sec.name}] with scale_wh=1 scales layer {i} ({src}) by "
                               f"a {src.w}x{src.h}x1 map, but the previous layer gives {inp} "
                               "(AlexeyAB asserts c == 1 and the same width and height)",
                               sec.path, sec.line)
        elif (inp.c, inp.h, inp.w) != (src.c, 1, 1):
            raise CfgError(f"[{sec.name}] scales the {src.c} channels of layer {i} ({src}) by "
                           f"a 1x1x{src.c} input, but the previous layer gives {inp} "
                           "(e.g. [avgpool] then a [convolutional] of "
                           f"filters={src.c})", sec.path, sec.line)
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
        layer.scale_wh = section.bool("scale_wh")
        layer.activation = section.choice("activation", "linear", ACTIVATIONS)
        return layer

    def _scale(self, x):
        return x.reshape(x.shape[0], self.c, self.h, self.w)    # broadcasts over from's maps

    def forward(self, net):
        src = net.layers[self.source].output
        out = self._scale(net.input) * src.reshape(src.shape[0], *self.out_shape)
        self.activation_input = out if self.activation in NEEDS_INPUT else None
        self.output = activate(out, self.activation)

    def backward(self, net):
        delta = self.delta * gradient(self.output, self.activation_input, self.activation)
        src = net.layers[self.source]
        n = delta.shape[0]
        if net.delta is not None:
            from_out = src.output.reshape(n, *self.out_shape)
            axes = (1,) if self.scale_wh else (2, 3)
            net.delta += (delta * from_out).sum(axis=axes, keepdims=True).reshape(
                net.delta.shape)
        if src.delta is not None:
            src.delta += (delta * self._scale(net.input)).reshape(src.delta.shape)

    def describe(self):
        return (f"scale Layer: {self.source:d}     {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
