"""Detail-only refinement: keep the refiner's fine correction, take the large scale from the
calibrated rough map.

A refiner trained on one stretch of video (or one room) learns two things: detail (edges, thin
structures, local relief) and layout (the depth range, the far wall, the per-image scale). The
detail carries to new views; the layout is what the first stage got wrong *on the training
frames* and may be wrong elsewhere (``benchmarks/kitchen_drift.py``). With ``detail_sigma`` the
refined map is

    base = rough x scale        (the global scale stored in the checkpoint, fitted on its training pairs)
    e    = log refined - log base
    out  = base * exp(e - G_sigma * e)

where ``G_sigma`` is a Gaussian low-pass of ``sigma`` pixels of the refined map (separable,
replicate padding, cut at 4 sigma, as ``scipy.ndimage.gaussian_filter(mode="nearest")``). The
large scales of ``out`` are those of ``rough x scale``; everything finer than about ``sigma``
pixels is the refiner's.

With ``image_scale`` the refiner's *per-image scale* is kept as well: ``out`` is multiplied by
``exp(mean e)``, the geometric mean of ``refined / base`` over the whole image (every pixel: no
ground truth is needed). The layout between the detail and the whole image (a far wall, a
gradient across the room) still comes from ``rough x scale``; one number per image comes from the
refiner. That is the per-image scale modern first stages get wrong, and which a refiner may learn
from the image, while its spatial layout is what drifts between views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError

#: the Gaussian is cut at this many standard deviations (scipy's default ``truncate``)
TRUNCATE = 4.0


def gaussian_kernel(sigma: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``sigma`` samples, radius ``int(4 sigma + 0.5)``."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"detail sigma must be a positive number of pixels, got {sigma!r}")
    radius = int(TRUNCATE * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def gaussian_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` ``[B,C,H,W]`` with replicate padding (any ``sigma``,
    also larger than the image)."""
    if x.ndim != 4:
        raise ValueError(f"expected a [B,C,H,W] tensor, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    k = gaussian_kernel(sigma, dtype=x.dtype, device=x.device)
    r = (k.numel() - 1) // 2
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def keep_detail(
    refined: torch.Tensor, base: torch.Tensor, sigma: float, floor: float = 1e-3, *, image_scale: bool = False
) -> torch.Tensor:
    """``base * exp(e - G_sigma * e)`` with ``e = log refined - log base`` (both ``[B,1,H,W]``
    metric depth, clamped below at ``floor`` metres before the logarithm); with ``image_scale``
    times ``exp(mean e)`` per image (the mean over all of its pixels). Where ``base`` is not a
    finite depth (an inverted disparity of 0 is +inf) it carries no layout: ``refined`` stands
    in for it there (``e = 0``)."""
    if refined.shape != base.shape:
        raise ValueError(f"refined {tuple(refined.shape)} and base {tuple(base.shape)} differ in shape")
    b = base.to(refined.dtype)
    b = torch.where(torch.isfinite(b), b, refined).clamp_min(floor)
    e = torch.log(refined.clamp_min(floor)) - torch.log(b)
    keep = e - gaussian_lowpass(e, sigma)
    if image_scale:
        keep = keep + e.mean(dim=(-2, -1), keepdim=True)
    return b * torch.exp(keep)


__all__ = ["TRUNCATE", "gaussian_kernel", "gaussian_lowpass", "keep_detail"]
