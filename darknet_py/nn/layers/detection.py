"""pj's YOLOv1 ``[detection]`` (pj:src/detection_layer.c), for inference.

Its input (a [connected] of side*side*((1 + coords)*num + classes) values per image) is laid out
as three blocks: the class probabilities of each cell (side*side x classes), the confidence of
each of its ``num`` boxes (side*side x num), then the boxes (side*side x num x coords: x, y in
the cell, w, h of the image, or their square roots with ``sqrt=1``).  The forward copies it and,
with ``softmax=1``, takes the softmax of each cell's classes.  Detections: see
darknet_py.detection.detect.get_detection_detections.

Training is refused: the layer trains on dense per-cell truths (pj's load_data_region), which
darknet_py's detection loader does not make.
"""

from ...errors import CfgError, NotSupportedError
from .base import Layer, Shape


class DetectionLayer(Layer):
    type = "detection"
    trains = False
    cfg_keys = frozenset(("coords classes rescore num side softmax sqrt max coord_scale forced "
                          "object_scale noobject_scale class_scale jitter random reorg").split())

    @classmethod
    def output_shape(cls, sec, inp, refs):
        side = sec.int("side", 7, minimum=1)
        num = sec.int("num", 1, minimum=1)
        coords = sec.int("coords", 1, minimum=1)
        classes = sec.int("classes", 1, minimum=0)
        need = side * side * ((1 + coords) * num + classes)
        if inp.size != need:      # pj make_detection_layer asserts it
            raise CfgError(f"[{sec.name}] needs side*side*((1 + coords)*num + classes) = "
                           f"{side}*{side}*((1 + {coords})*{num} + {classes}) = {need} inputs but "
                           f"the previous layer gives {inp.size}: set output={need} in the "
                           "[connected] before it", sec.path, sec.line)
        return Shape(inp.size, 1, 1, True)

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        layer.side = section.int("side", 7)
        layer.n = section.int("num", 1)
        layer.coords = section.int("coords", 1)
        layer.classes = section.int("classes", 1)
        layer.softmax = section.bool("softmax")
        layer.sqrt = section.bool("sqrt")
        for key in ("rescore", "forced", "reorg"):
            section.bool(key)
        for key in ("coord_scale", "object_scale", "noobject_scale", "class_scale", "jitter",
                    "random"):
            section.float(key, 0.0)
        section.int("max", 90)
        return layer

    def forward(self, net):
        if net.train:
            raise NotSupportedError("training a [detection] (YOLOv1) is not supported by "
                                    "darknet_py (it runs it for detection only)", self.path,
                                    self.line)
        xp = net.xp
        x = net.input.reshape(net.input.shape[0], -1)
        out = x.copy()
        if self.softmax:      # pj: softmax(output + b*inputs + i*classes, classes, ...)
            cells = self.side * self.side
            z = out[:, :cells * self.classes].reshape(len(out), cells, self.classes)
            e = xp.exp(z - z.max(axis=2, keepdims=True))
            out[:, :cells * self.classes] = (e / e.sum(axis=2, keepdims=True)).reshape(
                len(out), -1)
        self.output = out.reshape(len(out), self.outputs, 1, 1)

    def describe(self):
        return "Detection Layer"
