"""Inspecting and verifying caches: :func:`describe_cache` (attributes, datasets, value ranges)
and :func:`verify_cache` (read every sample, report every problem)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import CacheError
from .h5 import READ_ERRORS
from .reader import open_cache


def describe_cache(path: str | os.PathLike, *, value_ranges: bool = True, max_samples: int = 64) -> dict[str, Any]:
    """Attributes, datasets, counts and (from up to ``max_samples`` done samples spread over the
    file) value ranges of a cache, as a JSON-able dict."""
    with open_cache(path, check_shards=False) as r:  # a missing shard is reported by verify_cache
        try:
            done = r.done
        except CacheError as exc:  # a damaged bitmap: describe the rest, verify_cache names it
            done, damage = np.zeros(len(r), dtype=bool), str(exc)
        else:
            damage = None
        report: dict[str, Any] = {
            "path": str(r.path),
            "kind": "cache",
            "samples": len(r),
            "done": None if damage else int(done.sum()),
            "complete": damage is None and bool(done.all()),
            "virtual": r.is_virtual,
            "rough_size": list(r.rough_size),
            "gt_size": list(r.gt_size),
            "file_bytes": r.path.stat().st_size,
            "attributes": {k: v for k, v in r.attrs.items() if k != "config"},
            "config": r.config.to_dict(),
            "datasets": r.datasets(),
        }
        report["checksums"] = checksum_state(report["datasets"])
        if damage:
            report["damaged"] = damage
        if r.is_virtual:  # readers refuse such a file; the description says why
            report["missing_shards"] = r.missing_shards()
        if value_ranges and done.any():
            picks = np.flatnonzero(done)
            if len(picks) > max_samples:
                picks = picks[np.linspace(0, len(picks) - 1, max_samples).round().astype(int)]
            ranges: dict[str, list[float]] = {}
            valid_fraction = []
            unreadable = 0
            for i in picks:
                try:
                    s = r.read(int(i), with_rgb=False)
                except CacheError:  # damaged: verify_cache names it; the description goes on
                    unreadable += 1
                    continue
                _extend_range(ranges, "rough", s["rough"])
                _extend_range(ranges, "gt (valid)", s["gt"][s["valid"]])
                valid_fraction.append(float(s["valid"].mean()))
            report["value_ranges"] = {
                "samples_read": len(picks) - unreadable,
                "samples_damaged": unreadable,
                **{k: [float(v[0]), float(v[1])] for k, v in ranges.items()},
                "valid_fraction_mean": float(np.mean(valid_fraction)) if valid_fraction else 0.0,
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


def checksum_state(datasets: dict[str, dict[str, Any]]) -> str:
    """``"fletcher32"`` when every stored dataset carries HDF5's Fletcher-32 checksum,
    ``"absent"`` when none does (caches made before refinedepth wrote them), else ``"partial"``;
    ``"in shards"`` for a merged file whose arrays are virtual."""
    stored = {n: i for n, i in datasets.items() if not i["virtual"]}
    if any(i["virtual"] for i in datasets.values()):
        return "in shards"
    with_sum = [n for n, i in stored.items() if i["fletcher32"]]
    if stored and len(with_sum) == len(stored):
        return "fletcher32"
    return "partial" if with_sum else "absent"


_PER_KIND = 5  # problem lines listed per kind of problem; the counts are always complete


def verify_cache(path: str | os.PathLike, *, progress=None) -> dict[str, Any]:
    """Read every chunk of every dataset and every done sample, and report what is wrong.

    Problems: datasets missing or of the wrong shape, missing shards, chunks that fail their
    Fletcher-32 checksum or cannot be decoded (the ``damaged`` samples), non-finite rough maps,
    ground truth that is non-finite or negative or has no valid pixel, samples not done. The
    report counts *samples*: ``bad_samples`` lists (up to 1000 of) the indices with any problem,
    ``problem_count`` is the number of such samples plus file-level problems; ``problems`` holds
    up to five lines per kind. ``checksums`` says whether the file's datasets carry Fletcher-32
    checksums (``"absent"`` for caches made before they existed). ``ok`` is True when nothing
    is wrong.
    """
    file_problems: list[str] = []
    lines: dict[str, list[str]] = {}
    counts = {
        "not_done": 0, "damaged": 0, "nonfinite_rough": 0, "nonfinite_gt": 0, "negative_gt": 0,
        "empty_gt": 0,
    }
    bad: set[int] = set()
    seen: set[tuple[str, int]] = set()

    def flag(kind: str, index: int, text: str) -> None:
        if (kind, index) in seen:  # e.g. damaged both in sample_id and in gt: one sample
            return
        seen.add((kind, index))
        counts[kind] += 1
        bad.add(index)
        if counts[kind] <= _PER_KIND:
            lines.setdefault(kind, []).append(text)

    with open_cache(path, check_shards=False) as r:  # missing shards are listed below
        cfg = r.config
        n = len(r)
        expect = {"rough": (n, 1, *cfg.rough_size), "gt": (n, *cfg.gt_size)}
        if cfg.with_rgb:
            expect["rgb"] = (n, *cfg.rgb_size, 3)
        datasets = r.datasets()
        for name, shape in expect.items():
            if name not in datasets:
                file_problems.append(f"dataset {name!r} is missing")
            elif tuple(datasets[name]["shape"]) != shape:
                file_problems.append(f"dataset {name!r} has shape {datasets[name]['shape']}, expected {list(shape)}")
        for s in r.missing_shards():
            file_problems.append(f"shard {s} (relative to {r.path.parent}) is missing")
        stored = [name for name, info in datasets.items() if not info["virtual"] and info["chunks"]]
        checksums = checksum_state(datasets)

        # sample_id and done: read chunk by chunk, so damage is pinned to the samples it covers
        f = r.file
        ids: list[str | None] = [None] * n
        done = np.zeros(n, dtype=bool)
        for name in ("sample_id", "done"):
            ds = f[name]
            step = int(ds.chunks[0]) if ds.chunks else max(n, 1)
            for a in range(0, n, step):
                b = min(n, a + step)
                try:
                    block = ds.asstr()[a:b] if name == "sample_id" else ds[a:b]
                except (*READ_ERRORS, UnicodeDecodeError):
                    for k in range(a, b):
                        flag("damaged", k, f"sample {k}: its {name} entry is damaged (samples {a}..{b - 1} share that chunk)")
                    if name == "done":
                        done[a:b] = True  # unknown: check their data too
                    continue
                if name == "sample_id":
                    ids[a:b] = list(block)
                else:
                    done[a:b] = np.asarray(block).astype(bool)
        for i in range(n):
            label = f"sample {i} ({ids[i]})" if ids[i] else f"sample {i}"
            if not done[i]:
                flag("not_done", i, f"{label} is not done")
            else:
                failed = []
                arrays: dict[str, np.ndarray] = {}
                for name in ("rough", "gt", "valid", "rgb"):
                    if name not in datasets:
                        continue
                    try:
                        arrays[name] = f[name][i]
                    except READ_ERRORS:
                        failed.append(name)
                if failed:
                    flag("damaged", i, f"{label} is damaged: {', '.join(failed)} fails its checksum or cannot be decoded")
                if "rough" in arrays and not np.isfinite(arrays["rough"]).all():
                    flag("nonfinite_rough", i, f"{label}: rough has non-finite values")
                if "gt" in arrays:
                    gt = arrays["gt"]
                    if not np.isfinite(gt).all():
                        flag("nonfinite_gt", i, f"{label}: gt has non-finite values")
                    elif (gt < 0).any():
                        flag("negative_gt", i, f"{label}: gt has negative values (down to {float(gt.min()):.4g})")
                    valid = arrays["valid"].astype(bool) if "valid" in arrays else None
                    if not ((gt > 0) & (valid if valid is not None else True)).any():
                        flag("empty_gt", i, f"{label}: gt has no valid pixel")
            if progress is not None:
                progress(i + 1, n, desc="verify")
        # any other chunked dataset (added by a later tool): every chunk must decode
        for name in stored:
            if name in ("rough", "gt", "valid", "rgb", "sample_id", "done"):
                continue
            try:
                f[name][()]
            except READ_ERRORS:
                file_problems.append(f"dataset {name!r} is damaged (a chunk fails its checksum)")

    problems = list(file_problems)
    for kind, texts in lines.items():
        problems.extend(texts)
        if counts[kind] > _PER_KIND:
            problems.append(f"... {counts[kind]} samples in all: {kind.replace('_', ' ')}")
    ordered = sorted(bad)
    return {
        "path": str(path),
        "samples": n,
        "done": int(done.sum()),
        **counts,
        "checksums": checksums,
        "bad_samples": ordered[:1000],
        "bad_sample_count": len(ordered),
        "problem_count": len(ordered) + len(file_problems),
        "problems": problems,
        "ok": not problems,
    }


__all__ = ["describe_cache", "verify_cache", "checksum_state"]
