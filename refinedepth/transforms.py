"""Deprecated alias, kept for one release: resizing and cropping moved to
:mod:`refinedepth.geometry`, the augmentations to :mod:`refinedepth.augment` (``PairedAugment``
now takes the list of operations; ``paired_augment``/``augment_sample`` became
``augment.augment_batch`` on batches of tensors)."""

from .augment import AugmentParams, PairedAugment, apply_params, augment_batch, draw_params  # noqa: F401
from .geometry import center_crop, fit_sample, resize_depth, resize_nearest, resize_rgb  # noqa: F401

__all__ = [
    "AugmentParams",
    "PairedAugment",
    "apply_params",
    "augment_batch",
    "center_crop",
    "draw_params",
    "fit_sample",
    "resize_depth",
    "resize_nearest",
    "resize_rgb",
]
