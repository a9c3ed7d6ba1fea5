"""The Python predict API: a detector or a classifier from Darknet's .cfg and .weights in one line.

    from darknet_py import Detector, Classifier
    det = Detector("yolov3-tiny.cfg", "yolov3-tiny.weights", names="coco.names")
    for d in det("dog.jpg", thresh=0.25):          # a path, a Pillow image or an array
        print(d.name, d.confidence, d.box.x1, d.box.y1, d.box.x2, d.box.y2)
    det(["a.jpg", "b.jpg"])                         # one batch: a list per image

    clf = Classifier("mnist.cfg", "mnist.weights", names=[str(i) for i in range(10)])
    clf.top("digit.png", k=5)                       # [Prediction(name, probability, class_id)]

This is the commands' own path, not a copy: the network is loaded as ``load_network`` loads it
for ``detector test`` and ``classifier predict`` (batch norm folded into the weights at load,
CUDA graphs on the GPU), images go through pj's decoding and letterbox (darknet_py.image), and
detections through darknet_py.detection.detect (get_network_boxes, the cfg's NMS kind).
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np

from .data.datacfg import DataCfg, class_names, read_lines
from .detection.detect import (ABSURD_SIZE, detect_image, detect_images, network_classes)
from .image import fit_image, to_image
from .nn.backend import to_numpy
from .nn.network import Network
from .train.topk import top_k_lists


def load_network(cfg, weights=None, device="auto", device_index=0, fuse=True,
                 letter_box=False, precision=None, graphs=True) -> Network:
    """The network of ``cfg`` at batch 1 on ``device``, with ``weights`` loaded and, when
    ``fuse``, every batch norm folded into its layer's weights (AlexeyAB's fuse_conv_batchnorm
    at load, AB:src/network.c: the same outputs to float rounding, one step less per layer).
    ``letter_box``: letterbox the images even where the cfg says ``letter_box=0`` (AB's
    ``-letter_box`` flag).  ``precision``: as Network.from_cfg (None: the cfg's).  ``graphs``:
    replay the forward from CUDA graphs on the GPU (nn/graphs.py).  Every inference command
    and the API load through here."""
    net = Network.from_cfg(cfg, batch=1, device=device, device_index=device_index,
                           precision=precision)
    if weights is not None:
        net.load_weights(weights, fuse=fuse)
    elif fuse:
        net.fold_batchnorm()
    if graphs:
        net.enable_graphs()                 # GPU: one launch per image instead of per layer
    if letter_box:
        net.options.data["letter_box"] = 1
    return net


def read_names(names, classes: int) -> list[str]:
    """Class names from a list, a .names file (one per line) or a .data file (its names=), or
    the class numbers when ``names`` is None."""
    if names is None:
        return [str(i) for i in range(classes)]
    if isinstance(names, (str, os.PathLike)):
        path = os.fspath(names)
        return class_names(DataCfg(path), classes) if path.endswith(".data") else \
            read_lines(path, "names file")
    return [str(n) for n in names]


class Box(NamedTuple):
    """A box in pixels of the original image: centre ``x``, ``y``, width ``w``, height ``h``
    (Darknet's box, scaled); ``x1, y1, x2, y2`` are its corners.  Not clipped to the image."""
    x: float
    y: float
    w: float
    h: float

    @property
    def x1(self) -> float:
        return self.x - self.w / 2

    @property
    def y1(self) -> float:
        return self.y - self.h / 2

    @property
    def x2(self) -> float:
        return self.x + self.w / 2

    @property
    def y2(self) -> float:
        return self.y + self.h / 2


class Detection(NamedTuple):
    """One object found: its class ``name``, ``confidence`` (objectness x p(class), what
    ``detector test`` prints as a percentage), ``box`` (:class:`Box`, pixels) and
    ``class_id``."""
    name: str
    confidence: float
    box: Box
    class_id: int


class Prediction(NamedTuple):
    """One class of a classifier's answer."""
    name: str
    probability: float
    class_id: int


def as_detections(dets, names, thresh: float, img_w: int, img_h: int) -> list[Detection]:
    """darknet_py.box detections (image-relative boxes, a probability per class) as the API's
    list: one :class:`Detection` per (detection, class with prob > thresh), in the order
    ``detector test`` prints its lines (pj:examples/detector.c draw_detections)."""
    t = np.float32(thresh)
    out = []
    for d in dets:
        x, y, w, h = (float(v) for v in d.bbox)
        box = Box(x * img_w, y * img_h, w * img_w, h * img_h)
        prob = np.asarray(d.prob, np.float32)
        for j in np.nonzero(prob > t)[0]:
            name = names[j] if j < len(names) else str(int(j))
            out.append(Detection(name, float(prob[j]), box, int(j)))
    return out


def _is_batch(images) -> bool:
    return isinstance(images, (list, tuple))


class Detector:
    """A YOLO detector ([yolo] or [region] heads): ``det(image, thresh=0.25, nms=0.45)``.

    ``image`` is a path, a Pillow image, a uint8 array (h, w, 3) of RGB pixels (as Pillow and
    imageio give them) or a float array (3, h, w) in [0, 1]; the answer is a list of
    :class:`Detection`.  A list of images runs as one batch and gives a list of lists.
    ``device``: ``auto`` (the GPU when CuPy finds one), ``cpu`` or ``gpu``; ``precision``:
    fp32, tf32, fp16 or bf16 (None: the cfg's; nn/precision.py)."""

    def __init__(self, cfg, weights, names=None, device="auto", device_index=0, fuse=True,
                 letter_box=False, precision=None):
        self.net = load_network(cfg, weights, device, device_index, fuse, letter_box,
                                precision)
        self.classes = network_classes(self.net)
        if self.classes < 1:
            raise ValueError(f"{cfg}: the last layer has no classes: not a detector "
                             "([yolo] or [region] heads); use Classifier")
        self.names = read_names(names, self.classes)

    def __call__(self, images, thresh: float = 0.25, nms: float = 0.45):
        dropped: list[int] = []
        if _is_batch(images):
            ims, per_image = detect_images(self.net, images, thresh, nms, dropped)
        else:
            im, dets = detect_image(self.net, images, thresh, 0.5, nms, dropped)
            ims, per_image = [im], [dets]
        if sum(dropped):
            warnings.warn(f"dropped {sum(dropped)} boxes of non-finite or absurd size (over "
                          f"{ABSURD_SIZE:g} times the image) before NMS: the weights look "
                          "untrained or broken", RuntimeWarning, stacklevel=2)
        out = [as_detections(dets, self.names, thresh, im.shape[2], im.shape[1])
               for im, dets in zip(ims, per_image)]
        return out if _is_batch(images) else out[0]


def class_probabilities(net, images) -> np.ndarray:
    """pj predict_classifier's network output for each image: (n, outputs) float32.  Each
    image is decoded for the network's channels and letterboxed to its size
    (pj:examples/classifier.c predict_classifier uses letterbox_image)."""
    c, h, w = net.input_shape
    x = np.stack([fit_image(to_image(image, c), w, h, True) for image in images])
    return np.asarray(to_numpy(net.forward(x)), np.float32).reshape(len(x), -1)


class Classifier:
    """An image classifier (a cfg ending in [softmax] or any output): ``clf.top(image, k=5)``
    gives the k most probable classes as :class:`Prediction` s; ``clf(image)`` the whole
    probability vector.  Images as for :class:`Detector`; a list runs as one batch."""

    def __init__(self, cfg, weights, names=None, device="auto", device_index=0, fuse=True,
                 precision=None):
        self.net = load_network(cfg, weights, device, device_index, fuse, precision=precision)
        self.classes = int(self.net.output_layer.outputs)
        self.names = read_names(names, self.classes)

    def __call__(self, images) -> np.ndarray:
        probs = class_probabilities(self.net, images if _is_batch(images) else [images])
        return probs if _is_batch(images) else probs[0]

    def top(self, images, k: int = 5):
        probs = self(images)
        rows = [self._top(p, k) for p in np.atleast_2d(probs)]
        return rows if _is_batch(images) else rows[0]

    def _top(self, probs, k):
        return [Prediction(self.names[i] if i < len(self.names) else str(int(i)),
                           float(probs[i]), int(i)) for i in top_classes(probs, k)]


def top_classes(probs, k: int) -> np.ndarray:
    """The indexes of the ``k`` largest probabilities, largest first, as pj's top_k picks them
    for predict_classifier (train/topk.py top_k_lists: on ties a walk, not a sort); at most
    as many as there are classes."""
    index = top_k_lists(np.asarray(probs).reshape(1, -1), max(0, int(k)))[0]
    return index[index >= 0]
