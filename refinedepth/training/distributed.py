"""Device and process-group set-up and tear-down: ``--device``, and ``torchrun`` (DDP: NCCL on
CUDA, gloo on CPU).

Outside ``torchrun`` every function degrades to the single-process answer, so library code can
call them unconditionally. :func:`session` is what a trainer runs in: it resolves the device, joins
the process group, picks the local GPU, and leaves the group again at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from ..errors import ConfigError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(spec: str | None = "auto"):
    """Return the torch device for ``spec``; ``auto`` picks CUDA when available, else CPU."""
    import torch

    spec = (spec or "auto").strip().lower()
    if not _DEVICE_RE.match(spec):
        raise ConfigError(f"unknown device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available here; use --device cpu")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return torch.device(spec)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def dist_info() -> DistInfo:
    """Rank, world size and local rank from the environment (torchrun sets them)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device=None) -> DistInfo:
    """Initialise the default process group if launched by torchrun (idempotent).

    The backend is NCCL when ``device`` is CUDA, gloo otherwise. Returns the :class:`DistInfo`.
    """
    import torch
    import torch.distributed as dist

    info = dist_info()
    if not launched_by_torchrun():
        return info
    if not dist.is_initialized():
        is_cuda = device is not None and torch.device(device).type == "cuda"
        if is_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if is_cuda else "gloo")
    return info


def setup(device_spec: str | None = "auto"):
    """``(device, DistInfo)`` for a training run: the resolved ``--device``, the process group
    joined under ``torchrun``, and each rank's own GPU (``cuda:LOCAL_RANK``)."""
    import torch

    device = resolve_device(device_spec)
    info = init_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    return device, info


@contextlib.contextmanager
def session(device_spec: str | None = "auto"):
    """:func:`setup` as a context: ``with session(spec) as (device, info): ...``. On exit the
    process group is destroyed if this call created it (a caller's own group is left alone)."""
    import torch.distributed as dist

    owned = launched_by_torchrun() and not (dist.is_available() and dist.is_initialized())
    device, info = setup(device_spec)
    try:
        yield device, info
    finally:
        if owned:
            cleanup()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor):
    """Sum ``tensor`` across ranks in place (no-op when not distributed) and return it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(module) -> None:
    """Average ``module``'s gradients across ranks in place (no-op when not distributed): what
    DDP does for the modules it wraps, for one trained beside them with its own optimiser. A
    parameter without a gradient on this rank takes part with zeros, so every rank reduces the
    same tensors."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)


def broadcast_buffers(module, src: int = 0) -> None:
    """Give every rank ``src``'s buffers (BatchNorm running statistics) in place (no-op when not
    distributed): after a training step each rank's DDP replica has updated them with its own
    batch, and a model evaluated on every rank must be the one rank ``src`` saves."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for b in module.buffers():
        dist.broadcast(b, src=src)


def cleanup() -> None:
    """Leave (destroy) the default process group, if there is one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "average_gradients",
    "broadcast_buffers",
    "barrier",
    "cleanup",
    "dist_info",
    "init_distributed",
    "launched_by_torchrun",
    "resolve_device",
    "session",
    "setup",
]
