"""refinedepth: a learned cGAN depth refiner as a plug-in post-processor for any depth model.

Importing the package is cheap (no torch); heavy names are imported on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from .errors import *  # noqa: E402,F403
from .registry import (  # noqa: E402
    BackboneInfo,
    backbone_info,
    create_backbone,
    list_backbones,
    register_backbone,
)

# name -> module that defines it; imported lazily so `refinedepth --help` stays fast.
_LAZY = {
    "Refiner": "refinedepth.refiner.api",
    "wrap_backbone": "refinedepth.backbones.wrap",
    "open_dataset": "refinedepth.data",
    "Sample": "refinedepth.data",
    "CacheDataset": "refinedepth.cache",
    "open_cache": "refinedepth.cache",
    "build_cache": "refinedepth.cache",
    "MetricAccumulator": "refinedepth.metrics",
    "compute_metrics": "refinedepth.metrics",
    "train_refiner": "refinedepth.refiner.train",
    "TrainConfig": "refinedepth.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refinedepth' has no attribute {name!r}")


__all__ = [
    "__version__",
    "BackboneInfo",
    "backbone_info",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    *_LAZY,
]
