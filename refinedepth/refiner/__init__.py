"""The second stage: a pix2pix-style cGAN that refines rough depth maps (SPEC §6, paper §3.1).

Modules: ``models`` (U-Net generator, PatchGAN discriminator), ``presets`` (named architectures),
``normalize`` (input/output spaces), ``train`` (``train_refiner``), ``checkpoint`` (atomic
safetensors checkpoints), ``api`` (``Refiner`` for library use), ``chain``
(``RefinerChain``: refiners applied in order). Names are imported lazily so that
importing this package does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Refiner": "refinedepth.refiner.api",
    "RefinerChain": "refinedepth.refiner.chain",
    "TrainConfig": "refinedepth.refiner.train",
    "TrainResult": "refinedepth.refiner.train",
    "train_refiner": "refinedepth.refiner.train",
    "describe_checkpoint": "refinedepth.refiner.checkpoint",
    "build_generator": "refinedepth.refiner.models",
    "build_discriminator": "refinedepth.refiner.models",
    "GeneratorConfig": "refinedepth.refiner.models",
    "DiscriminatorConfig": "refinedepth.refiner.models",
    "PRESETS": "refinedepth.refiner.presets",
    "get_preset": "refinedepth.refiner.presets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refinedepth.refiner' has no attribute {name!r}")


__all__ = list(_LAZY)
