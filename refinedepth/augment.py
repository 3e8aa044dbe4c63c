"""The paper's augmentations, applied consistently to every map of a sample: the one augmentation
module of refinedepth (SPEC §4), used by both trainers and by the cache dataset.

The operations are those of Eigen et al. that FCRN and the paper use:

* ``hflip`` — mirror left-right with probability 0.5;
* ``scale`` — zoom in by ``s`` drawn uniformly from [1, 1.5] around a random centre: the window
  of ``1/s`` of the image's height and width whose position is drawn uniformly inside the image
  is resampled to the full size. An object ``s`` times larger in the image is ``s`` times closer,
  so metric and relative depth are divided by ``s`` and disparity is multiplied by ``s``;
* ``brightness`` — RGB times a global factor drawn from [0.8, 1.2], clamped to [0, 1].

Left out of Eigen et al.'s set, on purpose: rotation by [-5, 5] degrees, translation by random
crops at ``s = 1`` (the zoom window moves only when ``s > 1``), and a colour factor per channel
(Eigen draws ``c`` in [0.8, 1.2]^3; here one factor for all three channels).

and one of refinedepth's own, for refiners:

* ``gain`` — the first stage's map alone (``rough``) times a factor ``g`` whose logarithm is drawn
  uniformly from [-log 1.25, log 1.25] (disparity divided by ``g``); the ground truth is unchanged.
  The first stage's global scale then varies from sample to sample, so a refiner cannot learn one
  average factor for it and must read each image's scale from the image and the map's structure.

Maps of different resolutions in one sample (a 256x256 rough map, a 480x640 ground truth, RGB)
get the same window in normalised image coordinates, so they stay registered. Depth and masks
(``gt``, ``valid``, ``depth``) are resampled with nearest neighbours at pixel centres — output
pixel ``i`` of a window starting at ``left`` (a fraction of the width) takes input pixel
``floor((left + (i + 0.5) / (W s)) * W)``, the convention of :mod:`refinedepth.geometry` — so
invalid pixels stay invalid and no depth is invented; rough maps and RGB are resampled
bilinearly (``align_corners=False``).

Every draw comes from a ``torch.Generator``, five numbers per sample in a fixed order whatever
the paper's operations enabled, and a sixth after them when ``gain`` is (so runs without it draw
exactly what they drew before it existed), so a run is reproducible; :class:`PairedAugment` seeds its generator from
``(seed, epoch, index)`` so a sample's augmentation depends neither on the DataLoader worker nor
on the order in which samples are read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import AUGMENTATIONS, OUTPUT_KINDS, PAPER_AUGMENTATIONS
from .errors import ConfigError, ShapeError

# how each known key is resampled and whether it is depth-valued
SMOOTH_KEYS = ("rough", "refined")  # bilinear; follows the map's kind (depth / s, disparity x s)
DEPTH_KEYS = ("gt", "depth")  # nearest; metric depth, divided by s
MASK_KEYS = ("valid",)  # nearest
IMAGE_KEYS = ("rgb",)  # bilinear; brightness applies

FLIP_P = 0.5
SCALE_RANGE = (1.0, 1.5)
BRIGHTNESS_RANGE = (0.8, 1.2)
GAIN_MAX = 1.25  # gain: log g uniform in [-log GAIN_MAX, log GAIN_MAX]
GAIN_KEYS = ("rough",)  # the first stage's map only; not "refined" (a refiner's own output)


def check_ops(ops: Iterable[str] | None) -> tuple[str, ...]:
    """``ops`` as a tuple of known operation names (``None``, ``"none"`` and ``""`` drop out)."""
    out = tuple(o for o in (ops or ()) if o and o != "none")
    bad = [o for o in out if o not in AUGMENTATIONS]
    if bad:
        raise ConfigError(f"unknown augmentation {bad[0]!r}: expected any of {', '.join(AUGMENTATIONS)} or none")
    return out


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample draws for a batch of ``B``: tensors ``[B]``.

    ``flip`` bool; ``scale`` >= 1 (1: no zoom); ``top``/``left`` the window's position as a
    fraction of the free range ``1 - 1/s`` (0: top/left edge, 1: bottom/right edge);
    ``brightness`` the RGB factor (1: unchanged); ``gain`` the rough map's factor (1: unchanged;
    ``None`` in params made before it existed counts as 1).
    """

    flip: Any
    scale: Any
    top: Any
    left: Any
    brightness: Any
    gain: Any = None

    def __len__(self) -> int:
        return int(self.scale.shape[0])


def draw_params(batch_size: int, ops: Iterable[str], generator=None) -> AugmentParams:
    """Draw :class:`AugmentParams` for ``batch_size`` samples: five uniforms per sample, in sample
    order, whatever the paper's operations ``ops`` enables (disabled operations get their identity
    value), then, only when ``gain`` is enabled, one more per sample."""
    import torch

    ops = check_ops(ops)
    u = torch.rand(batch_size, 5, generator=generator, dtype=torch.float64)
    ones = torch.ones(batch_size, dtype=torch.float64)
    lo, hi = SCALE_RANGE
    blo, bhi = BRIGHTNESS_RANGE
    gain = ones
    if "gain" in ops:
        gain = torch.exp(math.log(GAIN_MAX) * (2.0 * torch.rand(batch_size, generator=generator, dtype=torch.float64) - 1.0))
    return AugmentParams(
        flip=(u[:, 0] < FLIP_P) if "hflip" in ops else torch.zeros(batch_size, dtype=torch.bool),
        scale=(lo + (hi - lo) * u[:, 1]) if "scale" in ops else ones,
        top=u[:, 2],
        left=u[:, 3],
        brightness=(blo + (bhi - blo) * u[:, 4]) if "brightness" in ops else ones,
        gain=gain,
    )


def _window_indices(n: int, s: float, start: float) -> np.ndarray:
    """Nearest source pixel of each of ``n`` output pixels for a zoom by ``s`` whose window starts
    at ``start`` (a fraction of the size): ``floor((start + (i + 0.5) / (n s)) * n)``."""
    i = np.arange(n, dtype=np.float64)
    return np.clip(np.floor((start + (i + 0.5) / (n * s)) * n), 0, n - 1).astype(np.int64)


def _zoom_nearest(x, params: AugmentParams):
    import torch

    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        s = float(params.scale[b])
        if s == 1.0:
            out[b] = x[b]
            continue
        free = 1.0 - 1.0 / s
        rows = torch.from_numpy(_window_indices(h, s, float(params.top[b]) * free)).to(x.device)
        cols = torch.from_numpy(_window_indices(w, s, float(params.left[b]) * free)).to(x.device)
        out[b] = x[b].index_select(-2, rows).index_select(-1, cols)
    return out


def _zoom_bilinear(x, params: AugmentParams):
    import torch
    import torch.nn.functional as F

    b, c, h, w = x.shape
    s = params.scale.to(torch.float64)
    free = 1.0 - 1.0 / s
    # affine_grid maps output [-1, 1] to input: x_in = x_out / s + t; the window [left, left + 1/s]
    # (fractions) has its centre at 2 (left + 1/(2s)) - 1 = (2 left_frac - 1) * free
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
    theta[:, 0, 2] = (2.0 * params.left.to(torch.float64) - 1.0) * free
    theta[:, 1, 2] = (2.0 * params.top.to(torch.float64) - 1.0) * free
    xf = x if x.is_floating_point() else x.float()
    grid = F.affine_grid(theta.to(xf.dtype).to(x.device), [b, c, h, w], align_corners=False)
    zoomed = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
    keep = (s == 1.0).to(x.device).view(b, 1, 1, 1)
    return torch.where(keep, xf, zoomed)


def _per_sample(values, like):
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def apply_params(batch: Mapping[str, Any], params: AugmentParams, *, kind: str = "metric") -> dict:
    """Apply one draw per sample to every known ``[B,C,H,W]`` tensor of ``batch``.

    ``kind`` is the output kind of ``rough``/``refined`` (``metric``/``relative``: divided by
    ``s`` and, ``rough`` alone, multiplied by the gain; ``disparity``: the inverse of both);
    ``gt``/``depth`` are metric. Keys that are not
    known, not tensors, or ``None`` pass through unchanged. Returns a new dict.
    """
    import torch

    if kind not in OUTPUT_KINDS:
        raise ConfigError(f"unknown output kind {kind!r}: expected one of {', '.join(OUTPUT_KINDS)}")
    out = dict(batch)
    zoom = bool((params.scale != 1.0).any())
    for key, x in batch.items():
        if not isinstance(x, torch.Tensor) or key not in SMOOTH_KEYS + DEPTH_KEYS + MASK_KEYS + IMAGE_KEYS:
            continue
        if x.dim() != 4 or x.shape[0] != len(params):
            raise ShapeError(f"augment: expected {key} as [B,C,H,W] with B={len(params)}, got {tuple(x.shape)}")
        flip = params.flip.to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
        if zoom:
            if key in SMOOTH_KEYS or key in IMAGE_KEYS:
                x = _zoom_bilinear(x, params)
            else:
                x = _zoom_nearest(x, params)
            if key in DEPTH_KEYS or (key in SMOOTH_KEYS and kind != "disparity"):
                x = x / _per_sample(params.scale, x)
            elif key in SMOOTH_KEYS:
                x = x * _per_sample(params.scale, x)
        if key in IMAGE_KEYS and bool((params.brightness != 1.0).any()):
            x = (x * _per_sample(params.brightness, x)).clamp(0.0, 1.0)
        if key in GAIN_KEYS:
            x = apply_gain(x, params, kind)
        out[key] = x
    return out


def apply_gain(x, params: AugmentParams, kind: str = "metric"):
    """``x`` (a rough map ``[B,...]``, or values of it such as its percentiles) times each sample's
    gain; a disparity map divided by it. Unchanged when no gain is drawn."""
    if params.gain is None or not bool((params.gain != 1.0).any()):
        return x
    g = _per_sample(params.gain, x)
    return x / g if kind == "disparity" else x * g


def augment_batch(batch: Mapping[str, Any], ops: Iterable[str], generator=None, *, kind: str = "metric") -> dict:
    """The augmentations ``ops`` (subset of :data:`AUGMENTATIONS`) on a batch of
    ``[B,C,H,W]`` tensors of any mix of sizes (``rough``, ``gt``, ``valid``, ``rgb`` ...), one draw
    per sample from ``generator`` (see the module docstring). Returns a new dict."""
    import torch

    ops = check_ops(ops)
    tensors = [v for k, v in batch.items() if isinstance(v, torch.Tensor) and k in
               SMOOTH_KEYS + DEPTH_KEYS + MASK_KEYS + IMAGE_KEYS]
    if not ops or not tensors:
        return dict(batch)
    return apply_params(batch, draw_params(tensors[0].shape[0], ops, generator), kind=kind)


def sample_generator(seed: int, epoch: int, index: int):
    """The ``torch.Generator`` of one sample in one epoch, from ``(seed, epoch, index)``."""
    import torch

    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class PairedAugment:
    """Per-sample augmentation for datasets: ``aug(item) -> item`` on ``[C,H,W]`` tensors.

    The generator is seeded from ``(seed, epoch, item["index"])``, so a sample's draw depends
    neither on the worker that loads it nor on the order; call :meth:`set_epoch` each epoch.
    Items without an ``index`` draw from one private generator seeded once.
    """

    def __init__(self, seed: int = 0, ops: Iterable[str] = PAPER_AUGMENTATIONS, *, kind: str = "metric") -> None:
        self.seed = int(seed)
        self.ops = check_ops(ops)
        self.kind = kind
        self.epoch = 0
        self._generator = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, item: Mapping[str, Any]) -> dict:
        import torch

        index = item.get("index")
        if index is not None and np.ndim(index) == 0:
            gen = sample_generator(self.seed, self.epoch, int(index))
        else:
            if self._generator is None:
                self._generator = torch.Generator().manual_seed(self.seed)
            gen = self._generator
        keys = [k for k, v in item.items() if isinstance(v, torch.Tensor) and v.dim() == 3]
        out = augment_batch({k: item[k][None] for k in keys}, self.ops, gen, kind=self.kind)
        return {**item, **{k: out[k][0] for k in keys}}

    def __repr__(self) -> str:
        return f"PairedAugment(seed={self.seed}, ops={self.ops}, kind={self.kind!r}, epoch={self.epoch})"


__all__ = [
    "AUGMENTATIONS",
    "PAPER_AUGMENTATIONS",
    "AugmentParams",
    "PairedAugment",
    "apply_gain",
    "apply_params",
    "augment_batch",
    "check_ops",
    "draw_params",
    "sample_generator",
]
