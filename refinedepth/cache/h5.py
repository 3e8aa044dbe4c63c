"""Opening cache files with errors that say what is wrong, and decoding their attributes.

Every ``h5py.File`` the cache package opens goes through :func:`open_h5`, so a missing, truncated,
foreign or locked file is a one-line :class:`~refinedepth.errors.CacheError`, never an ``OSError``
traceback.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import CacheError
from .config import FORMAT, SCHEMA_VERSION, CacheConfig
from .repair import recover_interrupted, superblock_offset, truncated_message

CHUNK_CACHE_BYTES = 4 * 1024 * 1024  # the reader's chunk cache
_LOCK_RETRIES = 60
_LOCK_WAIT = 0.05  # seconds


def open_h5(path: str | os.PathLike, mode: str = "r", *, allow_recover: bool = False) -> h5py.File:
    """``h5py.File`` with failures turned into one-line :class:`CacheError` messages.

    Read mode falls back to SWMR reading when another process is writing the file (or a writer
    was killed). Write mode (``r+``) repairs a killed writer's flags when ``allow_recover``.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(f"cache file {path} does not exist; create it with 'refinedepth cache ... --out {path}'")
    if path.is_dir():
        raise CacheError(f"{path} is a directory, expected an HDF5 cache file (.h5)")
    with open(path, "rb") as fh:
        if superblock_offset(fh) is None:
            raise CacheError(
                f"{path} is not a refinedepth cache: not an HDF5 file; make one with 'refinedepth cache'"
            )
    if mode == "r":
        # Readers take no lock, so an `inspect` or a training job never blocks a writer.
        kwargs: dict[str, Any] = {"rdcc_nbytes": CHUNK_CACHE_BYTES, "locking": False}
    else:
        kwargs = {"libver": "latest"}
    for _ in range(_LOCK_RETRIES):
        try:
            return h5py.File(path, mode, **kwargs)
        except OSError as exc:
            text = str(exc)
        if "truncated file" in text:
            raise CacheError(truncated_message(path, path.stat().st_size, _parse_stored_eof(text))) from None
        if "unable to lock file" in text.lower():
            time.sleep(_LOCK_WAIT)  # another process is opening or closing it: wait a little
            continue
        if "locking flag values don't match" in text and "locking" in kwargs:
            del kwargs["locking"]  # this process already has it open (with locking): share that
            continue
        if "already open for write" in text:
            if mode == "r":  # a writer is at work, or was killed: read through SWMR, change nothing
                try:
                    return h5py.File(path, "r", swmr=True, **kwargs)
                except OSError:
                    raise CacheError(
                        f"{path} is being created by another process; try again in a moment"
                    ) from None
            if allow_recover:
                recover_interrupted(path)  # refuses if a live writer holds it
                try:
                    return h5py.File(path, mode, **kwargs)
                except OSError as exc2:
                    raise CacheError(f"{path} could not be reopened after an interrupted run: {exc2}") from None
            raise CacheError(f"{path} is open for writing in another process or was left open by a killed one")
        raise CacheError(f"{path} could not be opened as HDF5 ({' '.join(text.split())}); is it corrupt?")
    raise CacheError(f"{path} is open for writing in another process; wait for it to finish")


def _parse_stored_eof(text: str) -> int:
    match = re.search(r"stored_eof\s*=\s*(\d+)", text)
    return int(match.group(1)) if match else -1


def decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_config(f: h5py.File, path: Path) -> CacheConfig:
    if decode_attr(f.attrs.get("format")) != FORMAT:
        if "config" in f.attrs and "schema_version" in f.attrs:  # ours, with a damaged 'format'
            raise CacheError(
                f"{path}: its 'format' attribute is damaged; the file is corrupt: re-create it with "
                "'refinedepth cache ... --overwrite'"
            )
        raise CacheError(
            f"{path} is not a refinedepth cache (HDF5 without format={FORMAT!r} attribute); "
            "make one with 'refinedepth cache'"
        )
    version = int(decode_attr(f.attrs.get("schema_version", 0)))
    if version > SCHEMA_VERSION:
        raise CacheError(
            f"{path} uses cache schema {version}, this refinedepth reads up to {SCHEMA_VERSION}; upgrade refinedepth"
        )
    try:
        return CacheConfig.from_dict(json.loads(decode_attr(f.attrs["config"])))
    except (KeyError, ValueError, TypeError) as exc:  # ConfigError is a ValueError
        raise CacheError(
            f"{path}: the 'config' attribute is missing or damaged ({' '.join(str(exc).split())}); "
            "re-create the file with 'refinedepth cache ... --overwrite'"
        ) from None


# What h5py raises for a damaged chunk or header: OSError (checksum mismatch, a filter that cannot
# decode), RuntimeError / KeyError / ValueError (structures it cannot follow or decode).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, KeyError, ValueError)


def damaged_metadata(path: Path, exc: BaseException) -> CacheError:
    """The one-line error for a file whose headers or attributes cannot be read."""
    if isinstance(exc, CacheError):
        return exc
    return CacheError(
        f"{path}: its HDF5 metadata (headers or attributes) is damaged "
        f"({' '.join(str(exc).split()) or type(exc).__name__}); the file is corrupt: re-create it "
        "with 'refinedepth cache ... --overwrite'"
    )


def read_metadata(f: h5py.File, path: Path) -> tuple[CacheConfig, dict[str, Any]]:
    """The :class:`CacheConfig` and the decoded root attributes; damage is a :class:`CacheError`."""
    try:
        config = read_config(f, path)
        attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
    except READ_ERRORS as exc:
        raise damaged_metadata(path, exc) from None
    return config, attrs


__all__ = [
    "CHUNK_CACHE_BYTES",
    "READ_ERRORS",
    "open_h5",
    "decode_attr",
    "read_config",
    "read_metadata",
    "damaged_metadata",
]
