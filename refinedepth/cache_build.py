"""Deprecated alias of :mod:`refinedepth.cache.build` (the cache became a package). Kept for one
release: import ``build_cache`` from ``refinedepth`` or ``refinedepth.cache``."""

from .cache.build import CacheBuildResult, build_cache  # noqa: F401

__all__ = ["CacheBuildResult", "build_cache"]
