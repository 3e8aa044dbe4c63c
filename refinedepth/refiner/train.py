"""Training the cGAN refiner on a cache of rough/ground-truth pairs (paper §3.1, §4; SPEC §6).

Defaults follow the paper: Adam (lr 2e-4, betas 0.5/0.999), batch 1, 20 epochs, the vanilla
(BCE) cGAN loss plus ``lambda = 100`` times L1 (Eq. 2); each step updates D first (its loss
halved, as pix2pix does) and then G.

Masking: ground truth is invalid where it is 0 or non-finite. The L1 term averages over valid
pixels only. The discriminator's "real" pair uses the ground truth with its invalid pixels filled
by the generator's (detached) output, so holes look the same in real and fake pairs and D cannot
use them to tell which is which.

Reproducibility: every random draw comes from seeded sources (the model initialisation, the
per-epoch sample order, an augmentation generator, torch's global RNG for dropout), and a
checkpoint stores them all together with both Adam states; ``resume=True`` continues a run
bit-for-bit on CPU, from an epoch boundary or from the middle of an epoch (``max_steps``).

Under ``torchrun`` the generator and discriminator are wrapped in DDP (NCCL on CUDA, gloo on
CPU), each rank trains on its shard of every epoch's permutation, and rank 0 validates, logs and
writes the checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..augment import apply_params, draw_params
from ..config import GAN_MODES, LR_SCHEDULES, TrainConfig, nearest_multiple_size  # noqa: F401 (TrainConfig lives in config)
from ..errors import CheckpointError, ConfigError
from ..progress import ProgressCallback
from ..training.distributed import average_gradients, barrier, session
from ..training.progress import inside
from ..training.resume import check_resume
from ..training.rundir import RunDir
from ..training.seeding import preserve_global_rng, rng_state, set_rng_state
from ..training.sharding import epoch_indices
from . import checkpoint as ckpt
from .models import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    count_parameters,
)
from .normalize import (
    Normalization,
    clip_to_limits,
    generator_input,
    refine_full,
    resize,
    rgb_to_unit,
)
from .presets import get_preset

HEAD_CLIP_NORM = 1.0  # gradient-norm clip of the full-resolution head's step
HEAD_BETAS = (0.9, 0.999)  # the head's Adam: a plain regression, no GAN, so the usual momentum

# Options that may change when a run is resumed; anything else must match the checkpoint.
# options a resumed run may change ("out": a run directory may be moved or copied and resumed there)
RESUMABLE_CHANGES = (
    "out", "epochs", "max_steps", "resume", "overwrite", "workers", "device", "log_every", "val_limit",
)


@dataclass
class TrainResult:
    """What :func:`train_refiner` returns."""

    out: Path
    last: Path | None
    best: Path | None
    steps: int
    epochs_done: float
    history: list[dict[str, Any]] = field(default_factory=list)
    val: dict[str, Any] | None = None
    best_value: float | None = None
    seconds: float = 0.0


# -- small pieces --------------------------------------------------------------------------------
def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """The cGAN criterion averaged over every patch's logit."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over valid pixels (0 when a batch has none)."""
    v = valid.to(pred.dtype)
    return ((pred - target).abs() * v).sum() / v.sum().clamp_min(1.0)


def lr_factor(step: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``."""
    if schedule == "constant" or total <= 1:
        return 1.0
    half = total / 2.0
    return 1.0 if step < half else max(0.0, 1.0 - (step - half) / (total - half))


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def _open_cache_dataset(path: str, role: str, **kw):
    from ..cache import CacheDataset

    if not Path(path).exists():
        raise ConfigError(f"{role} cache {path!r} does not exist: expected an HDF5 file written by 'refinedepth cache'")
    return CacheDataset(path, **kw)


def _open_training_caches(paths: tuple[str, ...], **kw):
    """The training cache, or several joined end to end (:class:`~refinedepth.cache.JoinedCacheDataset`)."""
    from ..cache import JoinedCacheDataset

    parts = [_open_cache_dataset(p, "training", **kw) for p in paths]
    return parts[0] if len(parts) == 1 else JoinedCacheDataset(parts)


def _training_caches_hold(paths: tuple[str, ...]) -> str:
    """``training cache 'a.h5' holds`` / ``training caches 'a.h5', 'b.h5' hold``, for messages."""
    if len(paths) == 1:
        return f"training cache {paths[0]!r} holds"
    return "training caches " + ", ".join(repr(p) for p in paths) + " hold"


def ground_truth_range(dataset, max_depth: float, samples: int = 64) -> tuple[float, float]:
    """Mean 2nd and 98th percentiles (metres) of the valid ground truth of up to ``samples``
    evenly spaced training samples: where relative rough maps are placed before refinement."""
    n = len(dataset)
    lows, highs = [], []
    for i in sorted({int(k * n / min(n, samples)) for k in range(min(n, samples))}):
        item = dataset[i]
        gt = item["gt"][item["valid"] & torch.isfinite(item["gt"]) & (item["gt"] > 0)]
        if gt.numel():
            q = torch.quantile(gt.float()[:: max(1, gt.numel() // 100_000)], torch.tensor([0.02, 0.98]))
            lows.append(float(q[0]))
            highs.append(float(q[1]))
    if not lows:
        return 0.0, max_depth
    low = min(max(sum(lows) / len(lows), 0.0), max_depth)
    high = min(max(sum(highs) / len(highs), low + 1e-3 * max_depth), max_depth)
    return low, high


# -- validation ----------------------------------------------------------------------------------
@torch.no_grad()
def validate(
    generator: torch.nn.Module,
    dataset,
    *,
    norm: Normalization,
    inputs: str,
    residual: bool,
    size: tuple[int, int],
    protocol: str,
    device: torch.device,
    batch_size: int = 1,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
    amp: bool = False,
    baselines=None,
    head: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Rough vs refined metrics on ``dataset`` (a :class:`CacheDataset` at gt resolution), and
    with ``baselines`` (:class:`refinedepth.baselines.Baselines`) the ``rough x scale`` and
    ``rough x (scale, shift)`` rows too.

    Scored exactly as ``refinedepth evaluate`` scores a cache with ``--align auto`` (one function,
    :func:`refinedepth.scoring.score_dataset`): predictions are resized (bilinear) to the ground
    truth's resolution; rough maps of relative/disparity backbones get a per-image scale and shift
    for their row (``align="auto"``: they have no scale; disparity is fitted in inverse depth);
    refined maps are scored as they are (metric).
    """
    from ..scoring import Scorer, resolve_align, score_dataset

    was_training = generator.training
    generator.eval()
    head_was_training = head.training if head is not None else False
    if head is not None:
        head.eval()
    from ..baselines import SCALE_ROW, SCALE_SHIFT_ROW, baseline_depth

    names = ["rough", "refined"] + ([SCALE_ROW, SCALE_SHIFT_ROW] if baselines is not None else [])
    scorer = Scorer(names, protocol=protocol, align="auto", max_depth=norm.max_depth)

    from .api import _Autocast

    # bf16 runs the generator alone in autocast, as Refiner(precision="bf16") and evaluate do: the
    # head, the normalisation and the resizes stay float32 (all in autocast, a guided refiner's
    # validation differed from evaluate's by 0.04 m)
    net = _Autocast(generator) if amp else generator

    def stages(rough: torch.Tensor, rgb: torch.Tensor | None, kind: str, out_size=None) -> list[torch.Tensor]:
        refined = refine_full(
            net,
            rough if inputs != "rgb" else None,
            rgb,
            norm=norm,
            inputs=inputs,
            residual=residual,
            size=size,
            kind=kind,
            out_size=tuple(out_size) if out_size else tuple(rough.shape[-2:]),  # as evaluate's chain
            head=head,
        )
        if baselines is None:
            return [rough, refined.float()]
        depth = baseline_depth(rough, kind, out_size)  # at the gt's size, as fitted
        return [rough, refined.float(), baselines.apply(depth, "scale"), baselines.apply(depth, "scale_shift")]

    try:
        score_dataset(
            dataset, stages, scorer, kind=norm.output_kind, device=device, batch_size=batch_size,
            limit=limit, progress=progress, desc="validate",
        )
    finally:
        generator.train(was_training)
        if head is not None:
            head.train(head_was_training)
    metrics = scorer.compute()
    return {**metrics, "rough_align": resolve_align("auto", norm.output_kind)}


# -- the training loop ---------------------------------------------------------------------------
def refiner_description(config: TrainConfig, norm: Normalization) -> dict[str, Any]:
    """The ``refiner`` section of ``config.json``: everything needed to rebuild the generator."""
    preset = get_preset(config.preset)
    gcfg = preset.generator_config(config.inputs, config.effective_residual, config.effective_upsample)
    dcfg = preset.discriminator_config(config.inputs)
    head = None
    if config.effective_head == "guided":
        from .head import HeadConfig

        head = HeadConfig(guide=config.effective_guide).to_dict()
    return {
        "preset": preset.name,
        "inputs": config.inputs,
        "residual": config.effective_residual,
        "head": head,
        "size": list(config.effective_size),
        "generator": gcfg.to_dict(),
        "discriminator": dcfg.to_dict(),
        "normalization": norm.to_dict(),
    }


def train_refiner(
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    optimize: Callable[..., tuple[torch.nn.Module, torch.nn.Module]] | str | None = "auto",
) -> TrainResult:
    """Train a refiner as described by ``config``; returns a :class:`TrainResult`.

    ``optimize(generator, discriminator, device) -> (generator, discriminator)`` is an optional
    hook (e.g. ``refinedepth.refiner.fast``) applied after the models are built, loaded and moved
    to the device; the modules it returns must share parameters with the ones it was given
    (``torch.compile``, in-place ``channels_last`` ...), because optimisers and checkpoints use
    the originals. ``"auto"`` (the default) uses :func:`refinedepth.refiner.fast.optimize_training`
    (channels-last on CUDA, allocator tuning); ``None`` trains the plain modules.
    """
    with preserve_global_rng(), session(config.device) as (device, dist):
        return _train_refiner(config, progress, optimize, device, dist)


def _train_refiner(config: TrainConfig, progress, optimize, device: torch.device, dist) -> TrainResult:
    from . import fast

    if optimize == "auto":
        optimize = fast.optimize_training

    t_start = time.perf_counter()
    amp = bool(config.bf16 and device.type == "cuda")
    out = Path(config.out)
    run = RunDir(out, scratch=("train_config.json",))
    last_dir, best_dir = run.last, run.best

    preset = get_preset(config.preset)
    size = config.effective_size
    gen_probe = preset.generator_config(config.inputs, config.effective_residual, config.effective_upsample)
    # config.check_refiner_size checks the known presets from their table; this is the generator's own figure
    if size[0] % gen_probe.downsampling or size[1] % gen_probe.downsampling:
        raise ConfigError(
            f"refiner size {size[0]}x{size[1]} must be a multiple of {gen_probe.downsampling} for preset "
            f"{preset.name!r} ({len(gen_probe.encoder)} stride-2 layers); choose e.g. "
            f"{nearest_multiple_size(*size, gen_probe.downsampling)}"
        )
    use_head = config.effective_head == "guided"
    with_rgb = config.inputs != "rough" or (use_head and config.effective_guide != "none")
    aug_ops = config.effective_augment
    if use_head:  # model view + full-resolution crops (refiner/crops.py)
        from .crops import CropDataset

        # the crop dataset zooms whole samples (both views); the step only flips and brightens
        train_ds = CropDataset(
            _open_training_caches(config.train, with_rgb=with_rgb), size, config.crop, seed=config.seed,
            zoom="scale" in aug_ops, max_depth=config.max_depth,
        )
        aug_ops = tuple(op for op in aug_ops if op != "scale")
    else:
        train_ds = _open_training_caches(config.train, target_size=size, with_rgb=with_rgb)
    if len(train_ds) == 0:
        raise ConfigError(f"{_training_caches_hold(config.train)} no samples: expected at least one")
    kind = train_ds.output_kind
    max_depth = float(config.max_depth or train_ds.max_depth)
    if kind == "metric":
        norm = Normalization(output_kind=kind, max_depth=max_depth)
    else:
        # of the stored ground truth, whatever the path: a crop dataset's items are zoomed (depth / s)
        # when the scale augmentation is on, which put the range 13-16% low
        low, high = ground_truth_range(_open_training_caches(config.train), max_depth)
        norm = Normalization(output_kind=kind, max_depth=max_depth, target_low=low, target_high=high)
    protocol = str(train_ds.attrs.get("protocol", "none"))
    val_ds = None
    if config.val:
        val_ds = _open_cache_dataset(config.val, "validation", with_rgb=with_rgb)
        if val_ds.output_kind != kind:
            raise ConfigError(
                f"validation cache {config.val!r} holds {val_ds.output_kind!r} rough maps but the "
                f"{_training_caches_hold(config.train)} {kind!r} ones; use caches of the same backbone"
            )
        protocol = str(val_ds.attrs.get("protocol", protocol))
    refiner_meta = refiner_description(config, norm)
    # The two-number calibrations the refiner must beat (SPEC §7), fitted on its training pairs
    # at the evaluation resolution; deterministic, so a resumed run stores the same values.
    from ..baselines import fit_baselines

    baselines = fit_baselines(
        _open_training_caches(config.train), protocol=str(train_ds.attrs.get("protocol", "none")),
        fitted_on=", ".join(config.train),
    )

    # Models (same initialisation on every rank; DDP also broadcasts rank 0's).
    torch.manual_seed(config.seed)
    generator = build_generator(gen_probe, seed=config.seed).to(device)
    use_gan = config.gan_mode != "none"
    discriminator = build_discriminator(preset.discriminator_config(config.inputs), seed=config.seed + 1).to(device)
    betas = (config.beta1, config.beta2)
    # fused Adam where available: the same algorithm and state, a fraction of the update time
    opt_g = fast.adam(generator.parameters(), lr=config.lr, betas=betas)
    opt_d = fast.adam(discriminator.parameters(), lr=config.lr, betas=betas)
    head = opt_h = None
    if use_head:
        from .head import HeadConfig, build_head

        head = build_head(HeadConfig.from_dict(refiner_meta["head"]), seed=config.seed + 2).to(device)
        head.start_at_scale(baselines.scale)  # an untrained head gives `rough x scale` (resume overwrites)
        opt_h = fast.adam(head.parameters(), lr=config.head_lr, betas=HEAD_BETAS)
    aug_gen = torch.Generator().manual_seed(config.seed * 7919 + 17 + dist.rank)

    state = {"epoch": 0, "epoch_step": 0, "step": 0, "best_value": None, "best_epoch": None, "best_step": None,
             "schedule_steps": None}
    resuming = run.start(resume=config.resume, overwrite=config.overwrite, is_main=dist.is_main)
    barrier()  # rank 0 has finished an interrupted swap before anyone reads last/
    if resuming:
        state = _resume(
            config, last_dir, refiner_meta, generator, discriminator, opt_g, opt_d, aug_gen, device, head, opt_h
        )
        if dist.is_main and state["best_step"] is not None and state["best_step"] == state["step"]:
            # last/ is the best checkpoint: a run killed between saving it and copying it to best/
            # left an older best/ behind; copy it now
            try:
                held = ckpt.read_config(best_dir).get("state", {}) if (best_dir / ckpt.CONFIG_NAME).is_file() else {}
            except CheckpointError:  # an unreadable best/: replaced below
                held = {}
            if held.get("step") != state["step"]:
                ckpt.copy_checkpoint(last_dir, best_dir)
        if dist.is_main:  # lines logged after the checkpoint are replayed now: drop them
            run.trim_log(lambda e: int(e.get("step", 0)) <= state["step"])
        if dist.rank > 0:  # the stored RNG states are rank 0's; keep other ranks' draws distinct
            torch.manual_seed(config.seed + 1000 * dist.rank + state["step"])
            aug_gen.manual_seed(config.seed * 7919 + 17 + 1000 * dist.rank + state["step"])
    else:
        torch.manual_seed(config.seed + dist.rank)  # dropout differs per rank
    barrier()

    g_run, d_run = generator, discriminator
    if optimize is not None:
        g_run, d_run = optimize(generator, discriminator, device)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g_run = DDP(g_run, device_ids=ids)
        d_run = DDP(d_run, device_ids=ids) if use_gan else d_run
    generator.train()
    discriminator.train()

    n = len(train_ds)
    per_rank = math.ceil(n / dist.world_size)
    steps_per_epoch = math.ceil(per_rank / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    started = state.get("schedule_steps")
    if config.lr_schedule != "constant" and started is not None and int(started) != total_steps:
        raise ConfigError(
            f"cannot resume {str(last_dir)!r} with another length: --lr-schedule {config.lr_schedule} decays "
            f"over the {int(started)} steps the run started with, and this --epochs/--max-steps gives "
            f"{total_steps}; resume with the run's --epochs and --max-steps, or start again with --overwrite"
        )
    # the length the learning-rate schedule spans, checked on resume (a linear decay resumed over
    # another length jumped back up; checkpoints from before it was stored are not checked)
    state["schedule_steps"] = int(started) if started is not None else total_steps
    loader_gen = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    last_val: dict[str, Any] | None = None
    step = state["step"]
    run_meta = {
        "refinedepth_version": __version__,
        "refiner": refiner_meta,
        "training": config.to_dict(),
        "training_resolved": config.resolved_dict(),
        "source": {
            "train": list(config.train),
            "val": config.val,
            "output_kind": kind,
            "max_depth": max_depth,
            "protocol": protocol,
            "backbone": train_ds.attrs.get("backbone"),
            # every training cache's: evaluate, predict and cache --refiner refuse others' maps
            "backbones": sorted({str(p.attrs["backbone"]) for p in getattr(train_ds, "parts", [train_ds])
                                 if p.attrs.get("backbone")}),
            "train_samples": len(train_ds),
            "dataset": train_ds.attrs.get("dataset"),
        },
        "parameters": {"generator": count_parameters(generator), "discriminator": count_parameters(discriminator)},
        "baselines": baselines.to_dict(),
    }
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(run_meta, indent=2) + "\n")

    def log(entry: dict[str, Any]) -> None:
        if dist.is_main:
            run.log(entry)

    def save(epoch_done: int, epoch_step: int, improved: bool) -> None:
        if dist.is_main:
            meta = dict(run_meta)
            meta["state"] = dict(state, epoch=epoch_done, epoch_step=epoch_step, step=step)
            if last_val is not None:  # the validation of this checkpoint (the model card lists it)
                meta["val"] = {k: v for k, v in last_val.items() if isinstance(v, dict)}
            optimizers = {"g": (opt_g, generator), "d": (opt_d, discriminator)}
            if head is not None:
                optimizers["h"] = (opt_h, head)
            ckpt.save_checkpoint(
                last_dir,
                config=meta,
                generator=generator,
                discriminator=discriminator,
                optimizers=optimizers,
                rng=rng_state(augment=aug_gen),
                head=head,
            )
            if improved:
                ckpt.copy_checkpoint(last_dir, best_dir)
            run.committed()  # an --overwrite's previous run goes only now
        barrier()

    def end_of_segment(epoch: int, epoch_step: int, complete: bool) -> None:
        nonlocal last_val
        entry: dict[str, Any] = {
            "type": "epoch" if complete else "partial",
            "epoch": epoch + 1 if complete else epoch + epoch_step / steps_per_epoch,
            "step": step,
            "lr": opt_g.param_groups[0]["lr"],
            **{k: v / max(sums["count"], 1) for k, v in sums.items() if k != "count"},
        }
        improved = False
        if val_ds is not None and dist.is_main:
            last_val = validate(
                generator, val_ds, norm=norm, inputs=config.inputs, residual=config.effective_residual,
                size=size, protocol=protocol, device=device, batch_size=config.batch_size,
                limit=config.val_limit, progress=inside(progress, step, total_steps, epoch=epoch + 1), amp=amp,
                baselines=baselines, head=head,
            )
            entry["val"] = last_val
            value = float(last_val["refined"].get(config.select_metric, float("nan")))
            if math.isfinite(value) and (state["best_value"] is None or value < state["best_value"]):
                state["best_value"], state["best_epoch"] = value, entry["epoch"]
                improved = True
        elif val_ds is None:
            improved = True  # without validation, best is the latest
        entry["best"] = improved
        if improved:  # the step best/ holds: a resume can tell whether the copy to best/ happened
            state["best_step"] = step
        history.append(entry)
        log(entry)
        if complete:
            save(epoch + 1, 0, improved)
        else:
            save(epoch, epoch_step, improved)

    start_epoch, skip = state["epoch"], state["epoch_step"]
    sums: dict[str, float] = {"loss_d": 0.0, "loss_g_gan": 0.0, "loss_g_l1": 0.0, "count": 0}
    t_loop = time.perf_counter()
    steps_this_run = 0
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        order = epoch_indices(n, config.seed, epoch, dist.rank, dist.world_size)
        order = order[skip * config.batch_size :]
        if use_head:  # the crops are drawn from (seed, epoch, sample)
            order = [(int(i), epoch) for i in order]
        epoch_step = skip
        skip = 0
        sums = {"loss_d": 0.0, "loss_g_gan": 0.0, "loss_g_l1": 0.0, "count": 0}
        if use_head:
            sums["loss_head"] = 0.0
        loader = torch.utils.data.DataLoader(
            train_ds,
            batch_size=config.batch_size,
            sampler=order,
            num_workers=config.workers,
            collate_fn=_collate,
            generator=loader_gen,
            persistent_workers=False,
        )
        stopped = False
        for batch in loader:
            if step >= total_steps:
                stopped = True
                break
            factor = lr_factor(step, total_steps, config.lr_schedule)
            for opt, base_lr in ((opt_g, config.lr), (opt_d, config.lr), (opt_h, config.head_lr)):
                for group in opt.param_groups if opt is not None else ():
                    group["lr"] = base_lr * factor
            losses = _train_step(
                batch, g_run, d_run, opt_g, opt_d, config=config, norm=norm, size=size, device=device,
                aug_ops=aug_ops, aug_gen=aug_gen, kind=kind, amp=amp, use_gan=use_gan, head=head, opt_h=opt_h,
            )
            step += 1
            epoch_step += 1
            steps_this_run += 1
            for k, v in losses.items():
                sums[k] += v
            sums["count"] += 1
            if progress is not None:
                rate = steps_this_run / max(time.perf_counter() - t_loop, 1e-9)
                progress(step, total_steps, desc="train", epoch=epoch + 1, **losses, steps_s=rate)
            if step % config.log_every == 0:
                log({"type": "train", "epoch": epoch + 1, "step": step, "lr": config.lr * factor, **losses})
        if stopped or (step >= total_steps and epoch_step < steps_per_epoch):
            if epoch_step > 0 and steps_this_run > 0:
                end_of_segment(epoch, epoch_step, complete=epoch_step >= steps_per_epoch)
            break
        end_of_segment(epoch, epoch_step, complete=True)

    return TrainResult(
        out=out,
        last=last_dir if (last_dir / ckpt.CONFIG_NAME).is_file() else None,
        best=best_dir if (best_dir / ckpt.CONFIG_NAME).is_file() else None,
        steps=step,
        epochs_done=step / steps_per_epoch,
        history=history,
        val=last_val,
        best_value=state["best_value"],
        seconds=time.perf_counter() - t_start,
    )


def _train_step(
    batch: dict[str, Any],
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    *,
    config: TrainConfig,
    norm: Normalization,
    size: tuple[int, int],
    device: torch.device,
    aug_ops: tuple[str, ...],
    aug_gen: torch.Generator,
    kind: str,
    amp: bool,
    use_gan: bool,
    head: torch.nn.Module | None = None,
    opt_h: torch.optim.Optimizer | None = None,
) -> dict[str, float]:
    """One D step then one G step (paper Eq. 2); returns the losses as floats.

    With a full-resolution ``head``, a head step follows: its own Adam on the masked squared error of log
    depth on the batch's full-resolution crops (refiner/crops.py), the U-Net's upsampled
    correction an input it does not train."""
    stored_rough = batch["rough"].to(device).float()
    gt = batch["gt"].to(device).float()
    valid = batch["valid"].to(device) & torch.isfinite(gt) & (gt > 0)
    rgb = resize(batch["rgb"].to(device).float(), size) if "rgb" in batch else None
    params = draw_params(stored_rough.shape[0], aug_ops, aug_gen) if aug_ops else None
    rough, quantiles = _model_rough(batch, stored_rough, params, norm=norm, kind=kind, size=size)
    if params is not None:
        aug = apply_params({"gt": gt, "valid": valid, "rgb": rgb}, params, kind=kind)
        gt, valid, rgb = aug["gt"], aug["valid"], aug.get("rgb")
    rough_unit = norm.rough_to_unit(rough, quantiles=quantiles) if config.inputs != "rgb" else None
    gt_unit = norm.depth_to_unit(gt)
    x = generator_input(rough_unit, rgb_to_unit(rgb) if rgb is not None else None, config.inputs)
    residual = config.effective_residual

    losses, out = gan_step(
        generator, discriminator, opt_g, opt_d, x, gt_unit, valid, rough_unit=rough_unit, residual=residual,
        gan_mode=config.gan_mode, lambda_l1=config.lambda_l1, amp=amp, use_gan=use_gan,
    )
    if head is not None:
        # The head learns from its own loss, given the U-Net's (detached) correction as a feature:
        # trained jointly through the correction, the U-Net's larger L1 and GAN gradients set the
        # pace and the head learned only a constant (degraded-sensor benchmark, docs/results.md).
        loss_head = _head_loss(batch, out, quantiles, head, params, norm=norm, kind=kind, device=device)
        opt_h.zero_grad(set_to_none=True)
        loss_head.backward()
        # under torchrun the head is not a DDP module: average its gradients as DDP does the U-Net's,
        # or each rank trains its own head and rank 0 saves one that saw 1/W of the data
        average_gradients(head)
        # the log-depth loss has rare large gradients (near-zero depths, new edges): clip the
        # head's gradient so one batch cannot undo the run
        torch.nn.utils.clip_grad_norm_(list(head.parameters()), HEAD_CLIP_NORM)
        opt_h.step()
        losses["loss_head"] = loss_head.detach().item()
    return losses


def gan_step(
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x: torch.Tensor,
    gt_unit: torch.Tensor,
    valid: torch.Tensor,
    *,
    rough_unit: torch.Tensor | None = None,
    residual: bool = False,
    gan_mode: str = "vanilla",
    lambda_l1: float = 100.0,
    amp: bool = False,
    use_gan: bool = True,
) -> tuple[dict[str, float], torch.Tensor]:
    """The cGAN update of paper Eq. 2 on a prepared batch: one D step (its loss halved), then one
    G step on ``gan + lambda_l1 * L1`` with invalid pixels masked. ``x`` is the generator's input,
    ``gt_unit`` the target in its output space, ``valid`` the pixels that count (holes are given
    the fake's values in D's real pair, so they look the same in both pairs); a ``residual``
    generator's output is added to ``rough_unit``. Without ``use_gan`` only the L1 step runs.
    ``amp`` runs the networks under bfloat16 autocast. Returns the losses and the generator's raw
    output (detached). :func:`train_refiner` and the benchmarks take this one step; the networks'
    outputs are cast to float32 only under ``amp`` (other dtypes, e.g. float64 checks, stay)."""
    device = x.device

    def full(t: torch.Tensor) -> torch.Tensor:
        return t.float() if amp else t

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = full(generator(x))
    fake = rough_unit + out if residual else out

    loss_d = torch.zeros((), device=device)
    if use_gan:
        real = torch.where(valid, gt_unit, fake.detach())  # holes look the same in both pairs
        opt_d.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            d_real = full(discriminator(torch.cat([x, real], dim=1)))
            d_fake = full(discriminator(torch.cat([x, fake.detach()], dim=1)))
        loss_d = 0.5 * (gan_loss(d_real, True, gan_mode) + gan_loss(d_fake, False, gan_mode))
        loss_d.backward()
        opt_d.step()

    opt_g.zero_grad(set_to_none=True)
    loss_l1 = masked_l1(fake, gt_unit, valid)
    loss_gan = torch.zeros((), device=device)
    if use_gan:
        # D's weights are not updated by the G step: no_sync keeps a DDP-wrapped D from waiting
        # for gradients, and backward(inputs=G's parameters) skips computing them (as pix2pix's
        # set_requires_grad(netD, False) does). The trajectory is the same; the step is cheaper.
        no_sync = getattr(discriminator, "no_sync", contextlib.nullcontext)
        with no_sync(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            d_out = full(discriminator(torch.cat([x, fake], dim=1)))
        loss_gan = gan_loss(d_out, True, gan_mode)
    loss_g = loss_gan + lambda_l1 * loss_l1
    trained = [p for group in opt_g.param_groups for p in group["params"] if p.requires_grad]
    loss_g.backward(inputs=trained)
    opt_g.step()
    losses = {"loss_d": loss_d.item(), "loss_g_gan": loss_gan.item(), "loss_g_l1": loss_l1.detach().item()}
    return losses, out.detach()


def _model_rough(batch, rough, params, *, norm: Normalization, kind: str, size) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model view's rough map as inference makes it, and for relative/disparity maps the range
    its units are taken from. Inference (``refine_full``) normalises the whole map at its stored
    size, which clips it to ``[0, max_depth]`` (metric) or its 2nd..98th percentiles, then resizes
    it; so here the stored map is augmented, clipped to that range, then resized (training resized
    first: a metric map's far sky, beyond max_depth, bled into its neighbours, and a relative map's
    percentiles were the shrunk map's). A crop dataset's batch brings the model view made so in
    the loader (nothing image-sized reaches the step), with its range; only flips and gain are
    left to apply, to both."""
    from ..augment import apply_gain, apply_params

    if "rough_limits" in batch:
        limits = batch["rough_limits"].to(rough.device).float()
        if params is not None:
            rough = apply_params({"rough": rough}, params, kind=kind)["rough"]
            limits = apply_gain(limits, params, kind)
    else:
        if params is not None:
            rough = apply_params({"rough": rough}, params, kind=kind)["rough"]
        limits = norm.rough_limits(rough)
        rough = resize(clip_to_limits(rough, limits), size)
    return rough, (limits if kind != "metric" else None)


def _head_loss(batch, out, quantiles, head, params, *, norm: Normalization, kind: str, device):
    """Masked mean squared error of log depth (Eigen et al. 2014's loss without its
    scale-invariant term) of the head's refinement of the batch's crops. Squared, not absolute:
    the errors to fix are large and few (at edges), and on the degraded-sensor benchmark the
    squared loss cut silog by 16% in 50 head steps where L1 had cut 2%."""
    from ..augment import apply_params
    from .crops import flip_boxes, upsample_crop
    from .head import apply_head, guide_from_rgb

    crop_rough = batch["crop_rough"].to(device).float()
    crop_gt = batch["crop_gt"].to(device).float()
    crop_valid = batch["crop_valid"].to(device)
    crop_rgb = batch["crop_rgb"].to(device).float() if "crop_rgb" in batch else None
    boxes = batch["crop_box"]
    if params is not None:  # the model view's flips and brightness, on the crops too
        aug = apply_params({"rough": crop_rough, "gt": crop_gt, "valid": crop_valid, "rgb": crop_rgb}, params, kind=kind)
        crop_rough, crop_gt, crop_valid, crop_rgb = aug["rough"], aug["gt"], aug["valid"], aug.get("rgb")
        boxes = flip_boxes(boxes, params.flip, crop_rough.shape[-1])
    crop = tuple(crop_rough.shape[-2:])
    up = upsample_crop(out, boxes, crop)
    rough_unit = norm.rough_to_unit(crop_rough, quantiles=quantiles)
    start = norm.unit_to_depth(rough_unit)  # the head refines the rough map, given the U-Net's correction
    guide = guide_from_rgb(crop_rgb, head.config.guide) if head.config.guide != "none" else None
    refined = apply_head(head, start, up, guide, max_depth=norm.max_depth, tile=None)
    valid = crop_valid & torch.isfinite(crop_gt) & (crop_gt > 0)
    err = (torch.log(refined) - torch.log(crop_gt.clamp_min(1e-6))).square()
    v = valid.to(err.dtype)
    return (err * v).sum() / v.sum().clamp_min(1.0)


def _resume(
    config, last_dir, refiner_meta, generator, discriminator, opt_g, opt_d, aug_gen, device, head=None, opt_h=None
) -> dict[str, Any]:
    meta = ckpt.read_config(last_dir)
    where = repr(str(last_dir))
    stored = dict(meta.get("refiner", {}))
    # read back as the configs they are: a field added since (e.g. skip_relu) takes the default the
    # checkpoint was trained with, as loading it does, instead of counting as a difference
    for key, cls in (("generator", GeneratorConfig), ("discriminator", DiscriminatorConfig)):
        if isinstance(stored.get(key), dict):
            stored[key] = cls.from_dict(stored[key]).to_dict()
    check_resume(
        json.loads(json.dumps(stored)), json.loads(json.dumps(refiner_meta)), where=where, what="refiner",
        advice="use the same preset/inputs/residual/size/cache, or --overwrite to start again",
    )
    # the options as they resolved when the run started (a preset's defaults may change since);
    # checkpoints written before this was stored resolve them against today's presets
    stored_train = meta.get("training_resolved") or TrainConfig.from_dict(meta.get("training", {})).resolved_dict()
    if "upsample" not in stored_train:  # checkpoints from before --upsample: the generator they stored used
        stored_train["upsample"] = stored.get("generator", {}).get("upsample", "transposed")
    check_resume(
        stored_train, config.resolved_dict(), where=where, ignore=RESUMABLE_CHANGES, paths=("train", "val"),
        advice="only epochs, max_steps, workers, device, log_every and val_limit may change (and the run "
        "directory may move); "
        "use --overwrite to start again or another --out",
    )
    ckpt.load_state(generator, ckpt.load_tensors(last_dir, ckpt.GENERATOR_FILE, meta), f"{last_dir}/{ckpt.GENERATOR_FILE}")
    ckpt.load_state(
        discriminator, ckpt.load_tensors(last_dir, ckpt.DISCRIMINATOR_FILE, meta), f"{last_dir}/{ckpt.DISCRIMINATOR_FILE}"
    )
    flat = ckpt.load_tensors(last_dir, ckpt.OPTIMIZER_FILE, meta)
    ckpt.unflatten_optimizer(opt_g, generator, "g", flat)
    ckpt.unflatten_optimizer(opt_d, discriminator, "d", flat)
    if head is not None:
        ckpt.load_state(head, ckpt.load_tensors(last_dir, ckpt.HEAD_FILE, meta), f"{last_dir}/{ckpt.HEAD_FILE}")
        ckpt.unflatten_optimizer(opt_h, head, "h", flat)
    set_rng_state(ckpt.load_tensors(last_dir, ckpt.RNG_FILE, meta), augment=aug_gen)
    s = meta.get("state", {})
    return {
        "epoch": int(s.get("epoch", 0)),
        "epoch_step": int(s.get("epoch_step", 0)),
        "step": int(s.get("step", 0)),
        "best_value": s.get("best_value"),
        "best_epoch": s.get("best_epoch"),
        "best_step": s.get("best_step"),
        "schedule_steps": s.get("schedule_steps"),
    }
