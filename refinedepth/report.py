"""Tables and reports of evaluation results, laid out like the paper's tables.

The paper (Sun et al., Tables 1-4) shows one row per model with the columns rel, rms, log10 and
δ<1.25^k. Here a row is a *stage* of the pipeline: the backbone's ``rough`` maps, then each refiner
applied in turn (``+ refiner``, ``+ refiner + refiner``: the paper's three-stage ablation).
Everything here is plain text / Markdown: no rich, no click, no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# (key in a metrics dict, column header, lower_is_better)
TABLE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("abs_rel", "rel", True),
    ("sq_rel", "sq_rel", True),
    ("rmse", "rms", True),
    ("rmse_log", "rms_log", True),
    ("log10", "log10", True),
    ("silog", "silog", True),
    ("d1", "δ<1.25", False),
    ("d2", "δ<1.25²", False),
    ("d3", "δ<1.25³", False),
)

#: shown after TABLE_COLUMNS when the rows have them (refinedepth.boundary)
BOUNDARY_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("dbe_acc", "dbe_acc", True),
    ("dbe_comp", "dbe_comp", True),
    ("boundary_f1", "bF1", False),
)


def columns_for(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[tuple[str, str, bool], ...]:
    """The table's columns: the standard metrics, plus the boundary metrics any row has."""
    extra = tuple(c for c in BOUNDARY_COLUMNS if any(c[0] in m for _, m in rows))
    return TABLE_COLUMNS + extra


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "nan"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.3f}"


def format_table(
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    columns: Sequence[tuple[str, str, bool]] | None = None,
    title: str | None = None,
) -> str:
    """Plain-text table: one line per ``(stage_name, metrics)`` row, aligned columns (default:
    :func:`columns_for` the rows).

    The best value of each column is marked with ``*`` when there are several rows.
    """
    columns = columns_for(rows) if columns is None else columns
    headers = ["stage"] + [header for _, header, _ in columns]
    best = _best_rows(rows, columns)
    body = []
    for r, (name, metrics) in enumerate(rows):
        cells = [name]
        for key, _, _ in columns:
            mark = "*" if len(rows) > 1 and best.get(key) == r else " "
            cells.append(_fmt(metrics.get(key)) + mark)
        body.append(cells)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    lines.append("  ".join("-" * w for w in widths))
    for cells in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines)


def markdown_table(
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    columns: Sequence[tuple[str, str, bool]] | None = None,
) -> str:
    """The same table in Markdown; the best value of each column in bold."""
    columns = columns_for(rows) if columns is None else columns
    best = _best_rows(rows, columns)
    arrows = {True: "↓", False: "↑"}
    lines = [
        "| stage | " + " | ".join(f"{header} {arrows[low]}" for _, header, low in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for r, (name, metrics) in enumerate(rows):
        cells = []
        for key, _, _ in columns:
            text = _fmt(metrics.get(key))
            cells.append(f"**{text}**" if len(rows) > 1 and best.get(key) == r else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_rows(rows, columns) -> dict[str, int]:
    best: dict[str, int] = {}
    for key, _, lower in columns:
        values = []
        for r, (_, metrics) in enumerate(rows):
            v = metrics.get(key)
            if v is None or v != v:
                continue
            values.append((float(v) if lower else -float(v), r))
        if values:
            best[key] = min(values)[1]
    return best


def _higher_is_better(metric: str) -> bool:
    """The direction of ``metric`` from :data:`refinedepth.metrics.HIGHER_IS_BETTER` and
    :data:`refinedepth.boundary.BOUNDARY_HIGHER_IS_BETTER`; ValueError for a name neither module has."""
    from .boundary import BOUNDARY_HIGHER_IS_BETTER, BOUNDARY_METRIC_NAMES
    from .metrics import HIGHER_IS_BETTER, METRIC_NAMES

    if metric not in METRIC_NAMES and metric not in BOUNDARY_METRIC_NAMES:
        known = ", ".join((*METRIC_NAMES, *BOUNDARY_METRIC_NAMES))
        raise ValueError(f"unknown metric {metric!r}: no direction (higher or lower is better); known: {known}")
    return metric in HIGHER_IS_BETTER or metric in BOUNDARY_HIGHER_IS_BETTER


def improvement(rough: Mapping[str, Any], refined: Mapping[str, Any], keys=("abs_rel", "rmse", "d1")) -> dict[str, bool]:
    """For each key, whether ``refined`` is better than ``rough``: strictly lower for an error, strictly
    higher for d1-d3 and boundary_f1 (the direction of :func:`win_rate`; ValueError for an unknown key)."""
    out = {}
    for key in keys:
        a, b = float(rough[key]), float(refined[key])
        out[key] = b > a if _higher_is_better(key) else b < a
    return out


def win_rate(refined, baselines, metric: str) -> float:
    """Paired win rate: the share of images on which ``refined`` is better than the baseline, or than
    every one of several baselines at once, on ``metric``.

    ``refined``: one value of ``metric`` per image (a sequence or 1-D array; ``None`` counts as NaN).
    ``baselines``: the baseline's values for the same images in the same order, or a list of several
    such sequences (a 2-D input: one row per baseline) for "better than all of them at once".

    The rule, the same everywhere it is used:

    * **direction** from the metric's name: higher is better for ``d1``, ``d2``, ``d3``
      (:data:`refinedepth.metrics.HIGHER_IS_BETTER`) and ``boundary_f1``
      (:data:`refinedepth.boundary.BOUNDARY_HIGHER_IS_BETTER`), lower for every other name of
      :data:`~refinedepth.metrics.METRIC_NAMES` and :data:`~refinedepth.boundary.BOUNDARY_METRIC_NAMES`;
      any other name is a ValueError naming it;
    * **a win is strict**: a tie is not a win (but the image counts in the denominator);
    * **undefined images are left out**: an image where the refined value or any baseline's value is
      NaN or infinite (e.g. dbe_acc on a frame without ground-truth edges) is in neither the numerator
      nor the denominator;
    * **nothing left** (no images, or none with every value finite): NaN.

    Different lengths are a ValueError. Returns a float in ``[0, 1]`` or NaN.
    """
    import numpy as np

    higher = _higher_is_better(metric)
    try:
        mine = np.asarray(refined, dtype=np.float64)
        theirs = np.asarray(baselines, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # ragged or not numbers
        raise ValueError(
            f"win_rate({metric!r}): the values are not per-image numbers of equal length ({exc})"
        ) from None
    if mine.ndim != 1:
        raise ValueError(
            f"win_rate({metric!r}): the refined values must be one per image (1-D), got shape {mine.shape}"
        )
    if theirs.ndim == 1:
        theirs = theirs[None]
    if theirs.ndim != 2 or theirs.shape[0] == 0 or theirs.shape[1] != mine.shape[0]:
        raise ValueError(
            f"win_rate({metric!r}): expected the baselines' values for the same {mine.shape[0]} images "
            f"(one sequence, or one per baseline), got shape {np.shape(baselines)}"
        )
    defined = np.isfinite(mine) & np.isfinite(theirs).all(axis=0)
    if not defined.any():
        return float("nan")
    mine, theirs = mine[defined], theirs[:, defined]
    wins = (mine > theirs) if higher else (mine < theirs)
    return float(wins.all(axis=0).mean())


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(obj: Any):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def write_markdown_report(
    path: str | os.PathLike,
    *,
    title: str,
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    intro: str = "",
    settings: Mapping[str, Any] | None = None,
    images: Sequence[tuple[str, str | os.PathLike]] = (),
    notes: str = "",
) -> Path:
    """Write a Markdown report: a title, an introduction, the table, a settings list, pictures.

    ``images`` are ``(caption, path)`` pairs; paths are written relative to the report's folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", ""]
    if intro:
        parts += [intro.strip(), ""]
    parts += [markdown_table(rows), ""]
    if settings:
        parts += ["## Settings", ""]
        parts += [f"- **{key}**: {_setting(value)}" for key, value in settings.items()]
        parts.append("")
    if images:
        parts += ["## Pictures", ""]
        for caption, image in images:
            rel = os.path.relpath(Path(image).resolve(), path.parent.resolve())
            parts += [f"{caption}", "", f"![{caption}]({Path(rel).as_posix()})", ""]
    if notes:
        parts += ["## Notes", "", notes.strip(), ""]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, path)
    return path


def _setting(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return "`" + json.dumps(value, default=_json_default) + "`"
    return str(value)


__all__ = [
    "TABLE_COLUMNS",
    "format_table",
    "markdown_table",
    "improvement",
    "win_rate",
    "write_json",
    "write_markdown_report",
]
