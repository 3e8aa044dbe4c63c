"""The full-resolution guided head: the refiner's detail path (issue 14; SPEC §6 options).

A U-Net at a small model size (128x128 for the ``guided`` preset) fixes scale and coarse layout,
but its correction, upsampled to the image, is as smooth as the model grid: it cannot restore an
edge the first stage blurred. The head runs at the output's own resolution after it. Its inputs,
per pixel:

* ``log(rough / max_depth)``: the log of the rough map at the output's resolution (normalised
  as the refiner normalises it and decoded to metres: metric rough maps as they are), the map
  whose edges are to be sharpened — the rough map, not the U-Net's result, so that the head's
  input does not change while the U-Net learns;
* its detail: ``10 x (log rough - its 17x17 box mean)`` (:func:`detail`), the local structure
  that holds the edges, amplified and without the absolute level;
* the upsampled U-Net output (generator units), which tells the head where the U-Net corrected
  the rough map and by how much;
* the guide: the RGB image (``guide="rgb"``, in ``[-1, 1]``), its luma (``"gray"``) or nothing
  (``"none"``), at the same resolution. RGB-D sensors' colour and depth are only roughly
  registered, so whether the guide helps is a measured choice, not an assumption.

It predicts a log-depth correction ``delta`` of the rough map itself: the refined depth is
``rough * exp(delta)`` (clamped to ``[1e-3, 1] x max_depth`` like every refined map). The U-Net's
correction enters as a feature, not as the starting point: in measurements on the degraded-sensor
benchmark, a head that refined the U-Net's result (rough plus correction) inherited the
correction's noise and learned only a constant. The head is a stack of 3x3
convolutions with growing dilation (context of ``1 + 2 * sum(dilations) + 2`` pixels: 67 for the
default 1, 2, 4, 8, 16, 1, wide enough to undo an 8x8 block blur; 83 with the detail input's box) with LeakyReLU(0.2), no
normalisation (it runs on crops in training and on whole images at inference), replicated
borders (no border pattern), and a zero-initialised output convolution: an untrained head returns
the rough map (training starts it at ``rough x scale``: :meth:`GuidedHead.start_at_scale`).
Training gives the head its own Adam and loss (the squared error of log depth on full-resolution crops); the
U-Net's correction is a feature it reads, not a path its gradient takes.

Fully convolutional, it runs at any size; training uses random crops at the ground truth's
resolution (:mod:`refinedepth.refiner.crops`), so its memory depends on the crop, not on the
image. At inference :func:`apply_head` processes large images in overlapping tiles whose margin
covers the receptive field, which gives the untiled result exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

GUIDES = ("rgb", "gray", "none")
HEAD_KINDS = ("none", "guided")
LOG_DELTA_LIMIT = 2.0  # |delta| <= 2: the head changes depth by at most e^2 either way
DETAIL_WINDOW = 17  # side of the box whose mean the detail input subtracts
DETAIL_GAIN = 10.0  # the detail input's gain: log-depth steps of ~0.05 become ~0.5


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of :class:`GuidedHead`.

    Attributes:
        width: channels of every hidden layer.
        dilations: one 3x3 convolution per entry, with that dilation.
        guide: ``rgb``, ``gray`` or ``none`` (see the module docstring).
    """

    width: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1)
    guide: str = "rgb"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.guide not in GUIDES:
            raise ConfigError(f"head: unknown guide {self.guide!r}: expected one of {', '.join(GUIDES)}")
        if int(self.width) < 1 or not self.dilations or min(self.dilations) < 1:
            raise ConfigError(f"head: width and dilations must be positive, got {self.width}, {self.dilations}")

    @property
    def guide_channels(self) -> int:
        return {"rgb": 3, "gray": 1, "none": 0}[self.guide]

    @property
    def in_channels(self) -> int:
        return 3 + self.guide_channels

    @property
    def receptive_field(self) -> int:
        """Side of the square of input pixels one output pixel depends on (the detail input's
        box mean reaches DETAIL_WINDOW // 2 pixels further)."""
        return 1 + 2 * (sum(self.dilations) + 1 + DETAIL_WINDOW // 2)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class GuidedHead(nn.Module):
    """``forward(log_base, correction, guide) -> delta`` (all ``[B,*,H,W]`` at one resolution)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = config.in_channels
        for d in config.dilations:
            layers += [
                nn.Conv2d(cin, config.width, 3, padding=d, dilation=d, padding_mode="replicate"),
                nn.LeakyReLU(0.2),
            ]
            cin = config.width
        self.body = nn.Sequential(*layers)
        for m in self.body:  # He initialisation for LeakyReLU(0.2): with PyTorch's default the
            if isinstance(m, nn.Conv2d):  # features shrink ~60x over six layers and the head stalls
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        self.out = nn.Conv2d(cin, 1, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @torch.no_grad()
    def start_at_scale(self, scale: float) -> None:
        """Set the output bias to ``log(scale)``: the head then returns ``rough x scale``, the
        global-scale baseline fitted on the training pairs, and learns only what that misses
        (Adam moves a bias by about one learning rate per step, so from zero the constant alone
        would take the first hundreds of steps)."""
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"head: the starting scale must be a positive number, got {scale!r}")
        self.out.bias.fill_(max(-LOG_DELTA_LIMIT, min(LOG_DELTA_LIMIT, math.log(scale))))

    def forward(self, log_base: torch.Tensor, correction: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        parts = [detail(log_base), log_base, correction]
        if self.config.guide_channels:
            if guide is None or guide.shape[1] != self.config.guide_channels:
                got = None if guide is None else tuple(guide.shape)
                raise ConfigError(f"this head is guided by {self.config.guide!r}: expected its channels, got {got}")
            parts.append(guide)
        delta = self.out(self.body(torch.cat(parts, dim=1)))
        return delta.clamp(-LOG_DELTA_LIMIT, LOG_DELTA_LIMIT)


def detail(log_base: torch.Tensor) -> torch.Tensor:
    """``DETAIL_GAIN x (log_base - its DETAIL_WINDOW x DETAIL_WINDOW box mean)``, borders
    replicated: the map's local structure, amplified and free of its absolute level. Without it
    the edges to be restored are small variations on a large offset (log depth around -1 with
    steps of 0.05), and the head, from a standard initialisation, took hundreds of steps to
    start using them (degraded-sensor benchmark, docs/refiner.md)."""
    r = DETAIL_WINDOW // 2
    local = torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(log_base, (r, r, r, r), mode="replicate"), DETAIL_WINDOW, stride=1
    )
    return DETAIL_GAIN * (log_base - local)


def guide_from_rgb(rgb: torch.Tensor | None, guide: str) -> torch.Tensor | None:
    """The guide channels from RGB ``[B,3,H,W]`` in [0,1]: ``[-1,1]`` RGB, its luma, or None."""
    if guide == "none":
        return None
    if rgb is None:
        raise ConfigError(f"this refiner's head is guided by {guide!r} and needs rgb [B,3,H,W]; got rgb=None")
    unit = rgb.float() * 2 - 1
    if guide == "rgb":
        return unit
    w = torch.tensor([0.299, 0.587, 0.114], dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
    return (unit * w).sum(1, keepdim=True)


def head_inputs(depth: torch.Tensor, max_depth: float) -> torch.Tensor:
    """``log(depth / max_depth)`` (depth in metres)."""
    return torch.log(depth.clamp_min(1e-6) / float(max_depth))


def apply_head(
    head: GuidedHead,
    base: torch.Tensor,
    correction: torch.Tensor,
    guide: torch.Tensor | None,
    *,
    max_depth: float,
    signal: torch.Tensor | None = None,
    tile: int | None = 512,
) -> torch.Tensor:
    """Refined depth ``base * exp(head(log(signal / max_depth), correction, guide))`` at
    ``base``'s resolution (``signal``: the rough map in metres; default ``base``). Images larger
    than ``tile`` pixels are processed in tiles with a margin of the head's receptive radius
    (plus one pixel), cropped back, so the result equals the untiled one."""
    from .normalize import MIN_DEPTH_FRACTION

    x = head_inputs(base if signal is None else signal, max_depth)
    h, w = base.shape[-2:]
    if tile is None or (h <= tile and w <= tile):
        delta = head(x, correction, guide)
    else:
        margin = head.config.receptive_field // 2 + 1
        delta = torch.empty_like(base)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                ya, xa = max(0, y0 - margin), max(0, x0 - margin)
                yb, xb = min(h, y1 + margin), min(w, x1 + margin)
                g = None if guide is None else guide[..., ya:yb, xa:xb]
                part = head(x[..., ya:yb, xa:xb], correction[..., ya:yb, xa:xb], g)
                delta[..., y0:y1, x0:x1] = part[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    refined = base * torch.exp(delta)
    return refined.clamp(MIN_DEPTH_FRACTION * max_depth, max_depth)


def build_head(config: HeadConfig, seed: int | None = None) -> GuidedHead:
    """A :class:`GuidedHead`; ``seed`` makes the (hidden-layer) initialisation reproducible
    without touching torch's global RNG."""
    from ..training.seeding import preserve_global_rng

    with preserve_global_rng():
        if seed is not None:
            torch.manual_seed(seed)
        return GuidedHead(config)


__all__ = [
    "GUIDES", "HEAD_KINDS", "HeadConfig", "GuidedHead", "apply_head", "build_head", "detail", "guide_from_rgb", "head_inputs",
]
