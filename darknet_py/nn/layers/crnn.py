"""``[crnn]`` (pj:src/crnn_layer.c, AB:src/crnn_layer.c): [rnn] with [convolutional] parts; the
state is ``hidden`` maps of the input's size (rnn.py has the forward and the backward).

pj: ``output_filters``, ``hidden_filters`` and a fixed 3x3, stride 1, pad 1 convolution.
AlexeyAB: ``output``, ``hidden``, and ``size``/``pad``/``padding``/``groups`` (its defaults
size 3, padding 0 shrink the maps, which its own state of the input's size cannot take).  Here
pj's keys win when set, then AlexeyAB's; ``size``/``pad``/``padding`` are read as AlexeyAB's
only when one of them is set, else pj's 3x3 pad 1; only a same-size convolution (odd size,
padding (size-1)/2) is accepted.  AlexeyAB's ``stride``/``dilation``/``xnor`` other than 1/1/0
are refused.  Weights: input_layer, self_layer, output_layer, each a [convolutional] record.
"""

from ...errors import CfgError
from .base import Shape
from .convolutional import ConvolutionalLayer, read_activation
from .rnn import RnnLayer


class CrnnLayer(RnnLayer):
    type = "crnn"
    cfg_keys = frozenset(("output_filters hidden_filters output hidden activation "
                          "batch_normalize shortcut size pad padding groups").split())
    unsupported = {"stride": (1, "AlexeyAB"), "dilation": (1, "AlexeyAB"), "xnor": (0, "")}
    needs_image = True
    needs_input = True

    @staticmethod
    def filters(sec, pj_key, ab_key):
        return sec.int(pj_key if sec.has(pj_key) else ab_key, 1, minimum=1)

    @classmethod
    def geometry(cls, sec):
        """(size, padding) of the three convolutions."""
        if not any(sec.has(k) for k in ("size", "pad", "padding")):
            return 3, 1                                 # pj make_crnn_layer
        size = sec.int("size", 3, minimum=1)
        padding = size // 2 if sec.bool("pad") else sec.int("padding", 0, minimum=0)
        if size % 2 == 0 or 2 * padding != size - 1:
            key = "size" if sec.has("size") else "pad" if sec.has("pad") else "padding"
            raise CfgError(f"[{sec.name}] needs a convolution that keeps the map size (an odd "
                           f"size with padding (size-1)/2, e.g. pad=1); size={size}, padding "
                           f"{padding} would not fit its state", sec.path, sec.line_of(key))
        return size, padding

    @classmethod
    def check_options(cls, sec):
        cls.filters(sec, "output_filters", "output")
        cls.filters(sec, "hidden_filters", "hidden")
        cls.geometry(sec)
        groups = sec.int("groups", 1, minimum=1)
        sec.bool("shortcut")
        return groups

    @classmethod
    def output_shape(cls, sec, inp, refs):
        groups = cls.check_options(sec)
        out = cls.filters(sec, "output_filters", "output")
        hidden = cls.filters(sec, "hidden_filters", "hidden")
        if inp.c % groups or hidden % groups or out % groups:
            raise CfgError(f"groups={groups} in [{sec.name}] must divide the input channels "
                           f"({inp.c}), hidden ({hidden}) and output ({out})", sec.path,
                           sec.line_of("groups"))
        return Shape(out, inp.h, inp.w)

    @classmethod
    def window(cls, sec):
        size, _ = cls.geometry(sec)
        return (2 * size - 1, 1, 1)     # input_layer then output_layer, within one step

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.built(section, ctx)
        layer.hidden = cls.filters(section, "hidden_filters", "hidden")
        layer.activation = read_activation(section, "logistic")
        layer.shortcut = section.bool("shortcut")
        layer.size, layer.padding = cls.geometry(section)
        layer.groups = section.int("groups", 1)
        layer.make_parts(ctx, section, layer.activation)
        return layer

    def make_parts(self, ctx, section, self_activation):
        bn, act, hw = self.batch_normalize, self.activation, (self.h, self.w)
        geometry = (self.size, self.padding, self.groups)
        self.state_shape = (self.hidden,) + hw
        self.input_layer = ConvolutionalLayer.part(ctx, (self.c,) + hw, self.hidden, *geometry,
                                                   act, bn)
        self.self_layer = ConvolutionalLayer.part(ctx, self.state_shape, self.hidden, *geometry,
                                                  self_activation, bn)
        self.output_layer = ConvolutionalLayer.part(ctx, self.state_shape, self.out_c, *geometry,
                                                    act, bn)

    def describe(self):
        return (f"crnn  {self.hidden:5d} {self.size:2d} x{self.size:2d} /{1:2d}  "
                f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}  x {self.steps} steps")
