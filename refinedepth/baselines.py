"""Two-number calibrations of the rough maps: the baselines a learned refiner must beat (SPEC §7).

Every refiner stores, in its checkpoint's ``config.json``, a global **scale** and a global
**scale + shift** fitted on its own training pairs, and ``evaluate`` prints the rows
``rough x scale`` and ``rough x (scale, shift)`` beside ``rough`` and the refined stages. A refiner
that does not beat them has learned a calibration, not a correction.

Both act on the rough map's **depth**: metric and relative maps as they are, disparity maps
inverted (as :mod:`refinedepth.scoring` converts them), at the ground truth's resolution (resized
as the scorer resizes predictions). The fit pools every scored pixel of every training pair
(finite ``gt > 0``, ``valid``, inside the protocol's crop and depth range, and a finite positive
rough depth):

* ``scale`` ``s = exp(mean(log gt - log d))``, the geometric mean of the ratios: it minimises the
  squared log error (what ``silog`` and ``rmse_log`` measure) and is not pulled by the few
  farthest pixels as a least-squares fit in depth is;
* ``scale_shift`` ``(a, b)``: ordinary least squares of ``gt ~ a d + b`` over the pooled pixels;
  for disparity maps in inverse-depth space, ``1 / gt ~ a p + b`` with ``p = 1 / d`` the
  disparity, applied as ``1 / (a p + b)`` (``space="disparity"``): the calibration of an
  affine-invariant disparity model (MiDaS, Depth Anything) is a scale and shift of its
  disparity, which a fit in depth cannot express (before 2026-12-07 it was fitted in depth).

The fit streams: it keeps sums (float64), never the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError

#: the stage names evaluate gives the baseline rows
SCALE_ROW = "rough x scale"
SCALE_SHIFT_ROW = "rough x (scale, shift)"


@dataclass(frozen=True)
class Baselines:
    """A fitted global scale and scale + shift, and what they were fitted on."""

    scale: float
    scale_shift: tuple[float, float]
    pixels: int
    fitted_on: str = ""
    space: str = "depth"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "scale_shift": [self.scale_shift[0], self.scale_shift[1]],
            "pixels": self.pixels,
            "fitted_on": self.fitted_on,
            "space": self.space,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Baselines:
        a, b = d["scale_shift"]
        return cls(float(d["scale"]), (float(a), float(b)), int(d.get("pixels", 0)), str(d.get("fitted_on", "")),
                   str(d.get("space", "depth")))

    def apply(self, depth, which: str):
        """``depth`` (rough depth, any array/tensor) calibrated by ``"scale"`` or ``"scale_shift"``
        (in disparity, ``1 / (a / depth + b)``, when fitted there)."""
        if which == "scale":
            return depth * self.scale
        a, b = self.scale_shift
        if self.space == "disparity":  # an infinitely far depth has disparity 0
            return rough_depth(a / depth + b, "disparity")
        return depth * a + b


class BaselineFit:
    """Streaming least-squares / log-ratio sums; :meth:`update` with pairs, :meth:`result` at the end.
    ``space="disparity"``: the scale + shift is fitted on ``(1 / depth, 1 / gt)``."""

    def __init__(self, space: str = "depth") -> None:
        if space not in ("depth", "disparity"):
            raise ValueError(f"space must be 'depth' or 'disparity', got {space!r}")
        self.space = space
        self.n = 0  # pixels of the scale (finite depth)
        self.n_fit = 0  # pixels of the scale + shift
        self.sum_log = 0.0
        self.sx = self.sy = self.sxx = self.sxy = 0.0

    def update(self, depth: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> None:
        """Add the pixels where ``mask`` holds and ``depth`` is positive: finite for the scale (a
        log ratio) and, in depth space, the scale + shift; in disparity space an infinitely far
        depth (a disparity <= 0, :func:`rough_depth`) counts as disparity 0, the value
        :meth:`Baselines.apply` gives it, as the per-image fit counts every pixel."""
        d = np.asarray(depth, dtype=np.float64)
        g = np.asarray(gt, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            base = np.asarray(mask, dtype=bool) & (d > 0) & np.isfinite(g) & (g > 0)
        finite = base & np.isfinite(d)
        self.n += int(finite.sum())
        if finite.any():
            self.sum_log += float(np.sum(np.log(g[finite]) - np.log(d[finite])))
        if self.space == "disparity":
            use = base  # +inf included: its disparity is 0
            x, y = 1.0 / d[use], 1.0 / g[use]
        else:
            use = finite
            x, y = d[use], g[use]
        self.n_fit += int(use.sum())
        if x.size:
            self.sx += float(x.sum())
            self.sy += float(y.sum())
            self.sxx += float(np.dot(x, x))
            self.sxy += float(np.dot(x, y))

    def result(self, fitted_on: str = "") -> Baselines:
        if self.n == 0:
            raise DataError(
                f"cannot fit the baseline scale on {fitted_on or 'the training pairs'}: no pixel has both a valid "
                "ground truth and a positive rough depth; check the cache"
            )
        scale = math.exp(self.sum_log / self.n)
        n = self.n_fit
        mx, my = self.sx / n, self.sy / n
        var = self.sxx / n - mx * mx
        if var <= 1e-12 * max(mx * mx, 1e-12):  # a constant rough map: the shift carries it all
            a, b = 0.0, my
        else:
            a = (self.sxy / n - mx * my) / var
            b = my - a * mx
        return Baselines(scale, (float(a), float(b)), self.n, fitted_on, self.space)


def rough_depth(rough, kind: str):
    """The depth a rough map of ``kind`` stands for: metric and relative maps as they are,
    disparity inverted, ``<= 0`` becoming ``+inf`` (infinitely far) and NaN staying NaN, the one
    conversion the scorer, the fit and the baseline rows share. Any array or tensor."""
    if kind != "disparity":
        return rough
    if hasattr(rough, "detach"):
        import torch

        far = torch.where(torch.isnan(rough), rough, torch.full_like(rough, math.inf))
        return torch.where(rough > 0, 1.0 / rough.clamp_min(1e-12), far)
    r = np.asarray(rough, dtype=np.float64)
    far = np.where(np.isnan(r), np.nan, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0), far)


def baseline_depth(rough, kind: str, size: tuple[int, int] | None = None):
    """:func:`rough_depth` of a ``[B,1,h,w]`` rough tensor at ``size`` (the ground truth's):
    resized first, in its own kind, as the scorer resizes the rough row, then converted. The
    depth the baselines are fitted on and applied to, so the rows score what was fitted."""
    from .geometry import resize_smooth

    rough = rough.float()
    if size is not None and tuple(rough.shape[-2:]) != tuple(size):
        rough = resize_smooth(rough, tuple(size))
    return rough_depth(rough, kind)


def fit_baselines(dataset, *, protocol: str = "none", fitted_on: str = "", limit: int | None = None) -> Baselines:
    """Fit :class:`Baselines` on a :class:`~refinedepth.cache.CacheDataset` (rough maps of the
    dataset's ``output_kind``; ``gt``/``valid`` at the evaluation resolution), over the pixels
    the ``protocol`` scores."""
    from .metrics import get_protocol, valid_mask

    proto = get_protocol(protocol)
    kind = dataset.output_kind
    fit = BaselineFit("disparity" if kind == "disparity" else "depth")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        item = dataset[i]
        gt = item["gt"]
        depth = baseline_depth(item["rough"][None], kind, tuple(gt.shape[-2:]))
        g = gt[0].double().numpy()
        mask = valid_mask(g[None], proto)[0] & item["valid"][0].numpy().astype(bool)
        fit.update(depth[0, 0].double().numpy(), g, mask)
    return fit.result(fitted_on)


__all__ = ["SCALE_ROW", "SCALE_SHIFT_ROW", "Baselines", "BaselineFit", "baseline_depth", "fit_baselines", "rough_depth"]
