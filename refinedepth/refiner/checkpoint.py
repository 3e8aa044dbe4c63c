"""Refiner checkpoints: a directory of safetensors files plus ``config.json``, written atomically.

Layout of one checkpoint directory::

    config.json                  what the refiner is (preset, layers, inputs, normalisation), the
                                 training config, the progress state, and each file's size/sha256
    generator.safetensors        generator state dict (weights and BatchNorm buffers)
    discriminator.safetensors    discriminator state dict (training only)
    optimizer.safetensors        both Adam states, flattened: ``g.<param>.exp_avg`` ...
    rng.safetensors              RNG states (torch CPU/CUDA, the augmentation generator)

A training run directory holds ``last/`` and ``best/`` checkpoints and ``log.jsonl``.

Atomicity: a checkpoint is written into a hidden temporary sibling directory, its files are
flushed, ``config.json`` goes last, and only then is it swapped in by renames
(``last -> .last.old``, ``tmp -> last``, remove ``.last.old``). A crash at any point leaves either
the complete old or the complete new checkpoint; if the crash falls between the two renames,
loading uses ``.last.old`` as it is (readers never rename) and the next save or ``--resume``
renames it back. Loading checks every file's size and hash against ``config.json``, so a
truncated or altered file is refused with a message naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

FORMAT = "refinedepth-refiner"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


# -- writing ------------------------------------------------------------------------------------
def _state_dict_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    module = getattr(module, "module", module)  # unwrap DDP
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def flatten_optimizer(optimizer: torch.optim.Optimizer, module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Adam state as flat tensors keyed ``<prefix>.<param name>.<state key>``."""
    module = getattr(module, "module", module)
    names = {id(p): n for n, p in module.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                out[f"{prefix}.{names[id(p)]}.{key}"] = t.detach().to("cpu").contiguous().clone()
    return out


def unflatten_optimizer(
    optimizer: torch.optim.Optimizer, module: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor]
) -> None:
    """Inverse of :func:`flatten_optimizer` (load into an optimizer over the same parameters)."""
    module = getattr(module, "module", module)
    names = {id(p): n for n, p in module.named_parameters()}
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    index = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            head = f"{prefix}.{names[id(p)]}."
            entry = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
            if entry:
                state[index] = entry
            index += 1
    sd["state"] = state
    optimizer.load_state_dict(sd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _old_path(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def recover(path: str | os.PathLike) -> None:
    """Finish an interrupted swap: if ``path`` is missing but its ``.old`` twin exists, restore it."""
    path = Path(path)
    old = _old_path(path)
    if not path.exists() and old.exists():
        os.replace(old, path)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    config: dict[str, Any],
    generator: torch.nn.Module,
    discriminator: torch.nn.Module | None = None,
    optimizers: dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``config`` is stored in ``config.json`` (with ``files`` added); ``optimizers`` maps a prefix
    (``"g"``, ``"d"``) to ``(optimizer, module)``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        payloads: dict[str, dict[str, torch.Tensor]] = {GENERATOR_FILE: _state_dict_tensors(generator)}
        if discriminator is not None:
            payloads[DISCRIMINATOR_FILE] = _state_dict_tensors(discriminator)
        if optimizers:
            flat: dict[str, torch.Tensor] = {}
            for prefix, (opt, module) in optimizers.items():
                flat.update(flatten_optimizer(opt, module, prefix))
            payloads[OPTIMIZER_FILE] = flat
        if rng:
            payloads[RNG_FILE] = {k: v.detach().cpu().contiguous() for k, v in rng.items()}
        files = {}
        for name, tensors in payloads.items():
            target = tmp / name
            save_file(tensors, str(target), metadata={"format": FORMAT})
            _fsync_file(target)
            files[name] = {"bytes": target.stat().st_size, "sha256": _sha256(target)}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **config,
            "files": files,
        }
        cfg = tmp / CONFIG_NAME
        cfg.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
        _fsync_file(cfg)
        _fsync_dir(tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    old = _old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Atomically make ``dst`` a copy of checkpoint ``src`` (hard links where possible)."""
    src, dst = Path(src), Path(dst)
    recover(dst)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for f in src.iterdir():
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
        _fsync_dir(tmp)
        _swap_in(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


# -- reading ------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint directory from a checkpoint or a run directory (``best/`` first, then ``last/``).

    Reading never renames anything: if a save was interrupted between its two renames (or is in
    progress right now in another process), the complete ``.NAME.old`` twin is used as it is.
    """
    path = Path(path)
    if not path.exists() and (_old_path(path) / CONFIG_NAME).is_file():
        return _old_path(path)
    if not path.exists():
        raise CheckpointError(
            f"refiner checkpoint {str(path)!r} does not exist: expected a directory written by "
            "'refinedepth train-refiner --out DIR'"
        )
    if not path.is_dir():
        raise CheckpointError(f"refiner checkpoint {str(path)!r} is a file: expected a checkpoint directory")
    if (path / CONFIG_NAME).is_file():
        return path
    order = [which] + [w for w in ("best", "last") if w != which]
    for sub in order:
        for candidate in (path / sub, _old_path(path / sub)):
            if (candidate / CONFIG_NAME).is_file():
                return candidate
    raise CheckpointError(
        f"{str(path)!r} is not a refiner checkpoint: expected {CONFIG_NAME} in it or in its best/ or "
        "last/ sub-directory (was training interrupted before the first checkpoint?)"
    )


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a checkpoint directory, checked for format."""
    path = Path(path)
    cfg_path = path / CONFIG_NAME
    try:
        meta = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {CONFIG_NAME}: expected a refiner checkpoint directory") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {str(cfg_path)!r} is not valid JSON ({exc}); the checkpoint is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(cfg_path)!r} is not a refiner checkpoint config: expected format {FORMAT!r}, "
            f"got {meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}"
        )
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {meta.get('format_version')}, newer than this "
            f"refinedepth supports ({FORMAT_VERSION}); upgrade refinedepth"
        )
    return meta


def verify_file(path: Path, name: str, meta: dict[str, Any], check_hash: bool = True) -> Path:
    """Check a checkpoint file's presence, size and hash against ``config.json``."""
    f = path / name
    info = meta.get("files", {}).get(name)
    if info is None:
        raise CheckpointError(f"checkpoint {str(path)!r} does not contain {name} (config.json lists {sorted(meta.get('files', {}))})")
    if not f.is_file():
        raise CheckpointError(f"checkpoint file {str(f)!r} is missing; the checkpoint is incomplete, use another one or retrain")
    size = f.stat().st_size
    if size != info["bytes"]:
        what = "truncated" if size < info["bytes"] else "larger than recorded"
        raise CheckpointError(
            f"checkpoint file {str(f)!r} is {what}: expected {info['bytes']} bytes, found {size}; "
            "the checkpoint is corrupt, use another one (e.g. last/ instead of best/) or retrain"
        )
    if check_hash and _sha256(f) != info["sha256"]:
        raise CheckpointError(
            f"checkpoint file {str(f)!r} does not match its sha256 in config.json; the checkpoint is "
            "corrupt, use another one or retrain"
        )
    return f


def load_tensors(path: str | os.PathLike, name: str, meta: dict[str, Any] | None = None, device="cpu") -> dict[str, torch.Tensor]:
    """Verify and load one safetensors file of a checkpoint."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = meta if meta is not None else read_config(path)
    f = verify_file(path, name, meta)
    try:
        return load_file(str(f), device=str(device))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint file {str(f)!r} cannot be read as safetensors ({exc})") from None


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly, turning mismatches into a one-line :class:`CheckpointError`."""
    module = getattr(module, "module", module)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    bad = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:3]}")
        if bad:
            k = bad[0]
            detail.append(f"{k} has shape {tuple(tensors[k].shape)}, expected {tuple(expected[k].shape)}")
        raise CheckpointError(f"{source} does not match the architecture in config.json: {'; '.join(detail)}")
    module.load_state_dict(tensors, strict=True)


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
        entry = {"bytes": info.get("bytes"), "ok": f.is_file() and f.stat().st_size == info.get("bytes")}
        out["files"][name] = entry
        if entry["ok"] and name in (GENERATOR_FILE, DISCRIMINATOR_FILE):
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
