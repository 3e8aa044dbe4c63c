"""Build a cache: run a backbone over a dataset split and store rough/gt pairs (SPEC §5).

:func:`build_cache` is what ``refinedepth cache`` calls. It

* opens the dataset and builds the backbone (seeded, so an uninitialised backbone is the same in
  every process), optionally followed by trained refiners (chaining, SPEC §6);
* resumes the file if it exists and was made by the same request (:class:`CacheConfig` equal),
  refuses it if it differs, replaces it with ``overwrite``;
* loads samples in DataLoader workers (RGB resized to the backbone's ``input_size``, gt to the
  cache's ``gt_size`` with nearest neighbour so invalid pixels never blend into valid ones, and,
  for refiners that read RGB, the image resized once to the cache's rough size), runs the backbone
  in batches, resizes its output bilinearly to the cache size, antialiased when shrinking
  (refiners, a full-resolution head included, run at that size) and writes;
* under ``torchrun`` writes one shard per rank next to the output and lets rank 0 join them with
  :func:`refinedepth.cache.shards.merge_shards`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheError, ConfigError, DataError, ShapeError
from ..geometry import parse_hw, resize_depth, resize_rgb, resize_smooth
from .config import CacheConfig, mismatch_message, sha256_path
from .reader import open_cache
from .shards import drop_replaced, merge_shards, set_aside, shard_path
from .writer import CacheWriter, no_writer


@dataclass
class CacheBuildResult:
    """What :func:`build_cache` did; ``seconds`` splits the wall time of this process into
    ``load`` (waiting for the DataLoader), ``backbone`` (forward + resize + refiners), ``write``
    (HDF5) and ``total``."""

    path: Path
    samples: int
    written: int
    already_done: int
    config: CacheConfig
    rank: int = 0
    world_size: int = 1
    shard: Path | None = None
    merged: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    written_all: int | None = None  # over all ranks (torchrun), else None
    already_done_all: int | None = None

    @property
    def samples_per_second(self) -> float:
        return self.written / self.seconds["total"] if self.seconds.get("total") else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "samples": self.samples,
            "written": self.written,
            "already_done": self.already_done,
            "rank": self.rank,
            "world_size": self.world_size,
            "shard": None if self.shard is None else str(self.shard),
            "merged": self.merged,
            "written_all": self.written_all,
            "already_done_all": self.already_done_all,
            "seconds": dict(self.seconds),
            "samples_per_second": self.samples_per_second,
        }


class _BackboneInputs:
    """Per-sample preparation, run in DataLoader workers: RGB float [3,h,w] at the backbone's
    input size, gt float32 [H,W] at the cache's gt size (invalid -> 0), optionally RGB uint8 at
    the cache's RGB size, and, with ``refine_size``, RGB float [3,h,w] at that size (the cache's
    RGB size, or the ground truth's: what refiners conditioned or guided by RGB see, resized once
    from the image)."""

    def __init__(
        self, dataset, indices: Sequence[int], input_size, rgb_size, gt_size, with_rgb: bool,
        strict_gt_size: bool = False, refine_size=None,
    ) -> None:
        self.dataset = dataset
        self.strict_gt_size = strict_gt_size
        self.indices = list(indices)
        self.input_size = tuple(input_size)
        self.rgb_size = tuple(rgb_size)
        self.gt_size = tuple(gt_size)
        self.with_rgb = with_rgb
        self.refine_size = None if refine_size is None else tuple(refine_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        import torch

        index = self.indices[k]
        sample = self.dataset[index]
        rgb = torch.from_numpy(np.ascontiguousarray(sample.rgb)).permute(2, 0, 1).float().div_(255.0)
        item: dict[str, Any] = {"index": index, "id": str(sample.id)}
        item["rgb_in"] = resize_rgb(rgb, self.input_size)
        if self.refine_size is not None:  # 8-bit levels, as the stored RGB evaluate reads
            item["rgb_refine"] = resize_rgb(rgb, self.refine_size).mul_(255.0).round_().clamp_(0, 255).div_(255.0)
        depth = np.where(np.isfinite(sample.depth) & (sample.depth > 0), sample.depth, 0).astype(np.float32)
        gt = torch.from_numpy(depth)
        if self.strict_gt_size and tuple(gt.shape) != self.gt_size:
            raise DataError(
                f"sample {sample.id!r} has gt of {gt.shape[0]}x{gt.shape[1]}, the first sample "
                f"{self.gt_size[0]}x{self.gt_size[1]}; pass --gt-size HxW to resize every sample to one size"
            )
        if tuple(gt.shape) != self.gt_size:
            gt = resize_depth(gt, self.gt_size)
        item["gt"] = gt
        if self.with_rgb:
            small = resize_rgb(rgb, self.rgb_size)
            item["rgb"] = small.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
        return item


def build_cache(
    out: str | os.PathLike,
    *,
    backbone: str,
    dataset: str,
    split: str = "train",
    weights: str | os.PathLike | None = None,
    backbone_args: Mapping[str, Any] | None = None,
    dataset_args: Mapping[str, Any] | None = None,
    limit: int | None = None,
    size: Any = "native",
    gt_size: Any = None,
    with_rgb: bool = False,
    rgb_size: Any = "gt",
    dtype: str = "float32",
    refiners: Sequence[str | os.PathLike] = (),
    detail_sigma: float | None = None,
    detail_scale: str = "global",
    any_backbone: bool = False,
    batch_size: int = 8,
    workers: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    compression: str = "lzf",
    seed: int = 0,
    progress=None,
) -> CacheBuildResult:
    """Run ``backbone`` over ``dataset``/``split`` and write (or resume) the cache ``out``.

    Args mirror ``refinedepth cache``. ``size``: ``"native"`` (default: the backbone's output as
    it is, its ``BackboneInfo.output_size``), ``"gt"`` (resized once to the gt size) or
    ``(height, width)`` / ``"HxW"``; ``gt_size`` (``None``: the dataset's native ground-truth
    size) and ``rgb_size`` (``"gt"``, ``"rough"`` or a size not larger than the gt size) likewise.
    ``refiners`` trained on another backbone's maps are refused unless ``any_backbone``. Under ``torchrun``
    every rank writes ``shard_path(out, rank, world)`` and rank 0 merges them into ``out``.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..data import open_dataset
    from ..device import resolve_device
    from ..distributed import (
        all_reduce_sum,
        barrier,
        dist_info,
        init_distributed,
        launched_by_torchrun,
    )
    from ..refiner.chain import RefinerChain, check_detail
    from ..refiner.chain import refiner_records as chain_records
    from ..registry import create_backbone, get_factory
    from ..training.seeding import preserve_global_rng

    t_start = time.perf_counter()
    out = Path(out)
    size_word = size.strip().lower() if isinstance(size, str) and size.strip().lower() in ("native", "gt") else None
    if size_word is None:
        size = parse_hw(size, "--size")
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"--dtype must be float32 or float16, got {dtype!r}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    torch_device = resolve_device(device)
    dist = init_distributed(torch_device) if launched_by_torchrun() else dist_info()
    if torch_device.type == "cuda" and dist.enabled:
        torch_device = torch.device("cuda", dist.local_rank)

    get_factory(backbone)  # an unknown or broken backbone fails before any data is read
    _check_dataset_path(dataset)
    ds = open_dataset(dataset, split=split, limit=limit, **dict(dataset_args or {}))
    n = len(ds)
    if n == 0:
        raise DataError(f"dataset {dataset!r} split {split!r} has no samples; check the path and --split")
    # Without --gt-size and without a fixed native size, the first sample sets the size and a
    # sample of another size is an error (rather than a silent resize).
    strict_gt_size = gt_size is None and ds.native_size is None
    if gt_size is None:
        gt_size = ds.native_size or tuple(ds[0].depth.shape)
    gt_size = parse_hw(gt_size, "--gt-size")
    if size_word == "gt":
        size = gt_size
    rgb_request = rgb_size
    if size_word == "native":  # known once the backbone is built; until then a placeholder
        size = (1, 1)
    rgb_size = _resolve_rgb_size(rgb_request, size, gt_size) if with_rgb else size

    if weights is not None and not Path(weights).exists():
        raise CacheError(f"weights {weights} do not exist; pass a .safetensors file or leave --weights out")
    refiner_records = chain_records(refiners)  # checks the paths before the model is built
    check_detail(refiners, detail_sigma, detail_scale)
    if detail_sigma is not None:  # the refiners are used detail-only: part of what the cache holds
        extra = {"detail_sigma": float(detail_sigma)}
        if detail_scale != "global":  # caches made before --detail-scale existed hold "global" ones
            extra["detail_scale"] = detail_scale
        refiner_records = [{**r, **extra} for r in refiner_records]
    request = {
        "num_samples": n,
        "rough_size": size,
        "gt_size": gt_size,
        "rgb_size": rgb_size,
        "rough_dtype": dtype,
        "with_rgb": with_rgb,
        "max_depth": float(ds.max_depth),
        "protocol": str(ds.protocol),
        "backbone": backbone,
        "backbone_weights": None if weights is None else str(weights),
        "backbone_weights_sha256": None if weights is None else sha256_path(weights),
        "seed": seed,
        "dataset": dataset,
        "dataset_options": dict(dataset_args or {}),
        "split": split,
        "limit": limit,
        "refiners": tuple(refiner_records),
        "ground_truth": str(getattr(ds, "ground_truth", "") or ""),
    }
    existing_config = None
    if out.exists() and not overwrite:
        with open_cache(out) as existing:
            existing_config = existing.config
            existing_complete = existing.complete
        # Refuse a different request before spending time on the model; what only the model can
        # tell (its resolved config, output kind) is compared once it is built.
        known = dict(request)
        if size_word == "native":  # compared once the model is built
            known["rough_size"] = existing_config.rough_size
            if with_rgb and isinstance(rgb_request, str) and rgb_request.strip().lower() == "rough":
                known["rgb_size"] = existing_config.rough_size
        provisional = CacheConfig(
            **known, backbone_config=existing_config.backbone_config, output_kind=existing_config.output_kind
        )
        if provisional != existing_config:
            raise CacheError(mismatch_message(out, existing_config, provisional))

    with preserve_global_rng():  # the caller's random stream is left as it was
        torch.manual_seed(seed)  # an uninitialised backbone must be identical in every rank and run
        model = create_backbone(backbone, weights=weights, **dict(backbone_args or {}))
    info = model.info
    if size_word == "native":
        # the backbone's declared output size; checked against what it returns
        size = tuple(int(v) for v in info.output_size)
        request["rough_size"] = size
        request["rgb_size"] = rgb_size = _resolve_rgb_size(rgb_request, size, gt_size) if with_rgb else size
    model = model.to(torch_device).eval()
    accepts_ids = bool(getattr(model, "accepts_ids", False))
    chain = RefinerChain.load(refiners, torch_device, detail_sigma=detail_sigma, detail_scale=detail_scale)
    chain.check_backbone(backbone, "--backbone is", any_backbone=any_backbone)
    config = CacheConfig(
        **request,
        backbone_config=dict(info.config),
        output_kind=chain.output_kind(info.output_kind),
    )

    result = CacheBuildResult(out, n, 0, 0, config, rank=dist.rank, world_size=dist.world_size)
    if existing_config is not None:
        if existing_config != config:
            raise CacheError(mismatch_message(out, existing_config, config))
        if existing_complete:  # made by this very request (possibly merged from shards)
            result.already_done = n
            result.seconds = {"total": time.perf_counter() - t_start, "load": 0.0, "backbone": 0.0, "write": 0.0}
            return result
    if dist.enabled:
        if overwrite:
            if dist.is_main:
                # kept as OUT.replaced (and its shards folder) until the new cache is merged: an
                # interrupted overwrite under torchrun leaves it to be renamed back (docs/cache.md)
                set_aside(out)
            barrier()  # no rank starts its shard in the folder before the old one has moved away
        target, shard = shard_path(out, dist.rank, dist.world_size), (dist.rank, dist.world_size)
        result.shard = target
    else:
        target, shard = out, None
    # --overwrite of an existing file (one process): the new cache is written beside it and takes
    # its name only when complete, so an interrupted overwrite leaves the old file as it was; the
    # same command run again resumes the replacement
    staged = not dist.enabled and overwrite and out.exists()
    writer = None
    if staged:
        with no_writer(out):  # never replace a file being written
            pass
        target = out.with_name(out.name + ".replacing")
        if target.exists():
            try:
                writer = CacheWriter.open(target, config, compression=compression)  # this very request's
            except CacheError:
                writer = None  # another request's leftover: start it again
    if writer is None:
        writer = CacheWriter.open(target, config, overwrite=overwrite, compression=compression, shard=shard)
    t_load = t_backbone = t_write = 0.0
    try:
        pending = writer.pending()
        result.already_done = len(writer) - len(pending)
        # refiners that read RGB (conditioning or a guided head) get the image as evaluate gives it to
        # them: at the cache's RGB size (without stored RGB, the ground truth's), resized from there to
        # their model size and output size; shrunk to the rough size first, a rough+rgb `small`
        # refiner's maps were 0.03 m off evaluate's
        refine_size = (rgb_size if with_rgb else gt_size) if any(getattr(r, "needs_rgb", True) for r in chain.refiners) else None
        inputs = _BackboneInputs(ds, pending, info.input_size, rgb_size, gt_size, with_rgb, strict_gt_size,
                                 refine_size=refine_size)
        loader = DataLoader(
            inputs,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=torch_device.type == "cuda",
            generator=torch.Generator(),  # its base seed is not drawn from the caller's global RNG
        )
        done = 0
        total = len(pending)
        if progress is not None:
            progress(0, total, desc="cache" if not dist.enabled else f"cache rank {dist.rank}")
        tick = time.perf_counter()
        for batch in _batches(loader):
            t0 = time.perf_counter()
            t_load += t0 - tick
            rgb = batch["rgb_in"].to(torch_device, non_blocking=True)
            ids = list(batch["id"])
            with torch.inference_mode():
                pred = model(rgb, ids=ids) if accepts_ids else model(rgb)
                if not isinstance(pred, torch.Tensor) or pred.ndim != 4 or pred.shape[:2] != (len(ids), 1):
                    got = list(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                    raise ShapeError(f"backbone {backbone!r} returned {got}, expected [{len(ids)},1,h,w]")
                if size_word == "native" and tuple(pred.shape[-2:]) != tuple(size):
                    raise ShapeError(
                        f"backbone {backbone!r} returned {pred.shape[-2]}x{pred.shape[-1]} maps for sample "
                        f"{ids[0]!r} but declares an output size of {size[0]}x{size[1]}; pass --size HxW "
                        "(or --size gt) to resize its maps"
                    )
                rough = resize_smooth(pred.float(), size)  # antialiased when shrinking, as the scorer resizes
                if len(chain):
                    rgb_refine = batch.get("rgb_refine")
                    if rgb_refine is not None:
                        rgb_refine = rgb_refine.to(torch_device, non_blocking=True)
                    # as a further stage takes them in evaluate and predict: a head's output at the
                    # ground truth's size (it adds its detail at the size it runs at), stored resized
                    # once to the cache's size; other refiners' at the rough map's size
                    rough = chain(rough, rgb_refine, kind=info.output_kind, out_size=gt_size, then_more=True)[-1]
                    if tuple(rough.shape[-2:]) != tuple(size):
                        rough = resize_smooth(rough, size)
                rough = rough.float().cpu()
            finite = torch.isfinite(rough).flatten(1).all(1)
            if not bool(finite.all()):
                bad = int((~finite).nonzero()[0, 0])
                raise DataError(
                    f"backbone {backbone!r} produced non-finite depth for sample {ids[bad]!r} "
                    f"(index {int(batch['index'][bad])}); check the weights and the input image"
                )
            t1 = time.perf_counter()
            t_backbone += t1 - t0
            writer.write_batch(
                [int(i) for i in batch["index"]],
                rough=rough.numpy(),
                gt=batch["gt"].numpy(),
                sample_ids=ids,
                rgb=batch["rgb"].numpy() if with_rgb else None,
            )
            tick = time.perf_counter()
            t_write += tick - t1
            done += len(ids)
            result.written = done
            if progress is not None:
                progress(done, total, desc="cache" if not dist.enabled else f"cache rank {dist.rank}")
    except BaseException:
        writer.close()
        if staged and result.written == 0 and result.already_done == 0:
            target.unlink(missing_ok=True)  # nothing to resume: no debris beside the old file
        raise
    writer.close()
    if staged:
        with no_writer(out) if out.exists() else contextlib.nullcontext():  # not while another writes it
            os.replace(target, out)

    if dist.enabled:
        counts = all_reduce_sum(torch.tensor([result.written, result.already_done], dtype=torch.int64))
        result.written_all, result.already_done_all = int(counts[0]), int(counts[1])
        barrier()
        if dist.is_main:
            merge_shards(out, [shard_path(out, r, dist.world_size) for r in range(dist.world_size)], overwrite=True)
            result.merged = True
            drop_replaced(out)
        barrier()
    result.seconds = {
        "total": time.perf_counter() - t_start,
        "load": t_load,
        "backbone": t_backbone,
        "write": t_write,
    }
    return result


def _resolve_rgb_size(rgb_size: Any, rough_size, gt_size) -> tuple[int, int]:
    """``--rgb-size``: ``gt``, ``rough`` or ``HxW`` not larger than the gt size."""
    if isinstance(rgb_size, str) and rgb_size.strip().lower() in ("gt", "rough"):
        return tuple(gt_size) if rgb_size.strip().lower() == "gt" else tuple(rough_size)
    h, w = parse_hw(rgb_size, "--rgb-size")
    if h > gt_size[0] or w > gt_size[1]:
        raise ConfigError(
            f"--rgb-size {h}x{w} is larger than the gt size {gt_size[0]}x{gt_size[1]}: RGB is stored at most "
            "at the evaluation resolution; pass --rgb-size gt"
        )
    return h, w


def _batches(loader):
    """Iterate ``loader``; an expected error raised in a worker comes back with its own one-line
    message (DataLoader wraps it in the worker's traceback)."""
    from ..errors import RefinedepthError

    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except RefinedepthError as exc:
            text = str(exc).strip()
            if "Original Traceback" not in text:
                raise
            last = text.splitlines()[-1]
            raise type(exc)(last.split(": ", 1)[1] if ": " in last else last) from None
        yield batch


def _check_dataset_path(spec: str) -> None:
    """A spec naming a file or folder (``nyu:PATH``...) must point at something that exists."""
    from .. import data

    name, arg = data.parse_spec(spec)
    needs_path = getattr(data, "_NEEDS_ARGUMENT", {"nyu", "make3d", "folder"})
    if arg and name in needs_path and not Path(arg).expanduser().exists():
        raise DataError(
            f"dataset path {arg} does not exist (from --dataset {spec}); check the path, or use "
            "--dataset synthetic to try the pipeline without data"
        )


__all__ = ["CacheBuildResult", "build_cache"]
