"""``refinedepth demo``: the whole two-stage pipeline on embedded synthetic data (SPEC §9)."""

from __future__ import annotations

import click

from refinedepth.config import DEVICE_HELP, SYNTHETIC_FAMILIES

from ._common import console, progress_bar, quiet_option


def _default(name: str):
    """``DemoConfig``'s default (demo.py imports nothing heavy), so the command line has none of
    its own."""
    from refinedepth.demo import DemoConfig

    return DemoConfig.__dataclass_fields__[name].default


@click.command("demo")
@click.option("--out", "out_dir", default=_default("out"), show_default=True, type=click.Path(file_okay=False), help="Output folder (caches, runs, report.md).")
@click.option("--quick", is_flag=True, help="A miniature run (seconds; numbers meaningless), for smoke tests.")
@click.option("--family", type=click.Choice(SYNTHETIC_FAMILIES), default=_default("family"), show_default=True, help="Synthetic scene family.")
@click.option("--seed", type=int, default=_default("seed"), show_default=True, help="Seed of every random choice.")
@click.option("--device", default=_default("device"), show_default=True, help=DEVICE_HELP)
@quiet_option
def demo(out_dir: str, quick: bool, family: str, seed: int, device: str, quiet: bool) -> None:
    """Train a small FCRN, cache, train the refiner, evaluate rough vs refined, write a report.

    Everything runs on procedurally rendered scenes (nothing is downloaded), in 1.5 to 5.5 minutes
    on two idle CPU cores, by CPU (docs/demo.md). The report (report.md: the table and picture grids) goes to --out; its path is
    printed last, on stdout.

    \b
    Example:
      refinedepth demo
      refinedepth demo --out /tmp/demo --quick
    """
    from refinedepth.demo import DemoConfig, run_demo

    options = dict(out=out_dir, family=family, seed=seed, device=device)
    config = DemoConfig.quick(**options) if quick else DemoConfig.full(**options)
    with progress_bar(quiet) as progress:
        result = run_demo(config, progress=progress)
    click.echo(result.evaluation.table(), err=True)
    verdict = "refined beats rough" if result.refined_beats_rough else "refined does NOT beat rough"
    detail = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in result.improved.items())
    console().print(f"{verdict} on the held-out split ({detail}); report:", highlight=False)
    click.echo(str(result.report))
