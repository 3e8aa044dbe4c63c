"""Fabricated caches for the refiner tests: synthetic ground truth and a degraded "rough" map.

The rough map imitates a first stage's systematic errors: blurred (lost detail), biased
(x1.15 + 0.15 m) and noisy. A refiner has something real to learn from it, and what it learns
carries over to held-out scenes (the validation split renders different rooms).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from refinedepth.cache import write_cache
from refinedepth.data import open_dataset

GT_SIZE = (48, 64)
ROUGH_SIZE = (64, 64)


@functools.lru_cache(maxsize=8)
def _samples(split: str, n: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ds = open_dataset("synthetic:indoor", split=split, limit=n, size=size)
    rgb = np.stack([ds[i].rgb for i in range(n)])
    depth = np.stack([ds[i].depth for i in range(n)]).astype(np.float32)
    return rgb, depth


def degrade(gt: np.ndarray, rough_size: tuple[int, int], seed: int) -> np.ndarray:
    """Blur, bias and noise: the rough map [N,1,h,w] of a mediocre first stage."""
    g = torch.from_numpy(gt)[:, None]
    blurred = F.avg_pool2d(g, 7, stride=1, padding=3, count_include_pad=False)
    rough = F.interpolate(blurred, size=rough_size, mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(seed)
    noise = 0.05 * torch.randn(rough.shape, generator=gen)
    return (rough * 1.15 + 0.15 + noise).clamp_min(0.05).numpy().astype(np.float32)


def make_degraded_cache(
    path: str | Path,
    n: int,
    split: str = "train",
    *,
    seed: int = 0,
    gt_size: tuple[int, int] = GT_SIZE,
    rough_size: tuple[int, int] = ROUGH_SIZE,
    with_rgb: bool = False,
    holes: bool = False,
) -> Path:
    rgb, depth = _samples(split, n, tuple(gt_size))
    gt = depth.copy()
    if holes:  # Kinect-like invalid pixels (0) in the ground truth
        gt[:, ::7, ::5] = 0.0
    rough = degrade(depth, tuple(rough_size), seed)
    rgb_small = None
    if with_rgb:
        t = torch.from_numpy(rgb).permute(0, 3, 1, 2).float()
        t = F.interpolate(t, size=tuple(rough_size), mode="bilinear", align_corners=False)
        rgb_small = t.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return write_cache(
        path,
        rough=rough,
        gt=gt,
        rgb=rgb_small,
        max_depth=10.0,
        output_kind="metric",
        protocol="none",
        backbone="degraded-gt",
        dataset="synthetic:indoor",
        split=split,
        compression="lzf",
    )


from ._threads import one_torch_thread  # noqa: E402,F401  (re-exported autouse fixture)
