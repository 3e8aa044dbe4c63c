"""``refinedepth train-backbone``: stage-1 training (FCRN with berHu, paper §4.1)."""

from __future__ import annotations

import json

import click

from refinedepth.config import TrainBackboneConfig

from ._common import console, progress_bar, quiet_option
from ._options import config_from_params, config_options


@click.command("train-backbone")
@config_options(TrainBackboneConfig)
@click.option("--resume", is_flag=True, help="Continue the run in --out after its last completed epoch.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if --out holds a run (kept in OUT/.replaced/ until the new run's first checkpoint; an interrupted start gives it back).")
@quiet_option
def train_backbone(resume: bool, overwrite: bool, quiet: bool, **params) -> None:
    """Train a first-stage backbone (default: fcrn) with the berHu loss; writes safetensors.

    Defaults are the paper's stage-1 recipe (SGD momentum 0.9, lr 1e-2 divided by 10 every 6
    epochs, batch 16, 20 epochs). Validation reports abs_rel, rmse and delta<1.25 each epoch.
    Under torchrun it trains with DDP. Load the result with --backbone fcrn --weights OUT/backbone.safetensors
    (the architecture options are read from the file).

    \b
    Example:
      refinedepth train-backbone fcrn --dataset nyu:nyu_depth_v2_labeled.mat --out runs/fcrn
      refinedepth train-backbone fcrn --dataset synthetic --dataset-arg size=[120,160] \\
          --backbone-arg encoder=resnet18 --backbone-arg input_size=[64,96] \\
          --optimizer adam --lr 1e-3 --epochs 8 --limit 800 --out runs/fcrn-small
      refinedepth train-backbone fcrn --dataset synthetic --out runs/fcrn-small --epochs 12 --resume
    """
    from refinedepth.train_backbone import train_backbone as run

    config = config_from_params(TrainBackboneConfig, params)
    if resume:
        config = _resume_config(config)
    with progress_bar(quiet, unit="batch") as progress:
        result = run(config, progress=progress, resume=resume, overwrite=overwrite)
    from refinedepth.distributed import dist_info

    if not dist_info().is_main:
        return
    for row in result.history:
        val = row.get("val", {})
        summary = " ".join(f"{k}={val[k]:.4f}" for k in ("abs_rel", "rmse", "d1") if k in val)
        loss = f"loss={row['train_loss']:.4f} " if "train_loss" in row else "(untrained) "
        console().print(f"epoch {row['epoch']}: {loss}{summary}", highlight=False)
    console().print(f"weights: {result.weights}", highlight=False)
    click.echo(json.dumps({"out": str(result.out), "weights": str(result.weights), "final": result.final_metrics}))


def _resume_config(config):
    """On --resume: the recorded settings, with the options given on this command line on top."""
    from refinedepth.train_backbone import resume_config, stored_config

    saved = stored_config(config.out)
    if saved is None:
        return config  # train_backbone explains what is missing
    ctx = click.get_current_context()
    explicit = {
        name for name in ctx.params
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
    }
    return resume_config(saved, config, explicit)
