"""AlexeyAB's ``[contrastive]`` (ab:src/softmax_layer.c make/forward_contrastive_layer): the
contrastive loss on the embeddings of a [yolo] head (``yolo_layer``, which must name a [yolo]),
used by yolov4-tiny_contrastive for tracking.

Inference: AlexeyAB's forward returns at once when not training, so the layer's output is its
zero-filled buffer, the input's shape; nothing reads it (it ends a branch).  darknet_py does the
same.  Training (the loss over pairs of embeddings) is not implemented: a training step is
refused in one line rather than run without the loss.
"""

from ...errors import CfgError, NotSupportedError
from .base import Layer, resolve_refs


class ContrastiveLayer(Layer):
    type = "contrastive"
    cfg_keys = frozenset(("classes yolo_layer temperature cls_normalizer max_delta "
                          "contrastive_neg_max").split())

    @classmethod
    def check_options(cls, sec):
        sec.int("classes", 1000, minimum=1)
        sec.float("temperature", 1.0)
        cls.yolo_index(sec)

    @staticmethod
    def yolo_index(sec):
        return resolve_refs(sec, "yolo_layer", "the [yolo] head whose embeddings it trains")[0]

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = cls.build_shape(section, ctx, cls())
        head = ctx.layers[cls.yolo_index(section)]
        if head.type != "yolo":
            raise CfgError(f"yolo_layer={section.str('yolo_layer')} in [{section.name}] names "
                           f"layer {head.index} ({head.type}): it must be a [yolo] layer "
                           "(AlexeyAB's rule)", section.path, section.line_of("yolo_layer"))
        layer.classes = section.int("classes", 1000)
        return layer

    def forward(self, net):
        if net.train:
            raise NotSupportedError(f"layer {self.index} [contrastive]: darknet_py does not "
                                    "implement the contrastive loss (training); the layer runs "
                                    "in inference only", self.path, self.line)
        self.output = net.xp.zeros((net.input.shape[0], *self.out_shape), net.input.dtype)

    def describe(self):
        return (f"contrastive {self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}  "
                f"classes = {self.classes}")
