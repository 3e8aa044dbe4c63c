"""``refinedepth cache``, ``refinedepth cache-merge`` and ``refinedepth export-ab``."""

from __future__ import annotations

import json

import click

from refinedepth.config import EXPORT_AT, CacheBuildConfig

from ._common import console, progress_bar, quiet_option
from ._options import config_from_params, config_options


@click.command()
@config_options(CacheBuildConfig)
@quiet_option
def cache(quiet: bool, **params) -> None:
    """Run a backbone over a dataset split and store rough/gt pairs in an HDF5 cache.

    Re-running the same command resumes where a killed run stopped; a different command
    against an existing file is refused unless --overwrite. Under torchrun every rank writes
    a shard next to OUT (OUT's stem + '.shards/') and rank 0 joins them into OUT.

    \b
    Example:
      refinedepth cache --backbone fcrn --weights nyu.safetensors --dataset nyu:nyu.mat --split test --out test.h5
      refinedepth cache --backbone fcrn --backbone-arg encoder=resnet18 --dataset synthetic --out train.h5
      torchrun --nproc-per-node 2 -m refinedepth cache --backbone fcrn --dataset synthetic --out train.h5
    """
    from refinedepth.cache.build import build_cache
    from refinedepth.distributed import dist_info

    config = config_from_params(CacheBuildConfig, params)
    out = config.out
    rank = dist_info().rank
    with progress_bar(quiet=quiet or rank != 0, unit="samples") as progress:
        result = build_cache(out, **config.kwargs(), progress=progress)
    if rank != 0:
        return
    s = result.seconds
    written = result.written if result.written_all is None else result.written_all
    resumed = result.already_done if result.already_done_all is None else result.already_done_all
    if written == 0 and resumed == result.samples:
        console().print(f"{out}: all {result.samples} samples already cached; nothing to do", highlight=False, soft_wrap=True)
        return
    console().print(
        f"{out}: wrote {written} samples"
        + (f" (resumed after {resumed})" if resumed else "")
        + f" in {s['total']:.1f} s, {written / max(s['total'], 1e-9):.2f} samples/s; "
        + _write_share(s)
        + (f" (rank 0); merged {result.world_size} shards" if result.merged else ""),
        highlight=False,
        soft_wrap=True,
    )


def _write_share(seconds: dict) -> str:
    """``HDF5 writing 0.27 s = 3.1% of the total time`` and, where the backbone took a real part
    of the run (at least a tenth), the ratio to its time too (the cache's performance target,
    docs/performance.md). A backbone that only reads files (``files``) takes ~0 s: a ratio to that
    would be thousands of percent and mean nothing, so it is left out."""
    total, write, backbone = seconds["total"], seconds["write"], seconds.get("backbone") or 0.0
    text = f"HDF5 writing {write:.2f} s = {100 * write / max(total, 1e-9):.1f}% of the total time"
    if backbone >= 0.1 * total and backbone > 0:
        text += f", {100 * write / backbone:.1f}% of the backbone's {backbone:.2f} s"
    return text


@click.command("cache-merge")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("shards", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def cache_merge(out, shards, overwrite) -> None:
    """Join finished cache shards into OUT through HDF5 virtual datasets.

    Without SHARDS, takes every OUT-stem.shards/OUT-stem-*-of-*.h5 next to OUT (where
    'refinedepth cache' under torchrun writes them). OUT refers to the shards by relative
    path: move OUT and its .shards folder together.

    \b
    Example:
      refinedepth cache-merge train.h5
      refinedepth cache-merge all.h5 a/train-00001-of-00002.h5 b/train-00002-of-00002.h5
    """
    from refinedepth.cache import merge_shards, open_cache

    path = merge_shards(out, list(shards) or None, overwrite=overwrite)
    with open_cache(path) as c:
        console().print(f"{path}: {len(c)} samples from {len(json.loads(c.attrs['shards']))} shards", highlight=False, soft_wrap=True)


@click.command("export-ab")
@click.argument("cache_file", metavar="CACHE", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--scale", type=float, default=None,
              help="PNG value per metre; default 1000 (mm) when max_depth <= 65 m, else 256.")
@click.option("--at", "at", type=click.Choice(EXPORT_AT), default=EXPORT_AT[0], show_default=True,
              help="Pair size: the cache size (gt resized, nearest) or the evaluation size (rough resized).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Export only the first N samples.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty OUT_DIR/<split>.")
@quiet_option
def export_ab(cache_file, out_dir, scale, at, limit, overwrite, quiet) -> None:
    """Export cache pairs as pix2pix-style side-by-side 16-bit PNGs [rough | gt].

    Writes OUT_DIR/<split>/<index>_<id>.png and OUT_DIR/pairs_<split>.json (scale, sizes, ids).

    \b
    Example:
      refinedepth export-ab train.h5 ab/
      refinedepth export-ab test.h5 ab/ --at gt --scale 1000
    """
    from refinedepth.cache.export import export_ab as run_export

    with progress_bar(quiet=quiet, unit="pairs") as progress:
        summary = run_export(cache_file, out_dir, scale=scale, at=at, limit=limit, overwrite=overwrite, progress=progress)
    console().print(
        f"{out_dir}: {summary['count']} pairs of {summary['image_size'][0]}x{summary['image_size'][1]} "
        f"at scale {summary['scale']:g}"
        + (f"; {summary['clipped_rough_pixels']} rough pixels clipped to 16 bits" if summary["clipped_rough_pixels"] else ""),
        highlight=False,
        soft_wrap=True,
    )
