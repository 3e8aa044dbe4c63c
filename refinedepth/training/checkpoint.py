"""Checkpoint directories: safetensors files plus ``config.json``, written atomically, with hashes.

The one checkpoint writer of refinedepth (both training stages use it; the refiner's layout is
in :mod:`refinedepth.refiner.checkpoint`). A checkpoint is a directory::

    config.json          the caller's metadata, ``format``/``format_version``, and each file's
                         size and sha256 under ``files``
    NAME.safetensors     one file per tensor group (weights, optimiser state, RNG states ...)

Atomicity: the checkpoint is written into a hidden temporary sibling directory, every file is
flushed to disk (``fsync``), ``config.json`` goes last, and only then is it swapped in by renames
(``last -> .last.old``, ``tmp -> last``, remove ``.last.old``). A crash at any point leaves either
the complete old or the complete new checkpoint; if it falls between the two renames, readers use
``.last.old`` as it is and the next save (or :func:`recover`) renames it back. Loading checks
every file's size and hash against ``config.json``, so a truncated or altered file is refused
with a message naming it.

Files get the permissions the user's umask gives (``0644`` under ``022``), like any other tool's;
safetensors alone would write ``0600``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

CONFIG_NAME = "config.json"


# -- files ------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the usual set-and-restore
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give a file we wrote the mode a plain ``open()`` would have: ``0o666 & ~umask``."""
    os.chmod(path, 0o666 & ~current_umask())


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
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


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """One safetensors file, flushed, with umask permissions (not atomic by itself: write it into
    a temporary directory or name and rename)."""
    from safetensors.torch import save_file

    payload = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(payload, str(path), metadata=dict(metadata) if metadata else None)
    apply_umask(path)
    fsync_file(path)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """``payload`` as indented JSON at ``path``, via a flushed temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    fsync_file(tmp)
    os.replace(tmp, path)


# -- optimiser state ----------------------------------------------------------------------------
def flatten_optimizer(optimizer, module, prefix: str) -> dict[str, Any]:
    """An optimiser's per-parameter state as flat tensors keyed ``<prefix>.<param name>.<key>``."""
    import torch

    module = getattr(module, "module", module)  # unwrap DDP
    names = {id(p): n for n, p in module.named_parameters()}
    out: dict[str, Any] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                out[f"{prefix}.{names[id(p)]}.{key}"] = t.detach().to("cpu").contiguous().clone()
    return out


def unflatten_optimizer(optimizer, module, prefix: str, tensors: Mapping[str, Any]) -> None:
    """Inverse of :func:`flatten_optimizer` (load into an optimiser over the same parameters)."""
    module = getattr(module, "module", module)
    names = {id(p): n for n, p in module.named_parameters()}
    sd = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
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


def state_dict_tensors(module) -> dict[str, Any]:
    """A module's state dict (DDP unwrapped) as detached CPU copies."""
    module = getattr(module, "module", module)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def load_state(module, tensors: Mapping[str, Any], source: str) -> None:
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
    module.load_state_dict(dict(tensors), strict=True)


# -- directories --------------------------------------------------------------------------------
def old_path(path: str | os.PathLike) -> Path:
    """Where a checkpoint directory waits while its successor is swapped in."""
    path = Path(path)
    return path.parent / f".{path.name}.old"


def complete_twin(path: str | os.PathLike) -> Path | None:
    """For a checkpoint directory ``path`` that is missing because a save was interrupted between
    its two renames: its ``.old`` twin when that is a complete checkpoint (it has its config);
    else ``None``."""
    path, twin = Path(path), old_path(path)
    return twin if not path.exists() and (twin / CONFIG_NAME).is_file() else None


def recover(path: str | os.PathLike) -> None:
    """Finish an interrupted swap: if ``path`` is missing but its ``.old`` twin exists, restore it."""
    path = Path(path)
    old = old_path(path)
    if not path.exists() and old.exists():
        os.replace(old, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


# temporaries of our writers: ".NAME.tmp-PID[-RANDOM]" (here) and ".NAME.PID.tmp" (the backbone
# contract's weights files)
_DEBRIS = re.compile(r"^\..+?(?:\.tmp-(\d+)(?:-[0-9a-f]+)?|\.(\d+)\.tmp)$")


def remove_debris(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and directories that killed writers left in ``directory``;
    those of live processes are kept. Returns what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _DEBRIS.match(entry.name)
        if match is None or _pid_alive(int(match.group(1) or match.group(2))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _tmp_sibling(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _swap_in(tmp: Path, path: Path) -> None:
    old = old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staged(path: Path):
    """A hidden temporary sibling of ``path`` to fill; swapped in on success, removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = _tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        fsync_dir(tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint_dir(
    path: str | os.PathLike,
    files: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
    *,
    format: str,
    format_version: int = 1,
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring) and return its path.

    ``files`` maps file names (``"model.safetensors"``) to tensor dicts; ``config`` goes into
    ``config.json`` together with ``format``, ``format_version``, ``created`` and ``files``.
    """
    path = Path(path)
    with _staged(path) as tmp:
        records = {}
        for name, tensors in files.items():
            target = tmp / name
            save_tensors(target, tensors, {"format": format})
            records[name] = {"bytes": target.stat().st_size, "sha256": sha256_file(target)}
        meta = {
            "format": format,
            "format_version": format_version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **config,
            "files": records,
        }
        cfg = tmp / CONFIG_NAME
        cfg.write_text(json.dumps(meta, indent=2) + "\n")
        fsync_file(cfg)
    return path


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Atomically make ``dst`` a copy of checkpoint ``src`` (hard links where possible)."""
    src, dst = Path(src), Path(dst)
    with _staged(dst) as tmp:
        for f in src.iterdir():
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    return dst


# -- reading ------------------------------------------------------------------------------------
def read_config(path: str | os.PathLike, *, format: str, format_version: int = 1, what: str = "checkpoint") -> dict[str, Any]:
    """``config.json`` of a checkpoint directory, checked for ``format`` and version."""
    path = Path(path)
    cfg_path = path / CONFIG_NAME
    try:
        meta = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {CONFIG_NAME}: expected a {what} directory") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint file {str(cfg_path)!r} is not valid JSON ({exc}); the checkpoint is corrupt"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != format:
        raise CheckpointError(
            f"{str(cfg_path)!r} is not a {what} config: expected format {format!r}, "
            f"got {meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}"
        )
    if int(meta.get("format_version", 0)) > format_version:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {meta.get('format_version')}, newer than this "
            f"refinedepth supports ({format_version}); upgrade refinedepth"
        )
    return meta


def _what_to_do(path: Path) -> str:
    """Advice for a damaged checkpoint, by its role in a run directory."""
    name = path.name.lstrip(".").removesuffix(".old")
    if name == "best":
        return "use the run's last/ checkpoint instead or retrain"
    if name == "last":
        return "it cannot be resumed: start again with --overwrite (best/, if present, still loads)"
    return "use another checkpoint or retrain"


def verify_file(path: str | os.PathLike, name: str, meta: Mapping[str, Any], check_hash: bool = True) -> Path:
    """Check a checkpoint file's presence, size and hash against ``config.json``."""
    path = Path(path)
    f = path / name
    info = meta.get("files", {}).get(name)
    advice = _what_to_do(path)
    if info is None:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not contain {name} (config.json lists {sorted(meta.get('files', {}))})"
        )
    if not f.is_file():
        raise CheckpointError(f"checkpoint file {str(f)!r} is missing; the checkpoint is incomplete, {advice}")
    size = f.stat().st_size
    if size != info["bytes"]:
        what = "truncated" if size < info["bytes"] else "larger than recorded"
        raise CheckpointError(
            f"checkpoint file {str(f)!r} is {what}: expected {info['bytes']} bytes, found {size}; "
            f"the checkpoint is corrupt, {advice}"
        )
    if check_hash and sha256_file(f) != info["sha256"]:
        raise CheckpointError(
            f"checkpoint file {str(f)!r} does not match its sha256 in config.json; the checkpoint is "
            f"corrupt, {advice}"
        )
    return f


def load_tensors(path: str | os.PathLike, name: str, meta: Mapping[str, Any], device="cpu") -> dict[str, Any]:
    """Verify and load one safetensors file of a checkpoint."""
    from safetensors.torch import load_file

    f = verify_file(path, name, meta)
    try:
        return load_file(str(f), device=str(device))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint file {str(f)!r} cannot be read as safetensors ({exc})") from None


__all__ = [
    "CONFIG_NAME",
    "apply_umask",
    "copy_checkpoint",
    "current_umask",
    "flatten_optimizer",
    "load_state",
    "load_tensors",
    "old_path",
    "read_config",
    "recover",
    "remove_debris",
    "save_checkpoint_dir",
    "save_tensors",
    "sha256_file",
    "state_dict_tensors",
    "unflatten_optimizer",
    "verify_file",
    "write_json_atomic",
]
