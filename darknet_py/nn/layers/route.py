"""``[route]`` (pj:src/route_layer.c, ab groups/group_id): concatenate earlier layers' outputs.

out[b] = [L0.out[b] chunk, L1.out[b] chunk, ...] where each source's per-image output is cut into
``groups`` contiguous parts and part ``group_id`` is taken (the channel slice in NCHW).  When every
source has the first one's width and height the result is an image, otherwise it is flat.
Backward adds each slice of delta into its source's delta.
"""

from ...errors import CfgError
from .base import Field, Layer, Shape


class RouteLayer(Layer):
    capturable = True
    type = "route"
    cfg_keys = frozenset("layers groups group_id".split())

    refs_key = "layers"
    needs_input = False
    refs_doc = "the layers to concatenate, e.g. layers=-1,8"

    @classmethod
    def check_options(cls, sec):
        groups = sec.int("groups", 1, minimum=1)
        group_id = sec.int("group_id", 0, minimum=0)
        if group_id >= groups:
            raise CfgError(f"group_id={group_id} in [{sec.name}] must be below groups={groups}",
                           sec.path, sec.line_of("group_id"))

    @classmethod
    def output_shape(cls, sec, inp, refs):
        groups = sec.int("groups", 1)
        for i, src in refs:
            if src.c % groups:
                raise CfgError(f"groups={groups} in [{sec.name}] does not divide the {src.c} "
                               f"channels of layer {i}", sec.path, sec.line_of("groups"))
        refs = [s for _, s in refs]
        first = refs[0]
        if all(not s.flat and (s.w, s.h) == (first.w, first.h) for s in refs):
            return Shape(sum(s.c for s in refs) // groups, first.h, first.w)
        return Shape(sum(s.size for s in refs) // groups, 1, 1, True)   # pj: a flat output

    @classmethod
    def field(cls, sec, prev, refs, extent):
        """The widest view among the routed layers, stepping as the first one."""
        return Field(max(r.rf for r in refs), refs[0].jump)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.groups = section.int("groups", 1)
        layer.group_id = section.int("group_id", 0)
        return layer

    def _chunks(self, net_layers):
        for i in self.refs:
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
        return "route  " + " ".join(str(i) for i in self.refs)
