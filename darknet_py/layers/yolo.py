"""``[yolo]`` (pj:src/yolo_layer.c) and ``[region]`` (pj:src/region_layer.c): inference outputs.

Memory per image and anchor slot: (coords, obj, classes) planes of w*h each.
yolo:   logistic on x, y, obj and the classes; w, h stay raw.
region: logistic on x, y and obj (unless ``background``); the classes get a softmax per cell
        (``softmax=1``) or a logistic.
Their training losses are not implemented yet (they come with detection training).
"""

from ..activations import activate
from ..errors import CfgError, NotSupportedError
from .base import Layer


class _DetectionHead(Layer):
    needs_image = True

    def _shape_check(self, section, expected, formula):
        if self.c != expected:
            raise CfgError(f"[{section.name}] expects {expected} input channels "
                           f"({formula}) but the previous layer gives {self.c}: set filters="
                           f"{expected} in the [convolutional] before it",
                           section.path, section.line)
        self.out_c, self.out_h, self.out_w = self.c, self.h, self.w

    def _refuse_training(self, net):
        if net.train:
            raise NotSupportedError(f"training a [{self.type}] layer is not supported by "
                                    "darknet_py yet (inference works)", self.path, self.line)

    def _planes(self, x):
        n = x.shape[0]
        return x.reshape(n, self.n, self.coords + 1 + self.classes, self.h, self.w)


class YoloLayer(_DetectionHead):
    type = "yolo"
    coords = 4

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        layer.classes = section.int("classes", 20, minimum=1)
        layer.total = section.int("num", 1, minimum=1)
        layer.mask = section.int_list("mask", list(range(layer.total)))
        layer.n = len(layer.mask)
        for m in layer.mask:
            if not 0 <= m < layer.total:
                raise CfgError(f"[{section.name}] mask index {m} must be below num="
                               f"{layer.total}", section.path, section.line_of("mask"))
        anchors = section.float_list("anchors", [0.5] * (2 * layer.total))
        if len(anchors) != 2 * layer.total:
            raise CfgError(f"[{section.name}] anchors has {len(anchors)} values; num="
                           f"{layer.total} needs {2 * layer.total} (w,h pairs)",
                           section.path, section.line_of("anchors"))
        layer.anchors = anchors
        layer.max_boxes = section.int("max", 90)
        layer.jitter = section.float("jitter", 0.2)
        layer.ignore_thresh = section.float("ignore_thresh", 0.5)
        layer.truth_thresh = section.float("truth_thresh", 1.0)
        layer.random = section.float("random", 0.0)
        layer.map = section.str("map")
        layer.scale_x_y = section.float("scale_x_y", 1.0)
        layer._shape_check(section, layer.n * (layer.classes + 5),
                           f"len(mask)={layer.n} x (classes={layer.classes} + 5)")
        return layer

    def forward(self, net):
        self._refuse_training(net)
        x = self.input_image(net.input)
        p = self._planes(x).copy()
        p[:, :, 0:2] = activate(p[:, :, 0:2], "logistic")
        if self.scale_x_y != 1:
            p[:, :, 0:2] = p[:, :, 0:2] * self.scale_x_y - 0.5 * (self.scale_x_y - 1)
        p[:, :, 4:] = activate(p[:, :, 4:], "logistic")
        self.output = p.reshape(x.shape)

    def describe(self):
        return "yolo"


class RegionLayer(_DetectionHead):
    type = "region"

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls()
        layer.set_input(ctx.shape, ctx.flat, section)
        layer.coords = section.int("coords", 4, minimum=1)
        layer.classes = section.int("classes", 20, minimum=0)
        layer.n = section.int("num", 1, minimum=1)
        layer.softmax = section.bool("softmax")
        layer.background = section.bool("background")
        if section.str("tree") is not None:
            raise NotSupportedError(f"[{section.name}] tree= is not supported by darknet_py",
                                    section.path, section.line_of("tree"))
        anchors = section.float_list("anchors", [0.5] * (2 * layer.n))
        if len(anchors) != 2 * layer.n:
            raise CfgError(f"[{section.name}] anchors has {len(anchors)} values; num={layer.n} "
                           f"needs {2 * layer.n} (w,h pairs)", section.path,
                           section.line_of("anchors"))
        layer.anchors = anchors
        for key, default in (("log", 0), ("sqrt", 0), ("max", 30), ("rescore", 0),
                             ("classfix", 0), ("absolute", 0), ("random", 0), ("bias_match", 0)):
            setattr(layer, key, section.int(key, default))
        for key, default in (("jitter", 0.2), ("thresh", 0.5), ("coord_scale", 1.0),
                             ("object_scale", 1.0), ("noobject_scale", 1.0), ("mask_scale", 1.0),
                             ("class_scale", 1.0)):
            setattr(layer, key, section.float(key, default))
        section.str("map")
        layer._shape_check(section, layer.n * (layer.classes + layer.coords + 1),
                           f"num={layer.n} x (classes={layer.classes} + coords={layer.coords} + 1)")
        return layer

    def forward(self, net):
        self._refuse_training(net)
        xp = net.xp
        x = self.input_image(net.input)
        p = self._planes(x).copy()
        p[:, :, 0:2] = activate(p[:, :, 0:2], "logistic")
        c = self.coords
        if not self.background:
            p[:, :, c] = activate(p[:, :, c], "logistic")
        if self.softmax:
            first = c + (0 if self.background else 1)
            z = p[:, :, first:]
            e = xp.exp(z - z.max(axis=2, keepdims=True))
            p[:, :, first:] = e / e.sum(axis=2, keepdims=True)
        else:
            p[:, :, c + 1:] = activate(p[:, :, c + 1:], "logistic")
        self.output = p.reshape(x.shape)

    def describe(self):
        return "detection"
