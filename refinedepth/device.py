"""Moved to :mod:`refinedepth.training.distributed`; this alias stays for one release."""

from .training.distributed import resolve_device  # noqa: F401
