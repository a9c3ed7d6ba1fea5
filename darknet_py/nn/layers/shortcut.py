"""``[shortcut]`` (pj:src/shortcut_layer.c, blas.c shortcut_cpu): a residual add.

out = prev.output, then on the overlap with the ``from`` layer (w1,h1,c1) -> out (w2,h2,c2)::

    stride = max(1, w1 // w2), sample = max(1, w2 // w1)
    out[b, k, j*sample, i*sample] = alpha * out[...] + beta * from[b, k, j*stride, i*stride]
    for k < min(c1, c2), j < min(h1, h2), i < min(w1, w2)

then the activation.  Elsewhere the previous layer's value passes unscaled.  Backward is the
exact gradient of that (Darknet scales the whole previous delta by alpha; identical for alpha=1).
Several ``from`` layers (AlexeyAB) are added one after the other with the same rule.
"""

from ..activations import ACTIVATIONS, NEEDS_INPUT, activate, gradient
from ...errors import CfgError
from .base import Field, Layer


class ShortcutLayer(Layer):
    capturable = True
    type = "shortcut"
    cfg_keys = frozenset("from activation alpha beta".split())
    needs_image = True

    refs_key = "from"
    refs_doc = "the layer to add, e.g. from=-3"
    unsupported = {"weights_type": ("none", "AlexeyAB"),
                   "weights_normalization": ("none", "AlexeyAB")}

    @classmethod
    def output_shape(cls, sec, inp, refs):
        """The previous layer's shape; each ``from`` layer must be as large or differ by the
        same integer factor in width and height (pj's assert, stricter: see docs/notes.md)."""
        b = inp
        for i, a in refs:
            fits = not a.flat and a.size > 0 and (
                (a.w % b.w == 0 and a.h % b.h == 0 and a.w // b.w == a.h // b.h)
                or (b.w % a.w == 0 and b.h % a.h == 0 and b.w // a.w == b.h // a.h))
            if not fits:
                raise CfgError(f"from={sec.str('from')} in [{sec.name}]: layer {i} is {a} but "
                               f"the previous layer (layer {sec.index - 1}) is {b}; a shortcut "
                               "adds maps of equal width and height (or sizes that differ by the "
                               "same integer factor); point from= at a layer of the same size",
                               sec.path, sec.line_of("from"))
        return inp

    @classmethod
    def field(cls, sec, prev, refs, extent):
        return Field(max([prev.rf] + [r.rf for r in refs]), prev.jump)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.activation = section.choice("activation", "linear", ACTIVATIONS)
        layer.alpha = section.float("alpha", 1.0)
        layer.beta = section.float("beta", 1.0)
        if len(layer.refs) > 1 and layer.alpha != 1:
            raise CfgError(f"[{section.name}] alpha= works with a single from= layer",
                           section.path, section.line_of("alpha"))
        layer.maps = []
        c2, h2, w2 = layer.out_shape
        for i in layer.refs:
            c1, h1, w1 = ctx.layers[i].out_shape
            stride, sample = max(1, w1 // w2), max(1, w2 // w1)
            layer.maps.append((i, min(c1, c2), min(h1, h2), min(w1, w2), stride, sample))
        return layer

    @staticmethod
    def _views(out, src, mc, mh, mw, stride, sample):
        o = out[:, :mc, 0:mh * sample:sample, 0:mw * sample:sample]
        f = src[:, :mc, 0:mh * stride:stride, 0:mw * stride:stride]
        return o, f

    def forward(self, net):
        out = self.input_image(net.input).copy()
        for i, mc, mh, mw, stride, sample in self.maps:
            o, f = self._views(out, net.layers[i].output, mc, mh, mw, stride, sample)
            o *= self.alpha
            o += self.beta * f
        self.activation_input = out if self.activation in NEEDS_INPUT else None
        self.output = activate(out, self.activation)

    def backward(self, net):
        delta = self.delta * gradient(self.output, self.activation_input, self.activation)
        dprev = delta
        if self.alpha != 1:          # d out / d prev is alpha on the overlap, 1 elsewhere
            dprev = delta.copy()
            o, _ = self._views(dprev, dprev, *self.maps[0][1:])
            o *= self.alpha
        for i, *geometry in self.maps:
            src = net.layers[i]
            if src.delta is not None:
                d, f = self._views(delta, src.delta, *geometry)
                f += self.beta * d
        if net.delta is not None:
            net.delta += dprev.reshape(net.delta.shape)

    def describe(self):
        src = ",".join(str(i) for i in self.refs)
        return (f"res  {src:>3s}                {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
