"""Export cache pairs side by side as 16-bit PNGs: the pix2pix "AB" layout (SPEC §5).

Each sample becomes one PNG ``[A | B]`` where A is the rough map and B the ground truth, both at
the same size (the cache size by default, as pix2pix trains at 256x256), holding
``round(depth * scale)`` with the scale recorded in the PNG (read back with
:func:`refinedepth.data.io.read_depth_png`). Invalid ground truth is 0. A ``pairs_<split>.json`` next
to the split's folder lists the files, ids, scale and sizes, so other tools need no guessing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EXPORT_AT
from ..errors import CacheError, ConfigError
from ..geometry import resize_depth, resize_smooth
from .reader import open_cache

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_scale(max_depth: float) -> float:
    """1000 (millimetres, NYU/Kinect convention) when ``max_depth`` fits in 16 bits at that scale,
    otherwise 256 (the KITTI convention, up to 255.99 m)."""
    return 1000.0 if max_depth <= 65.0 else 256.0


def _safe_name(index: int, sample_id: str) -> str:
    stem = _UNSAFE.sub("_", sample_id).strip("_")[:120]
    return f"{index:06d}_{stem}.png" if stem else f"{index:06d}.png"


def export_ab(
    cache: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scale: float | None = None,
    at: str = EXPORT_AT[0],
    limit: int | None = None,
    overwrite: bool = False,
    progress=None,
) -> dict[str, Any]:
    """Write ``out_dir/<split>/<index>_<id>.png`` for every done sample of ``cache``.

    Args:
        scale: PNG value per metre; default :func:`default_scale` of the cache's ``max_depth``.
        at: ``"rough"`` (the cache size; gt resized with nearest neighbour) or ``"gt"`` (the
            evaluation size; rough resized bilinearly).
        limit: export only the first N done samples.

    Rough values beyond the 16-bit range are clipped (counted in the summary). A cache of
    ``relative``/``disparity`` maps is min-max normalised per sample to ``[0, max_depth]``.
    Returns the summary that is also written to ``pairs_<split>.json``.
    """
    import torch

    from ..contract import write_atomically
    from ..data.io import write_depth_png

    if at not in EXPORT_AT:
        raise ConfigError(f"--at must be one of {', '.join(map(repr, EXPORT_AT))}, got {at!r}")
    if limit is not None and int(limit) < 1:
        raise ConfigError(f"--limit must be a positive number of samples, got {limit}")
    out_dir = Path(out_dir)
    with open_cache(cache) as reader:
        cfg = reader.config
        split_dir = out_dir / (cfg.split or "all")
        if split_dir.exists() and any(split_dir.iterdir()) and not overwrite:
            raise CacheError(f"{split_dir} already has files; pass --overwrite or choose another OUT_DIR")
        scale = float(scale) if scale is not None else default_scale(cfg.max_depth)
        if scale <= 0:
            raise ConfigError(f"--scale must be positive, got {scale}")
        top = 65535.0 / scale
        size = reader.rough_size if at == "rough" else reader.gt_size
        picks = np.flatnonzero(reader.done)
        if limit is not None:
            picks = picks[:limit]
        if len(picks) == 0:
            raise CacheError(f"{reader.path} has no finished sample to export; run 'refinedepth cache' first")
        files, clipped = [], 0
        for k, i in enumerate(picks):
            s = reader.read(int(i), with_rgb=False)
            rough = torch.from_numpy(s["rough"])[None]
            gt = torch.from_numpy(s["gt"])[None, None]
            rough = resize_smooth(rough, size)  # antialiased when shrinking, as the scorer resizes
            gt = resize_depth(gt, size)
            a = rough[0, 0].numpy().astype(np.float64)
            b = gt[0, 0].numpy().astype(np.float64)
            if cfg.output_kind != "metric":
                lo, hi = np.nanmin(a), np.nanmax(a)
                a = (a - lo) / (hi - lo) * cfg.max_depth if hi > lo else np.zeros_like(a)
                if cfg.output_kind == "disparity":  # near is low, like the depth in B (and the refiner's input)
                    a = cfg.max_depth - a
            clipped += int((a > top).sum())
            a = np.clip(a, 0.0, top)
            b = np.where(b <= top, b, 0.0)  # gt beyond the range is marked invalid, not clipped
            name = _safe_name(int(i), s["id"])
            # beside its name, then renamed: an interrupted --overwrite leaves no half-written pair
            write_atomically(split_dir / name, write_depth_png, np.concatenate([a, b], axis=1).astype(np.float32),
                             scale=scale)
            files.append({"file": f"{split_dir.name}/{name}", "id": s["id"], "index": int(i)})
            if progress is not None:
                progress(k + 1, len(picks), desc="export")
    summary = {
        "layout": "A|B side by side: A = rough (left), B = gt (right); 16-bit PNG, value = depth * scale",
        "cache": str(Path(cache)),
        "scale": scale,
        "pair_size": list(size),
        "image_size": [size[0], 2 * size[1]],
        "output_kind": cfg.output_kind,
        "rough_normalised": cfg.output_kind != "metric",
        "rough_flipped": cfg.output_kind == "disparity",
        "max_depth": cfg.max_depth,
        "clipped_rough_pixels": clipped,
        "count": len(files),
        "files": files,
    }
    (out_dir / f"pairs_{split_dir.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["export_ab", "default_scale"]
