"""Score a cache's rough maps and, stage by stage, what trained refiners make of them (SPEC §7).

``evaluate_cache`` streams over an HDF5 cache (SPEC §5) in batches. For every batch it runs the
:class:`~refinedepth.refiner.chain.RefinerChain` ``rough -> refiner 1 -> refiner 2 -> ...`` and
scores every stage with one :class:`~refinedepth.scoring.Scorer` — the scoring path the refiner's
training validation uses too: each prediction is resized to the ground truth's resolution (the
evaluation resolution, e.g. 480x640 for NYU), turned into metric depth by its kind (the rough
stage has the cache's ``output_kind``; refined stages are metric) and aligned as asked.
Accumulators hold sufficient statistics, the per-sample CSV is written row by row and only the few
samples drawn as pictures are kept, so memory does not grow with the number of samples.

Chaining refiners is the paper's three-stage ablation (Tables 3 and 4).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import AVERAGING as _AVERAGING
from .config import PROTOCOLS
from .errors import CacheError, ConfigError
from .progress import ProgressCallback
from .refiner.chain import stage_names
from .scoring import ALIGNMENTS, resolve_align

AVERAGING = (*_AVERAGING, "pooled")  # "pooled", the metrics' name, is accepted for "pixel"


@dataclass
class EvaluationResult:
    """What :func:`evaluate_cache` measured: one ``(stage, metrics)`` row per stage.

    ``alignments`` says, per stage, the alignment used (``align="auto"`` resolved by kind)."""

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
    alignments: dict[str, str] = field(default_factory=dict)
    #: ``{other stage: {metric: share of images on which the last stage is better}}``
    win_rates: dict[str, dict[str, float | None]] = field(default_factory=dict)
    baselines: dict[str, Any] | None = None
    detail_sigma: float | None = None
    detail_scale: str = "global"
    notes: list[str] = field(default_factory=list)

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

        align = self.align
        aligned = [f"{s} {a}" for s, a in self.alignments.items() if a and a != "none"]
        if self.align == "auto":
            align = f"auto ({', '.join(aligned)})" if aligned else "auto (none)"
        gt = self.attrs.get("ground_truth")
        title = (
            f"{Path(self.cache).name}: {self.count} samples, protocol {self.protocol}, "
            + (f"ground truth {gt}, " if gt else "")
            + f"align {align}, "
            + ("pooled over all pixels (boundary columns: mean over images)" if self.averaging == "pooled"
               else "mean of per-image metrics")
        )
        lines = [format_table(self.rows, title=title), *self.summary_lines()]
        return "\n".join(lines)

    def summary_lines(self) -> list[str]:
        """One line per comparison: on what share of the images the last stage beats the rough
        row and each baseline row (abs_rel), and whether it beats the two-number calibrations."""
        from .baselines import SCALE_ROW, SCALE_SHIFT_ROW

        lines = list(self.notes)
        if len(self.rows) < 2 or not self.win_rates:
            return lines
        last = self.rows[-1][0]
        for other, rates in self.win_rates.items():
            rate = rates.get("abs_rel")
            if rate is not None:
                lines.append(f"{last} is better than {other} on {100 * rate:.0f}% of the images (abs_rel)")
        metrics = dict(self.rows)
        beaten = [
            b for b in (SCALE_ROW, SCALE_SHIFT_ROW)
            if b in metrics and not metrics[last].get("abs_rel", math.inf) < metrics[b].get("abs_rel", -math.inf)
        ]
        if beaten:
            lines.append(
                f"{last} does not beat {' or '.join(beaten)} on abs_rel: the refiner is no better than a "
                "calibration with one or two numbers fitted on its training pairs"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "refiners": list(self.refiners),
            "protocol": self.protocol,
            "align": self.align,
            "alignments": dict(self.alignments),
            "averaging": "pixel" if self.averaging == "pooled" else self.averaging,  # as --averaging takes it
            "count": self.count,
            "stages": [{"name": name, "metrics": m} for name, m in self.rows],
            "cache_attrs": {k: v for k, v in self.attrs.items() if _jsonable(v)},
            "visuals": list(self.visuals),
            "csv": self.csv_path,
            "win_rates": {k: dict(v) for k, v in self.win_rates.items()},
            "baselines": self.baselines,
            "detail_sigma": self.detail_sigma,
            "detail_scale": self.detail_scale,
            "notes": list(self.notes),
        }


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, tuple, dict)) or value is None


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}: expected one of {', '.join(choices)}")
    return value


def evaluate_cache(
    cache: str | os.PathLike,
    refiners: Sequence[str | os.PathLike] = (),
    *,
    protocol: str | None = None,
    align: str = "auto",
    averaging: str = "image",
    batch_size: int = 4,
    device: str = "auto",
    limit: int | None = None,
    csv_path: str | os.PathLike | None = None,
    visuals_dir: str | os.PathLike | None = None,
    num_visuals: int = 4,
    workers: int = 0,
    precision: str = "fp32",
    boundary: bool = True,
    detail_sigma: float | None = None,
    detail_scale: str = "global",
    any_backbone: bool = False,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Evaluate the rough maps of ``cache`` and, for each refiner in ``refiners``, the chain so far.

    Args:
        cache: an HDF5 cache written by ``refinedepth cache``.
        refiners: refiner checkpoint directories, applied in order (several = chained stages).
        protocol: ``nyu``, ``make3d``, ``kitti`` or ``none``; default: the cache's own.
        align: ``auto`` (default: scale and shift for relative/disparity stages, fitted in inverse
            depth for disparity, none for metric ones), ``none`` (metric caches only), ``median`` or ``lstsq`` (scale and shift; for
            disparity fitted in inverse depth) for every stage; see :mod:`refinedepth.scoring`.
        averaging: ``image`` (mean of per-image metrics) or ``pixel`` (= ``pooled``: over all
            pixels of all images, as FCRN's MATLAB code).
        csv_path: write per-sample metrics there (one row per sample and stage).
        visuals_dir: write picture grids (RGB | rough | refined | GT | errors) for
            ``num_visuals`` samples spread evenly over the cache; maps are shown as scored
            (metric depth, aligned).
        precision: the refiners' inference precision, ``fp32`` or ``bf16`` (autocast).
        detail_sigma: use the refiners detail-only: keep their correction finer than this many
            pixels, the larger scales from ``rough x scale``
            (:meth:`~refinedepth.refiner.api.Refiner.set_detail`); the rows say so.
        detail_scale: with ``detail_sigma``, ``"image"`` keeps each refiner's per-image scale
            (the geometric mean of refined / ``rough x scale`` over the image); ``"global"``
            takes it from ``rough x scale``.
        boundary: also score the boundary metrics (``dbe_acc``, ``dbe_comp``, ``boundary_f1``,
            :mod:`refinedepth.boundary`); without scikit-image/scipy they are left out with a note.
        any_backbone: score refiners on a cache of another backbone than the one the first was
            trained on (refused otherwise, :meth:`RefinerChain.check_backbone`).
        progress: ``progress(done, total, desc="evaluate")`` after each batch.

    With refiners, the first one's stored baselines (a global scale and scale + shift fitted on
    its training pairs, :mod:`refinedepth.baselines`) add the rows ``rough x scale`` and
    ``rough x (scale, shift)`` after ``rough``; ``win_rates`` gives, for the rough and baseline
    rows, the share of images on which the last stage is better (abs_rel, rmse, silog, dbe_acc).
    """
    from .cache import CacheDataset
    from .device import resolve_device
    from .refiner.chain import RefinerChain
    from .scoring import Scorer, score_dataset

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
    try:
        resolve_align(align, output_kind)
    except ConfigError:
        raise ConfigError(
            f"cache {cache!r} holds {output_kind} rough maps, which have no metric scale: --align none "
            "cannot score them; pass --align auto (lstsq for them), lstsq or median"
        ) from None

    dev = resolve_device(device)
    chain = RefinerChain.load(refiners, dev, precision=precision, detail_sigma=detail_sigma,
                             detail_scale=detail_scale)
    chain.check_backbone(attrs.get("backbone"), f"cache {cache!r} holds rough maps of backbone",
                         any_backbone=any_backbone)
    has_rgb = bool(attrs.get("has_rgb", False))
    for path, refiner in zip(chain.paths, chain.refiners):
        if refiner.needs_rgb and not has_rgb:
            raise CacheError(
                f"cache {cache!r} has no rgb dataset but refiner {path!r} {refiner.rgb_use}; re-create the "
                "cache with 'refinedepth cache ... --with-rgb'"
            )
    dataset = CacheDataset(cache, with_rgb=has_rgb)
    total = len(dataset) if limit is None else min(len(dataset), int(limit))
    if total == 0:
        raise CacheError(f"cache {cache!r} holds no finished samples: re-run the 'refinedepth cache' command")

    from . import boundary as boundary_module
    from .baselines import SCALE_ROW, SCALE_SHIFT_ROW, Baselines, baseline_depth

    notes: list[str] = []
    if boundary and not boundary_module.available():
        boundary = False
        notes.append("boundary metrics left out: install scikit-image and scipy (pip install 'refinedepth[boundary]')")
    baselines = None
    if len(chain):
        stored = chain.refiners[0].meta.get("baselines")
        if stored:
            baselines = Baselines.from_dict(stored)
        else:
            notes.append(f"{chain.paths[0]} stores no baselines (trained before they existed): no baseline rows")
    chain_names = chain.stage_names
    names = [chain_names[0], *([SCALE_ROW, SCALE_SHIFT_ROW] if baselines else []), *chain_names[1:]]
    shown_stages = [i for i, n in enumerate(names) if n not in (SCALE_ROW, SCALE_SHIFT_ROW)]
    scorer = Scorer(names, protocol=protocol, align=align, averaging=averaging, boundary=boundary,
                    max_depth=attrs.get("max_depth"))
    compared = ("abs_rel", "rmse", "silog", "dbe_acc")
    per_image_values: dict[str, dict[str, list[float]]] = {n: {k: [] for k in compared} for n in names}

    def run_stages(rough, rgb, kind, out_size=None):
        preds = chain(rough, rgb, kind=kind, out_size=out_size)
        if baselines is None:
            return preds
        depth = baseline_depth(rough, kind, out_size)  # at the gt's size, as fitted
        return [preds[0], baselines.apply(depth, "scale"), baselines.apply(depth, "scale_shift"), *preds[1:]]
    picks = set(_visual_indices(total, num_visuals)) if visuals_dir is not None else set()
    kept: list[dict[str, Any]] = []
    state = {"done": 0, "writer": None}

    csv_file = None
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        csv_file = open(csv_path, "w", newline="")  # noqa: SIM115 - closed in finally

    def on_batch(batch: dict[str, Any], preds: list[Any], per_image: list[dict[str, Any]]) -> None:
        n = int(batch["gt"].shape[0])
        for name, metrics in zip(names, per_image):
            for k in compared:
                if k in metrics:
                    per_image_values[name][k].extend(float(v) for v in metrics[k])
        for b in range(n):
            index = int(batch["index"][b])
            sample_id = str(batch["id"][b])
            if csv_file is not None:
                for name, metrics in zip(names, per_image):
                    row = {k: v[b] for k, v in metrics.items()}
                    if state["writer"] is None:
                        state["writer"] = csv.DictWriter(csv_file, fieldnames=["index", "id", "stage", *row])
                        state["writer"].writeheader()
                    state["writer"].writerow({"index": index, "id": sample_id, "stage": name, **_floats(row)})
            if state["done"] + b in picks:
                gt, valid = batch["gt"][b : b + 1], batch["valid"][b : b + 1]
                shown = [
                    scorer.convert(
                        preds[i][b : b + 1].float().cpu(), gt, kind=output_kind if i == 0 else "metric", valid=valid
                    )[0][0]
                    for i in shown_stages
                ]
                g = gt[0, 0].double().numpy()
                ok = valid[0, 0].numpy() & np.isfinite(g) & (g > 0)
                kept.append(
                    {
                        "id": sample_id,
                        "rgb": batch["rgb"][b].permute(1, 2, 0).numpy() if "rgb" in batch else None,
                        "preds": shown,
                        "gt": np.where(ok, g, 0.0),
                    }
                )
        state["done"] += n

    try:
        done = score_dataset(
            dataset, run_stages, scorer, kind=output_kind, device=dev, batch_size=batch_size, limit=total,
            workers=workers, progress=progress, desc="evaluate", on_batch=on_batch,
        )
    finally:
        if csv_file is not None:
            csv_file.close()

    rows = [(name, _floats(m)) for name, m in scorer.compute().items()]
    visuals: list[str] = []
    if visuals_dir is not None and kept:
        visuals = write_visuals(visuals_dir, kept, [names[i] for i in shown_stages])
    win_rates: dict[str, dict[str, float | None]] = {}
    if len(names) > 1:
        last = per_image_values[names[-1]]
        for other in names[:-1]:
            if other.startswith("+ "):  # an earlier refined stage of the chain
                continue
            win_rates[other] = {k: _win_rate(last[k], per_image_values[other][k], k) for k in compared}
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
        alignments={k: v for k, v in scorer.alignments.items() if v is not None},
        win_rates=win_rates,
        baselines=baselines.to_dict() if baselines else None,
        detail_sigma=detail_sigma,
        detail_scale=detail_scale,  # "image" without detail_sigma was refused by the chain
        notes=notes,
    )


def _win_rate(mine: list[float], other: list[float], metric: str) -> float | None:
    """:func:`refinedepth.report.win_rate` of the last stage against ``other`` (``None`` where no
    image has both values, for the JSON)."""
    from .report import win_rate

    share = win_rate(mine, other, metric)
    return None if math.isnan(share) else share


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
    from .geometry import resize_rgb

    h, w = size
    if rgb is None:
        return np.full((h, w, 3), 128, dtype=np.uint8)
    img = np.clip(np.asarray(rgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return resize_rgb(img, (h, w))


__all__ = [
    "EvaluationResult",
    "evaluate_cache",
    "stage_names",
    "cache_attributes",
    "write_visuals",
    "PROTOCOLS",
    "ALIGNMENTS",
    "AVERAGING",
]
