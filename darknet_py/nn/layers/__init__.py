"""The layer registries: canonical cfg section type -> layer class (one file per layer type);
``SHAPE_ONLY``: the sections darknet_py reads but cannot run (their shape rules, for ``cfg check``)."""

from .activation import ActivationLayer
from .avgpool import AvgpoolLayer
from .batchnorm import BatchnormLayer
from .connected import ConnectedLayer
from .contrastive import ContrastiveLayer
from .convolutional import ConvolutionalLayer
from .cost import CostLayer
from .crnn import CrnnLayer
from .crop import CropLayer
from .detection import DetectionLayer
from .dropout import DropoutLayer
from .empty import EmptyLayer
from .gaussian_yolo import GaussianYoloLayer
from .gru import GruLayer
from .implicit import ImplicitLayer
from .l2norm import L2normLayer
from .local_avgpool import LocalAvgpoolLayer
from .logistic import LogisticLayer
from .lstm import LstmLayer
from .maxpool import MaxpoolLayer
from .reorg import Reorg3dLayer, ReorgLayer
from .shapeonly import SHAPE_ONLY
from .rnn import RnnLayer
from .route import RouteLayer
from .sam import SamLayer
from .scale_channels import ScaleChannelsLayer
from .shortcut import ShortcutLayer
from .softmax import SoftmaxLayer
from .upsample import UpsampleLayer
from .yolo import RegionLayer, YoloLayer

REGISTRY = {cls.type: cls for cls in (
    ActivationLayer, AvgpoolLayer, BatchnormLayer, ConnectedLayer, ConvolutionalLayer, CostLayer,
    CropLayer, DropoutLayer, L2normLayer, LogisticLayer, MaxpoolLayer, ReorgLayer, Reorg3dLayer,
    RouteLayer, ShortcutLayer, SoftmaxLayer, UpsampleLayer, YoloLayer, RegionLayer,
    ScaleChannelsLayer, SamLayer, ImplicitLayer, EmptyLayer, LocalAvgpoolLayer,
    GaussianYoloLayer, ContrastiveLayer, DetectionLayer, RnnLayer, GruLayer, LstmLayer,
    CrnnLayer)}

__all__ = ["REGISTRY", "SHAPE_ONLY"] + [cls.__name__ for cls in REGISTRY.values()]
