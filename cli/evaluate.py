"""``refinedepth evaluate``: score rough maps and refined stages on a cache (SPEC §7)."""

from __future__ import annotations

import click

from ._common import console, device_option, progress_bar, quiet_option


@click.command("evaluate")
@click.option("--cache", "cache_path", required=True, type=click.Path(dir_okay=False), help="HDF5 cache to score (from 'refinedepth cache').")
@click.option(
    "--refiner",
    "refiners",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Refiner checkpoint directory; repeat to chain refiners (one table row per stage).",
)
@click.option(
    "--protocol",
    type=click.Choice(["nyu", "make3d", "kitti", "none"]),
    default=None,
    help="Evaluation protocol (crop and depth range).  [default: the cache's]",
)
@click.option("--align", type=click.Choice(["auto", "none", "median", "lstsq"]), default="auto", show_default=True, help="Align predictions to GT per image: auto = median scale for relative/disparity stages, none for metric ones; median or lstsq (scale and shift; for disparity fitted in inverse depth) for every stage; none only for metric caches.")
@click.option("--averaging", type=click.Choice(["image", "pixel"]), default="image", show_default=True, help="Mean of per-image metrics, or pooled over all pixels (FCRN's MATLAB code).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the table and settings as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write per-sample metrics (one row per sample and stage).")
@click.option("--visuals", "visuals_dir", type=click.Path(file_okay=False), default=None, help="Write picture grids (RGB | rough | refined | GT | error) to this folder.")
@click.option("--num-visuals", type=click.IntRange(min=1), default=4, show_default=True, help="How many samples the picture grids show.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Samples per batch.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N samples.")
@device_option
@quiet_option
def evaluate(
    cache_path: str,
    refiners: tuple[str, ...],
    protocol: str | None,
    align: str,
    averaging: str,
    json_path: str | None,
    csv_path: str | None,
    visuals_dir: str | None,
    num_visuals: int,
    batch_size: int,
    limit: int | None,
    device: str,
    quiet: bool,
) -> None:
    """Score a cache's rough maps and the refined maps of each (chained) refiner.

    Prints the paper's table layout: one row per stage (rough, + refiner, + refiner + refiner).
    Predictions are resized to the ground truth's resolution before scoring; memory does not grow
    with the number of samples.

    \b
    Example:
      refinedepth evaluate --cache test.h5
      refinedepth evaluate --cache test.h5 --refiner runs/refiner --json eval.json --visuals eval/
      refinedepth evaluate --cache test.h5 --refiner runs/r1 --refiner runs/r2 --csv per_sample.csv
      refinedepth evaluate --cache midas.h5 --align lstsq --protocol nyu
    """
    from refinedepth.evaluate import evaluate_cache
    from refinedepth.report import write_json

    with progress_bar(quiet, unit="samples") as progress:
        result = evaluate_cache(
            cache_path,
            refiners,
            protocol=protocol,
            align=align,
            averaging=averaging,
            batch_size=batch_size,
            device=device,
            limit=limit,
            csv_path=csv_path,
            visuals_dir=visuals_dir,
            num_visuals=num_visuals,
            progress=progress,
        )
    click.echo(result.table())
    if json_path:
        write_json(json_path, result.to_dict())
        console().print(f"wrote {json_path}", highlight=False)
    if csv_path:
        console().print(f"wrote {csv_path}", highlight=False)
    if result.visuals:
        samples = len(result.visuals) - 1  # grid.png, then one picture per sample
        console().print(
            f"wrote a picture grid of {samples} sample(s) and {samples} per-sample picture(s) to {visuals_dir}",
            highlight=False,
            soft_wrap=True,
        )
