"""``refinedepth evaluate``: score rough maps and refined stages on a cache (SPEC §7)."""

from __future__ import annotations

import click

from refinedepth.config import EvaluateConfig

from ._common import check_writable, console, progress_bar, quiet_option
from ._options import config_from_params, config_options


@click.command("evaluate")
@config_options(EvaluateConfig)
@quiet_option
def evaluate(quiet: bool, **params) -> None:
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
      refinedepth evaluate --cache test.h5 --refiner runs/refiner --detail-sigma 32
    """
    from refinedepth.evaluate import evaluate_cache
    from refinedepth.report import write_json

    config = config_from_params(EvaluateConfig, params)
    for path in (config.json_path, config.csv_path):
        check_writable(path)  # before the evaluation, not after it
    with progress_bar(quiet, unit="samples") as progress:
        result = evaluate_cache(config.cache, config.refiners, **config.kwargs(), progress=progress)
    click.echo(result.table())
    if config.json_path:
        write_json(config.json_path, result.to_dict())
        console().print(f"wrote {config.json_path}", highlight=False)
    if config.csv_path:
        console().print(f"wrote {config.csv_path}", highlight=False)
    if result.visuals:
        samples = len(result.visuals) - 1  # grid.png, then one picture per sample
        console().print(
            f"wrote a picture grid of {samples} sample(s) and {samples} per-sample picture(s) to {config.visuals_dir}",
            highlight=False,
            soft_wrap=True,
        )
