"""Pictures of depth maps: colour maps, error maps and labelled grids (PIL only, no matplotlib).

The colour maps are small lookup tables interpolated to 256 entries: ``viridis`` (perceptually
uniform, readable in greyscale and by colour-blind viewers; the default for depth) and ``magma``
(used for errors), from the eleven evenly spaced stops of the matplotlib maps by van der Walt and
Smith, plus ``gray``. Invalid pixels (0 or non-finite depth) are drawn black.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError, ShapeError

# Eleven evenly spaced stops (0, 0.1, ..., 1) of each map, sRGB.
_STOPS = {
    "viridis": [
        "440154", "482475", "414487", "355f8d", "2a788e", "21918c", "22a884", "44bf70", "7ad151", "bddf26", "fde725",
    ],
    "magma": [
        "000004", "140e36", "3b0f70", "641a80", "8c2981", "b73779", "de4968", "f7705c", "fe9f6d", "fecf92", "fcfdbf",
    ],
    "gray": ["000000", "ffffff"],
}


def _build_lut(stops: Sequence[str]) -> np.ndarray:
    colors = np.array([[int(s[i : i + 2], 16) for i in (0, 2, 4)] for s in stops], dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(colors))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, x, colors[:, c]) for c in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


COLORMAPS = {name: _build_lut(stops) for name, stops in _STOPS.items()}


def _to_2d(array, name: str) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().to("cpu").float().numpy()
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2:
        raise ShapeError(f"{name}: expected a map [H,W] (or [1,H,W]), got shape {list(array.shape)}")
    return array


def apply_colormap(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Map values in [0, 1] (clipped; NaN -> 0) through a colour map to uint8 ``[..., 3]``."""
    if cmap not in COLORMAPS:
        raise ConfigError(f"unknown colour map {cmap!r}; expected one of {', '.join(COLORMAPS)}")
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    idx = np.round(np.clip(v, 0.0, 1.0) * 255).astype(np.int64)
    return COLORMAPS[cmap][idx]


def colorize_depth(
    depth,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    valid=None,
) -> np.ndarray:
    """A depth map as a uint8 ``[H,W,3]`` picture: near dark, far bright, invalid black.

    ``vmin``/``vmax`` default to the range of the valid pixels; pass the ground truth's range to
    compare several maps of one scene. ``valid`` overrides the default mask (finite and > 0).
    """
    d = _to_2d(depth, "depth")
    mask = np.isfinite(d) & (d > 0) if valid is None else (_to_2d(valid, "valid") > 0) & np.isfinite(d)
    if vmin is None:
        vmin = float(d[mask].min()) if mask.any() else 0.0
    if vmax is None:
        vmax = float(d[mask].max()) if mask.any() else 1.0
    span = vmax - vmin if vmax > vmin else 1.0
    rgb = apply_colormap((np.where(mask, d, vmin) - vmin) / span, cmap)
    rgb[~mask] = 0
    return rgb


def error_map(pred, gt, valid=None, vmax: float | None = None, kind: str = "abs", cmap: str = "magma") -> np.ndarray:
    """Per-pixel error of ``pred`` against ``gt`` as a uint8 ``[H,W,3]`` picture.

    ``kind="abs"`` shows ``|pred - gt|`` in metres, ``"abs_rel"`` shows ``|pred - gt| / gt``.
    ``vmax`` (default: the 98th percentile over valid pixels) maps to the brightest colour. The
    map starts at a dark purple so that zero error stays distinct from invalid pixels (black).
    """
    p, g = _to_2d(pred, "pred"), _to_2d(gt, "gt")
    if p.shape != g.shape:
        raise ShapeError(f"error_map: pred {list(p.shape)} and gt {list(g.shape)} differ; resize pred to gt first")
    mask = np.isfinite(g) & (g > 0) & np.isfinite(p)
    if valid is not None:
        mask &= _to_2d(valid, "valid") > 0
    if kind == "abs":
        err = np.abs(p - g)
    elif kind == "abs_rel":
        err = np.abs(p - g) / np.where(mask, g, 1.0)
    else:
        raise ConfigError(f"unknown error kind {kind!r}; expected 'abs' or 'abs_rel'")
    if vmax is None:
        vmax = float(np.percentile(err[mask], 98)) if mask.any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    rgb = apply_colormap(0.15 + 0.85 * np.clip(np.where(mask, err, 0.0) / vmax, 0.0, 1.0), cmap)
    rgb[~mask] = 0
    return rgb


def _as_image(image, where: str) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().to("cpu").numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ShapeError(f"{where}: expected an image [H,W], [H,W,3] or [H,W,4], got shape {list(image.shape)}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        raise ShapeError(f"{where}: expected uint8 pixels, got {image.dtype}; colourise depth with colorize_depth first")
    return np.ascontiguousarray(image[:, :, :3])


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def save_grid(
    path: str | os.PathLike,
    rows: Sequence[Sequence],
    labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cell_size: tuple[int, int] | None = None,
    pad: int = 4,
) -> Path:
    """Compose uint8 images into a labelled grid and write it as PNG.

    ``rows`` is a list of rows, each a list of images (``[H,W,3]`` or grey ``[H,W]`` uint8);
    ``labels`` name the columns (drawn above them), ``row_labels`` the rows (drawn at their left).
    Every cell is resized to ``cell_size`` ``(height, width)`` (default: the first image's size).
    Returns the path written.
    """
    from PIL import Image, ImageDraw

    from .geometry import resize_nearest, resize_rgb

    if not rows or not any(len(r) for r in rows):
        raise ShapeError("save_grid: no images given")
    images = [[_as_image(im, f"row {i} image {j}") for j, im in enumerate(row)] for i, row in enumerate(rows)]
    ch, cw = cell_size if cell_size is not None else images[0][0].shape[:2]
    n_cols = max(len(r) for r in images)
    if labels is not None and len(labels) > n_cols:
        raise ShapeError(f"save_grid: {len(labels)} labels for {n_cols} columns")
    font_size = int(np.clip(ch // 14, 10, 20))
    font = _font(font_size)
    top = font_size + 2 * pad if labels else 0
    left = 0
    if row_labels:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        left = max(int(probe.textlength(str(t), font=font)) for t in row_labels) + 2 * pad
    width = left + n_cols * cw + (n_cols + 1) * pad
    height = top + len(images) * ch + (len(images) + 1) * pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(labels or []):
        x = left + pad + j * (cw + pad)
        tw = draw.textlength(str(text), font=font)
        draw.text((x + max((cw - tw) / 2, 0), pad), str(text), fill=(0, 0, 0), font=font)
    for i, row in enumerate(images):
        y = top + pad + i * (ch + pad)
        if row_labels and i < len(row_labels):
            draw.text((pad, y + ch / 2 - font_size / 2), str(row_labels[i]), fill=(0, 0, 0), font=font)
        for j, image in enumerate(row):
            if image.shape[:2] != (ch, cw):
                # enlarged cells show their pixels (nearest); shrunk ones are smoothed
                image = resize_nearest(image, (ch, cw)) if image.shape[0] < ch else resize_rgb(image, (ch, cw))
            canvas.paste(Image.fromarray(image), (left + pad + j * (cw + pad), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


__all__ = ["COLORMAPS", "apply_colormap", "colorize_depth", "error_map", "save_grid"]
