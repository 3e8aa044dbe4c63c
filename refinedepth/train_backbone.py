"""Stage-1 training: fit a first-stage backbone (FCRN) to RGB-D samples with the berHu loss.

Defaults follow the paper's recipe (Sun et al. §4.1, after Laina et al.): SGD with momentum 0.9,
learning rate 1e-2 divided by 10 every 6 epochs, batch 16, 20 epochs, berHu loss with
c = 0.2 max|residual|, and the paper's augmentations (:mod:`refinedepth.augment`: horizontal
flips, scale augmentation with depth / s, brightness). RGB is resized to the backbone's
``input_size``; the loss is computed at the output resolution against the ground truth resized
there (:func:`refinedepth.geometry.resize_depth`: nearest at pixel centres, as the cache and the
evaluation do; invalid pixels stay invalid); validation scores predictions against each ground
truth at its native resolution with :class:`refinedepth.scoring.Scorer` (the one scoring path:
resized bilinearly, the dataset's protocol).

This module holds only the step and the model; the run directory, checkpoints, resume checks,
sharding and DDP set-up are :mod:`refinedepth.training`'s. Output directory::

    OUT/last/                    the checkpoint: model, optimizer and RNG state, config.json with
                                 the training config and the per-epoch history (--resume)
    OUT/log.jsonl                one line per epoch
    OUT/config.json              training config, backbone name + config, per-epoch history
    OUT/backbone.safetensors     the latest weights (load with load_trained_backbone(OUT))

Each epoch is committed by one atomic swap of ``OUT/last/`` (weights, optimizer and state
together); ``backbone.safetensors`` and ``config.json`` are derived from it afterwards and
re-derived on ``--resume``, so a run killed at any point resumes to the weights an uninterrupted
run gives, bit for bit on CPU. Shuffling and augmentation are seeded per epoch from ``seed``.
Under ``torchrun`` each rank trains on its shard of every epoch (DDP, gloo on CPU / NCCL on CUDA);
rank 0 writes the files.

Library use::

    from refinedepth.train_backbone import TrainBackboneConfig, train_backbone
    result = train_backbone(TrainBackboneConfig(dataset="synthetic", out="runs/fcrn",
                            backbone_args={"encoder": "resnet18"}, optimizer="adam", lr=1e-3))
    model = load_trained_backbone("runs/fcrn")
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import geometry
from .config import TrainBackboneConfig  # noqa: F401 (the config lives in refinedepth.config)
from .errors import CheckpointError, ConfigError, DataError
from .progress import ProgressCallback

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "backbone.safetensors"
FORMAT = "refinedepth.train-backbone"
CHECKPOINT_FORMAT = "refinedepth-train-backbone-checkpoint"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
# options a resumed run may change; every other one must match the checkpoint
RESUMABLE_CHANGES = ("out", "epochs", "device", "workers", "val_limit", "val_at_start", "cache_in_memory")
# keep prepared samples in RAM when the whole split needs less than this
_MEMORY_CACHE_LIMIT = 2 * 1024**3


@dataclass
class TrainBackboneResult:
    """What :func:`train_backbone` returns."""

    out: Path
    weights: Path
    epochs_done: int
    history: list[dict[str, Any]]
    backbone: str
    backbone_config: dict[str, Any]

    @property
    def final_metrics(self) -> dict[str, Any]:
        """Validation metrics of the last validated epoch (empty without validation)."""
        for row in reversed(self.history):
            if "val" in row:
                return row["val"]
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "weights": str(self.weights),
            "epochs_done": self.epochs_done,
            "history": self.history,
            "backbone": self.backbone,
            "backbone_config": self.backbone_config,
        }


# --------------------------------------------------------------------------- data


class _Prepared:
    """A dataset split as tensors at the backbone's sizes: ``rgb`` [3,H,W] at the input size,
    ``gt`` float32 [1,h,w] at the output size, and (for validation) the native gt.

    Training keeps the resized RGB in 8 bits (a quarter of the memory; augmentation follows);
    validation (``keep_native``) keeps it as the cache and ``predict`` give it to the backbone,
    float32 resized from the image, so the validation score is the one ``evaluate`` gives a cache."""

    def __init__(self, dataset, input_size, output_size, keep_native: bool, cache: bool) -> None:
        self.dataset = dataset
        self.input_size = tuple(input_size)
        self.output_size = tuple(output_size)
        self.keep_native = keep_native
        native = getattr(dataset, "native_size", None) or (480, 640)
        rgb_bytes = 4 if keep_native else 1
        per_sample = self.input_size[0] * self.input_size[1] * 3 * rgb_bytes + 4 * self.output_size[0] * self.output_size[1]
        if keep_native:
            per_sample += 4 * native[0] * native[1]
        self.cache: dict[int, dict[str, Any]] | None = (
            {} if cache and per_sample * len(dataset) < _MEMORY_CACHE_LIMIT else None
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        item = self._prepare(index)
        if self.cache is not None:
            self.cache[index] = item
        return item

    def _prepare(self, index: int) -> dict[str, Any]:
        import numpy as np
        import torch

        sample = self.dataset[index]
        if self.keep_native:  # float [3,H,W] in [0,1], resized as cache/build.py and predict.py do
            image = torch.from_numpy(np.ascontiguousarray(sample.rgb)).permute(2, 0, 1).float().div_(255.0)
            rgb = geometry.resize_rgb(image, self.input_size).contiguous()
        else:
            rgb = geometry.resize_rgb(np.ascontiguousarray(sample.rgb), self.input_size)  # uint8 [H,W,3]
            rgb = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
        depth = np.asarray(sample.depth, dtype=np.float32)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        gt_native = torch.from_numpy(depth)[None]
        # nearest at pixel centres, as the cache and evaluation resize ground truth
        gt = geometry.resize_depth(gt_native, self.output_size).contiguous()
        item = {"rgb": rgb, "gt": gt, "id": sample.id}
        if self.keep_native:
            item["gt_native"] = gt_native
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    out = {
        "rgb": torch.stack([it["rgb"] for it in items]),
        "gt": torch.stack([it["gt"] for it in items]),
        "id": [it["id"] for it in items],
    }
    if "gt_native" in items[0]:
        out["gt_native"] = [it["gt_native"] for it in items]
    return out


def _loader(prepared: _Prepared, batches, workers: int):
    from torch.utils.data import DataLoader

    if workers <= 0:
        for batch in batches:
            yield _collate([prepared[i] for i in batch])
        return
    yield from DataLoader(prepared, batch_sampler=batches, num_workers=workers, collate_fn=_collate)


# --------------------------------------------------------------------------- outputs


def _save_backbone_weights(model, path: Path, backbone: str, config: Mapping[str, Any], metadata: dict[str, str]) -> None:
    """The backbone's own weights file, through the backbone contract (atomic, umask modes)."""
    from .contract import save_backbone_weights

    save_backbone_weights(model, path, backbone=backbone, config=config, metadata=metadata)


def is_backbone_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by :func:`train_backbone` (its ``config.json`` says so)."""
    cfg = Path(path) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def describe_backbone_run(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary of a :func:`train_backbone` run directory (``refinedepth inspect``):
    the backbone and its options, the data, epochs done, the last validation, the weights file
    (its size against the one recorded) and the ``last/`` checkpoint's state."""
    root = Path(path)
    cfg_path = root / CONFIG_NAME
    try:
        payload = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: not readable as JSON ({exc}); re-run training with --resume") from None
    history = payload.get("history") or []
    last_val = next((row["val"] for row in reversed(history) if isinstance(row, dict) and "val" in row), None)
    weights = root / WEIGHTS_NAME
    recorded = payload.get("weights") or {}
    size = weights.stat().st_size if weights.is_file() else None
    out: dict[str, Any] = {
        "kind": "train-backbone-run",
        "path": str(root),
        "backbone": (payload.get("backbone") or {}).get("name"),
        "backbone_config": (payload.get("backbone") or {}).get("config"),
        "dataset": payload.get("dataset"),
        "epochs_done": payload.get("epochs_done"),
        "epochs": (payload.get("train") or {}).get("epochs"),
        "last_validation": last_val,
        "weights": {
            "file": WEIGHTS_NAME,
            "bytes": size,
            "ok": size is not None and (not recorded or recorded.get("bytes") == size),
            "sha256": recorded.get("sha256", "not recorded (written before refinedepth recorded it)"),
        },
    }
    last = root / "last" / CONFIG_NAME
    if last.is_file():
        try:
            out["checkpoint"] = {"path": str(root / "last"), "state": {"epoch": json.loads(last.read_text())["state"]["epoch"]}}
        except (OSError, ValueError, KeyError, TypeError):
            out["checkpoint"] = {"path": str(root / "last"), "state": "unreadable config.json"}
    return out


def verify_backbone_run(path: str | os.PathLike) -> dict[str, Any]:
    """Size and sha256 of the run's weights (against ``config.json``) and of every file of its
    ``last/`` checkpoint; ``{"ok": bool, "problems": [...]}``."""
    from .training import checkpoint as ckpt

    root = Path(path)
    problems: list[str] = []
    recorded = json.loads((root / CONFIG_NAME).read_text()).get("weights") or {}
    weights = root / WEIGHTS_NAME
    if not weights.is_file():
        problems.append(f"{weights} is missing; resume the run (--resume) to write it again")
    elif recorded.get("sha256") and ckpt.sha256_file(weights) != recorded["sha256"]:
        problems.append(f"{weights} does not match the sha256 in {CONFIG_NAME} (damaged); resume the run (--resume) "
                        "to write it again from last/")
    last = root / "last"
    if (last / CONFIG_NAME).is_file():
        try:
            meta = ckpt.read_config(last, format=CHECKPOINT_FORMAT, what="train-backbone checkpoint")
            for name in meta.get("files", {}):
                try:
                    ckpt.verify_file(last, name, meta)
                except CheckpointError as exc:
                    problems.append(" ".join(str(exc).split()))
        except CheckpointError as exc:
            problems.append(" ".join(str(exc).split()))
    return {"ok": not problems, "problems": problems}


def load_trained_backbone(path: str | os.PathLike, device: str = "cpu"):
    """The backbone a :func:`train_backbone` run wrote to ``path`` (its directory), in eval mode."""
    from .registry import create_backbone

    root = Path(path)
    cfg_path = root / CONFIG_NAME
    weights = root / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(
            f"{root}: expected {CONFIG_NAME} and {WEIGHTS_NAME} written by 'refinedepth train-backbone'; "
            "the directory is missing or the run has not finished an epoch"
        )
    try:
        payload = json.loads(cfg_path.read_text())
        name = payload["backbone"]["name"]
        options = dict(payload["backbone"]["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{cfg_path}: not a train-backbone config ({exc}); re-run training") from exc
    model = create_backbone(name, weights=weights, **options)
    return model.to(device).eval()


def stored_config(out: str | os.PathLike) -> TrainBackboneConfig | None:
    """The config a run in ``out`` was started with (from its ``last/`` checkpoint), or ``None``
    when there is no readable one (:func:`train_backbone` then says what is missing)."""
    from .training import checkpoint as ckpt

    last = Path(out) / "last"
    for candidate in (last, ckpt.old_path(last)):
        try:
            meta = ckpt.read_config(candidate, format=CHECKPOINT_FORMAT, what="train-backbone checkpoint")
            return TrainBackboneConfig.from_dict(meta["train"])
        except (CheckpointError, ConfigError, KeyError, TypeError):
            continue
    return None


def resume_config(
    saved: TrainBackboneConfig, given: TrainBackboneConfig, explicit: Iterable[str]
) -> TrainBackboneConfig:
    """What ``--resume`` trains with: the run's recorded settings, with the options the user gave
    explicitly (``explicit``: field names) and ``out`` taken from ``given``. An option left out
    keeps its recorded value (``epochs`` too: a run started with 40 resumes to 40, not to the
    default); a given option that may not change (not in :data:`RESUMABLE_CHANGES`) is refused
    by :func:`train_backbone` with the list of those that may."""
    names = {f.name for f in dataclasses.fields(given)}
    changes = {name: getattr(given, name) for name in {*explicit, "out"} if name in names}
    return dataclasses.replace(saved, **changes)


# --------------------------------------------------------------------------- training


def _build_model(config: TrainBackboneConfig):
    from .registry import create_backbone

    model = create_backbone(config.backbone, weights=config.weights, **config.backbone_args)
    if model.info.output_kind != "metric":
        raise ConfigError(
            f"train-backbone trains metric depth with the berHu loss; backbone {config.backbone!r} "
            f"outputs {model.info.output_kind!r}"
        )
    return model


def _make_optimizer(config: TrainBackboneConfig, model):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _lr_at(config: TrainBackboneConfig, epoch: int) -> float:
    """Learning rate of (0-based) ``epoch``: step decay every ``lr_step`` epochs."""
    if config.lr_step <= 0:
        return config.lr
    return config.lr * config.lr_gamma ** (epoch // config.lr_step)


def _open(config: TrainBackboneConfig, split: str, limit: int | None):
    from .data import open_dataset

    dataset = open_dataset(config.dataset, split=split, limit=limit, **config.dataset_args)
    if len(dataset) == 0:
        raise DataError(f"dataset {config.dataset!r} split {split!r} has no samples; check the path, split and --limit")
    return dataset


def validate(model, prepared: _Prepared, protocol: str, batch_size: int, device, progress=None, dist=None) -> dict[str, Any]:
    """Metrics of ``model`` on a prepared split: predictions scored against the native ground
    truth by :class:`refinedepth.scoring.Scorer` (resized there bilinearly, the dataset's
    protocol), each sample once across ranks."""
    import torch

    from .scoring import Scorer
    from .training import sharding

    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    if world > 1:  # every rank scores rank 0's model, the one saved (BatchNorm statistics included)
        from .training.distributed import broadcast_buffers

        broadcast_buffers(model)
    scorer = Scorer(["backbone"], protocol=protocol)
    batches = sharding.batches(sharding.shard(list(range(len(prepared))), rank, world, pad=False), batch_size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for done, batch in enumerate(_loader(prepared, batches, 0), start=1):
            rgb = batch["rgb"].to(device)
            pred = model(rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()).float().cpu()
            for p, gt in zip(pred, batch["gt_native"]):  # native sizes may differ per sample
                scorer.update("backbone", p[None], gt)
            if progress is not None:
                progress(done, len(batches), desc="validate")
    model.train(was_training)
    return scorer.all_reduce().compute()["backbone"]


def _mean_depth(train: _Prepared, samples: int = 64) -> float | None:
    """Mean valid depth of the first training samples (for the output-bias initialisation)."""
    import torch

    values = [train[i]["gt"] for i in range(min(samples, len(train)))]
    depth = torch.cat([v[v > 0] for v in values]) if values else torch.zeros(0)
    return float(depth.mean()) if depth.numel() else None


def train_backbone(
    config: TrainBackboneConfig,
    progress: ProgressCallback | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainBackboneResult:
    """Train ``config.backbone`` on ``config.dataset`` (see the module docstring).

    Args:
        config: the run's settings.
        progress: ``progress(done, total, desc="train", epoch="k/n", loss=..., lr=...)`` per
            batch, ``done``/``total`` counting the whole run's steps (one bar, the run's ETA);
            validation batches report in the same bar with a ``validate="i/n"`` field.
        resume: continue the run in ``config.out`` after its last completed epoch (up to
            ``config.epochs``, which may be larger than before).
        overwrite: start afresh even if ``config.out`` holds a run (its files are replaced).

    Returns:
        a :class:`TrainBackboneResult` with the per-epoch history and the weights' path.
    """
    from .training.distributed import session
    from .training.seeding import preserve_global_rng

    with preserve_global_rng(), session(config.device) as (device, dist):
        return _train_backbone(config, progress, resume, overwrite, device, dist)


def _train_backbone(config: TrainBackboneConfig, progress, resume: bool, overwrite: bool, device, dist) -> TrainBackboneResult:
    import torch

    from .augment import PAPER_AUGMENTATIONS, augment_batch
    from .contract import init_output_bias
    from .losses import berhu_loss
    from .training import checkpoint as ckpt
    from .training import sharding
    from .training.distributed import barrier
    from .training.progress import inside
    from .training.resume import check_resume
    from .training.rundir import RunDir
    from .training.seeding import generator, rng_state, set_rng_state

    run = RunDir(config.out, extra=(CONFIG_NAME, WEIGHTS_NAME, "checkpoint"), what="train-backbone run")
    out = run.root
    has_checkpoint = run.start(resume=resume, overwrite=overwrite, is_main=dist.is_main)
    barrier()

    torch.manual_seed(config.seed + dist.rank)
    model = _build_model(config).to(device)
    info = model.info
    optimizer = _make_optimizer(config, model)

    train_ds = _open(config, config.split, config.limit)
    train = _Prepared(train_ds, info.input_size, info.output_size, keep_native=False, cache=config.cache_in_memory)
    val = None
    protocol = "none"
    if config.val_split:
        val_ds = _open(config, config.val_split, config.val_limit)
        protocol = getattr(val_ds, "protocol", "none") or "none"
        val = _Prepared(val_ds, info.input_size, info.output_size, keep_native=True, cache=config.cache_in_memory)

    description = {
        "train": config.to_dict(),
        "backbone": {"name": config.backbone, "config": info.config, "info": info.to_dict()},
        "dataset": {"spec": config.dataset, "max_depth": getattr(train_ds, "max_depth", None), "protocol": protocol},
    }
    history: list[dict[str, Any]] = []
    start_epoch = 0

    def publish(epoch: int) -> None:
        """The files derived from the checkpoint: weights for loaders, config.json, the log."""
        extra = {"dataset": config.dataset, "epoch": str(epoch), "trainer": FORMAT}
        plain = getattr(model, "module", model)  # unwrapped from DDP
        _save_backbone_weights(plain, out / WEIGHTS_NAME, config.backbone, info.config, extra)
        weights = {"file": WEIGHTS_NAME, "bytes": (out / WEIGHTS_NAME).stat().st_size,
                   "sha256": ckpt.sha256_file(out / WEIGHTS_NAME)}  # `inspect --verify` checks it
        ckpt.write_json_atomic(
            out / CONFIG_NAME,
            {"format": FORMAT, **description, "epochs_done": epoch, "weights": weights, "history": history},
        )

    if has_checkpoint:
        meta = ckpt.read_config(run.last, format=CHECKPOINT_FORMAT, what="train-backbone checkpoint")
        check_resume(
            meta.get("train", {}), config.to_dict(), where=repr(str(run.last)), ignore=RESUMABLE_CHANGES,
            paths=("weights",), specs=("dataset",),
            advice=f"only {', '.join(k for k in RESUMABLE_CHANGES if k != 'out')} may change; use --overwrite "
            "to start again or another --out",
        )
        ckpt.load_state(model, ckpt.load_tensors(run.last, MODEL_FILE, meta, device), f"{run.last}/{MODEL_FILE}")
        ckpt.unflatten_optimizer(optimizer, model, "opt", ckpt.load_tensors(run.last, OPTIMIZER_FILE, meta))
        set_rng_state(ckpt.load_tensors(run.last, RNG_FILE, meta))
        history = list(meta["state"]["history"])
        start_epoch = int(meta["state"]["epoch"])
        if dist.rank > 0:  # the stored RNG state is rank 0's
            torch.manual_seed(config.seed + dist.rank + 1000 * start_epoch)
        if dist.is_main:  # a kill after the commit may have left these behind: derive them again
            publish(start_epoch)
            run.rewrite_log(history)
    elif config.init_output_bias and config.weights is None:
        mean = _mean_depth(train)
        if mean is not None:
            init_output_bias(model, mean)

    module = model
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def commit(epoch: int, row: dict[str, Any]) -> None:
        """End of an epoch: one atomic checkpoint swap, then the derived files."""
        history.append(row)
        if dist.is_main:
            ckpt.save_checkpoint_dir(
                run.last,
                {
                    MODEL_FILE: ckpt.state_dict_tensors(module),
                    OPTIMIZER_FILE: ckpt.flatten_optimizer(optimizer, module, "opt"),
                    RNG_FILE: rng_state(),
                },
                {**description, "state": {"epoch": epoch, "history": history}},
                format=CHECKPOINT_FORMAT,
            )
            run.committed()  # an --overwrite's previous run goes only now
            publish(epoch)
            run.log(row)
        barrier()

    # one progress bar for the whole run (validation reports inside it)
    drop_last = len(train) >= 2 * config.batch_size
    per_rank = math.ceil(len(train) / dist.world_size)
    steps_per_epoch = len(sharding.batches(list(range(per_rank)), config.batch_size, drop_last=drop_last))
    total_steps = config.epochs * steps_per_epoch
    if config.val_at_start and val is not None and start_epoch == 0 and not history:
        metrics = validate(module, val, protocol, config.batch_size, device, inside(progress, 0, total_steps), dist)
        history.append({"epoch": 0, "val": metrics})
        if dist.is_main:
            run.log(history[-1])

    ops = PAPER_AUGMENTATIONS if config.augment else ()  # gain acts on a rough map: refiners only
    for epoch in range(start_epoch, config.epochs):
        lr = _lr_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = sharding.epoch_indices(len(train), config.seed, epoch, dist.rank, dist.world_size)
        batches = sharding.batches(order, config.batch_size, drop_last=drop_last)
        aug_gen = generator(config.seed, 1, epoch, dist.rank)
        model.train()
        total_loss, seen, t0 = 0.0, 0, time.perf_counter()
        epoch_desc = f"{epoch + 1}/{config.epochs}"
        for step, batch in enumerate(_loader(train, batches, config.workers), start=1):
            rgb = batch["rgb"].float() / 255.0
            gt = batch["gt"]
            if ops:
                aug = augment_batch({"rgb": rgb, "gt": gt}, ops, aug_gen, kind="metric")
                rgb, gt = aug["rgb"], aug["gt"]
            rgb, gt = rgb.to(device, non_blocking=True), gt.to(device, non_blocking=True)
            pred = model(rgb)
            loss = berhu_loss(pred, gt)
            if not torch.isfinite(loss):
                raise DataError(
                    f"train-backbone: loss became {loss.item()} at epoch {epoch + 1}, batch {step} "
                    f"(samples {batch['id'][:3]}); lower --lr or check the data for corrupt depth"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(batch["id"])
            seen += len(batch["id"])
            if progress is not None:
                done = epoch * steps_per_epoch + step
                progress(done, total_steps, desc="train", epoch=epoch_desc, loss=total_loss / seen, lr=lr)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": total_loss / max(seen, 1),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if val is not None:
            bar = inside(progress, (epoch + 1) * steps_per_epoch, total_steps, epoch=epoch_desc)
            row["val"] = validate(module, val, protocol, config.batch_size, device, bar, dist)
        commit(epoch + 1, row)

    return TrainBackboneResult(
        out=out,
        weights=out / WEIGHTS_NAME,
        epochs_done=max(config.epochs, start_epoch),
        history=history,
        backbone=config.backbone,
        backbone_config=dict(info.config),
    )


__all__ = [
    "TrainBackboneConfig",
    "TrainBackboneResult",
    "train_backbone",
    "load_trained_backbone",
    "is_backbone_run",
    "describe_backbone_run",
    "verify_backbone_run",
    "stored_config",
    "validate",
]
