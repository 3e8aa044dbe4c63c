"""Sharded writing: which samples each rank writes (:func:`shard_range`), where its file lives
(:func:`shard_path`), and joining complete shards into one file of HDF5 virtual datasets
(:func:`merge_shards`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import CacheError, ConfigError
from .config import dumps
from .reader import open_cache


def shard_range(num_samples: int, index: int, count: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``index`` of ``count``: contiguous blocks, sizes differing by at
    most one, earlier shards larger."""
    if not 0 <= index < count:
        raise ConfigError(f"shard index {index} outside 0..{count - 1}")
    base, extra = divmod(num_samples, count)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def shard_path(out: str | os.PathLike, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of ``out`` lives: ``<stem>.shards/<stem>-NofM.h5`` next to
    ``out``. The merged file refers to it by this relative path, so moving the directory holding
    both keeps the virtual datasets working."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shards") / f"{out.stem}-{index + 1:05d}-of-{count:05d}.h5"


def replaced_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """Where ``cache --overwrite`` under torchrun keeps the cache it replaces until the new one is
    merged: ``OUT.replaced`` and ``<stem>.shards.replaced/``."""
    out = Path(out)
    return out.with_name(out.name + ".replaced"), out.with_name(f"{out.stem}.shards.replaced")


def set_aside(out: str | os.PathLike) -> None:
    """``cache --overwrite`` under torchrun (rank 0, before any shard is written): move ``out`` and
    its shard folder to :func:`replaced_paths` (the folder too, since the new shards take its name).
    Where an interrupted overwrite already set a cache aside, that one is kept and what stands in
    its place (the interrupted replacement) is removed instead."""
    import shutil

    from .writer import no_writer

    out = Path(out)
    folder = out.with_name(f"{out.stem}.shards")
    file_aside, folder_aside = replaced_paths(out)
    with no_writer(out) if out.exists() else contextlib.nullcontext():  # never while another writes it
        if file_aside.exists() or folder_aside.exists():
            out.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            return
        if out.exists():
            os.replace(out, file_aside)
        if folder.exists():
            os.replace(folder, folder_aside)


def drop_replaced(out: str | os.PathLike) -> None:
    """The new cache is merged: delete the one :func:`set_aside` kept."""
    import shutil

    file_aside, folder_aside = replaced_paths(out)
    file_aside.unlink(missing_ok=True)
    shutil.rmtree(folder_aside, ignore_errors=True)


def merge_shards(
    out: str | os.PathLike,
    shards: Iterable[str | os.PathLike] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Join complete shards into ``out`` through HDF5 virtual datasets.

    ``rough``, ``gt``, ``rgb`` and ``valid`` become virtual datasets mapping each shard's block;
    ``sample_id`` and ``done`` are copied (they are small). Source files are recorded relative to
    ``out``'s directory, which HDF5 searches first, so the pair can be moved together.
    ``shards=None`` takes every ``<stem>.shards/<stem>-*-of-*.h5`` next to ``out``.
    """
    out = Path(out)
    if shards is None:
        folder = out.with_name(f"{out.stem}.shards")
        shards = sorted(folder.glob(f"{out.stem}-*-of-*.h5"))
        if not shards:
            raise CacheError(f"no shards found in {folder}/ for {out}; run 'refinedepth cache' under torchrun first")
    shards = [Path(s) for s in shards]
    infos = []
    config = None
    first_attrs: dict[str, Any] = {}
    for s in shards:
        with open_cache(s) as r:
            if "shard_start" not in r.attrs:
                raise CacheError(f"{s} is a whole cache, not a shard (no shard_start attribute); nothing to merge")
            if config is None:
                config = r.config
                first_attrs = dict(r.attrs)
            elif r.config != config:
                raise CacheError(f"{s} was made by a different command than {shards[0]}: {'; '.join(r.config.differences(config)[:3])}")
            if not r.complete:
                raise CacheError(
                    f"shard {s} has {r.num_done} of {len(r)} samples done; re-run the same command "
                    "(under torchrun) to finish it before merging"
                )
            infos.append((int(r.attrs["shard_start"]), int(r.attrs["shard_stop"]), s, r.sample_ids(), r.datasets()))
    assert config is not None
    infos.sort(key=lambda t: t[0])
    expected = 0
    for start, stop, s, _, _ in infos:
        if start != expected:
            raise CacheError(
                f"shards do not tile 0..{config.num_samples - 1}: expected one starting at sample "
                f"{expected}, found {s} starting at {start}; is a shard missing?"
            )
        expected = stop
    if expected != config.num_samples:
        raise CacheError(
            f"shards cover samples 0..{expected - 1} of {config.num_samples}; a shard is missing"
        )
    if out.exists() and not overwrite:
        raise CacheError(f"{out} already exists; pass --overwrite to replace it")
    n = config.num_samples
    tmp = out.with_name(out.name + ".merging")
    base = out.resolve().parent
    with h5py.File(tmp, "w", libver="latest") as f:
        for name, meta in infos[0][4].items():
            if name in ("sample_id", "done"):
                continue
            shape = (n, *meta["shape"][1:])
            layout = h5py.VirtualLayout(shape=shape, dtype=meta["dtype"])
            for start, stop, s, _, _ in infos:
                rel = os.path.relpath(s.resolve(), base)
                layout[start:stop] = h5py.VirtualSource(rel, name, shape=(stop - start, *meta["shape"][1:]))
            f.create_virtual_dataset(name, layout, fillvalue=0)
        ids = [sid for *_, sids, _ in infos for sid in sids]
        checksums = all(info["fletcher32"] for *_, meta in infos for info in meta.values()
                        if not info["virtual"] and info["chunks"])
        if checksums and n:
            encoded = [i.encode("utf-8") for i in ids]
            dtype = h5py.string_dtype("utf-8", max(1, max(len(e) for e in encoded)))
            small = {"chunks": (min(n, 1024),), "fletcher32": True}
            f.create_dataset("sample_id", data=np.array(encoded, dtype=dtype), **small)
            f.create_dataset("done", data=np.ones(n, dtype=np.uint8), **small)
        else:
            f.create_dataset("sample_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("done", data=np.ones(n, dtype=np.uint8))
        for key, value in first_attrs.items():
            if key.startswith("shard_"):
                continue
            f.attrs[key] = value
        f.attrs["shards"] = dumps([os.path.relpath(s.resolve(), base) for *_, s, _, _ in infos])
        f.attrs["merged"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    os.replace(tmp, out)
    return out


__all__ = ["drop_replaced", "merge_shards", "replaced_paths", "set_aside", "shard_path", "shard_range"]
