"""Resampling and cropping of depth maps, masks, RGB images and smooth maps: the one place where
refinedepth changes the size of anything (SPEC §2, the one-spine issue).

Conventions, used by the cache, both trainers, evaluation and prediction alike:

* sizes are ``(height, width)``; :func:`parse_hw` turns ``"HxW"``, ``"H,W"``, an int or a pair
  into one and is the only parser of sizes in the project;
* **depth and masks** (ground truth, validity) are resampled with nearest neighbours at pixel
  centres — output pixel ``i`` takes input pixel ``floor((i + 0.5) * in / out)``, which is what
  ``F.interpolate(mode="nearest-exact")`` and PIL's ``NEAREST`` do (computed exactly, in
  integers, where those round exact ties either way). Invalid pixels (0) stay
  invalid and no value is invented between a valid and an invalid pixel. (``mode="nearest"``,
  ``floor(i * in / out)``, is half a pixel off; nothing here uses it.)
* **smooth maps** (rough maps, predictions, corrections) are resampled bilinearly with
  ``align_corners=False``, antialiased when shrinking;
* **RGB** is resampled like smooth maps and clamped to its range.

Every function takes torch tensors ``[..., H, W]`` (any leading dimensions); the depth/mask
functions and :func:`resize_rgb` also take NumPy arrays in image layout ``[H, W]`` /
``[H, W, C]``. Importing this module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ConfigError, ShapeError

Size = tuple[int, int]


def parse_hw(value: Any, what: str = "size") -> Size:
    """``(height, width)`` of positive ints from ``"HxW"`` / ``"H,W"`` / ``"H×W"``, an int
    (square) or a pair (a list, tuple, NumPy array or tensor of two whole numbers); a
    :class:`ConfigError` naming ``what`` otherwise.

    This is the project's one parser of sizes: command-line options, dataset options and the
    backbones' ``input_size`` / ``output_size`` options all go through it. Refused: booleans
    (``True`` is not a size), numbers that are not whole (``2.7``; ``3.0`` is 3), non-finite
    numbers, anything but two sides (``"48"``, ``(1, 2, 3)``), and bytes, mappings, sets and
    iterators (whose "two sides" would be an accident of iteration).
    """
    original = value
    if isinstance(value, str):
        text = value.strip().lower().replace("×", "x").replace(",", "x")
        parts = [p.strip() for p in text.split("x")]
        try:
            if len(parts) != 2 or not all(p.lstrip("+").isdigit() for p in parts):
                raise ValueError
            value = (int(parts[0]), int(parts[1]))
        except ValueError:  # also digits int() does not read, such as '²'
            raise ConfigError(f"{what} must be HEIGHTxWIDTH such as 256x256, got {original!r}") from None
    else:
        if hasattr(value, "tolist") and callable(value.tolist):  # NumPy arrays and scalars, tensors
            value = value.tolist()
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value, value)
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray)) or len(value) != 2:
            raise ConfigError(f"{what} must be {_PAIR_WORDS}, got {original!r}")
        try:
            value = (_whole(value[0]), _whole(value[1]))
        except (TypeError, ValueError, OverflowError) as exc:
            reason = f" ({exc})" if str(exc).startswith("not ") else ""
            raise ConfigError(f"{what} must be {_PAIR_WORDS}, got {original!r}{reason}") from None
    h, w = value
    if h <= 0 or w <= 0:
        raise ConfigError(f"{what} must be positive, got {h}x{w}; use e.g. 256x256")
    return h, w


_PAIR_WORDS = "HEIGHTxWIDTH such as 256x256 or a pair of whole numbers [height, width]"


def _whole(v: Any) -> int:
    """One side of a size given as a number: an int, or a float (or 0-d array/tensor) that is a
    whole number; never a bool."""
    if hasattr(v, "tolist") and callable(v.tolist):
        v = v.tolist()
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r} is a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v)  # '240' from a list of strings; '2.5' and 'x' are refused
    f = float(v)
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"not a whole number: {v!r}")
    return int(f)


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "dim")


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for a nearest-neighbour resize of ``n_in`` to ``n_out``
    pixels, sampling pixel centres: ``floor((i + 0.5) * n_in / n_out)``."""
    # exact integer arithmetic: floor((2i + 1) * n_in / (2 n_out)); float formulas (torch's,
    # PIL's) round ties such as 26.5 * 64 / 53 = 32 either way
    i = np.arange(n_out, dtype=np.int64)
    return np.minimum((2 * i + 1) * n_in // (2 * n_out), n_in - 1)


def resize_nearest(x, size: Any):
    """Nearest-neighbour resize at pixel centres; any dtype (bool, ints, floats) is kept.

    Tensors are resized over their last two dimensions, NumPy arrays in image layout
    (``[H,W]`` or ``[H,W,C]``, the first two)."""
    h, w = parse_hw(size)
    if _is_tensor(x):
        import torch

        if x.dim() < 2:
            raise ShapeError(f"expected a tensor [..., H, W], got shape {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if (H, W) == (h, w):
            return x
        rows = torch.from_numpy(nearest_indices(H, h)).to(x.device)
        cols = torch.from_numpy(nearest_indices(W, w)).to(x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"expected an array [H, W] or [H, W, C], got shape {x.shape}")
    H, W = x.shape[:2]
    if (H, W) == (h, w):
        return x
    return np.ascontiguousarray(x[nearest_indices(H, h)[:, None], nearest_indices(W, w)[None, :]])


def resize_depth(depth, size: Any):
    """Depth (ground truth) to ``size``: nearest neighbour, so invalid pixels stay invalid."""
    return resize_nearest(depth, size)


def resize_mask(mask, size: Any):
    """A validity mask to ``size``: nearest neighbour, bool in, bool out."""
    return resize_nearest(mask, size)


def resize_smooth(x, size: Any, *, antialias: bool | None = None):
    """Bilinear resize (``align_corners=False``) of a float tensor ``[..., H, W]``: rough maps,
    predictions, corrections. ``antialias=None`` antialiases when either side shrinks."""
    import torch.nn.functional as F

    h, w = parse_hw(size)
    if not _is_tensor(x):
        raise ShapeError(f"resize_smooth expects a torch tensor [..., H, W], got {type(x).__name__}")
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    if antialias is None:
        antialias = h < H or w < W
    lead = x.shape[:-2]
    x4 = x.reshape(-1, 1, H, W) if x.dim() != 4 else x
    if not x4.is_floating_point():
        x4 = x4.float()
    out = F.interpolate(x4, size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
    return out.reshape(*lead, h, w) if x.dim() != 4 else out


def resize_rgb(rgb, size: Any):
    """RGB to ``size`` (bilinear, antialiased when shrinking, clamped).

    A tensor ``[..., 3, H, W]`` in [0, 1] comes back as such; a NumPy uint8 ``[H, W, 3]`` image
    comes back as uint8 ``[h, w, 3]`` (rounded)."""
    if _is_tensor(rgb):
        out = resize_smooth(rgb, size)
        return out if out is rgb else out.clamp_(0.0, 1.0)
    import torch

    array = np.asarray(rgb)
    if array.ndim != 3:
        raise ShapeError(f"expected an RGB image [H, W, 3], got shape {array.shape}")
    if array.shape[:2] == parse_hw(size):
        return array
    t = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float()
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    out = resize_smooth(t / scale, size).clamp_(0.0, 1.0) * scale
    out = out.permute(1, 2, 0).numpy()
    if array.dtype == np.uint8:
        return np.ascontiguousarray(np.round(out).astype(np.uint8))
    return np.ascontiguousarray(out.astype(array.dtype))


def center_crop(array, size: Any):
    """Centre crop to ``size``: NumPy ``[H, W(, C)]`` or a tensor ``[..., H, W]``; the crop must
    fit."""
    h, w = parse_hw(size)
    tensor = _is_tensor(array)
    H, W = (array.shape[-2:] if tensor else array.shape[:2])
    if h > H or w > W:
        raise ShapeError(f"cannot centre-crop {H}x{W} to {h}x{w}: the crop is larger than the image")
    top, left = (H - h) // 2, (W - w) // 2
    if tensor:
        return array[..., top : top + h, left : left + w]
    return array[top : top + h, left : left + w]


def fit_sample(sample, size: Any, scale: float | None = None, depth_size: Any = None):
    """Resize and centre-crop a :class:`~refinedepth.data.Sample` to ``size`` (a backbone's
    input), keeping the aspect ratio.

    ``scale=None`` resizes by the smallest factor that covers ``size``, then crops; an explicit
    ``scale`` resizes by it first (FCRN, SPEC §3.3: half resolution, 480x640 -> 240x320, then a
    228x304 centre crop). The depth map gets the same window, in normalised coordinates, at
    ``depth_size`` (default: ``size``), so it stays registered with the image.
    """
    from .data.base import Sample

    h, w = parse_hw(size)
    H, W = sample.rgb.shape[:2]
    s = max(h / H, w / W) if scale is None else float(scale)
    rh, rw = max(h, round(H * s)), max(w, round(W * s))
    rgb = center_crop(resize_rgb(sample.rgb, (rh, rw)), (h, w))
    top, left = (rh - h) // 2 / rh, (rw - w) // 2 / rw
    dh, dw = parse_hw(depth_size) if depth_size is not None else (h, w)
    Dh, Dw = round(dh * rh / h), round(dw * rw / w)
    depth = resize_depth(sample.depth, (Dh, Dw))
    t, lft = round(top * Dh), round(left * Dw)
    depth = depth[t : t + dh, lft : lft + dw]
    return Sample(rgb=np.ascontiguousarray(rgb), depth=np.ascontiguousarray(depth), id=sample.id)


__all__ = [
    "Size",
    "parse_hw",
    "nearest_indices",
    "resize_nearest",
    "resize_depth",
    "resize_mask",
    "resize_smooth",
    "resize_rgb",
    "center_crop",
    "fit_sample",
]
