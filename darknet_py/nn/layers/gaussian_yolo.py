"""AlexeyAB's ``[Gaussian_yolo]`` (ab:src/gaussian_yolo_layer.c, Gaussian YOLOv3): a ``[yolo]``
head whose box coordinates each come with an uncertainty.

Memory per image and anchor slot: planes x, sigma_x, y, sigma_y, w, sigma_w, h, sigma_h, obj,
then the classes (``filters = len(mask) x (classes + 9)``).  The forward applies the logistic
to every plane but w and h, and AlexeyAB's scale_x_y to x and y (ab
forward_gaussian_yolo_layer, the same on its GPU).  Detections (darknet_py.detection.detect)
take the box as [yolo] does from x, y, w, h (get_gaussian_yolo_box, with ``yolo_point``) and
score class j as obj * p_j * (1 - mean of the four sigmas) (get_gaussian_yolo_detections).

darknet_py runs it for inference only: training it (AB's Gaussian loss) is refused at the start
of a training run.
"""

from ..activations import activate
from ...errors import NotSupportedError
from .yolo import YoloLayer

YOLO_POINTS = ("center", "left_top", "right_bottom")


class GaussianYoloLayer(YoloLayer):
    type = "gaussian_yolo"
    cfg_keys = YoloLayer.cfg_keys | frozenset(("uc_normalizer", "yolo_point"))
    coords = 8
    trains = False

    @classmethod
    def from_cfg(cls, section, ctx):
        layer = super().from_cfg(section, ctx)
        section.float("uc_normalizer", 1.0)          # the loss's (training is refused)
        point = section.str("yolo_point", "center")
        layer.yolo_point = point if point in YOLO_POINTS else "center"    # AB: else center
        return layer

    def forward(self, net):
        if net.train:
            raise NotSupportedError("training a [Gaussian_yolo] is not supported by darknet_py "
                                    "(it runs it for detection only)", self.path, self.line)
        x = self.input_image(net.input)
        p = self._planes(x).copy()
        squashed = [0, 1, 2, 3, 5, 7] + list(range(8, 9 + self.classes))
        p[:, :, squashed] = activate(p[:, :, squashed], "logistic")
        if self.scale_x_y != 1:          # AB: x' = s*sigmoid(x) - (s-1)/2, the same for y
            p[:, :, [0, 2]] = p[:, :, [0, 2]] * self.scale_x_y - 0.5 * (self.scale_x_y - 1)
        self.output = p.reshape(x.shape)
        self.cost = 0.0

    def backward(self, net):
        raise NotSupportedError("training a [Gaussian_yolo] is not supported by darknet_py",
                                self.path, self.line)

    def describe(self):
        return "Gaussian_yolo"
