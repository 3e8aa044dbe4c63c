"""``refinedepth train-backbone``: stage-1 training (FCRN with berHu, paper §4.1)."""

from __future__ import annotations

import json

import click

from ._common import console, device_option, parse_key_values, progress_bar, quiet_option


@click.command("train-backbone")
@click.argument("backbone", default="fcrn", required=False)
@click.option("--dataset", required=True, metavar="SPEC", help="nyu:PATH, make3d:PATH, folder:PATH, synthetic, synthetic:indoor or synthetic:outdoor.")
@click.option("--dataset-arg", "dataset_args", multiple=True, metavar="KEY=VALUE", help="Dataset reader option, repeatable (e.g. size=[120,160]).")
@click.option("--split", default="train", show_default=True, help="Training split.")
@click.option("--val-split", default="test", show_default=True, help="Validation split ('none' to skip validation).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N training samples.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, help="Use only the first N validation samples.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (weights, config.json, checkpoint).")
@click.option("--backbone-arg", "backbone_args", multiple=True, metavar="KEY=VALUE", help="Backbone option, repeatable (e.g. encoder=resnet18). Recorded in config.json.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Initial backbone weights (.safetensors) to fine-tune from.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Epochs (paper: ~20 on NYU).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Batch size per process.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True, help="SGD with momentum (paper) or Adam (quicker for small CPU runs).")
@click.option("--lr", type=float, default=1e-2, show_default=True, help="Initial learning rate.")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True, help="L2 weight decay.")
@click.option("--lr-step", type=click.IntRange(min=0), default=6, show_default=True, help="Divide the lr every N epochs (0: constant).")
@click.option("--lr-gamma", type=float, default=0.1, show_default=True, help="Factor applied every --lr-step epochs.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Horizontal flips and brightness/colour jitter.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for initialisation, shuffling and augmentation.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out after its last completed epoch.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if --out holds a run (replaces its files).")
@device_option
@quiet_option
def train_backbone(
    backbone: str,
    dataset: str,
    dataset_args: tuple[str, ...],
    split: str,
    val_split: str,
    limit: int | None,
    val_limit: int | None,
    out: str,
    backbone_args: tuple[str, ...],
    weights: str | None,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    lr_step: int,
    lr_gamma: float,
    augment: bool,
    seed: int,
    workers: int,
    resume: bool,
    overwrite: bool,
    device: str,
    quiet: bool,
) -> None:
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
    from refinedepth.train_backbone import TrainBackboneConfig
    from refinedepth.train_backbone import train_backbone as run

    config = TrainBackboneConfig(
        dataset=dataset,
        out=out,
        backbone=backbone,
        backbone_args=parse_key_values(backbone_args),
        weights=weights,
        dataset_args=parse_key_values(dataset_args, option="--dataset-arg"),
        split=split,
        val_split=None if val_split.lower() in ("none", "") else val_split,
        limit=limit,
        val_limit=val_limit,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        lr_step=lr_step,
        lr_gamma=lr_gamma,
        augment=augment,
        seed=seed,
        device=device,
        workers=workers,
    )
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
    """On --resume keep the recorded settings, except epochs (which may grow) and runtime knobs."""
    import dataclasses
    from pathlib import Path

    from refinedepth.train_backbone import CHECKPOINT_DIR, TrainBackboneConfig

    state_path = Path(config.out) / CHECKPOINT_DIR / "state.json"
    if not state_path.is_file():
        return config  # train_backbone explains what is missing
    try:
        saved = TrainBackboneConfig.from_dict(json.loads(state_path.read_text())["config"])
    except (ValueError, KeyError):
        return config
    ctx = click.get_current_context()
    explicit = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
    }
    runtime = {"epochs", "device", "workers", "out"}
    changes = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name in runtime or (f.name in explicit and f.name not in ("backbone_args", "dataset_args"))
    }
    # repeated KEY=VALUE options: explicit ones replace the recorded dict
    if "backbone_args" in explicit:
        changes["backbone_args"] = config.backbone_args
    if "dataset_args" in explicit:
        changes["dataset_args"] = config.dataset_args
    return dataclasses.replace(saved, **changes)
