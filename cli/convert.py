"""``refinedepth convert fcrn-tf``: third-party weights -> safetensors."""

from __future__ import annotations

import click

from ._common import console, progress_bar, quiet_option


@click.group()
def convert() -> None:
    """Convert released third-party weights to refinedepth's safetensors format.

    \b
    Example:
      refinedepth convert fcrn-tf NYU_ResNet-UpProj.npy --out fcrn-nyu.safetensors --allow-pickle
    """


@convert.command("fcrn-tf")
@click.argument("npy", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Required: the .npy is a pickled dict and unpickling can run code; only for files you trust.",
)
@quiet_option
def fcrn_tf(npy: str, out: str, allow_pickle: bool, quiet: bool) -> None:
    """Convert Laina et al.'s TensorFlow FCRN weights (NYU_ResNet-UpProj.npy) to safetensors.

    All 157 ops are mapped (HWIO -> OIHW, BatchNorm statistics); a missing or extra op or a
    shape mismatch is an error. Load the result with --backbone fcrn --weights FILE.

    \b
    Example:
      refinedepth convert fcrn-tf NYU_ResNet-UpProj.npy --out fcrn-nyu.safetensors --allow-pickle
      refinedepth backbones check fcrn --weights fcrn-nyu.safetensors
    """
    from refinedepth.backbones.fcrn_laina import convert_fcrn_tf

    with progress_bar(quiet, unit="ops") as progress:
        path = convert_fcrn_tf(npy, out, allow_pickle=allow_pickle, progress=progress)
    console().print(f"wrote {path}", highlight=False)
    click.echo(str(path))
