"""Darknet's ``.cfg`` files: the grammar (``parser``), ``cfg check`` (``check``), the
round-tripping editor (``edit``, public as ``darknet_py.cfgedit``), ``cfg new`` (``new``) and the
shipped templates (``templates/``)."""

from .parser import (SECTION_TYPES, CfgFile, CfgWarning, Diagnostics, Option, Section,
                     parse_cfg_text, read_cfg, scan_cfg)

__all__ = ["SECTION_TYPES", "CfgFile", "CfgWarning", "Diagnostics", "Option", "Section",
           "parse_cfg_text", "read_cfg", "scan_cfg"]
