"""Helpers for running under ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU.

Outside ``torchrun`` every function degrades to the single-process answer, so library code can
call them unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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


def cleanup() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
