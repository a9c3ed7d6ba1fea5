import os
import sys
import zlib

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from darknet_py.cfg.parser import parse_cfg_text  # noqa: E402
from darknet_py.nn.network import Network  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _plan_cache(tmp_path_factory):
    """cuDNN plans kept on disk go to the session's temporary folder, not the user's home."""
    os.environ.setdefault("DARKNET_PY_CACHE", str(tmp_path_factory.mktemp("cache")))


def build(text, seed=1, **kw):
    """A network from cfg text (tests write small cfgs inline)."""
    kw.setdefault("warn", False)
    return Network(parse_cfg_text(text, "t.cfg"), seed=seed, **kw)


def seed_for_test():
    """The running test's seed: a hash of its node id, so every run draws the same numbers
    (a failure reproduces), unless DARKNET_PY_TEST_SEED=N shifts every test's draws to
    look for cases a fixed draw misses."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    return zlib.crc32(test.encode()) + int(os.environ.get("DARKNET_PY_TEST_SEED", "0"))


def rng_for_test():
    return np.random.default_rng(seed_for_test())


@pytest.fixture
def rng():
    return rng_for_test()


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_darknet(available, why, what):
    """Skip a test that needs Debian's Darknet when it is missing -- or fail it under CI,
    which installs Darknet and must never skip the oracle silently."""
    if available:
        return
    msg = f"Darknet oracle unavailable: {why}"
    if under_ci():
        pytest.fail(f"{msg} (CI is set: the {what} must not be skipped)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def darknet_binary():
    """Debian's ``darknet`` command (the oracle for whole commands: ops, rgbgr, ...)."""
    import shutil
    path = shutil.which("darknet")
    require_darknet(path is not None, "no darknet on PATH (apt-get install darknet)",
                    "tests against the darknet command")
    return path


def pytest_report_header(config):
    extra = os.environ.get("DARKNET_PY_TEST_SEED")
    return f"random draws: seeded per test{f' (+{extra})' if extra else ''}"


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
