"""Test oracle: pjreddie Darknet (libdarknet.so) driven through a small C shim."""
from .darknet import ARRAYS, LAYER_TYPES, DarknetNet, DarknetOracle

__all__ = ["ARRAYS", "LAYER_TYPES", "DarknetNet", "DarknetOracle"]
