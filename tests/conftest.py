import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from darknet_py.cfg import parse_cfg_text  # noqa: E402
from darknet_py.network import Network  # noqa: E402


def build(text, seed=1, **kw):
    """A network from cfg text (tests write small cfgs inline)."""
    kw.setdefault("warn", False)
    return Network(parse_cfg_text(text, "t.cfg"), seed=seed, **kw)


@pytest.fixture
def rng():
    return np.random.default_rng()


def pytest_collection_modifyitems(config, items):
    try:
        import cupy
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
