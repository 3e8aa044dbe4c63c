"""Input/output spaces of the refiner and the forward pass shared by training and inference.

The generator works in ``[-1, 1]`` (tanh output). Following the paper (§4), metric rough maps and
ground truth are mapped by a maximum depth: ``unit = depth / max_depth * 2 - 1`` (10 m NYU,
80 m Make3D). Rough maps of ``relative`` or ``disparity`` backbones carry no scale, so each map is
normalised on its own: its 2nd..98th percentile is mapped onto the typical metric range of the
training ground truth (``target_low``..``target_high`` metres, measured on the training cache;
disparity is flipped so that near is low, like depth). The target is still metric, so the
refiner learns to lift relative depth to metres, starting from a sensible guess of the scale.
The output always decodes with ``max_depth``: refined maps are metric depth in metres.

Residual refiners predict a correction added to the normalised rough map. At inference the
correction is computed at the model's size and upsampled onto the rough map at the caller's size,
so a residual refiner keeps the rough map's full-resolution detail.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, ShapeError
from .presets import INPUT_MODES

OUTPUT_KINDS = ("metric", "relative", "disparity")
MIN_DEPTH_FRACTION = 1e-3  # refined depth is clamped to [1e-3, 1] x max_depth (logs stay finite)


@dataclass(frozen=True)
class Normalization:
    """How rough maps, RGB and ground truth are mapped to the generator's ``[-1, 1]``.

    Attributes:
        output_kind: kind of the rough maps the refiner was trained on (from the cache's
            ``output_kind`` attribute).
        max_depth: metres that map to +1 (the cache's ``max_depth``); 0 m maps to -1.
        low_percentile / high_percentile: the per-sample range for relative/disparity maps.
        target_low / target_high: metres that range maps to (``None``: 0 and ``max_depth``);
            training sets them to the training ground truth's mean 2nd/98th percentiles.
    """

    output_kind: str = "metric"
    max_depth: float = 10.0
    low_percentile: float = 2.0
    high_percentile: float = 98.0
    target_low: float | None = None
    target_high: float | None = None

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise ConfigError(f"unknown output kind {self.output_kind!r}: expected one of {', '.join(OUTPUT_KINDS)}")
        if not (self.max_depth > 0 and self.max_depth < float("inf")):
            raise ConfigError(f"max_depth must be a positive number of metres, got {self.max_depth!r}")
        object.__setattr__(self, "max_depth", float(self.max_depth))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- rough maps ---------------------------------------------------------------------------
    def rough_to_unit(
        self, rough: torch.Tensor, kind: str | None = None, quantiles: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B,1,h,w]`` rough map of ``kind`` (default: the trained kind) -> ``[-1, 1]``.

        ``quantiles``: for relative/disparity maps, each sample's range as ``[B,2]`` (low, high)
        from :meth:`rough_quantiles` of the whole map at its stored size (default: ``rough``'s
        own). Training passes them for a crop or a resized copy, so that a sample is mapped as
        inference maps it: percentiles of a map shrunk to the model size are narrower (up to 5%
        of the range on the kitchen frames at 64x64)."""
        kind = self._check_kind(kind)
        if self.output_kind == "metric":
            rough = torch.nan_to_num(rough.float(), nan=0.0, posinf=0.0, neginf=0.0)
            return (rough.clamp(0, self.max_depth) / self.max_depth * 2 - 1).clamp(-1, 1)
        x = self._as_trained(rough, kind)
        if quantiles is None:
            quantiles = _quantiles(x, self.low_percentile, self.high_percentile)
        lo = quantiles[:, 0].to(x).view(-1, 1, 1, 1)
        span = (quantiles[:, 1].to(x).view(-1, 1, 1, 1) - lo).clamp_min(1e-6)
        unit = ((x - lo) / span * 2 - 1).clamp(-1, 1)
        if self.output_kind == "disparity":
            unit = -unit
        lo_m = -1.0 if self.target_low is None else self.target_low / self.max_depth * 2 - 1
        hi_m = 1.0 if self.target_high is None else self.target_high / self.max_depth * 2 - 1
        return lo_m + (unit + 1) * 0.5 * (hi_m - lo_m)

    def rough_quantiles(self, rough: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """Each sample's (low, high) percentiles, ``[B,2]``, that :meth:`rough_to_unit` maps a
        relative/disparity map's range from (in the space of the trained kind)."""
        kind = self._check_kind(kind)
        if self.output_kind == "metric":
            raise ConfigError("metric rough maps are mapped by max_depth and have no per-sample range")
        return _quantiles(self._as_trained(rough, kind), self.low_percentile, self.high_percentile)

    def rough_limits(self, rough: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """Each sample's ``[B,2]`` range that :meth:`rough_to_unit` maps onto ``[-1, 1]`` (values
        beyond it are clipped): ``[0, max_depth]`` for metric maps, :meth:`rough_quantiles` for
        relative/disparity ones. Training clips the stored map to it before resizing, as inference
        clips (normalises) before resizing."""
        kind = self._check_kind(kind)
        if self.output_kind == "metric":
            row = torch.tensor([0.0, self.max_depth], dtype=torch.float32, device=rough.device)
            return row.expand(rough.shape[0], 2)
        return self.rough_quantiles(rough, kind)

    def _check_kind(self, kind: str | None) -> str:
        kind = kind or self.output_kind
        if kind not in OUTPUT_KINDS:
            raise ConfigError(f"unknown output kind {kind!r}: expected one of {', '.join(OUTPUT_KINDS)}")
        if self.output_kind == "metric" and kind != "metric":
            raise ConfigError(
                f"this refiner was trained on metric rough maps (max depth {self.max_depth:g} m) "
                f"but received {kind!r} ones; use a refiner trained on a {kind} backbone's cache"
            )
        return kind

    def _as_trained(self, rough: torch.Tensor, kind: str) -> torch.Tensor:
        """A relative/disparity map in the space the refiner was trained in (finite)."""
        rough = torch.nan_to_num(rough.float(), nan=0.0, posinf=0.0, neginf=0.0)
        if self.output_kind == "disparity" and kind != "disparity":
            # Depth given to a disparity-trained refiner (e.g. chained after a metric stage).
            rough = 1.0 / rough.clamp_min(1e-6)
        return rough

    # -- depth maps (targets and outputs) -----------------------------------------------------
    def depth_to_unit(self, depth: torch.Tensor) -> torch.Tensor:
        """Metric depth -> ``[-1, 1]`` (invalid pixels become -1; mask them separately)."""
        depth = torch.nan_to_num(depth.float(), nan=0.0, posinf=0.0, neginf=0.0)
        return (depth.clamp(0, self.max_depth) / self.max_depth * 2 - 1).clamp(-1, 1)

    def unit_to_depth(self, unit: torch.Tensor) -> torch.Tensor:
        """Generator space -> metres, clamped to ``[1e-3, 1] x max_depth``."""
        depth = (unit.float() + 1) * 0.5 * self.max_depth
        return depth.clamp(MIN_DEPTH_FRACTION * self.max_depth, self.max_depth)


#: the most elements torch.quantile takes in older releases (2^24); up to it the quantiles are
#: exact, as the ONNX export's sort computes them
QUANTILE_LIMIT = 2**24

def _quantiles(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Each sample's ``low`` and ``high`` percentiles of ``x`` ``[B,...]`` as ``[B,2]``."""
    flat = x.reshape(x.shape[0], -1)
    q = torch.tensor([low / 100.0, high / 100.0], dtype=flat.dtype, device=flat.device)
    if flat.numel() <= QUANTILE_LIMIT:
        return torch.quantile(flat, q, dim=1).T  # [B, 2]
    # sample by sample, so a map's quantiles never depend on the batch it came in; older torch
    # refuses inputs above the limit, and for one map that large a strided subsample is plenty
    step = math.ceil(flat.shape[1] / QUANTILE_LIMIT)
    return torch.stack([torch.quantile(row[::step], q) for row in flat])


def clip_to_limits(x: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B,C,h,w]`` clipped to each sample's ``limits`` ``[B,2]`` (low, high)."""
    x = torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)
    lo = limits[:, 0].to(x).view(-1, 1, 1, 1)
    hi = limits[:, 1].to(x).view(-1, 1, 1, 1)
    return torch.minimum(torch.maximum(x, lo), hi)


def rgb_to_unit(rgb: torch.Tensor) -> torch.Tensor:
    """RGB float ``[B,3,h,w]`` in [0,1] -> ``[-1, 1]``."""
    return rgb.float() * 2 - 1


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B,C,h,w]`` to ``size`` (antialiased when shrinking); no-op if equal:
    :func:`refinedepth.geometry.resize_smooth`."""
    from ..geometry import resize_smooth

    return resize_smooth(x, size)


def generator_input(rough_unit: torch.Tensor | None, rgb_unit: torch.Tensor | None, inputs: str) -> torch.Tensor:
    """Stack the conditioning channels for an input mode (all at the model's size)."""
    if inputs not in INPUT_MODES:
        raise ConfigError(f"unknown inputs {inputs!r}: expected one of {', '.join(INPUT_MODES)}")
    if inputs != "rough" and rgb_unit is None:
        raise ShapeError(f"this refiner is conditioned on {inputs!r} and needs rgb [B,3,H,W]; got rgb=None")
    if inputs == "rough":
        return rough_unit
    if inputs == "rgb":
        return rgb_unit
    return torch.cat([rough_unit, rgb_unit], dim=1)


def refine_full(
    generator,
    rough: torch.Tensor | None,
    rgb: torch.Tensor | None,
    *,
    norm: Normalization,
    inputs: str,
    residual: bool,
    size: tuple[int, int],
    kind: str | None = None,
    out_size: tuple[int, int] | None = None,
    head=None,
) -> torch.Tensor:
    """Refine a batch at any size: ``rough`` ``[B,1,h,w]`` (of ``kind``), ``rgb`` ``[B,3,h',w']``
    in [0,1] -> metric depth ``[B,1,h,w]`` (or ``out_size``).

    Inputs are normalised at their own size, resized to the model's ``size``; the output (or, for
    residual refiners, the correction) is resized back and decoded to metres. With a ``head``
    (:class:`refinedepth.refiner.head.GuidedHead`) that result is refined at ``out_size`` by the
    full-resolution head, guided by ``rgb`` resized to ``out_size``.
    """
    if rough is not None:
        out_size = out_size or tuple(rough.shape[-2:])
    elif out_size is None:
        out_size = tuple(rgb.shape[-2:])
    rough_unit_full = norm.rough_to_unit(rough, kind) if rough is not None else None
    rough_unit = resize(rough_unit_full, size) if rough_unit_full is not None else None
    rgb_unit = resize(rgb_to_unit(rgb), size) if rgb is not None and inputs != "rough" else None
    x = generator_input(rough_unit, rgb_unit, inputs)
    out = generator(x).float()
    up = resize(out, out_size)
    rough_unit_out = resize(rough_unit_full, out_size) if rough_unit_full is not None else None
    refined_unit = rough_unit_out + up if residual else up
    base = norm.unit_to_depth(refined_unit)
    if head is None:
        return base
    from .head import apply_head, guide_from_rgb

    guide_rgb = resize(rgb.float(), out_size) if (rgb is not None and head.config.guide != "none") else None
    guide = guide_from_rgb(guide_rgb, head.config.guide)
    # the head refines the rough map itself (in log depth), conditioned on the U-Net's correction
    start = norm.unit_to_depth(rough_unit_out) if rough_unit_out is not None else base
    return apply_head(head, start, up, guide, max_depth=norm.max_depth)
