"""``refinedepth export``: a trained refiner as a self-contained ONNX model."""

from __future__ import annotations

import click

from refinedepth.config import EXPORT_FORMATS, RUN_CHECKPOINTS

from ._common import console


@click.command("export")
@click.argument("refiner", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=EXPORT_FORMATS[0], show_default=True,
              help="Export format.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write (e.g. refiner.onnx).")
@click.option("--which", type=click.Choice(RUN_CHECKPOINTS), default=RUN_CHECKPOINTS[0], show_default=True,
              help="Checkpoint of a run directory to export.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (refused otherwise).")
def export(refiner: str, fmt: str, out: str, which: str, overwrite: bool) -> None:
    """Export a trained refiner (a run or checkpoint directory) with its normalisation inside.

    The ONNX model takes 'rough' [B,1,H,W] (metres, or the kind the refiner was trained on)
    and, for refiners that read RGB, 'rgb' [B,3,H',W'] in [0,1], and returns 'depth' [B,1,H,W] in
    metres ([B,1,H',W'], the image's size, for a refiner with an RGB-guided full-resolution
    head); batch and size are dynamic. It matches the PyTorch refiner to float rounding.

    \b
    Example:
      refinedepth export runs/nyu --out nyu-refiner.onnx
      python -c "import onnxruntime as ort; print(ort.InferenceSession('nyu-refiner.onnx').get_inputs())"
    """
    from pathlib import Path

    from refinedepth.errors import ConfigError
    from refinedepth.refiner.api import Refiner

    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise ConfigError("export --format onnx needs the onnx package: pip install 'refinedepth[onnx]'") from None
    from refinedepth.refiner.export import export_onnx

    if Path(out).exists() and not overwrite:  # before loading (which may download from the Hub)
        raise ConfigError(f"output {out!r} already exists; pass --overwrite to replace it or choose another --out")
    model = Refiner.from_pretrained(refiner, which=which, optimize=None)
    path = export_onnx(model, out)
    console().print(f"wrote {path} ({model.preset}, inputs {model.inputs}, {model.output_kind} rough maps)", highlight=False)
    click.echo(str(path))
