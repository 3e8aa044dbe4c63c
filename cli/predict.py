"""``refinedepth predict``: depth maps for image files (SPEC §8)."""

from __future__ import annotations

import click

from refinedepth.config import PredictConfig

from ._common import console, progress_bar, quiet_option
from ._options import config_from_params, config_options


@click.command("predict")
@config_options(PredictConfig)
@quiet_option
def predict(quiet: bool, **params) -> None:
    """Predict depth for images (files or folders): 16-bit PNG, .npy metres, colour PNG.

    For each image NAME it writes NAME_depth.png (depth x --png-scale, scale in the PNG's
    metadata), NAME_depth.npy (float32 metres) and NAME_depth_color.png under --out; NAME is the
    file name without its last extension (scan.001.jpg -> scan.001_depth.png). A relative or
    disparity backbone without --refiner writes its own values, not metres (the PNG records its
    output_kind). Photos are turned upright by their EXIF orientation; hidden files in folders are
    skipped. Existing files are never replaced without --overwrite.

    \b
    Example:
      refinedepth predict photo.jpg --backbone fcrn --weights fcrn.safetensors --out pred/
      refinedepth predict frames/ --backbone fcrn --weights runs/fcrn/backbone.safetensors \\
          --refiner runs/refiner --out pred/
    """
    import warnings

    from refinedepth.predict import predict_images

    config = config_from_params(PredictConfig, params)
    with progress_bar(quiet, unit="images") as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # printed below, once, from result.warnings
        result = predict_images(
            config.inputs,
            config.backbone,
            config.out_dir,
            weights=config.weights,
            backbone_options=config.backbone_args,
            refiners=config.refiners,
            batch_size=config.batch_size,
            device=config.device,
            png_scale=config.png_scale,
            overwrite=config.overwrite,
            precision=config.precision,
            detail_sigma=config.detail_sigma,
            any_backbone=config.any_backbone,
            detail_scale=config.detail_scale,
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
            f"--png-scale {config.png_scale:g} and were clipped in the PNGs (the .npy files are exact)",
            highlight=False,
        )
