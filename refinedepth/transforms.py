"""Geometric and photometric transforms, applied consistently to RGB, depth and rough maps.

Two kinds of callers use them:

* the stage-1 trainer and tools on :class:`~refinedepth.data.Sample` (NumPy: ``rgb`` uint8
  ``[H,W,3]``, ``depth`` float32 ``[H,W]``): :func:`fit_sample` resizes and centre-crops to a
  backbone's input, :func:`augment_sample` applies the paper's augmentations;
* the refiner's cache dataset on dicts of tensors (``rough [1,h,w]``, ``gt [1,H,W]``,
  ``valid [1,H,W]`` bool, ``rgb [3,h,w]`` in [0,1], optionally batched ``[B,...]``):
  :func:`paired_augment` / :class:`PairedAugment`.

The augmentations are those of Eigen et al. that FCRN and the paper use (SPEC §4):
horizontal flip; scale augmentation - zoom in by ``s`` (crop a ``1/s`` window and resize it back)
and divide depths by ``s``, since an object ``s`` times larger in the image is ``s`` times closer;
brightness, a global factor on RGB. Maps of different resolutions (a 256x256 rough map and a
480x640 ground truth) get the same window in normalised image coordinates, so they stay aligned.
Depth and masks are resampled with nearest neighbours (never blending valid and invalid pixels);
RGB and rough maps bilinearly.

Randomness comes from a ``torch.Generator`` (or a seed), so training is reproducible;
:class:`PairedAugment` derives it from ``(seed, epoch, index)`` so the result does not depend on
which DataLoader worker handles a sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data.base import Sample
from .errors import ConfigError, ShapeError

# How each known key is resampled: bilinear for images/rough maps, nearest for gt and masks.
# Depth-valued keys are divided by the zoom factor.
KEY_KINDS = {
    "rgb": "image",
    "rough": "depth_smooth",
    "gt": "depth",
    "valid": "mask",
    "depth": "depth",
    "refined": "depth_smooth",
}


def _size(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive (height, width), got {size}")
    return h, w


# --------------------------------------------------------------------------------------------
# NumPy primitives (image layout: [H, W] or [H, W, C])


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a NumPy ``[H,W]`` / ``[H,W,C]`` array, sampling pixel centres."""
    h, w = _size(size)
    rows = np.minimum(((np.arange(h) + 0.5) * array.shape[0] / h).astype(np.int64), array.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * array.shape[1] / w).astype(np.int64), array.shape[1] - 1)
    return np.ascontiguousarray(array[rows[:, None], cols[None, :]])


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of a uint8 ``[H,W,3]`` image."""
    from PIL import Image

    h, w = _size(size)
    if rgb.shape[:2] == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (invalid pixels stay invalid, none are invented)."""
    if depth.shape[:2] == _size(size):
        return depth
    return resize_nearest(depth, size)


def center_crop(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre crop of a NumPy ``[H,W(,C)]`` array to ``size``; raises if it is smaller."""
    h, w = _size(size)
    H, W = array.shape[:2]
    if h > H or w > W:
        raise ShapeError(f"cannot centre-crop {H}x{W} to {h}x{w}: the crop is larger than the image")
    top, left = (H - h) // 2, (W - w) // 2
    return array[top : top + h, left : left + w]


def hflip(array):
    """Mirror left-right: NumPy arrays in image layout ``[H,W(,C)]``, tensors ``[...,H,W]``."""
    if hasattr(array, "flip"):
        return array.flip(-1)
    return np.ascontiguousarray(array[:, ::-1])


def fit_sample(
    sample: Sample, size: tuple[int, int], scale: float | None = None, depth_size: tuple[int, int] | None = None
) -> Sample:
    """Resize and centre-crop a sample to ``size`` (a backbone's input), keeping the aspect ratio.

    ``scale=None`` resizes by the smallest factor that covers ``size``, then crops; an explicit
    ``scale`` resizes by it first (FCRN: half resolution, 480x640 -> 240x320, then a 228x304 centre
    crop). The depth map gets the same crop, in normalised coordinates, at ``depth_size``
    (default: the RGB's new size), so it stays registered with the image.
    """
    h, w = _size(size)
    H, W = sample.rgb.shape[:2]
    s = max(h / H, w / W) if scale is None else float(scale)
    rh, rw = max(h, round(H * s)), max(w, round(W * s))
    rgb = center_crop(resize_rgb(sample.rgb, (rh, rw)), (h, w))
    # the crop window as fractions of the resized image, applied to the depth map at its own size
    top, left = (rh - h) // 2 / rh, (rw - w) // 2 / rw
    dh, dw = _size(depth_size) if depth_size is not None else (h, w)
    Dh, Dw = round(dh * rh / h), round(dw * rw / w)
    depth = resize_depth(sample.depth, (Dh, Dw))
    t, lft = round(top * Dh), round(left * Dw)
    depth = depth[t : t + dh, lft : lft + dw]
    return Sample(rgb=np.ascontiguousarray(rgb), depth=np.ascontiguousarray(depth), id=sample.id)


# --------------------------------------------------------------------------------------------
# Paired augmentation on tensors


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation: flip, zoom ``scale`` >= 1, window position, brightness."""

    flip: bool
    scale: float
    fy: float  # window position in [0, 1] (0 = top)
    fx: float  # window position in [0, 1] (0 = left)
    brightness: float


def draw_params(
    generator=None,
    flip_p: float = 0.5,
    scale_range: tuple[float, float] = (1.0, 1.5),
    brightness_range: tuple[float, float] = (0.8, 1.2),
) -> AugmentParams:
    """Draw :class:`AugmentParams` from a ``torch.Generator`` (always five draws, in order)."""
    import torch

    u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
    lo, hi = scale_range
    blo, bhi = brightness_range
    if lo < 1.0 or hi < lo:
        raise ConfigError(f"scale_range must satisfy 1 <= low <= high, got {scale_range}")
    return AugmentParams(
        flip=u[0] < flip_p,
        scale=lo + (hi - lo) * u[1],
        fy=u[2],
        fx=u[3],
        brightness=blo + (bhi - blo) * u[4],
    )


def _zoom(x, params: AugmentParams, mode: str):
    """Crop the ``1/s`` window at ``(fy, fx)`` of ``x [..., H, W]`` and resample it to ``H x W``.

    Done with ``grid_sample`` in normalised coordinates, so tensors of different resolutions get
    exactly the same window.
    """
    import torch
    import torch.nn.functional as F

    s = params.scale
    shape = x.shape
    x4 = x.reshape(-1, 1, *shape[-2:])  # every channel/sample as its own image
    dtype = x4.dtype
    x4 = x4.to(torch.float32) if not x4.is_floating_point() else x4
    span = 1.0 - 1.0 / s  # how far the window centre can move, in normalised units
    ty, tx = (2 * params.fy - 1) * span, (2 * params.fx - 1) * span
    theta = torch.tensor([[1 / s, 0.0, tx], [0.0, 1 / s, ty]], dtype=x4.dtype, device=x4.device)
    grid = F.affine_grid(theta.expand(x4.shape[0], 2, 3), list(x4.shape), align_corners=False)
    out = F.grid_sample(x4, grid, mode=mode, padding_mode="border", align_corners=False)
    if dtype == torch.bool:
        out = out > 0.5
    elif not torch.empty((), dtype=dtype).is_floating_point():
        out = out.round().to(dtype)
    return out.reshape(shape)


def apply_params(item: Mapping[str, Any], params: AugmentParams, kinds: Mapping[str, str] | None = None) -> dict:
    """Apply one :class:`AugmentParams` draw to every known tensor of ``item`` (others pass through)."""
    import torch

    kinds = {**KEY_KINDS, **(kinds or {})}
    out = dict(item)
    for key, value in item.items():
        kind = kinds.get(key)
        if kind is None or not isinstance(value, torch.Tensor):
            continue
        x = value
        if params.flip:
            x = x.flip(-1)
        if params.scale > 1.0 + 1e-9:
            mode = "bilinear" if kind in ("image", "depth_smooth") else "nearest"
            x = _zoom(x, params, mode)
            if kind in ("depth", "depth_smooth"):
                x = x / params.scale
        if kind == "image" and params.brightness != 1.0:
            x = (x * params.brightness).clamp(0.0, 1.0)
        out[key] = x
    return out


def paired_augment(
    item: Mapping[str, Any],
    generator=None,
    seed: int | None = None,
    flip_p: float = 0.5,
    scale_range: tuple[float, float] = (1.0, 1.5),
    brightness_range: tuple[float, float] = (0.8, 1.2),
    kinds: Mapping[str, str] | None = None,
) -> dict:
    """The paper's augmentations applied consistently to ``rough``, ``gt``, ``valid``, ``rgb``.

    ``item`` maps names to tensors ``[C,H,W]`` (one sample) or ``[B,C,H,W]`` (a batch; each sample
    gets its own draw, in batch order). Keys other than the known ones (``KEY_KINDS``, extended by
    ``kinds``) pass through unchanged. Randomness from ``generator``, else from ``seed``, else from
    torch's global RNG. Returns a new dict.
    """
    import torch

    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    draw = dict(flip_p=flip_p, scale_range=scale_range, brightness_range=brightness_range)
    kinds_all = {**KEY_KINDS, **(kinds or {})}
    batched = [k for k, v in item.items() if k in kinds_all and isinstance(v, torch.Tensor) and v.ndim == 4]
    if not batched:
        return apply_params(item, draw_params(generator, **draw), kinds)
    n = item[batched[0]].shape[0]
    out = dict(item)
    results = []
    for i in range(n):
        one = {k: item[k][i] for k in batched}
        results.append(apply_params(one, draw_params(generator, **draw), kinds))
    for k in batched:
        out[k] = torch.stack([r[k] for r in results])
    return out


class PairedAugment:
    """A reproducible :func:`paired_augment` for datasets: ``aug(item) -> item``.

    The generator is seeded from ``(seed, epoch, item["index"])`` when the item has an ``index``
    (as cache items do), so a sample's augmentation depends neither on the worker that loads it nor
    on the order; call :meth:`set_epoch` at each epoch. Without an index a private generator
    seeded once is used.
    """

    def __init__(
        self,
        seed: int = 0,
        flip_p: float = 0.5,
        scale_range: tuple[float, float] = (1.0, 1.5),
        brightness_range: tuple[float, float] = (0.8, 1.2),
    ) -> None:
        self.seed = int(seed)
        self.epoch = 0
        self.options = dict(flip_p=flip_p, scale_range=tuple(scale_range), brightness_range=tuple(brightness_range))
        self._generator = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, item: Mapping[str, Any]) -> dict:
        import torch

        index = item.get("index")
        if index is not None and np.ndim(index) == 0:
            gen = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])
            )
        else:
            if self._generator is None:
                self._generator = torch.Generator().manual_seed(self.seed)
            gen = self._generator
        return paired_augment(item, generator=gen, **self.options)

    def __repr__(self) -> str:
        return f"PairedAugment(seed={self.seed}, epoch={self.epoch}, {self.options})"


# --------------------------------------------------------------------------------------------
# Samples <-> tensors


def sample_to_tensors(sample: Sample) -> dict:
    """``{"rgb": [3,H,W] float in [0,1], "gt": [1,h,w], "valid": [1,h,w] bool, "id": str}``."""
    import torch

    rgb = torch.from_numpy(np.ascontiguousarray(sample.rgb)).permute(2, 0, 1).float() / 255.0
    depth = torch.from_numpy(np.ascontiguousarray(sample.depth))[None]
    valid = torch.isfinite(depth) & (depth > 0)
    gt = torch.where(valid, depth, torch.zeros_like(depth))
    return {"rgb": rgb, "gt": gt, "valid": valid, "id": sample.id}


def augment_sample(
    sample: Sample,
    generator=None,
    seed: int | None = None,
    flip_p: float = 0.5,
    scale_range: tuple[float, float] = (1.0, 1.5),
    brightness_range: tuple[float, float] = (0.8, 1.2),
) -> Sample:
    """:func:`paired_augment` for a NumPy :class:`Sample` (invalid depth comes back as 0)."""
    item = sample_to_tensors(sample)
    out = paired_augment(
        item, generator=generator, seed=seed, flip_p=flip_p, scale_range=scale_range,
        brightness_range=brightness_range,
    )
    rgb = (out["rgb"].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    depth = np.where(out["valid"][0].numpy(), out["gt"][0].numpy(), 0.0).astype(np.float32)
    return Sample(rgb=np.ascontiguousarray(rgb), depth=depth, id=sample.id)


__all__ = [
    "KEY_KINDS",
    "AugmentParams",
    "PairedAugment",
    "apply_params",
    "augment_sample",
    "center_crop",
    "draw_params",
    "fit_sample",
    "hflip",
    "paired_augment",
    "resize_depth",
    "resize_nearest",
    "resize_rgb",
    "sample_to_tensors",
]
