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


def improvement(rough: Mapping[str, Any], refined: Mapping[str, Any], keys=("abs_rel", "rmse", "d1")) -> dict[str, bool]:
    """For each key, whether ``refined`` is better than ``rough`` (lower errors, higher δ)."""
    lower = {key: low for key, _, low in TABLE_COLUMNS}
    out = {}
    for key in keys:
        a, b = float(rough[key]), float(refined[key])
        out[key] = b < a if lower.get(key, True) else b > a
    return out


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
    "write_json",
    "write_markdown_report",
]
