"""``refinedepth inspect``: describe (and verify) a cache file or a refiner checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import console, progress_bar, quiet_option


@click.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--verify", is_flag=True, help="Read every sample; report non-finite values, missing samples, bad shapes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@quiet_option
def inspect_cmd(path: str, verify: bool, as_json: bool, quiet: bool) -> None:
    """Describe a cache file (attributes, counts, value ranges) or a refiner checkpoint directory.

    With --verify, every sample of a cache is read; any problem makes the command exit 1.

    \b
    Example:
      refinedepth inspect train.h5
      refinedepth inspect train.h5 --verify
      refinedepth inspect runs/refiner --json
    """
    from refinedepth.errors import CacheError, CheckpointError

    target = Path(path)
    if target.is_dir():
        try:
            from refinedepth.refiner.checkpoint import describe_checkpoint
        except ImportError:
            raise CheckpointError(
                f"{target} is a directory; describing refiner checkpoints needs refinedepth.refiner.checkpoint"
            ) from None
        report = describe_checkpoint(target)
        if verify:
            console().print("note: --verify applies to cache files; checkpoint shown as is", highlight=False, soft_wrap=True)
        _emit(report, as_json)
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
        problems = report["verify"]["problems"]
        raise CacheError(
            f"{target} failed verification with {len(problems)} problem(s), first: {problems[0]}; "
            "re-run the 'refinedepth cache' command that made it (it resumes) or recreate it with --overwrite"
        )


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
        ("file", f"{report['path']} ({report['file_bytes'] / 1e6:.1f} MB{', virtual: joins shards' if report['virtual'] else ''})"),
        ("samples", f"{report['done']} of {report['samples']} done" + ("" if report["complete"] else "  (INCOMPLETE: re-run the same command)")),
        ("backbone", f"{cfg['backbone']} {json.dumps(cfg['backbone_config'])}"),
        ("weights", f"{cfg['backbone_weights'] or '(initialisation, seed ' + str(cfg['seed']) + ')'}"
         + (f" sha256 {cfg['backbone_weights_sha256'][:16]}..." if cfg["backbone_weights_sha256"] else "")),
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
    if "verify" in report:
        v = report["verify"]
        lines.append(("verify", "OK: every sample read, all finite" if v["ok"] else f"{len(v['problems'])} problem(s)"))
        lines.extend(("  problem", p) for p in v["problems"])
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


def _range(pair) -> str:
    return "n/a" if not pair else f"{pair[0]:.4g} .. {pair[1]:.4g}"
