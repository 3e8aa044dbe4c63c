"""Inspecting and verifying caches: :func:`describe_cache` (attributes, datasets, value ranges)
and :func:`verify_cache` (read every sample, report every problem)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .reader import open_cache


def describe_cache(path: str | os.PathLike, *, value_ranges: bool = True, max_samples: int = 64) -> dict[str, Any]:
    """Attributes, datasets, counts and (from up to ``max_samples`` done samples spread over the
    file) value ranges of a cache, as a JSON-able dict."""
    with open_cache(path) as r:
        done = r.done
        report: dict[str, Any] = {
            "path": str(r.path),
            "kind": "cache",
            "samples": len(r),
            "done": int(done.sum()),
            "complete": bool(done.all()),
            "virtual": r.is_virtual,
            "rough_size": list(r.rough_size),
            "gt_size": list(r.gt_size),
            "file_bytes": r.path.stat().st_size,
            "attributes": {k: v for k, v in r.attrs.items() if k != "config"},
            "config": r.config.to_dict(),
            "datasets": r.datasets(),
        }
        if value_ranges and done.any():
            picks = np.flatnonzero(done)
            if len(picks) > max_samples:
                picks = picks[np.linspace(0, len(picks) - 1, max_samples).round().astype(int)]
            ranges: dict[str, list[float]] = {}
            valid_fraction = []
            for i in picks:
                s = r.read(int(i), with_rgb=False)
                _extend_range(ranges, "rough", s["rough"])
                _extend_range(ranges, "gt (valid)", s["gt"][s["valid"]])
                valid_fraction.append(float(s["valid"].mean()))
            report["value_ranges"] = {
                "samples_read": len(picks),
                **{k: [float(v[0]), float(v[1])] for k, v in ranges.items()},
                "valid_fraction_mean": float(np.mean(valid_fraction)),
            }
    return report


def _extend_range(ranges: dict[str, list[float]], key: str, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    if key in ranges:
        ranges[key] = [min(ranges[key][0], lo), max(ranges[key][1], hi)]
    else:
        ranges[key] = [lo, hi]


def verify_cache(path: str | os.PathLike, *, progress=None) -> dict[str, Any]:
    """Read every sample and report problems: samples not done, unreadable chunks (e.g. a missing
    shard), non-finite values, empty ground truth, wrong shapes. ``ok`` is True when none."""
    problems: list[str] = []
    counts = {"not_done": 0, "unreadable": 0, "nonfinite_rough": 0, "nonfinite_gt": 0, "empty_gt": 0}
    with open_cache(path) as r:
        cfg = r.config
        expect = {
            "rough": (len(r), 1, *cfg.rough_size),
            "gt": (len(r), *cfg.gt_size),
        }
        if cfg.with_rgb:
            expect["rgb"] = (len(r), *cfg.rough_size, 3)
        datasets = r.datasets()
        for name, shape in expect.items():
            if name not in datasets:
                problems.append(f"dataset {name!r} is missing")
            elif tuple(datasets[name]["shape"]) != shape:
                problems.append(f"dataset {name!r} has shape {datasets[name]['shape']}, expected {list(shape)}")
        if r.is_virtual:
            for s in json.loads(r.attrs.get("shards", "[]")):
                if not (r.path.parent / s).exists():
                    problems.append(f"shard {s} (relative to {r.path.parent}) is missing")
        done = r.done
        ids = r.sample_ids()
        n = len(r)
        for i in range(n):
            if not done[i]:
                counts["not_done"] += 1
                if counts["not_done"] <= 5:
                    problems.append(f"sample {i} is not done")
            else:
                try:
                    s = r.read(i)
                except (OSError, RuntimeError, KeyError) as exc:
                    counts["unreadable"] += 1
                    if counts["unreadable"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}) cannot be read: {' '.join(str(exc).split())}")
                    continue
                if not np.isfinite(s["rough"]).all():
                    counts["nonfinite_rough"] += 1
                    if counts["nonfinite_rough"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}): rough has non-finite values")
                if not np.isfinite(s["gt"]).all():
                    counts["nonfinite_gt"] += 1
                    if counts["nonfinite_gt"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}): gt has non-finite values")
                if not s["valid"].any():
                    counts["empty_gt"] += 1
                    if counts["empty_gt"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}): gt has no valid pixel")
            if progress is not None:
                progress(i + 1, n, desc="verify")
        for key, count in counts.items():
            if count > 5:
                problems.append(f"... {count} samples in all: {key.replace('_', ' ')}")
    return {"path": str(path), "samples": n, "done": int(done.sum()), **counts, "problems": problems, "ok": not problems}


__all__ = ["describe_cache", "verify_cache"]
