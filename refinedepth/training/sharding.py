"""Epoch sharding: each rank's share of an epoch's permutation, the same on every rank."""

from __future__ import annotations

import math


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of epoch ``epoch`` (a permutation of ``range(n)`` seeded by both)."""
    import torch

    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


def shard(order: list[int], rank: int = 0, world: int = 1, *, pad: bool = True) -> list[int]:
    """Rank ``rank``'s share of ``order``: every ``world``-th sample.

    ``pad=True`` (training) repeats samples from the start so every rank gets
    ``ceil(len / world)`` of them (DDP needs the same number of steps everywhere); ``pad=False``
    (evaluation) visits each sample exactly once across ranks."""
    if world <= 1:
        return list(order)
    if pad and order:
        per_rank = math.ceil(len(order) / world)
        order = (list(order) * math.ceil(per_rank * world / len(order)))[: per_rank * world]
    return list(order)[rank::world]


def epoch_indices(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's share of epoch ``epoch``'s permutation (padded so every rank gets as many)."""
    return shard(epoch_permutation(n, seed, epoch), rank, world, pad=True)


def batches(indices: list[int], batch_size: int, *, drop_last: bool = False) -> list[list[int]]:
    """``indices`` cut into batches of ``batch_size`` (the last one shorter, or dropped)."""
    out = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if drop_last and len(out) > 1 and len(out[-1]) < batch_size:
        out.pop()
    return out


__all__ = ["batches", "epoch_indices", "epoch_permutation", "shard"]
