"""``refinedepth train-refiner``: train the cGAN refiner on a cache (SPEC §6)."""

from __future__ import annotations

import json

import click

from refinedepth.config import TrainConfig

from ._common import console, progress_bar, quiet_option
from ._options import config_from_params, config_options


@click.command("train-refiner")
@config_options(TrainConfig)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@quiet_option
def train_refiner(as_json: bool, quiet: bool, **params) -> None:
    """Train the cGAN refiner (stage 2) on a cache of rough/ground-truth pairs (or several).

    Defaults follow the paper: Adam 2e-4 (0.5, 0.999), batch 1, 20 epochs, vanilla cGAN loss +
    100 x L1 over valid pixels, D step then G step. Every epoch scores rough vs refined on --val
    and writes log.jsonl and the last/ and best/ checkpoints. Under torchrun it trains with DDP.

    \b
    Example:
      refinedepth train-refiner --train train.h5 --val test.h5 --preset small --out runs/refiner
      refinedepth train-refiner --train train.h5 --preset paper-nyu --out runs/nyu --resume
      refinedepth train-refiner --train scene1.h5 --train scene2.h5 --val test.h5 --out runs/two
      torchrun --nproc-per-node 2 -m refinedepth train-refiner --train train.h5 --out runs/ddp
    """
    from refinedepth.distributed import dist_info
    from refinedepth.refiner.train import train_refiner as run

    config = config_from_params(TrainConfig, params)
    is_main = dist_info().is_main
    with progress_bar(quiet=quiet or not is_main, unit="step") as progress:
        result = run(config, progress=progress)
    if not is_main:
        return
    summary = {
        "out": str(result.out),
        "best": str(result.best) if result.best else None,
        "last": str(result.last) if result.last else None,
        "steps": result.steps,
        "epochs": round(result.epochs_done, 3),
        "seconds": round(result.seconds, 1),
        "best_value": result.best_value,
        "val": result.val,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    if not quiet:
        _print_summary(summary)


def _print_summary(summary: dict) -> None:
    c = console()
    c.print(f"trained {summary['steps']} steps ({summary['epochs']} epochs) in {summary['seconds']} s", highlight=False)
    val = summary.get("val")
    if val:
        from rich.table import Table

        table = Table(title="validation (last epoch)")
        names = ["abs_rel", "rmse", "log10", "d1", "d2", "d3"]
        table.add_column("stage")
        for n in names:
            table.add_column(n, justify="right")
        for stage in ("rough", "refined"):
            row = val[stage]
            table.add_row(stage, *(f"{row.get(n, float('nan')):.4f}" for n in names))
        c.print(table)
    c.print(f"checkpoints: best {summary['best']}  last {summary['last']}", highlight=False)
