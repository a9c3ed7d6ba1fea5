"""Errors that users see as one clear line: ``file:line: error: what was expected``."""


class DarknetError(Exception):
    """Base class for every error darknet_py reports to a user (never shown as a traceback)."""

    def __init__(self, message, path=None, line=None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line

    def __str__(self):
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}error: {self.message}"


class CfgError(DarknetError):
    """A problem in a .cfg file, located at file:line."""


class WeightsError(DarknetError):
    """A .weights file that does not fit the network."""


class NotSupportedError(DarknetError):
    """A Darknet feature darknet_py does not implement (yet)."""
