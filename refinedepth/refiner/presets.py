"""Named refiner architectures (SPEC §6): ``paper-nyu``, ``paper-make3d``, ``pix2pix``, ``small``.

A :class:`Preset` fixes the layer lists and the input size; the number of input channels follows
from what the refiner is conditioned on (rough map, rough + RGB, or RGB alone), so one preset
serves every input mode.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from ..config import AUGMENTATIONS, INPUT_MODES, PRESET_NAMES  # noqa: F401 (the name lists)
from ..errors import ConfigError
from .models import DiscriminatorConfig, GeneratorConfig, parse_layers


def input_channels(inputs: str) -> int:
    """Generator input channels for an input mode: rough 1, rough+rgb 4, rgb 3."""
    if inputs not in INPUT_MODES:
        raise ConfigError(f"unknown inputs {inputs!r}: expected one of {', '.join(INPUT_MODES)}")
    return {"rough": 1, "rough+rgb": 4, "rgb": 3}[inputs]


@dataclass(frozen=True)
class Preset:
    """A refiner architecture plus the defaults that go with it.

    Attributes:
        name, description: for listings.
        encoder, decoder: generator layer lists (see :class:`GeneratorConfig`).
        disc_layers: discriminator layer list; ``disc_strides`` overrides pix2pix's stride rule.
        kernel_size: generator kernel (paper 3, pix2pix 4); the discriminator uses ``disc_kernel``.
        size: generator input ``(height, width)``; rough maps are resized to it.
        norm, dropout: see :class:`GeneratorConfig`.
        residual: predict a correction added to the (normalised) rough map instead of the map.
        augment: default training augmentations (subset of ``hflip``, ``scale``, ``brightness``,
            ``gain``).
        upsample: the decoder's upsampling, ``transposed`` (the papers') or ``resize``
            (bilinear x2 + 3x3 convolution, no checkerboard).
        head: ``none`` or ``guided`` (the full-resolution head, :mod:`refinedepth.refiner.head`).
        guide: what guides the head by default (``rgb``, ``gray``, ``none``).
        skip_relu: see :class:`GeneratorConfig` (Isola's unet_256: on).
    """

    name: str
    description: str
    encoder: tuple[str, ...]
    decoder: tuple[str, ...]
    disc_layers: tuple[str, ...]
    kernel_size: int = 4
    disc_kernel: int = 4
    disc_strides: tuple[int, ...] | None = None
    size: tuple[int, int] = (256, 256)
    norm: str = "batch"
    dropout: float = 0.5
    residual: bool = False
    augment: tuple[str, ...] = field(default_factory=tuple)
    upsample: str = "transposed"
    head: str = "none"
    guide: str = "rgb"
    skip_relu: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder", parse_layers(self.encoder))
        object.__setattr__(self, "decoder", parse_layers(self.decoder))
        object.__setattr__(self, "disc_layers", parse_layers(self.disc_layers))
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    def generator_config(
        self, inputs: str = "rough", residual: bool | None = None, upsample: str | None = None
    ) -> GeneratorConfig:
        residual = self.residual if residual is None else residual
        return GeneratorConfig(
            encoder=self.encoder,
            decoder=self.decoder,
            in_channels=input_channels(inputs),
            out_channels=1,
            kernel_size=self.kernel_size,
            norm=self.norm,
            dropout=self.dropout,
            zero_init_output=bool(residual),
            upsample=self.upsample if upsample is None else upsample,
            skip_relu=self.skip_relu,
        )

    def discriminator_config(self, inputs: str = "rough") -> DiscriminatorConfig:
        # D sees the generator's input and a depth map (real or refined) stacked on channels.
        return DiscriminatorConfig(
            layers=self.disc_layers,
            in_channels=input_channels(inputs) + 1,
            kernel_size=self.disc_kernel,
            strides=self.disc_strides,
            norm=self.norm,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("encoder", "decoder", "disc_layers", "size", "augment"):
            d[key] = list(d[key])
        d["disc_strides"] = list(self.disc_strides) if self.disc_strides else None
        return d


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="paper-nyu",
            description="Sun et al. §4, NYU Depth v2: 3x3 convs, 8+7 layers, D C32-C64-C128-C256 (70x70)",
            encoder=("C256", "C256", "C512", "C512", "C512", "C256", "C256", "C256"),
            decoder=("CD512", "CD384", "C576", "C513", "C513", "C257", "C257"),
            disc_layers=("C32", "C64", "C128", "C256"),
            kernel_size=3,
        ),
        Preset(
            name="paper-make3d",
            description="Sun et al. §4, Make3D: 3x3 convs, 8+7 layers, D C1-C1-C1-C1-C1",
            encoder=("C256", "C512", "C512", "C512", "C512", "C256", "C256", "C256"),
            decoder=("CD384", "CD320", "C578", "C513", "C513", "C513", "C257"),
            disc_layers=("C1", "C1", "C1", "C1", "C1"),
            # The paper's 70x70 patch from five 4x4 layers (+ the stride-1 output layer): strides
            # 2,2,1,1,2 are the one arrangement of 1s and 2s that sees exactly 70x70.
            disc_strides=(2, 2, 1, 1, 2),
            kernel_size=3,
            # §4.2: the Make3D training pairs are expanded by scale, flips and brightness (for NYU
            # the paper names no augmentation of the second stage's pairs)
            augment=("hflip", "scale", "brightness"),
        ),
        Preset(
            name="pix2pix",
            description="Isola et al. unet_256 (ngf 64, 4x4) + basic 70x70 PatchGAN (ndf 64)",
            encoder=("C64", "C128", "C256", "C512", "C512", "C512", "C512", "C512"),
            # Isola's code puts dropout in the three 512-filter decoder layers after the innermost.
            decoder=("C512", "CD512", "CD512", "CD512", "C256", "C128", "C64"),
            disc_layers=("C64", "C128", "C256", "C512"),
            skip_relu=True,  # Isola's decoder layers begin with ReLU(skip, decoder output)
        ),
        Preset(
            name="small",
            description="CPU-sized residual refiner at 128x128 (2.3M G params): trains in minutes",
            encoder=("C32", "C64", "C96", "C128", "C128", "C128"),
            decoder=("CD128", "C128", "C96", "C64", "C32"),
            disc_layers=("C32", "C64", "C96"),
            size=(128, 128),
            residual=True,
            augment=("hflip", "scale", "brightness"),
        ),
        Preset(
            name="guided",
            description="small's U-Net with resize-convolution upsampling at 128x128 + a full-resolution "
            "RGB-guided head (detail at the image's own resolution)",
            encoder=("C32", "C64", "C96", "C128", "C128", "C128"),
            # no dropout (C, not CD): the U-Net's correction is what the head refines, and a noisy
            # one (train mode) would differ from the one it sees at inference (eval mode)
            decoder=("C128", "C128", "C96", "C64", "C32"),
            disc_layers=("C32", "C64", "C96"),
            size=(128, 128),
            residual=True,
            augment=("hflip", "brightness"),  # zoom works with the head but cost its edges (docs/refiner.md)
            upsample="resize",
            head="guided",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """Look up a preset by name; unknown names get a "did you mean"."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown refiner preset {name!r}: expected one of {', '.join(PRESETS)}{hint}"
        ) from None


def list_presets() -> list[str]:
    return list(PRESETS)
