"""``[route]`` (pj:src/route_layer.c, ab groups/group_id): concatenate earlier layers' outputs.

out[b] = [L0.out[b] chunk, L1.out[b] chunk, ...] where each source's per-image output is cut into
``groups`` contiguous parts and part ``group_id`` is taken (the channel slice in NCHW).  When every
source has the first one's width and height the result is an image, otherwise it is flat.
Backward adds each slice of delta into its source's delta.
"""

from ...errors import CfgError
from .base import Layer


def resolve_indices(section, key, ctx, values):
    """Darknet's layer references: negative values are relative to the current layer."""
    out = []
    for v in values:
        i = ctx.index + v if v < 0 else v
        if not 0 <= i < ctx.index:
            raise CfgError(f"[{section.name}] {key}={v} points at layer {i}, but only layers "
                           f"0..{ctx.index - 1} come before layer {ctx.index}",
                           section.path, section.line_of(key))
        out.append(i)
    return out


class RouteLayer(Layer):
    type = "route"
    cfg_keys = frozenset("layers groups group_id".split())

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        values = section.int_list("layers")
        if not values:
            raise CfgError(f"[{section.name}] needs layers= (a list of layer indices)",
                           section.path, section.line)
        layer.input_layers = resolve_indices(section, "layers", ctx, values)
        layer.groups = section.int("groups", 1, minimum=1)
        layer.group_id = section.int("group_id", 0, minimum=0)
        if layer.group_id >= layer.groups:
            raise CfgError(f"[{section.name}] group_id={layer.group_id} must be below "
                           f"groups={layer.groups}", section.path, section.line_of("group_id"))
        sources = [ctx.layers[i] for i in layer.input_layers]
        for src in sources:
            if src.out_c % layer.groups:
                raise CfgError(f"[{section.name}] groups={layer.groups} does not divide the "
                               f"{src.out_c} channels of layer {src.index}",
                               section.path, section.line_of("groups"))
        first = sources[0]
        total = sum(s.outputs for s in sources) // layer.groups
        if all(not s.flat and s.out_w == first.out_w and s.out_h == first.out_h
               for s in sources):
            layer.out_w, layer.out_h = first.out_w, first.out_h
            layer.out_c = total // (first.out_w * first.out_h)
        else:
            layer.out_c, layer.out_h, layer.out_w = total, 1, 1
            layer.flat = True
        return layer

    def _chunks(self, net_layers):
        for i in self.input_layers:
            src = net_layers[i]
            part = src.outputs // self.groups
            yield src, self.group_id * part, part

    def forward(self, net):
        xp = net.xp
        n = net.input.shape[0]
        pieces = [src.output.reshape(n, src.outputs)[:, start:start + part]
                  for src, start, part in self._chunks(net.layers)]
        out = pieces[0] if len(pieces) == 1 else xp.concatenate(pieces, axis=1)
        self.output = xp.ascontiguousarray(out).reshape(n, self.out_c, self.out_h, self.out_w)

    def backward(self, net):
        n = self.delta.shape[0]
        d = self.delta.reshape(n, self.outputs)
        offset = 0
        for src, start, part in self._chunks(net.layers):
            if src.delta is not None:
                sd = src.delta.reshape(n, src.outputs)
                sd[:, start:start + part] += d[:, offset:offset + part]
            offset += part

    def describe(self):
        return "route  " + " ".join(str(i) for i in self.input_layers)
