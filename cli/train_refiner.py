"""``refinedepth train-refiner``: train the cGAN refiner on a cache (SPEC §6)."""

from __future__ import annotations

import json

import click

from ._common import console, device_option, progress_bar, quiet_option

PRESET_NAMES = ("paper-nyu", "paper-make3d", "pix2pix", "small")


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    text = value.lower().replace(",", "x")
    try:
        h, w = (int(v) for v in text.split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HEIGHTxWIDTH (e.g. 256x256), got {value!r}", param_hint="--size") from None
    return h, w


def _parse_augment(value: str) -> tuple[str, ...] | None:
    value = value.strip().lower()
    if value == "preset":
        return None
    if value in ("none", ""):
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.command("train-refiner")
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False), help="Training cache (HDF5).")
@click.option("--val", "val_path", type=click.Path(dir_okay=False), default=None, help="Validation cache, scored every epoch.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (last/, best/, log.jsonl).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="small", show_default=True, help="Refiner architecture.")
@click.option(
    "--inputs",
    type=click.Choice(["rough", "rough+rgb", "rgb"]),
    default="rough",
    show_default=True,
    help="Conditioning: the rough map (paper), rough + RGB, or RGB alone (the 'single cGAN' baseline).",
)
@click.option("--residual/--no-residual", default=None, help="Predict a correction of the rough map [default: preset's].")
@click.option("--size", default=None, metavar="HxW", help="Generator input size [default: preset's, e.g. 256x256].")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Passes over --train (paper: 20).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Pairs per step (paper: 1).")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Adam learning rate (G and D).")
@click.option("--beta1", type=float, default=0.5, show_default=True, help="Adam beta1 (pix2pix: 0.5).")
@click.option("--beta2", type=float, default=0.999, show_default=True, help="Adam beta2.")
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "linear"]),
    default="constant",
    show_default=True,
    help="linear: constant for the first half of the steps, then linearly to zero.",
)
@click.option(
    "--gan-mode",
    type=click.Choice(["vanilla", "lsgan", "none"]),
    default="vanilla",
    show_default=True,
    help="cGAN loss (vanilla = BCE, paper); none trains with L1 only.",
)
@click.option("--lambda-l1", type=float, default=100.0, show_default=True, help="Weight of the L1 term (paper Eq. 2).")
@click.option(
    "--augment",
    default="preset",
    show_default=True,
    help="Comma list of hflip, scale, brightness; 'none'; or 'preset' for the preset's default.",
)
@click.option("--max-depth", type=float, default=None, help="Metres mapped to +1 [default: the cache's max_depth].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, sampling, augmentation and dropout.")
@device_option
@click.option("--bf16", is_flag=True, help="bfloat16 autocast (CUDA only; ignored on CPU).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N steps in total (smoke tests).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again even if --out already holds a run.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, help="Validate on the first N samples only.")
@click.option("--log-every", type=click.IntRange(min=1), default=50, show_default=True, help="Steps between log.jsonl lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@quiet_option
def train_refiner(
    train_path: str,
    val_path: str | None,
    out: str,
    preset: str,
    inputs: str,
    residual: bool | None,
    size: str | None,
    epochs: int,
    batch_size: int,
    lr: float,
    beta1: float,
    beta2: float,
    lr_schedule: str,
    gan_mode: str,
    lambda_l1: float,
    augment: str,
    max_depth: float | None,
    seed: int,
    device: str,
    bf16: bool,
    workers: int,
    max_steps: int | None,
    resume: bool,
    overwrite: bool,
    val_limit: int | None,
    log_every: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train the cGAN refiner (stage 2) on a cache of rough/ground-truth pairs.

    Defaults follow the paper: Adam 2e-4 (0.5, 0.999), batch 1, 20 epochs, vanilla cGAN loss +
    100 x L1 over valid pixels, D step then G step. Every epoch scores rough vs refined on --val
    and writes log.jsonl and the last/ and best/ checkpoints. Under torchrun it trains with DDP.

    \b
    Example:
      refinedepth train-refiner --train train.h5 --val test.h5 --preset small --out runs/refiner
      refinedepth train-refiner --train train.h5 --preset paper-nyu --out runs/nyu --resume
      torchrun --nproc-per-node 2 -m refinedepth train-refiner --train train.h5 --out runs/ddp
    """
    from refinedepth.distributed import dist_info
    from refinedepth.refiner.train import TrainConfig
    from refinedepth.refiner.train import train_refiner as run

    config = TrainConfig(
        train=train_path,
        val=val_path,
        out=out,
        preset=preset,
        inputs=inputs,
        residual=residual,
        size=_parse_size(size),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        lr_schedule=lr_schedule,
        gan_mode=gan_mode,
        lambda_l1=lambda_l1,
        augment=_parse_augment(augment),
        max_depth=max_depth,
        seed=seed,
        device=device,
        bf16=bf16,
        workers=workers,
        max_steps=max_steps,
        resume=resume,
        overwrite=overwrite,
        val_limit=val_limit,
        log_every=log_every,
    )
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
