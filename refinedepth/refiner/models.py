"""The cGAN refiner's networks: a U-Net generator and a PatchGAN discriminator (paper §3.1).

Both builders take explicit layer lists in the papers' notation (Isola et al. 2017 §6.1, Sun et
al. §4): ``"Ck"`` is Convolution-BatchNorm-ReLU with ``k`` filters and ``"CDk"`` adds 50% dropout
(Convolution-BatchNorm-Dropout-ReLU). Encoder ReLUs are leaky (slope 0.2), decoder ReLUs plain,
the first encoder layer has no normalisation, and the generator ends in ``tanh``.

The generator has skip connections between layer ``i`` and layer ``n - i``: the output of decoder
layer ``j`` is concatenated with the output of encoder layer ``n_enc - 2 - j`` and fed to the next
decoder layer; a final transposed convolution (bias, no norm) maps to ``out_channels``.

Upsampling (``GeneratorConfig.upsample``): ``transposed`` (the papers', default) doubles the size
with a stride-2 transposed convolution in every decoder layer and the output layer; ``resize``
(Odena et al. 2016, "Deconvolution and Checkerboard Artifacts") upsamples bilinearly x2, pads one
pixel by replication and applies a 3x3 stride-1 convolution, whose taps overlap evenly at every
output pixel, so no checkerboard appears. The replicated border keeps a constant map constant up
to the image edge (zero padding would draw a frame there; ``benchmarks/bench_checkerboard.py``).

The modules are plain ``nn.Sequential`` blocks of Upsample/ReplicationPad2d/Conv2d/
ConvTranspose2d/BatchNorm2d/LeakyReLU/ReLU/Dropout/Tanh so that other code (``refiner.fast``) can
fuse or convert them.

Layer order note: Isola's reference code applies each activation before its convolution
(pre-activation) and shares tensors in place; we build the blocks in the order the notation reads
(conv, norm, dropout, activation). Layer shapes and parameter counts are identical, e.g.
``pix2pix`` unet_256 for 1->1 channels has 54,407,809 parameters. One difference in values
remains: there, every decoder layer starts with a plain ReLU of its whole input, so the skips and
the innermost code reach the decoder through ``relu``, where the notation's reading passes the
encoder's leaky output. ``GeneratorConfig.skip_relu`` (on in the ``pix2pix`` preset) applies that
ReLU; ``relu(leaky(x)) == relu(x)``, so the result equals Isola's network.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

_LAYER_RE = re.compile(r"^C(D?)(\d+)$")
NORMS = ("batch", "instance", "none")
UPSAMPLES = ("transposed", "resize")


def parse_layer(spec: str) -> tuple[int, bool]:
    """``"CD512"`` -> ``(512, True)``; ``"C64"`` -> ``(64, False)``."""
    m = _LAYER_RE.match(str(spec).strip().upper())
    if not m or int(m.group(2)) <= 0:
        raise ConfigError(f"bad layer spec {spec!r}: expected 'Ck' or 'CDk' with k > 0 filters (e.g. C64, CD512)")
    return int(m.group(2)), bool(m.group(1))


def parse_layers(specs: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Accept ``"C64-C128"`` or ``["C64", "C128"]``; return normalised spec strings."""
    if isinstance(specs, str):
        specs = [s for s in specs.replace(",", "-").split("-") if s.strip()]
    out = []
    for s in specs:
        k, d = parse_layer(s)
        out.append(f"C{'D' if d else ''}{k}")
    return tuple(out)


@dataclass(frozen=True)
class GeneratorConfig:
    """A U-Net generator.

    Attributes:
        encoder: layer specs, outermost first (each halves the spatial size).
        decoder: layer specs, innermost first; ``len(decoder) == len(encoder) - 1`` (the final
            output layer is implicit).
        in_channels / out_channels: input and output channels.
        kernel_size: 4 (pix2pix) or 3 (the paper); stride 2 everywhere.
        norm: ``batch`` (paper), ``instance`` or ``none``.
        norm_first: normalise the first encoder layer (paper and pix2pix: no).
        norm_innermost: normalise the innermost encoder layer (pix2pix: no, its map is 1x1).
        dropout: rate used by ``CD`` layers (paper: 0.5).
        leaky_slope: slope of the encoder's leaky ReLUs (paper: 0.2).
        zero_init_output: start the output layer at zero (useful for residual refiners, which then
            start as the identity).
        upsample: how the decoder and the output layer double the size: ``transposed``
            (``kernel_size`` transposed convolution, stride 2; the papers) or ``resize`` (bilinear
            x2, replication pad 1, 3x3 convolution; no checkerboard). Checkpoints written before
            this option existed load as ``transposed``.
        skip_relu: pass the skips and the innermost code to the decoder through a plain ReLU, as
            Isola's unet_256 does (its decoder layers begin with ``ReLU``); off: the encoder's leaky
            output, as the notation reads. Checkpoints written before it existed load as off.
    """

    encoder: tuple[str, ...]
    decoder: tuple[str, ...]
    in_channels: int = 1
    out_channels: int = 1
    kernel_size: int = 4
    norm: str = "batch"
    norm_first: bool = False
    norm_innermost: bool = False
    dropout: float = 0.5
    leaky_slope: float = 0.2
    zero_init_output: bool = False
    upsample: str = "transposed"
    skip_relu: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder", parse_layers(self.encoder))
        object.__setattr__(self, "decoder", parse_layers(self.decoder))
        if self.upsample not in UPSAMPLES:
            raise ConfigError(f"generator: unknown upsample {self.upsample!r}: expected one of {', '.join(UPSAMPLES)}")
        if len(self.encoder) < 1 or len(self.decoder) != len(self.encoder) - 1:
            raise ConfigError(
                f"generator: expected len(decoder) == len(encoder) - 1, got {len(self.encoder)} encoder "
                f"and {len(self.decoder)} decoder layers"
            )
        if any(parse_layer(s)[1] for s in self.encoder):
            raise ConfigError(f"generator: dropout (CD) is only allowed in the decoder, got encoder {self.encoder}")
        _check_common(self.norm, self.kernel_size, self.in_channels)

    @property
    def downsampling(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** len(self.encoder)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["encoder"], d["decoder"] = list(self.encoder), list(self.decoder)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class DiscriminatorConfig:
    """A PatchGAN discriminator: the listed ``Ck`` layers, then a 1-channel convolution.

    ``strides`` defaults to pix2pix's rule (2 for every listed layer but the last, which has 1;
    the output layer has stride 1), which with 4x4 kernels and four layers gives the 70x70
    receptive field. The first layer is not normalised; only unnormalised convolutions have a bias.
    """

    layers: tuple[str, ...]
    in_channels: int = 2
    kernel_size: int = 4
    strides: tuple[int, ...] | None = None
    norm: str = "batch"
    leaky_slope: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", parse_layers(self.layers))
        if not self.layers:
            raise ConfigError("discriminator: expected at least one layer")
        if self.strides is not None:
            strides = tuple(int(s) for s in self.strides)
            if len(strides) != len(self.layers) or any(s not in (1, 2) for s in strides):
                raise ConfigError(
                    f"discriminator: expected {len(self.layers)} strides of 1 or 2, got {self.strides}"
                )
            object.__setattr__(self, "strides", strides)
        _check_common(self.norm, self.kernel_size, self.in_channels)

    @property
    def layer_strides(self) -> tuple[int, ...]:
        if self.strides is not None:
            return self.strides
        return tuple([2] * (len(self.layers) - 1) + [1])

    @property
    def receptive_field(self) -> int:
        """Side of the square input patch each output logit sees."""
        r = 1
        for s in (*self.layer_strides, 1)[::-1]:
            r = r * s + (self.kernel_size - s)
        return r

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["strides"] = list(self.strides) if self.strides is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiscriminatorConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _check_common(norm: str, kernel_size: int, in_channels: int) -> None:
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}: expected one of {', '.join(NORMS)}")
    if kernel_size not in (3, 4):
        raise ConfigError(f"kernel_size must be 3 or 4 (stride-2 layers), got {kernel_size}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=True)


def _down(cin: int, cout: int, k: int) -> nn.Conv2d:
    # 4x4/s2/p1 halves exactly (pix2pix); so does 3x3/s2/p1 on even sizes.
    return nn.Conv2d(cin, cout, k, stride=2, padding=1, bias=False)


def _up(cin: int, cout: int, k: int, bias: bool = False) -> nn.ConvTranspose2d:
    # 4x4/s2/p1 doubles exactly; 3x3/s2/p1 needs output_padding 1 to double.
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=1, output_padding=k % 2, bias=bias)


def _resize_up(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    # Resize-convolution (Odena et al. 2016): bilinear x2 (half-pixel centres, edge pixels
    # clamped), then a 3x3 stride-1 convolution on a replication-padded map. The padding is a
    # module of its own so that the convolution keeps plain zero padding (0), which the fast
    # paths fuse (refiner.fast).
    return [
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.ReplicationPad2d(1),
        nn.Conv2d(cin, cout, 3, stride=1, padding=0, bias=bias),
    ]


def _upsampling(c: GeneratorConfig, cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    if c.upsample == "resize":
        return _resize_up(cin, cout, bias=bias)
    return [_up(cin, cout, c.kernel_size, bias=bias)]


class UNetGenerator(nn.Module):
    """U-Net with skips between encoder layer i and decoder layer n - i; ``tanh`` output."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c, k = config, config.kernel_size
        self.encoder = nn.ModuleList()
        channels: list[int] = []
        cin = c.in_channels
        n = len(c.encoder)
        for i, spec in enumerate(c.encoder):
            cout, _ = parse_layer(spec)
            use_norm = c.norm != "none" and (i > 0 or c.norm_first) and (i < n - 1 or c.norm_innermost or n == 1)
            # pix2pix: no encoder convolution has a bias, normalised or not.
            layers: list[nn.Module] = [_down(cin, cout, k)]
            if use_norm:
                layers.append(_norm(c.norm, cout))
            layers.append(nn.LeakyReLU(c.leaky_slope))
            self.encoder.append(nn.Sequential(*layers))
            channels.append(cout)
            cin = cout
        self.decoder = nn.ModuleList()
        for j, spec in enumerate(c.decoder):
            cout, drop = parse_layer(spec)
            layers = _upsampling(c, cin, cout)
            if c.norm != "none":
                layers.append(_norm(c.norm, cout))
            if drop and c.dropout > 0:
                layers.append(nn.Dropout(c.dropout))
            layers.append(nn.ReLU())
            self.decoder.append(nn.Sequential(*layers))
            cin = cout + channels[n - 2 - j]
        self.head = nn.Sequential(*_upsampling(c, cin, c.out_channels, bias=True), nn.Tanh())

    @property
    def output_conv(self) -> nn.Conv2d | nn.ConvTranspose2d:
        """The output layer's convolution (``head[0]`` for ``transposed``, ``head[2]`` for ``resize``)."""
        return next(m for m in self.head if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        if self.config.skip_relu:  # Isola's decoder layers begin with a ReLU of their whole input
            skips = [torch.relu(s) for s in skips]
            x = skips[-1]
        for j, block in enumerate(self.decoder):
            x = torch.cat([block(x), skips[-2 - j]], dim=1)
        return self.head(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: one logit per receptive-field patch; the loss averages them (``[B,1,h',w']``)."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        c, k = config, config.kernel_size
        blocks: list[nn.Module] = []
        cin = c.in_channels
        for i, (spec, stride) in enumerate(zip(c.layers, c.layer_strides)):
            cout, _ = parse_layer(spec)
            use_norm = i > 0 and c.norm != "none"
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=1, bias=not use_norm)]
            if use_norm:
                layers.append(_norm(c.norm, cout))
            layers.append(nn.LeakyReLU(c.leaky_slope))
            blocks.append(nn.Sequential(*layers))
            cin = cout
        blocks.append(nn.Conv2d(cin, 1, k, stride=1, padding=1))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def init_weights(module: nn.Module, std: float = 0.02, generator: torch.Generator | None = None) -> None:
    """pix2pix initialisation: conv weights ~ N(0, 0.02), norm weights ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            with torch.no_grad():
                m.weight.normal_(0.0, std, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
            with torch.no_grad():
                m.weight.normal_(1.0, std, generator=generator)
                m.bias.zero_()


def build_generator(config: GeneratorConfig, init: bool = True, seed: int | None = None) -> UNetGenerator:
    """Build a :class:`UNetGenerator`; ``init`` applies pix2pix's N(0, 0.02) initialisation."""
    g = UNetGenerator(config)
    if init and not _on_meta(g):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        init_weights(g, generator=gen)
        if config.zero_init_output:
            nn.init.zeros_(g.output_conv.weight)
            nn.init.zeros_(g.output_conv.bias)
    return g


def build_discriminator(config: DiscriminatorConfig, init: bool = True, seed: int | None = None) -> PatchDiscriminator:
    """Build a :class:`PatchDiscriminator` with pix2pix's initialisation."""
    d = PatchDiscriminator(config)
    if init and not _on_meta(d):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        init_weights(d, generator=gen)
    return d


def _on_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _block_notation(block: nn.Sequential) -> str:
    conv = next(m for m in block if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))
    drop = any(isinstance(m, nn.Dropout) for m in block)
    return f"C{'D' if drop else ''}{conv.out_channels}"


def describe_layers(module: nn.Module) -> dict[str, list[str]]:
    """Read the layer lists back from a built module (paper notation), e.g. for tests and ``inspect``."""
    if isinstance(module, UNetGenerator):
        return {
            "encoder": [_block_notation(b) for b in module.encoder],
            "decoder": [_block_notation(b) for b in module.decoder],
        }
    if isinstance(module, PatchDiscriminator):
        return {"layers": [_block_notation(b) for b in list(module.layers)[:-1]]}
    raise TypeError(f"expected a UNetGenerator or PatchDiscriminator, got {type(module).__name__}")
