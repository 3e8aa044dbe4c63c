"""Score a cache's rough maps and, stage by stage, what trained refiners make of them (SPEC §7).

``evaluate_cache`` streams over an HDF5 cache (SPEC §5) in batches. For every batch it runs the
chain ``rough -> refiner 1 -> refiner 2 -> ...``, resizes each stage's prediction to the ground
truth's resolution (bilinear; the evaluation resolution, e.g. 480x640 for NYU) and feeds one
:class:`~refinedepth.metrics.MetricAccumulator` per stage. Accumulators hold sufficient statistics,
the per-sample CSV is written row by row and only the few samples drawn as pictures are kept, so
memory does not grow with the number of samples.

Chaining refiners is the paper's three-stage ablation (Tables 3 and 4): the first refiner reads the
backbone's output (its kind from the cache's ``output_kind`` attribute), later ones read metric
depth from the refiner before them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CacheError, CheckpointError, ConfigError
from .progress import ProgressCallback

PROTOCOLS = ("nyu", "make3d", "kitti", "none")
ALIGNMENTS = ("none", "median", "lstsq")
AVERAGING = ("image", "pixel", "pooled")  # "pixel" is an alias of the metrics' "pooled"


@dataclass
class EvaluationResult:
    """What :func:`evaluate_cache` measured: one ``(stage, metrics)`` row per stage."""

    rows: list[tuple[str, dict[str, float]]]
    cache: str
    refiners: list[str]
    protocol: str
    align: str
    averaging: str
    count: int
    attrs: dict[str, Any] = field(default_factory=dict)
    visuals: list[str] = field(default_factory=list)
    csv_path: str | None = None

    @property
    def stages(self) -> list[str]:
        return [name for name, _ in self.rows]

    def metrics(self, stage: int | str = -1) -> dict[str, float]:
        """Metrics of a stage by index (``0`` rough, ``-1`` the last) or by name."""
        if isinstance(stage, str):
            for name, m in self.rows:
                if name == stage:
                    return m
            raise KeyError(stage)
        return self.rows[stage][1]

    def table(self) -> str:
        from .report import format_table

        title = (
            f"{Path(self.cache).name}: {self.count} samples, protocol {self.protocol}, "
            f"align {self.align}, {self.averaging}-averaged"
        )
        return format_table(self.rows, title=title)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "refiners": list(self.refiners),
            "protocol": self.protocol,
            "align": self.align,
            "averaging": self.averaging,
            "count": self.count,
            "stages": [{"name": name, "metrics": m} for name, m in self.rows],
            "cache_attrs": {k: v for k, v in self.attrs.items() if _jsonable(v)},
            "visuals": list(self.visuals),
            "csv": self.csv_path,
        }


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, tuple, dict)) or value is None


def stage_names(refiners: Sequence[str | os.PathLike]) -> list[str]:
    """Row names: ``rough``, ``+ NAME``, ``+ NAME + NAME2`` (NAME = the refiner folder's name)."""
    names = ["rough"]
    label = ""
    for ref in refiners:
        label += f" + {Path(ref).name or str(ref)}"
        names.append(label.strip())
    return names


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}: expected one of {', '.join(choices)}")
    return value


def load_refiners(paths: Sequence[str | os.PathLike], device) -> list[Any]:
    """Load each refiner checkpoint directory with ``Refiner.from_pretrained``."""
    if not paths:
        return []
    for p in paths:
        if not Path(p).exists():
            raise CheckpointError(
                f"refiner checkpoint {str(p)!r} does not exist: expected a directory written by "
                "'refinedepth train-refiner --out DIR'"
            )
    from .refiner.api import Refiner

    out = []
    for p in paths:
        out.append(Refiner.from_pretrained(p, device=str(device)))
    return out


def run_chain(rough, refiners: Sequence[Any], output_kind: str, rgb=None) -> list[Any]:
    """``[rough, refined_1, refined_2, ...]`` for a batch ``rough`` [B,1,h,w] (torch)."""
    import torch

    preds = [rough]
    current, kind = rough, output_kind
    with torch.no_grad():
        for refiner in refiners:
            current = refiner.refine_tensor(current, rgb=rgb, output_kind=kind)
            kind = "metric"
            preds.append(current)
    return preds


def resize_to(pred, size: tuple[int, int]):
    """Bilinear resize of [B,1,h,w] to ``size`` (the evaluation resolution); no-op when equal."""
    import torch.nn.functional as F

    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred.float(), size=tuple(size), mode="bilinear", align_corners=False)


def evaluate_cache(
    cache: str | os.PathLike,
    refiners: Sequence[str | os.PathLike] = (),
    *,
    protocol: str | None = None,
    align: str = "none",
    averaging: str = "image",
    batch_size: int = 4,
    device: str = "auto",
    limit: int | None = None,
    csv_path: str | os.PathLike | None = None,
    visuals_dir: str | os.PathLike | None = None,
    num_visuals: int = 4,
    workers: int = 0,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Evaluate the rough maps of ``cache`` and, for each refiner in ``refiners``, the chain so far.

    Args:
        cache: an HDF5 cache written by ``refinedepth cache``.
        refiners: refiner checkpoint directories, applied in order (several = chained stages).
        protocol: ``nyu``, ``make3d``, ``kitti`` or ``none``; default: the cache's own.
        align: ``none``, ``median`` or ``lstsq`` (scale and shift, for relative backbones).
        averaging: ``image`` (mean of per-image metrics) or ``pixel`` (= ``pooled``: over all
            pixels of all images, as FCRN's MATLAB code).
        csv_path: write per-sample metrics there (one row per sample and stage).
        visuals_dir: write picture grids (RGB | rough | refined | GT | errors) for
            ``num_visuals`` samples spread evenly over the cache.
        progress: ``progress(done, total, desc="evaluate")`` after each batch.
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from .cache import CacheDataset
    from .device import resolve_device
    from .metrics import MetricAccumulator, per_image_metrics

    cache = str(cache)
    if not Path(cache).is_file():
        raise CacheError(f"cache {cache!r} does not exist: expected an HDF5 file from 'refinedepth cache'")
    _check_choice(align, ALIGNMENTS, "alignment")
    _check_choice(averaging, AVERAGING, "averaging")
    averaging = "pooled" if averaging == "pixel" else averaging
    attrs = cache_attributes(cache)
    if protocol is None:
        protocol = str(attrs.get("protocol") or "none")
    _check_choice(protocol, PROTOCOLS, "protocol")
    output_kind = str(attrs.get("output_kind") or "metric")

    dev = resolve_device(device)
    models = load_refiners(refiners, dev)
    has_rgb = bool(attrs.get("has_rgb", False))
    dataset = CacheDataset(cache, with_rgb=has_rgb)
    total = len(dataset)
    if limit is not None:
        total = min(total, int(limit))
    if total == 0:
        raise CacheError(f"cache {cache!r} holds no finished samples: re-run the 'refinedepth cache' command")
    indices = list(range(total))
    subset = torch.utils.data.Subset(dataset, indices) if total < len(dataset) else dataset
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate)

    names = stage_names(refiners)
    accs = [MetricAccumulator(protocol=protocol, align=align, averaging=averaging) for _ in names]
    picks = set(_visual_indices(total, num_visuals)) if visuals_dir is not None else set()
    kept: list[dict[str, Any]] = []

    writer = None
    csv_file = None
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        csv_file = open(csv_path, "w", newline="")  # noqa: SIM115 - closed in finally
    try:
        done = 0
        for batch in loader:
            rough = batch["rough"].to(dev)
            rgb = batch["rgb"].to(dev) if "rgb" in batch else None
            gt = batch["gt"].float()
            valid = batch["valid"].bool()
            gt = torch.where(valid & torch.isfinite(gt), gt, torch.zeros_like(gt))[:, 0]
            preds = run_chain(rough.float(), models, output_kind, rgb=rgb)
            preds = [resize_to(p, tuple(gt.shape[-2:])).cpu()[:, 0] for p in preds]
            for acc, pred in zip(accs, preds):
                acc.update(pred, gt)
            gt_np = gt.numpy()
            preds_np = [p.numpy() for p in preds]
            for b in range(gt_np.shape[0]):
                index = int(batch["index"][b])
                sample_id = str(batch["id"][b])
                if csv_file is not None:
                    for name, pred in zip(names, preds_np):
                        row = per_image_metrics(pred[b], gt_np[b], protocol=protocol, align=align)
                        if writer is None:
                            keys = list(row)
                            writer = csv.DictWriter(csv_file, fieldnames=["index", "id", "stage", *keys])
                            writer.writeheader()
                        writer.writerow({"index": index, "id": sample_id, "stage": name, **_floats(row)})
                if done + b in picks:
                    kept.append(
                        {
                            "id": sample_id,
                            "rgb": batch["rgb"][b].permute(1, 2, 0).numpy() if "rgb" in batch else None,
                            "preds": [np.array(p[b]) for p in preds_np],
                            "gt": np.array(gt_np[b]),
                        }
                    )
            done += gt_np.shape[0]
            if progress is not None:
                progress(done, total, desc="evaluate")
    finally:
        if csv_file is not None:
            csv_file.close()

    rows = [(name, _floats(acc.compute())) for name, acc in zip(names, accs)]
    visuals: list[str] = []
    if visuals_dir is not None and kept:
        visuals = write_visuals(visuals_dir, kept, names)
    return EvaluationResult(
        rows=rows,
        cache=cache,
        refiners=[str(r) for r in refiners],
        protocol=protocol,
        align=align,
        averaging=averaging,
        count=done,
        attrs=attrs,
        visuals=visuals,
        csv_path=str(csv_path) if csv_path is not None else None,
    )


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep ids and indices as lists (ids are strings)."""
    import torch

    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif key == "index":
            out[key] = torch.as_tensor([int(v) for v in values])
        else:
            out[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    return out


def _floats(d: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        try:
            out[k] = int(v) if k == "count" else float(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def cache_attributes(path: str | os.PathLike) -> dict[str, Any]:
    """The cache's configuration and root attributes as plain values, plus ``has_rgb``.

    Raises :class:`CacheError` with a one-line reason when ``path`` is not a usable cache.
    """
    from .cache import open_cache

    with open_cache(path) as reader:
        attrs = {k: _plain(v) for k, v in reader.attrs.items()}
        attrs.update(reader.config.to_dict())
        attrs["has_rgb"] = reader.has_rgb
        attrs["num_done"] = reader.num_done
    return attrs


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _visual_indices(total: int, n: int) -> list[int]:
    if n <= 0 or total <= 0:
        return []
    if n >= total:
        return list(range(total))
    step = total / n
    return sorted({int(i * step + step / 2) for i in range(n)})


def write_visuals(out_dir: str | os.PathLike, samples: list[dict[str, Any]], stage_names: list[str]) -> list[str]:
    """Picture grids for the kept samples: one row per sample,
    ``RGB | rough | refined... | GT | |rough-gt| | |last-gt|`` (depth colours share the row's
    ground-truth range, both error maps the same scale); returns the written paths
    (``grid.png`` with every row, then one ``sample_<id>.png`` per sample)."""
    import numpy as np

    from .visualize import colorize_depth, error_map, save_grid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = ["RGB", *stage_names, "GT", "error rough"]
    if len(stage_names) > 1:
        labels.append(f"error {stage_names[-1]}")
    rows = []
    for s in samples:
        gt = s["gt"]
        valid = np.isfinite(gt) & (gt > 0)
        size = gt.shape
        vmin = float(gt[valid].min()) if valid.any() else 0.0
        vmax = float(gt[valid].max()) if valid.any() else 1.0
        row = [_rgb_image(s["rgb"], size)]
        for pred in s["preds"]:
            row.append(colorize_depth(pred, vmin=vmin, vmax=vmax))
        row.append(colorize_depth(np.where(valid, gt, 0.0), vmin=vmin, vmax=vmax))
        errors = [np.abs(s["preds"][0] - gt)]
        if len(s["preds"]) > 1:
            errors.append(np.abs(s["preds"][-1] - gt))
        emax = max(float(np.percentile(e[valid], 98)) if valid.any() else 1.0 for e in errors) or 1.0
        for pred in [s["preds"][0]] + ([s["preds"][-1]] if len(s["preds"]) > 1 else []):
            row.append(error_map(pred, gt, valid=valid, vmax=emax))
        rows.append(row)
    paths = []
    grid = out_dir / "grid.png"
    save_grid(grid, rows, labels, row_labels=[s["id"] for s in samples])
    paths.append(str(grid))
    for s, row in zip(samples, rows):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in s["id"])
        p = out_dir / f"sample_{safe}.png"
        save_grid(p, [row], labels, row_labels=[s["id"]])
        paths.append(str(p))
    return paths


def _rgb_image(rgb, size):
    """uint8 HxWx3 at ``size`` from a float [0,1] HxWx3 array (grey when the cache has no RGB)."""
    import numpy as np
    from PIL import Image

    h, w = size
    if rgb is None:
        return np.full((h, w, 3), 128, dtype=np.uint8)
    img = np.clip(np.asarray(rgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.shape[:2] != (h, w):
        img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    return img


__all__ = [
    "EvaluationResult",
    "evaluate_cache",
    "run_chain",
    "resize_to",
    "stage_names",
    "load_refiners",
    "cache_attributes",
    "write_visuals",
    "PROTOCOLS",
    "ALIGNMENTS",
    "AVERAGING",
]
