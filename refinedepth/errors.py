"""The error hierarchy.

Every expected failure raises a subclass of :class:`RefinedepthError`. The CLI turns these into a
single ``Error: ...`` line and exit code 1; anything else is a bug and keeps its traceback.
Messages say what was expected, what was received, and what to do next, on one line.
"""

from __future__ import annotations


class RefinedepthError(Exception):
    """Base class of every error refinedepth raises on purpose."""


class ConfigError(RefinedepthError, ValueError):
    """An option, preset or configuration value is invalid."""


class ShapeError(RefinedepthError, ValueError):
    """An array or tensor has the wrong shape, dtype or number of channels."""


class DataError(RefinedepthError, ValueError):
    """Input data is missing, corrupt, empty, non-finite or inconsistent."""


class BackboneNotFoundError(RefinedepthError, LookupError):
    """No backbone is registered under the requested name."""


class PluginError(RefinedepthError, ImportError):
    """A backbone plugin's entry point could not be loaded or did not honour the contract."""


class CacheError(RefinedepthError, OSError):
    """An HDF5 cache is missing, corrupt, truncated or was made by a different command."""


class CheckpointError(RefinedepthError, OSError):
    """A checkpoint directory is missing, incomplete or corrupt."""


class FileFormatError(RefinedepthError, OSError):
    """A file exists but is not in the expected format."""


__all__ = [
    "RefinedepthError",
    "ConfigError",
    "ShapeError",
    "DataError",
    "BackboneNotFoundError",
    "PluginError",
    "CacheError",
    "CheckpointError",
    "FileFormatError",
]
