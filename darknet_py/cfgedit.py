"""``darknet_py.cfgedit``: the public name of the round-tripping cfg editor (``darknet_py.cfg.edit``).

    from darknet_py.cfgedit import CfgDocument
"""

from .cfg.edit import *            # noqa: F401,F403  (the module's __all__)
from .cfg.edit import __all__      # noqa: F401
