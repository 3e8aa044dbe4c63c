"""Seeding: per-purpose generators derived from a run's seed, and RNG state for checkpoints.

Trainers draw shuffling and augmentation from their own ``torch.Generator`` objects, derived
from ``(seed, purpose, epoch, rank)``, so a resumed run draws what an uninterrupted one would.
Torch's global RNG (dropout) is seeded by the trainers that need it, inside
:func:`preserve_global_rng`: a library call leaves the caller's global RNG state as it found it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (NumPy's ``SeedSequence``; any change gives new draws)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(*parts: int):
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    import torch

    return torch.Generator().manual_seed(derive_seed(*parts))


def rng_state(**generators) -> dict:
    """Torch's CPU (and initialised CUDA) RNG states plus the named generators', as tensors."""
    import torch

    state = {"torch_cpu": torch.get_rng_state()}
    state.update({name: g.get_state() for name, g in generators.items()})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda_{i}"] = s
    return state


def set_rng_state(state: dict, **generators) -> None:
    """Inverse of :func:`rng_state`."""
    import torch

    torch.set_rng_state(state["torch_cpu"])
    for name, g in generators.items():
        g.set_state(state[name])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


@contextlib.contextmanager
def preserve_global_rng() -> Iterator[None]:
    """Run a block that seeds and draws from torch's global RNG (CPU and every CUDA device
    already initialised) and restore the states afterwards, so library functions that seed
    (trainers, the cache builder) do not change the caller's random stream."""
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        yield


__all__ = ["derive_seed", "generator", "rng_state", "set_rng_state", "preserve_global_rng"]
