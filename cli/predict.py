"""``refinedepth predict``: depth maps for image files (SPEC §8)."""

from __future__ import annotations

import click

from ._common import (
    backbone_options,
    console,
    device_option,
    parse_key_values,
    progress_bar,
    quiet_option,
)


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@backbone_options(required=True)
@click.option(
    "--refiner",
    "refiners",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Refiner checkpoint directory applied after the backbone; repeat to chain.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Images per batch.")
@click.option("--png-scale", type=click.FloatRange(min=0, min_open=True), default=1000.0, show_default=True, help="16-bit PNG units per metre (1000 = millimetres); recorded in the PNG.")
@click.option("--overwrite", is_flag=True, default=False, help="Replace output files that already exist (otherwise they are refused before anything is written).")
@device_option
@quiet_option
def predict(
    inputs: tuple[str, ...],
    backbone: str,
    weights: str | None,
    backbone_args: tuple[str, ...],
    refiners: tuple[str, ...],
    out_dir: str,
    batch_size: int,
    png_scale: float,
    overwrite: bool,
    device: str,
    quiet: bool,
) -> None:
    """Predict depth for images (files or folders): 16-bit PNG, .npy metres, colour PNG.

    For each image NAME it writes NAME_depth.png (depth x --png-scale, scale in the PNG's
    metadata), NAME_depth.npy (float32 metres) and NAME_depth_color.png under --out; NAME is the
    file name without its last extension (scan.001.jpg -> scan.001_depth.png). Existing files
    are never replaced without --overwrite.

    \b
    Example:
      refinedepth predict photo.jpg --backbone fcrn --weights fcrn.safetensors --out pred/
      refinedepth predict frames/ --backbone fcrn --weights runs/fcrn --refiner runs/refiner --out pred/
    """
    import warnings

    from refinedepth.predict import predict_images

    options = parse_key_values(backbone_args)
    with progress_bar(quiet, unit="images") as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # printed below, once, from result.warnings
        result = predict_images(
            inputs,
            backbone,
            out_dir,
            weights=weights,
            backbone_options=options,
            refiners=refiners,
            batch_size=batch_size,
            device=device,
            png_scale=png_scale,
            overwrite=overwrite,
            progress=progress,
        )
    for message in result.warnings:
        console().print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    console().print(
        f"wrote {len(result.outputs)} depth map(s) ({result.output_kind}) to {result.out_dir}",
        highlight=False,
    )
    if result.clipped_pixels:
        console().print(
            f"[yellow]warning:[/] {result.clipped_pixels} pixel(s) exceed the 16-bit PNG range at "
            f"--png-scale {png_scale:g} and were clipped in the PNGs (the .npy files are exact)",
            highlight=False,
        )
