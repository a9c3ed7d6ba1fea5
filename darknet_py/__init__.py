"""darknet_py: Darknet's cfg-driven networks in Python (NumPy on the CPU, CuPy on the GPU)."""

from .cfg.parser import read_cfg
from .errors import CfgError, DarknetError, NotSupportedError, WeightsError
from .nn.network import Network
from .predict import Box, Classifier, Detection, Detector, Prediction

__version__ = "0.1.0"
__all__ = ["Network", "Detector", "Classifier", "Detection", "Box", "Prediction", "read_cfg",
           "DarknetError", "CfgError", "WeightsError",
           "NotSupportedError", "__version__"]
