"""``refinedepth backbones list|info|check``."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from refinedepth.config import PredictConfig

from ._options import field_option


def _finite(value):
    """``value`` with every non-finite float replaced by ``"inf"``, ``"-inf"`` or ``"nan"``
    (what ``float()`` reads back), so that :func:`_dumps` writes strict JSON."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dumps(value) -> str:
    """Strict JSON (``allow_nan=False``: no bare ``Infinity`` / ``NaN``, which JSON parsers
    other than Python's refuse); non-finite numbers become strings, see :func:`_finite`."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


@click.group()
def backbones() -> None:
    """List, describe and check first-stage backbones (bundled and plugins).

    \b
    Example:
      refinedepth backbones list
      refinedepth backbones info fcrn
      refinedepth backbones check fcrn --backbone-arg encoder=resnet18
    """


def _check_imports(targets: dict[str, str]) -> dict[str, str]:
    """Import each plugin module in a child process; return ``{name: error}`` for failures.

    Plugin code never runs in this process while listing, so a plugin that crashes, hangs or
    pollutes global state on import cannot break the CLI.
    """
    if not targets:
        return {}
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        "for name, target in json.loads(sys.argv[1]).items():\n"
        "    mod, _, attr = target.partition(':')\n"
        "    try:\n"
        "        obj = importlib.import_module(mod)\n"
        "        for part in attr.split('.') if attr else []:\n"
        "            obj = getattr(obj, part)\n"
        "    except BaseException as exc:\n"
        "        out[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(out))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(targets)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {
            n: f"import check failed: {proc.stderr.strip().splitlines()[-1:]}" for n in targets
        }
    except (subprocess.TimeoutExpired, ValueError) as exc:
        return {n: f"import check failed: {exc}" for n in targets}


@backbones.command("list")
@click.argument("pattern", required=False)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Test-import third-party plugins in a child process and warn about broken ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(pattern: str | None, check: bool, as_json: bool) -> None:
    """List registered backbones, optionally filtered by a shell PATTERN (e.g. 'fc*').

    Bundled backbones and plugins are found through the 'refinedepth.backbones' entry-point
    group without importing them.

    \b
    Example:
      refinedepth backbones list
      refinedepth backbones list 'f*' --json
    """
    from refinedepth.registry import backbone_source, list_backbones

    names = list_backbones(pattern)
    sources = {n: backbone_source(n) for n in names}
    third_party = {
        n: target for n, (dist, target) in sources.items() if dist not in ("refinedepth", "<runtime>")
    }
    errors = _check_imports(third_party) if check else {}
    for name, err in errors.items():
        click.secho(
            f"warning: plugin backbone {name!r} from distribution {sources[name][0]!r} fails to "
            f"import ({' '.join(err.split())}); it is listed but cannot be used",
            fg="yellow",
            err=True,
        )
    rows = [
        {"name": n, "distribution": sources[n][0], "target": sources[n][1], "ok": n not in errors}
        for n in names
    ]
    if as_json:
        click.echo(_dumps(rows))
        return
    for row in rows:
        status = "" if row["ok"] else "  (broken: see warning)"
        click.echo(f"{row['name']:<20} {row['distribution']:<24} {row['target']}{status}")


@backbones.command("info")
@click.argument("name")
@field_option(PredictConfig, "backbone_args")
def info_cmd(name: str, backbone_args: dict) -> None:
    """Show a backbone's BackboneInfo (output kind, sizes, value range, config) as JSON.

    The output is strict JSON: infinite and NaN numbers (e.g. an unbounded value range) are
    written as the strings "inf", "-inf" and "nan".

    \b
    Example:
      refinedepth backbones info fcrn
      refinedepth backbones info fcrn --backbone-arg encoder=resnet18
    """
    from refinedepth.registry import backbone_info, backbone_source, get_factory

    dist, target = backbone_source(name)
    options = backbone_args
    factory = get_factory(name)
    info = backbone_info(name, **options)
    doc = (factory.__doc__ or "").strip().splitlines()
    payload = {"distribution": dist, "target": target, "summary": doc[0] if doc else "", **info.to_dict()}
    click.echo(_dumps(payload))


@backbones.command("check")
@click.argument("name")
@field_option(PredictConfig, "weights")
@field_option(PredictConfig, "backbone_args")
def check_cmd(name: str, weights: str | None, backbone_args: dict) -> None:
    """Build backbone NAME and run it once on a random batch to check the contract.

    Checks the output is [B,1,h,w], finite, and that its BackboneInfo is complete. Prints the
    report as strict JSON: infinite and NaN numbers are written as the strings "inf", "-inf"
    and "nan". An output outside the declared value_range is listed under "warnings" (untrained
    weights may go anywhere) and does not fail the check.

    \b
    Example:
      refinedepth backbones check fcrn --backbone-arg encoder=resnet18
    """
    from refinedepth.contract import check_backbone

    options = backbone_args
    report = check_backbone(name, weights=weights, **options)
    click.echo(_dumps(report))
