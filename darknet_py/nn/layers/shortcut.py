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
from .base import Layer
from .route import resolve_indices


class ShortcutLayer(Layer):
    type = "shortcut"
    cfg_keys = frozenset("from activation alpha beta".split())
    needs_image = True

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        values = section.int_list("from")
        if not values:
            raise CfgError(f"[{section.name}] needs from= (the layer to add)", section.path,
                           section.line)
        layer.from_layers = resolve_indices(section, "from", ctx, values)
        layer.activation = section.choice("activation", "linear", ACTIVATIONS)
        layer.alpha = section.float("alpha", 1.0)
        layer.beta = section.float("beta", 1.0)
        layer.out_c, layer.out_h, layer.out_w = ctx.shape
        if len(layer.from_layers) > 1 and layer.alpha != 1:
            raise CfgError(f"[{section.name}] alpha= works with a single from= layer",
                           section.path, section.line_of("alpha"))
        layer.maps = []
        for i in layer.from_layers:
            src = ctx.layers[i]
            c1, h1, w1 = src.out_shape
            c2, h2, w2 = layer.out_shape
            if src.flat or w1 == 0 or h1 == 0 or (w1 // w2) != (h1 // h2) \
                    or (w2 // w1) != (h2 // h1):
                raise CfgError(f"[{section.name}] from={i}: layer {i} is {w1}x{h1}x{c1}, which "
                               f"cannot be added to {w2}x{h2}x{c2} (sizes must be equal or "
                               "differ by the same integer factor in width and height)",
                               section.path, section.line_of("from"))
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
        src = ",".join(str(i) for i in self.from_layers)
        return (f"res  {src:>3s}                {self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}")
