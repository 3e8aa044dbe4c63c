"""Stage-1 training: fit a first-stage backbone (FCRN) to RGB-D samples with the berHu loss.

Defaults follow the paper's recipe (Sun et al. §4.1, after Laina et al.): SGD with momentum 0.9,
learning rate 1e-2 divided by 10 every 6 epochs, batch 16, 20 epochs, berHu loss with
c = 0.2 max|residual|. RGB is resized to the backbone's ``input_size``; the loss is computed at
the output resolution against the ground truth resized there (nearest, invalid pixels stay
invalid); validation upsamples predictions (bilinear) to each ground truth's native resolution and
scores them with :mod:`refinedepth.metrics` under the dataset's protocol.

Output directory::

    OUT/config.json              training config, backbone name + config, per-epoch history
    OUT/backbone.safetensors     the latest weights (load with load_trained_backbone(OUT))
    OUT/checkpoint/              model.safetensors, optimizer.safetensors, state.json (--resume)

Every file is written to a temporary name and renamed, so a killed run leaves the previous epoch's
files intact; ``resume=True`` continues after the last completed epoch. Shuffling and
augmentation are seeded per epoch from ``seed``, so a resumed CPU run equals an uninterrupted one.
Under ``torchrun`` each rank trains on its shard of every epoch (DDP, gloo on CPU / NCCL on CUDA);
rank 0 writes the files.

Library use::

    from refinedepth.train_backbone import TrainBackboneConfig, train_backbone
    result = train_backbone(TrainBackboneConfig(dataset="synthetic", out="runs/fcrn",
                            backbone_args={"encoder": "resnet18"}, optimizer="adam", lr=1e-3))
    model = load_trained_backbone("runs/fcrn")
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainBackboneConfig  # noqa: F401 (the config lives in refinedepth.config)
from .errors import CheckpointError, ConfigError, DataError
from .progress import ProgressCallback

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "backbone.safetensors"
CHECKPOINT_DIR = "checkpoint"
FORMAT = "refinedepth.train-backbone"
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
    """A dataset split as tensors at the backbone's sizes: ``rgb`` uint8 [3,H,W] at the input
    size, ``gt`` float32 [1,h,w] at the output size, and (for validation) the native gt."""

    def __init__(self, dataset, input_size, output_size, keep_native: bool, cache: bool) -> None:
        self.dataset = dataset
        self.input_size = tuple(input_size)
        self.output_size = tuple(output_size)
        self.keep_native = keep_native
        native = getattr(dataset, "native_size", None) or (480, 640)
        per_sample = self.input_size[0] * self.input_size[1] * 3 + 4 * self.output_size[0] * self.output_size[1]
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
        import torch.nn.functional as F

        sample = self.dataset[index]
        rgb = torch.from_numpy(np.ascontiguousarray(sample.rgb)).permute(2, 0, 1)[None].float()
        if tuple(rgb.shape[-2:]) != self.input_size:
            rgb = F.interpolate(rgb, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        rgb = rgb.round().clamp(0, 255).to(torch.uint8)[0]
        depth = np.asarray(sample.depth, dtype=np.float32)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        gt_native = torch.from_numpy(depth)[None]
        gt = F.interpolate(gt_native[None], size=self.output_size, mode="nearest")[0]
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


def _augment(rgb, gt, generator):
    """Horizontal flip and brightness/colour jitter (Laina et al. §4.1), per sample, seeded."""
    import torch

    b = rgb.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    rgb = torch.where(flip.view(b, 1, 1, 1), rgb.flip(-1), rgb)
    gt = torch.where(flip.view(b, 1, 1, 1), gt.flip(-1), gt)
    brightness = torch.empty(b, 1, 1, 1).uniform_(0.8, 1.2, generator=generator)
    colour = torch.empty(b, 3, 1, 1).uniform_(0.9, 1.1, generator=generator)
    return (rgb * brightness * colour).clamp(0, 1), gt


def _batches(n: int, batch_size: int, generator, shuffle: bool, rank: int, world: int, drop_last: bool):
    """This rank's index batches for one epoch (same permutation on every rank)."""
    import torch

    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    if world > 1 and not shuffle:  # evaluation: every sample exactly once across ranks
        order = order[rank::world]
    elif world > 1:  # training: equal shares (DDP needs the same number of steps on every rank)
        per_rank = len(order) // world if drop_last else math.ceil(len(order) / world)
        pad = max(0, per_rank * world - len(order))
        order = (order + order[:pad])[rank::world][:per_rank]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def _loader(prepared: _Prepared, batches, workers: int):
    from torch.utils.data import DataLoader

    if workers <= 0:
        for batch in batches:
            yield _collate([prepared[i] for i in batch])
        return
    yield from DataLoader(prepared, batch_sampler=batches, num_workers=workers, collate_fn=_collate)


# --------------------------------------------------------------------------- checkpoints


def _atomic_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _optimizer_tensors(optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flatten an optimizer's state into (tensors, JSON-able rest) for safetensors."""
    import torch

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer, tensors: dict[str, Any], rest: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in rest.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def _save_weights(model, path: Path, backbone: str, config: Mapping[str, Any], extra: dict[str, str]) -> None:
    if backbone == "fcrn":
        from refinedepth.backbones.fcrn import save_fcrn_weights

        save_fcrn_weights(model, path, config, **extra)
        return
    meta = {"format": "refinedepth.backbone", "backbone": backbone, "config": json.dumps(dict(config)), **extra}
    _save_tensors(path, dict(model.state_dict()), meta)


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


def _epoch_generator(seed: int, epoch: int, stream: int = 0):
    import torch

    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7919 + stream)


def _open(config: TrainBackboneConfig, split: str, limit: int | None):
    from .data import open_dataset

    dataset = open_dataset(config.dataset, split=split, limit=limit, **config.dataset_args)
    if len(dataset) == 0:
        raise DataError(f"dataset {config.dataset!r} split {split!r} has no samples; check the path, split and --limit")
    return dataset


def validate(model, prepared: _Prepared, protocol: str, batch_size: int, device, progress=None, dist=None) -> dict[str, Any]:
    """Metrics of ``model`` on a prepared split, predictions upsampled to the native gt size."""
    import torch
    import torch.nn.functional as F

    from .distributed import all_reduce_sum
    from .metrics import MetricAccumulator

    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    acc = MetricAccumulator(protocol=protocol)
    batches = _batches(len(prepared), batch_size, None, shuffle=False, rank=rank, world=world, drop_last=False)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for done, batch in enumerate(_loader(prepared, batches, 0), start=1):
            pred = model(batch["rgb"].to(device).float() / 255.0).float().cpu()
            for p, gt in zip(pred, batch["gt_native"]):
                up = F.interpolate(p[None], size=tuple(gt.shape[-2:]), mode="bilinear", align_corners=False)
                acc.update(up[0, 0].numpy(), gt[0].numpy())
            if progress is not None:
                progress(done, len(batches), desc="validate")
    model.train(was_training)
    if world > 1:
        state = all_reduce_sum(acc.state_tensor())
        acc = MetricAccumulator.from_state(state, protocol=protocol)
    return acc.compute()


def _check_resume(out: Path, config: TrainBackboneConfig, resume: bool, overwrite: bool = False) -> dict[str, Any] | None:
    state_path = out / CHECKPOINT_DIR / "state.json"
    if overwrite and not resume:
        if dist_is_main():
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                (out / name).unlink(missing_ok=True)
            for name in ("state.json", "model.safetensors", "optimizer.safetensors"):
                (out / CHECKPOINT_DIR / name).unlink(missing_ok=True)
        return None
    if not state_path.is_file():
        if resume and (out / CONFIG_NAME).exists():
            raise CheckpointError(f"{out}: no {CHECKPOINT_DIR}/state.json to resume from; start a new run with another --out")
        return None
    if not resume:
        raise ConfigError(
            f"{out} already holds a train-backbone run; pass --resume to continue it, --overwrite to "
            "start again, or choose another --out"
        )
    try:
        state = json.loads(state_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{state_path}: corrupt resume state ({exc}); start a new run") from exc
    saved = TrainBackboneConfig.from_dict(state["config"])
    for key in ("backbone", "backbone_args", "dataset", "dataset_args", "split", "optimizer", "batch_size"):
        if getattr(saved, key) != getattr(config, key):
            raise ConfigError(
                f"--resume: {out} was trained with {key}={getattr(saved, key)!r}, this run asks for "
                f"{getattr(config, key)!r}; use the same settings or another --out"
            )
    return state


def dist_is_main() -> bool:
    from .distributed import dist_info

    return dist_info().is_main


def train_backbone(
    config: TrainBackboneConfig,
    progress: ProgressCallback | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainBackboneResult:
    """Train ``config.backbone`` on ``config.dataset`` (see the module docstring).

    Args:
        config: the run's settings.
        progress: ``progress(done, total, desc=..., **fields)`` per batch ("epoch k/n") and per
            validation batch ("validate").
        resume: continue the run in ``config.out`` after its last completed epoch (up to
            ``config.epochs``, which may be larger than before).
        overwrite: start afresh even if ``config.out`` holds a run (its files are replaced).

    Returns:
        a :class:`TrainBackboneResult` with the per-epoch history and the weights' path.
    """
    import numpy as np
    import torch

    from .device import resolve_device
    from .distributed import barrier, init_distributed
    from .losses import berhu_loss

    device = resolve_device(config.device)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    out = Path(config.out)
    if resume and overwrite:
        raise ConfigError("train-backbone: --resume and --overwrite exclude each other; pick one")
    prior = _check_resume(out, config, resume, overwrite)
    barrier()

    torch.manual_seed(config.seed + dist.rank)
    np.random.seed(config.seed % 2**32)
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

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if prior is not None:
        from safetensors.torch import load_file

        ck = out / CHECKPOINT_DIR
        try:
            model_state = load_file(str(ck / "model.safetensors"), device=str(device))
            opt_tensors = load_file(str(ck / "optimizer.safetensors"), device=str(device))
        except Exception as exc:
            raise CheckpointError(f"{ck}: cannot read the resume checkpoint ({exc}); start a new run") from exc
        missing = model.load_state_dict(model_state, strict=False).missing_keys
        if any(not k.endswith("num_batches_tracked") for k in missing):
            raise CheckpointError(f"{ck}/model.safetensors lacks {missing[:3]}; the checkpoint is incomplete")
        _restore_optimizer(optimizer, opt_tensors, prior["optimizer"])
        history = list(prior["history"])
        start_epoch = int(prior["epoch"])
    elif config.init_output_bias and config.weights is None:
        _init_output_bias(model, train)

    module = model
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def record(epoch: int, row: dict[str, Any]) -> None:
        history.append(row)
        if not dist.is_main:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / CHECKPOINT_DIR).mkdir(exist_ok=True)
        extra = {"dataset": config.dataset, "epoch": str(epoch), "trainer": FORMAT}
        _save_weights(module, out / WEIGHTS_NAME, config.backbone, info.config, extra)
        _save_tensors(out / CHECKPOINT_DIR / "model.safetensors", dict(module.state_dict()))
        opt_tensors, opt_rest = _optimizer_tensors(optimizer)
        _save_tensors(out / CHECKPOINT_DIR / "optimizer.safetensors", opt_tensors)
        payload = {
            "format": FORMAT,
            "train": config.to_dict(),
            "backbone": {"name": config.backbone, "config": info.config, "info": info.to_dict()},
            "dataset": {"spec": config.dataset, "max_depth": getattr(train_ds, "max_depth", None), "protocol": protocol},
            "epochs_done": epoch,
            "history": history,
        }
        _atomic_json(out / CONFIG_NAME, payload)
        # state.json last: it marks the epoch as complete for --resume
        _atomic_json(
            out / CHECKPOINT_DIR / "state.json",
            {"epoch": epoch, "config": config.to_dict(), "history": history, "optimizer": opt_rest},
        )

    if config.val_at_start and val is not None and start_epoch == 0 and not history:
        metrics = validate(module, val, protocol, config.batch_size, device, progress, dist)
        history.append({"epoch": 0, "val": metrics})

    for epoch in range(start_epoch, config.epochs):
        lr = _lr_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        gen = _epoch_generator(config.seed, epoch)
        batches = _batches(len(train), config.batch_size, gen, shuffle=True, rank=dist.rank, world=dist.world_size, drop_last=len(train) >= 2 * config.batch_size)
        aug_gen = _epoch_generator(config.seed, epoch, stream=1 + dist.rank)
        model.train()
        total_loss, seen, t0 = 0.0, 0, time.perf_counter()
        desc = f"epoch {epoch + 1}/{config.epochs}"
        for step, batch in enumerate(_loader(train, batches, config.workers), start=1):
            rgb = batch["rgb"].float() / 255.0
            gt = batch["gt"]
            if config.augment:
                rgb, gt = _augment(rgb, gt, aug_gen)
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
                progress(step, len(batches), desc=desc, loss=total_loss / seen, lr=lr)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": total_loss / max(seen, 1),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if val is not None:
            row["val"] = validate(module, val, protocol, config.batch_size, device, progress, dist)
        record(epoch + 1, row)
        barrier()

    return TrainBackboneResult(
        out=out,
        weights=out / WEIGHTS_NAME,
        epochs_done=max(config.epochs, start_epoch),
        history=history,
        backbone=config.backbone,
        backbone_config=dict(info.config),
    )


def _init_output_bias(model, train: _Prepared, samples: int = 64) -> None:
    """Set the final conv's bias to the mean valid depth of the first training samples."""
    import torch

    pred = getattr(getattr(model, "decoder", None), "pred", None)
    if not isinstance(pred, torch.nn.Conv2d) or pred.bias is None:
        return
    values = []
    for i in range(min(samples, len(train))):
        gt = train[i]["gt"]
        values.append(gt[gt > 0])
    depth = torch.cat(values) if values else torch.zeros(0)
    if depth.numel():
        with torch.no_grad():
            pred.bias.fill_(float(depth.mean()))


__all__ = [
    "TrainBackboneConfig",
    "TrainBackboneResult",
    "train_backbone",
    "load_trained_backbone",
    "validate",
]
