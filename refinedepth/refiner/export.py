"""Export a trained refiner to ONNX, normalisation included (issue 15, SPEC §8).

The exported graph takes what :meth:`Refiner.refine_tensor` takes — ``rough`` ``[B,1,H,W]`` in
the refiner's trained kind (metres for metric refiners) and, for RGB-conditioned refiners,
``rgb`` ``[B,3,H',W']`` in [0,1] — and returns refined metric depth ``[B,1,H,W]`` in metres. Batch
and spatial size are dynamic: the graph resizes to the model's size and back itself. A refiner
with a full-resolution head guided by the image returns ``[B,1,H',W']``, the RGB's size: its
detail at the image's resolution, as ``refine_tensor(..., out_size=(H', W'))`` and ``predict``
give it (pass RGB at the rough map's size for output at that size).

The PyTorch path resizes with ``F.interpolate(..., antialias=True)`` when shrinking, which the
TorchScript ONNX exporter cannot express, and ONNX Runtime's antialiased ``Resize`` uses another
filter. :class:`OnnxRefiner` therefore resizes by two matrix products whose weights it computes
from the input's shape in the graph: the same triangle filter (support scaled by the factor when
shrinking, pixel-centre aligned), so the exported model matches PyTorch to float rounding.
Per-sample percentiles (relative/disparity refiners) are computed by sorting, like
``torch.quantile``'s linear interpolation (PyTorch's are exact up to
:data:`~refinedepth.refiner.normalize.QUANTILE_LIMIT` elements per map, then taken on a
strided subsample, where the two differ by about 1e-4 of the depth range).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from .normalize import MIN_DEPTH_FRACTION

OPSET = 17


def _resize_weights(n_in, n_out, like: torch.Tensor) -> torch.Tensor:
    """``[n_out, n_in]`` weights of a bilinear (``align_corners=False``) resize, antialiased when
    shrinking, as ``F.interpolate(mode="bilinear", antialias=True)`` computes them. ``n_in`` and
    ``n_out`` may be traced sizes, so the exported graph computes them for any input."""
    j = torch.arange(n_in, dtype=like.dtype, device=like.device)
    i = torch.arange(n_out, dtype=like.dtype, device=like.device)
    n_in_f = j.shape[0] * torch.ones((), dtype=like.dtype)
    scale = n_in_f / (i.shape[0] * torch.ones((), dtype=like.dtype))
    support = torch.clamp(scale, min=1.0)  # triangle half-width in input pixels
    centre = (i + 0.5) * scale
    # upsampling: the source position is clamped to the first/last pixel centre, as interpolate does
    centre = torch.where(scale < 1.0, torch.minimum(torch.clamp(centre, min=0.5), n_in_f - 0.5), centre)
    w = torch.clamp(1.0 - (j[None, :] + 0.5 - centre[:, None]).abs() / support, min=0.0)
    return w / w.sum(dim=1, keepdim=True)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int] | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Export-friendly equivalent of :func:`refinedepth.geometry.resize_smooth` for ``[B,C,H,W]``."""
    wh = _resize_weights(x.shape[-2], size[0], x)
    ww = _resize_weights(x.shape[-1], size[1], x)
    return torch.matmul(torch.matmul(wh, x), ww.transpose(0, 1))


class OnnxRefiner(nn.Module):
    """A :class:`~refinedepth.refiner.api.Refiner` as one module for export (see module doc)."""

    def __init__(self, refiner) -> None:
        super().__init__()
        self.generator = refiner.generator.eval()
        norm = refiner.normalization
        self.kind = norm.output_kind
        self.max_depth = float(norm.max_depth)
        self.low_q, self.high_q = norm.low_percentile / 100.0, norm.high_percentile / 100.0
        lo = -1.0 if norm.target_low is None else norm.target_low / norm.max_depth * 2 - 1
        hi = 1.0 if norm.target_high is None else norm.target_high / norm.max_depth * 2 - 1
        self.target = (float(lo), float(hi))
        self.inputs = refiner.inputs
        self.residual = bool(refiner.residual)
        self.size = tuple(int(s) for s in refiner.size)
        self.head = refiner.head.eval() if refiner.head is not None else None
        self.guide = refiner.head.config.guide if refiner.head is not None else "none"

    def _quantiles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(x.shape[0], -1)
        values = torch.sort(flat, dim=1).values
        n = values.shape[1]
        out = []
        last = n * torch.ones((), dtype=torch.int64) - 1
        for q in (self.low_q, self.high_q):
            pos = last.to(x.dtype) * q  # torch.quantile's linear interpolation
            lo_i = torch.floor(pos).long()
            hi_i = torch.minimum(lo_i + 1, last)
            frac = pos - lo_i.to(x.dtype)
            v_lo = values.index_select(1, lo_i.reshape(1))
            v_hi = values.index_select(1, hi_i.reshape(1))
            out.append((v_lo + frac * (v_hi - v_lo)).reshape(-1, 1, 1, 1))
        return out[0], out[1]

    def _rough_to_unit(self, rough: torch.Tensor) -> torch.Tensor:
        rough = torch.where(torch.isnan(rough) | torch.isinf(rough), torch.zeros_like(rough), rough)
        if self.kind == "metric":
            return torch.clamp(torch.clamp(rough, 0.0, self.max_depth) / self.max_depth * 2 - 1, -1.0, 1.0)
        lo, hi = self._quantiles(rough)
        unit = torch.clamp((rough - lo) / torch.clamp(hi - lo, min=1e-6) * 2 - 1, -1.0, 1.0)
        if self.kind == "disparity":
            unit = -unit
        t_lo, t_hi = self.target
        return t_lo + (unit + 1) * 0.5 * (t_hi - t_lo)

    def forward(self, rough: torch.Tensor, rgb: torch.Tensor | None = None) -> torch.Tensor:
        at_rgb = self.head is not None and self.guide != "none"  # a guided head outputs at the image's size
        out_size = (rgb.shape[-2], rgb.shape[-1]) if at_rgb else (rough.shape[-2], rough.shape[-1])
        rough_unit_full = self._rough_to_unit(rough.float())
        parts = []
        if self.inputs != "rgb":
            parts.append(resize_bilinear(rough_unit_full, self.size))
        if self.inputs != "rough":
            parts.append(resize_bilinear(rgb.float(), self.size) * 2 - 1)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        y = self.generator(x).float()
        refined = resize_bilinear(y, out_size)
        rough_unit_out = resize_bilinear(rough_unit_full, out_size) if at_rgb else rough_unit_full
        if self.residual:
            refined = rough_unit_out + refined
        depth = (refined + 1) * 0.5 * self.max_depth
        depth = torch.clamp(depth, MIN_DEPTH_FRACTION * self.max_depth, self.max_depth)
        if self.head is None:
            return depth
        from .head import LOG_DELTA_LIMIT, guide_from_rgb

        guide = None
        if self.guide != "none":
            guide = guide_from_rgb(torch.clamp(resize_bilinear(rgb.float(), out_size), 0.0, 1.0), self.guide)
        signal = torch.clamp((rough_unit_out + 1) * 0.5 * self.max_depth, MIN_DEPTH_FRACTION * self.max_depth, self.max_depth)
        delta = self.head(torch.log(signal / self.max_depth), resize_bilinear(y, out_size), guide)
        delta = torch.clamp(delta, -LOG_DELTA_LIMIT, LOG_DELTA_LIMIT)
        return torch.clamp(signal * torch.exp(delta), MIN_DEPTH_FRACTION * self.max_depth, self.max_depth)


def export_onnx(refiner, out: str | os.PathLike, *, example_size: tuple[int, int] | None = None) -> Path:
    """Write ``refiner`` (a :class:`Refiner`) to ``out`` as ONNX with dynamic batch and size.

    Inputs ``rough`` (and ``rgb`` for RGB-conditioned refiners), output ``depth``; see the
    module docstring. Returns the path written (atomically: a temporary file, then a rename).
    """
    if refiner.inputs == "rgb":
        raise ConfigError("export: refiners conditioned on RGB alone are not exported yet; use a rough or rough+rgb refiner")
    module = OnnxRefiner(refiner).eval()
    h, w = example_size or refiner.size
    gen = torch.Generator().manual_seed(0)  # the example inputs leave the caller's global RNG alone
    rough = torch.rand(1, 1, h, w, generator=gen) * refiner.max_depth
    args: tuple = (rough,)
    names = ["rough"]
    dynamic = {"rough": {0: "batch", 2: "height", 3: "width"}, "depth": {0: "batch", 2: "height", 3: "width"}}
    if refiner.needs_rgb:
        args = (rough, torch.rand(1, 3, h, w, generator=gen))
        names.append("rgb")
        dynamic["rgb"] = {0: "batch", 2: "rgb_height", 3: "rgb_width"}
        if module.head is not None and module.guide != "none":  # output at the RGB's size
            dynamic["depth"] = {0: "batch", 2: "rgb_height", 3: "rgb_width"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(tmp), dynamo=False, opset_version=OPSET, input_names=names,
            output_names=["depth"], dynamic_axes=dynamic,
        )
    os.replace(tmp, out)
    return out


__all__ = ["OnnxRefiner", "export_onnx", "resize_bilinear"]
