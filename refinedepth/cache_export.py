"""Deprecated alias of :mod:`refinedepth.cache.export` (the cache became a package). Kept for one
release: import ``export_ab`` from ``refinedepth.cache``."""

from .cache.export import default_scale, export_ab  # noqa: F401

__all__ = ["export_ab", "default_scale"]
