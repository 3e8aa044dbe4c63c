"""Refiner checkpoints: the refiner's layout of a :mod:`refinedepth.training.checkpoint`
directory (written atomically, every file's size and sha256 in ``config.json``).

Layout of one checkpoint directory::

    config.json                  what the refiner is (preset, layers, inputs, normalisation), the
                                 training config, the progress state, and each file's size/sha256
    generator.safetensors        generator state dict (weights and BatchNorm buffers)
    discriminator.safetensors    discriminator state dict (training only)
    optimizer.safetensors        both Adam states, flattened: ``g.<param>.exp_avg`` ...
    rng.safetensors              RNG states (torch CPU/CUDA, the augmentation generator)

A training run directory holds ``last/`` and ``best/`` checkpoints and ``log.jsonl``
(:class:`refinedepth.training.rundir.RunDir`). Atomicity, recovery of an interrupted swap and
the hash checks are :mod:`refinedepth.training.checkpoint`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..config import RUN_CHECKPOINTS
from ..errors import CheckpointError
from ..training import checkpoint as _base
from ..training.checkpoint import (  # noqa: F401  (re-exported: the refiner's API since 0.1)
    CONFIG_NAME,
    copy_checkpoint,
    flatten_optimizer,
    load_state,
    recover,
    unflatten_optimizer,
    verify_file,
)

FORMAT = "refinedepth-refiner"
FORMAT_VERSION = 1
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
HEAD_FILE = "head.safetensors"  # the full-resolution head of a guided refiner
_old_path = _base.old_path


def save_checkpoint(
    path: str | os.PathLike,
    *,
    config: dict[str, Any],
    generator: torch.nn.Module,
    discriminator: torch.nn.Module | None = None,
    optimizers: dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    head: torch.nn.Module | None = None,
) -> Path:
    """Write a refiner checkpoint directory atomically and return its path.

    ``config`` is stored in ``config.json`` (with ``files`` added); ``optimizers`` maps a prefix
    (``"g"``, ``"d"``) to ``(optimizer, module)``.
    """
    files: dict[str, dict[str, torch.Tensor]] = {GENERATOR_FILE: _base.state_dict_tensors(generator)}
    if head is not None:
        files[HEAD_FILE] = _base.state_dict_tensors(head)
    if discriminator is not None:
        files[DISCRIMINATOR_FILE] = _base.state_dict_tensors(discriminator)
    if optimizers:
        flat: dict[str, torch.Tensor] = {}
        for prefix, (opt, module) in optimizers.items():
            flat.update(flatten_optimizer(opt, module, prefix))
        files[OPTIMIZER_FILE] = flat
    if rng:
        files[RNG_FILE] = dict(rng)
    return _base.save_checkpoint_dir(path, files, config, format=FORMAT, format_version=FORMAT_VERSION)


# -- reading ------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint directory from a checkpoint or a run directory (``best/`` first, then ``last/``).

    Reading never renames anything: if a save was interrupted between its two renames (or is in
    progress right now in another process), the complete ``.NAME.old`` twin is used as it is.
    """
    path = Path(path)
    twin = _base.complete_twin(path)
    if twin is not None:
        return twin
    if not path.exists():
        raise CheckpointError(
            f"refiner checkpoint {str(path)!r} does not exist: expected a directory written by "
            "'refinedepth train-refiner --out DIR'"
        )
    if not path.is_dir():
        raise CheckpointError(f"refiner checkpoint {str(path)!r} is a file: expected a checkpoint directory")
    if (path / CONFIG_NAME).is_file():
        return path
    order = [which] + [w for w in RUN_CHECKPOINTS if w != which]
    for sub in order:
        for candidate in (path / sub, _old_path(path / sub)):
            if (candidate / CONFIG_NAME).is_file():
                return candidate
    raise CheckpointError(
        f"{str(path)!r} is not a refiner checkpoint: expected {CONFIG_NAME} in it or in its best/ or "
        "last/ sub-directory (was training interrupted before the first checkpoint?)"
    )


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a refiner checkpoint directory, checked for format."""
    return _base.read_config(path, format=FORMAT, format_version=FORMAT_VERSION, what="refiner checkpoint")


def load_tensors(path: str | os.PathLike, name: str, meta: dict[str, Any] | None = None, device="cpu") -> dict[str, torch.Tensor]:
    """Verify and load one safetensors file of a refiner checkpoint."""
    meta = meta if meta is not None else read_config(path)
    return _base.load_tensors(path, name, meta, device=device)


def describe_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary of a refiner checkpoint or run directory (for ``refinedepth inspect``).

    Reads only ``config.json`` and the safetensors headers; files are size-checked, not hashed.
    """
    from safetensors import safe_open

    root = Path(path)
    ckpt = resolve_checkpoint(root)
    meta = read_config(ckpt)
    refiner = meta.get("refiner", {})
    out: dict[str, Any] = {
        "kind": "refiner-checkpoint",
        "path": str(ckpt),
        "format_version": meta.get("format_version"),
        "created": meta.get("created"),
        "refinedepth_version": meta.get("refinedepth_version"),
        "preset": refiner.get("preset"),
        "inputs": refiner.get("inputs"),
        "residual": refiner.get("residual"),
        "size": refiner.get("size"),
        "normalization": refiner.get("normalization"),
        "encoder": refiner.get("generator", {}).get("encoder"),
        "decoder": refiner.get("generator", {}).get("decoder"),
        "discriminator_layers": refiner.get("discriminator", {}).get("layers"),
        "state": meta.get("state", {}),
        "source": meta.get("source", {}),
        "files": {},
    }
    params = {}
    for name, info in meta.get("files", {}).items():
        f = ckpt / name
        # "ok": the size recorded in config.json (not hashed here: `inspect --verify` hashes)
        entry = {"bytes": info.get("bytes"), "ok": f.is_file() and f.stat().st_size == info.get("bytes")}
        out["files"][name] = entry
        if entry["ok"] and name in (GENERATOR_FILE, DISCRIMINATOR_FILE):
            try:
                with safe_open(str(f), framework="pt") as sf:
                    n = 0
                    for key in sf.keys():
                        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                            continue
                        shape = sf.get_slice(key).get_shape()
                        count = 1
                        for s in shape:
                            count *= int(s)
                        n += count
            except Exception as exc:  # a damaged header: described, not a traceback
                entry["ok"] = False
                entry["damaged"] = f"unreadable safetensors header ({' '.join(str(exc).split())}); copy the checkpoint again or re-train it"
                continue
            params[name.split(".")[0]] = n
    out["parameters"] = params
    if ckpt != root:
        out["run"] = str(root)
        out["checkpoints"] = sorted(p.name for p in root.iterdir() if (p / CONFIG_NAME).is_file())
        log = root / "log.jsonl"
        if log.is_file():
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
            out["log_entries"] = len(lines)
            if lines:
                try:
                    out["last_log"] = json.loads(lines[-1])
                except ValueError:
                    pass
    out["training"] = meta.get("training", {})
    return out
