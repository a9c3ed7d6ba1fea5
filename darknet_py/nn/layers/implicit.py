"""AlexeyAB's ``[implicit]`` (ab:src/representation_layer.c): a learned tensor that ignores its
input (YOLOR's implicit knowledge; the ImplicitA / ImplicitM of YOLOR's PyTorch cfgs, which call
them ``[implicit_add]`` / ``[implicit_mul]``, are AlexeyAB's ``[implicit]`` with mean=0 or 1,
joined to the maps by a ``[shortcut]`` or a ``[scale_channels]``).

Output (filters, atoms, 1) per image, every image the same: the ``weights``, initialised
uniform in [mean - std, mean + std] (mean=0, std=0.2 by default).  Backward: weight_updates +=
the delta summed over the batch; update: Darknet's SGD with decay (or Adam).  The .weights file
holds the filters x atoms weights (ab save_implicit_weights).
"""

import numpy as np

from .base import Layer, Shape


class ImplicitLayer(Layer):
    capturable = True
    type = "implicit"
    cfg_keys = frozenset("filters atoms mean std".split())
    params = ("weights",)
    needs_input = False

    @classmethod
    def check_options(cls, sec):
        sec.int("filters", 128, minimum=1)
        sec.int("atoms", 1, minimum=1)
        sec.float("mean", 0.0)
        sec.float("std", 0.2)

    @classmethod
    def output_shape(cls, sec, inp, refs):
        return Shape(sec.int("filters", 128), sec.int("atoms", 1), 1)

    @classmethod
    def window(cls, sec):
        return None

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.mean = section.float("mean", 0.0)
        layer.std = section.float("std", 0.2)
        w = layer.mean + ctx.rng.uniform(-layer.std, layer.std, layer.out_shape)
        layer.weights = ctx.xp.asarray(w.astype(np.float32))
        layer.weight_updates = ctx.xp.zeros(layer.out_shape, dtype="float32")
        return layer

    def forward(self, net):
        n = net.input.shape[0]
        self.output = net.xp.ascontiguousarray(
            net.xp.broadcast_to(self.weights, (n, *self.out_shape)))

    def backward(self, net):
        self.weight_updates += self.delta.sum(axis=0)

    def update(self, args):
        self.apply_update("weights", args, decay=True)

    def weight_record(self):
        return ("weights",)

    def describe(self):
        return (f"implicit {self.out_c:5d} x {self.out_h:d}  mean={self.mean:.2f}, "
                f"std={self.std:.2f}")
