"""``refinedepth inspect``: describe (and verify) a cache file or a refiner checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import progress_bar, quiet_option


@click.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--verify", is_flag=True, help="Cache: read every chunk of every dataset (checksums) and every sample; "
              "report damaged samples, non-finite or negative values, samples not done, bad shapes. "
              "Checkpoint: check every file's size and sha256.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@quiet_option
def inspect_cmd(path: str, verify: bool, as_json: bool, quiet: bool) -> None:
    """Describe a cache file (attributes, counts, value ranges), a refiner checkpoint directory or a
    train-backbone run directory.

    With --verify, every chunk of a cache is read and checked against its checksum (a checkpoint's
    or a run's files against their sha256); any problem makes the command exit 1.

    \b
    Example:
      refinedepth inspect train.h5
      refinedepth inspect train.h5 --verify
      refinedepth inspect runs/refiner --json
      refinedepth inspect runs/fcrn --verify
    """
    from refinedepth.errors import CacheError, CheckpointError

    target = Path(path)
    if target.is_dir():  # a train-backbone run or a refiner checkpoint: described, verified alike
        report, check, failure = _directory(target)
        if verify:
            report["verify"] = check()
        _emit(report, as_json)
        if verify and not report["verify"]["ok"]:
            raise CheckpointError(failure(report["verify"]["problems"]))
        return
    if not target.exists():
        raise CacheError(f"{target} does not exist; expected a cache file (.h5) or a refiner checkpoint directory")

    from refinedepth.cache import describe_cache, verify_cache

    report = describe_cache(target)
    if verify:
        with progress_bar(quiet=quiet, unit="samples") as progress:
            report["verify"] = verify_cache(target, progress=progress)
    _emit(report, as_json)
    if verify and not report["verify"]["ok"]:
        v = report["verify"]
        kinds = ", ".join(
            f"{v[k]} {k.replace('_', ' ')}"
            for k in ("damaged", "not_done", "nonfinite_rough", "nonfinite_gt", "negative_gt", "empty_gt")
            if v.get(k)
        )
        only_unfinished = v["bad_sample_count"] == v["not_done"] and v["problem_count"] == v["not_done"]
        advice = (
            "re-run the 'refinedepth cache' command that made it (it resumes)"
            if only_unfinished
            else "re-create it with 'refinedepth cache ... --overwrite'"
        )
        raise CacheError(
            f"{target} failed verification: {_problem_summary(v)}"
            + (f" ({kinds})" if kinds else "")
            + f", first: {v['problems'][0]}; {advice}"
        )


def _problem_summary(v: dict) -> str:
    parts = []
    if v["bad_sample_count"]:
        parts.append(f"{v['bad_sample_count']} of {v['samples']} sample(s) with problems")
    files = v["problem_count"] - v["bad_sample_count"]
    if files:
        parts.append(f"{files} file-level problem(s)")
    return " and ".join(parts) or f"{len(v['problems'])} problem(s)"


def _directory(target: Path):
    """``(report, verify, failure)`` for a directory: its description, the function that verifies
    it and the one-line failure message for its problems."""
    from refinedepth.refiner.checkpoint import describe_checkpoint
    from refinedepth.train_backbone import (
        describe_backbone_run,
        is_backbone_run,
        verify_backbone_run,
    )

    if is_backbone_run(target):
        return (
            describe_backbone_run(target),
            lambda: verify_backbone_run(target),
            lambda problems: f"{target} failed verification: {len(problems)} problem(s), first: {problems[0]}",
        )
    report = describe_checkpoint(target)
    return (
        report,
        lambda: _verify_checkpoint(report),
        lambda problems: (
            f"{report['path']} failed verification: {len(problems)} damaged file(s), first: "
            f"{problems[0]}; copy the checkpoint again or re-train it"
        ),
    )


def _verify_checkpoint(report: dict) -> dict:
    """Size and sha256 of every file a checkpoint's config.json lists."""
    from refinedepth.errors import RefinedepthError
    from refinedepth.refiner.checkpoint import read_config, verify_file

    ckpt = Path(report["path"])
    meta = read_config(ckpt)
    problems = []
    for name in meta.get("files", {}):
        try:
            verify_file(ckpt, name, meta)
        except RefinedepthError as exc:
            problems.append(" ".join(str(exc).split()))
    return {"ok": not problems, "problems": problems}


def _emit(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    if report.get("kind") != "cache":
        for key, value in report.items():
            click.echo(f"{key:<22} {json.dumps(value, default=str) if isinstance(value, dict | list) else value}")
        return
    cfg = report["config"]
    attrs = report["attributes"]
    lines = [
        ("file", f"{report['path']} ({report['file_bytes'] / 1e6:.1f} MB{', virtual: joins shards' if report['virtual'] else ''})"
         + (f"  (MISSING SHARDS: {', '.join(report['missing_shards'])}; readers refuse it)" if report.get("missing_shards") else "")),
        ("samples", f"{report['done']} of {report['samples']} done" + ("" if report["complete"] else "  (INCOMPLETE: still being written, or re-run the same command to finish it)")
         if report["done"] is not None else f"{report['samples']}, done bitmap DAMAGED"),
        ("backbone", f"{cfg['backbone']} {json.dumps(cfg['backbone_config'])}"),
        ("weights", _weights(cfg)),
        ("output kind", cfg["output_kind"]),
        ("dataset", f"{cfg['dataset']} split={cfg['split']}" + (f" limit={cfg['limit']}" if cfg["limit"] else "")
         + (f" {json.dumps(cfg['dataset_options'])}" if cfg.get("dataset_options") else "")),
        ("max depth / protocol", f"{cfg['max_depth']:g} m / {cfg['protocol']}"),
        ("rough", f"{report['rough_size'][0]}x{report['rough_size'][1]} {cfg['rough_dtype']}"),
        ("gt", f"{report['gt_size'][0]}x{report['gt_size'][1]} float32 (valid: {attrs.get('valid_rule', 'gt > 0')})"),
        ("rgb", "stored" if cfg["with_rgb"] else "not stored"),
        ("refiners", ", ".join(r["path"] for r in cfg["refiners"]) or "none"),
        ("compression", str(attrs.get("compression"))),
        ("created", f"{attrs.get('created')} by refinedepth {attrs.get('refinedepth_version')} (schema {attrs.get('schema_version')})"),
    ]
    ranges = report.get("value_ranges")
    if ranges:
        lines.append(("rough range", _range(ranges.get("rough")) + f"  (from {ranges['samples_read']} samples)"))
        lines.append(("gt range (valid)", _range(ranges.get("gt (valid)")) + f"  valid {100 * ranges['valid_fraction_mean']:.1f}%"))
    for name, info in report["datasets"].items():
        lines.append((f"  {name}", f"{info['shape']} {info['dtype']} chunks={info['chunks']} {info['compression'] or ''}"
                      + (" virtual" if info["virtual"] else "")))
    lines.append(("checksums", {
        "fletcher32": "Fletcher-32 on every dataset",
        "absent": "absent (made before refinedepth wrote checksums: damage may go unnoticed)",
        "partial": "on some datasets only",
        "in shards": "in the shard files",
    }.get(report.get("checksums"), str(report.get("checksums")))))
    if "verify" in report:
        v = report["verify"]
        lines.append(("verify", "OK: every chunk and sample read, all finite" if v["ok"] else _problem_summary(v)))
        lines.extend(("  problem", p) for p in v["problems"])
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


def _weights(cfg: dict) -> str:
    """Where the cache's backbone weights came from, as far as the cache's config tells: the
    --weights file; else the model its config names (``model=``, the ``hf`` adapter's way); else
    nothing, for a backbone whose factory declares ``has_weights = False`` (``files``: stored
    predictions); else its initialisation from the recorded seed."""
    if cfg["backbone_weights"]:
        sha = cfg.get("backbone_weights_sha256")
        return cfg["backbone_weights"] + (f" sha256 {sha[:16]}..." if sha else "")
    model = (cfg.get("backbone_config") or {}).get("model")
    if model:
        return f"those of the model {model} (no --weights)"
    if _declares_no_weights(cfg["backbone"]):
        return f"none (backbone {cfg['backbone']!r} has no weights)"
    return f"(initialisation, seed {cfg['seed']})"


def _declares_no_weights(name: str) -> bool:
    """Whether the registered factory of ``name`` says ``has_weights = False`` (importing it; a
    backbone that is not installed, or fails to import, declares nothing)."""
    try:
        from refinedepth.registry import get_factory

        return getattr(get_factory(name), "has_weights", True) is False
    except Exception:
        return False


def _range(pair) -> str:
    return "n/a" if not pair else f"{pair[0]:.4g} .. {pair[1]:.4g}"
