"""The rough/ground-truth HDF5 cache (SPEC §5).

One file per (backbone, dataset, split) holds, for every sample ``i``:

* ``rough``     ``[N,1,h,w]`` float32/float16 — the backbone's output, bilinearly resized to the
  cache size (default 256x256);
* ``gt``        ``[N,H,W]`` float32 — metres at the evaluation resolution, invalid pixels stored as 0;
* ``rgb``       ``[N,h,w,3]`` uint8 — optional, the input image at the cache size;
* ``valid``     ``[N,H,W]`` bool — optional; when absent it is derived as ``gt > 0``;
* ``sample_id`` ``[N]`` str, and ``done`` ``[N]`` uint8 — the bitmap saying which samples are
  complete.

Root attributes carry the :class:`CacheConfig` (as JSON under ``config`` and field by field), the
schema version, the refinedepth version and the creation time. Every dataset is chunked one sample
per chunk and compressed with gzip or lzf plus the shuffle filter (never scale-offset, which is
lossy).

Crash safety: writers use HDF5's single-writer/multiple-reader (SWMR) mode, whose ordered metadata
flushes keep the file consistent on disk at every instant, and mark a sample done only after its
data has been flushed. A killed writer therefore leaves a readable file in which every sample is
either complete or not marked done. HDF5 then refuses to reopen the file for writing until its
"open for write" superblock flags are cleared (what the ``h5clear -s`` tool does);
:func:`recover_interrupted` does that in place, after checking the file is not truncated and not
in use by a live process.

Readers (:class:`CacheDataset`) open the file lazily inside each DataLoader worker.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import CacheError, ConfigError, DataError, ShapeError

FORMAT = "refinedepth-cache"
SCHEMA_VERSION = 1
ROUGH_DTYPES = ("float32", "float16")
COMPRESSIONS = ("gzip", "lzf", "none")
# lzf decodes 1.3-2x faster than gzip and writes 3x faster, for ~12% more disk (see
# docs/performance.md); gzip is the portable choice for tools without h5py's lzf filter.
DEFAULT_COMPRESSION = "lzf"
GZIP_LEVEL = 4
_CHUNK_CACHE_BYTES = 4 * 1024 * 1024
_LOCK_RETRIES = 60
_LOCK_WAIT = 0.05  # seconds


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class CacheConfig:
    """Everything that determines a cache's content: two caches with equal configs hold the same
    arrays. Stored in the file; a command whose config differs from the file's is refused.

    Attributes:
        num_samples: samples in the whole cache (all shards together).
        rough_size: ``(height, width)`` of ``rough`` (and ``rgb``).
        gt_size: ``(height, width)`` of ``gt`` (the evaluation resolution).
        rough_dtype: ``"float32"`` or ``"float16"``.
        with_rgb: whether ``rgb`` is stored.
        with_valid: whether ``valid`` is stored (otherwise it is derived as ``gt > 0``).
        output_kind: ``metric``, ``relative`` or ``disparity`` (what ``rough`` holds).
        max_depth: metres, the dataset's maximum depth (the refiner's normalisation, SPEC §6).
        protocol: the dataset's default evaluation protocol (``nyu``, ``make3d``, ``kitti``,
            ``none``).
        backbone: registry name of the first stage.
        backbone_config: options that rebuild it (``BackboneInfo.config``).
        backbone_weights: the weights path as given (informative only: not compared, the
            sha256 is).
        backbone_weights_sha256: sha256 of the weights, or ``None`` for the initialisation.
        seed: the seed set before building the backbone (matters without weights).
        dataset: dataset spec (``synthetic``, ``nyu:PATH`` ...).
        dataset_options: reader options given to ``open_dataset`` (``size``, ``scale`` ...).
        split: dataset split.
        limit: the ``--limit`` used, if any.
        refiners: refiners applied after the backbone, each ``{"path", "sha256"}``.
    """

    num_samples: int
    rough_size: tuple[int, int] = (256, 256)
    gt_size: tuple[int, int] = (256, 256)
    rough_dtype: str = "float32"
    with_rgb: bool = False
    with_valid: bool = False
    output_kind: str = "metric"
    max_depth: float = 10.0
    protocol: str = "none"
    backbone: str = "unknown"
    backbone_config: Mapping[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = field(default=None, compare=False)
    backbone_weights_sha256: str | None = None
    seed: int = 0
    dataset: str = ""
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    split: str = ""
    limit: int | None = None
    refiners: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if int(self.num_samples) < 0:
            raise ConfigError(f"num_samples must be >= 0, got {self.num_samples}")
        object.__setattr__(self, "num_samples", int(self.num_samples))
        for name in ("rough_size", "gt_size"):
            size = tuple(int(s) for s in getattr(self, name))
            if len(size) != 2 or min(size) <= 0:
                raise ConfigError(f"{name} must be (height, width) of positive ints, got {size!r}")
            object.__setattr__(self, name, size)
        if self.rough_dtype not in ROUGH_DTYPES:
            raise ConfigError(f"rough_dtype must be one of {ROUGH_DTYPES}, got {self.rough_dtype!r}")
        if self.output_kind not in ("metric", "relative", "disparity"):
            raise ConfigError(f"output_kind must be metric, relative or disparity, got {self.output_kind!r}")
        object.__setattr__(self, "max_depth", float(self.max_depth))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "with_rgb", bool(self.with_rgb))
        object.__setattr__(self, "with_valid", bool(self.with_valid))
        object.__setattr__(self, "backbone_config", json.loads(_dumps(dict(self.backbone_config))))
        object.__setattr__(self, "dataset_options", json.loads(_dumps(dict(self.dataset_options))))
        object.__setattr__(self, "refiners", tuple(dict(r) for r in self.refiners))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rough_size"] = list(self.rough_size)
        d["gt_size"] = list(self.gt_size)
        d["refiners"] = [dict(r) for r in self.refiners]
        return d

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CacheConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def differences(self, other: CacheConfig) -> list[str]:
        """``["field: self_value vs other_value", ...]`` for every field that differs."""
        a, b = self.to_dict(), other.to_dict()
        compared = [f.name for f in dataclasses.fields(self) if f.compare]
        return [f"{k}: {_short(a[k])} vs {_short(b[k])}" for k in compared if a[k] != b[k]]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else _dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Opening files, with errors that say what is wrong


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum HDF5 puts on superblock v2/v3."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & m
    i = 0
    while n > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & m
        a = (a - c) & m; a ^= rot(c, 4); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= rot(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= rot(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= rot(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= rot(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= rot(b, 4); b = (b + a) & m  # noqa: E702
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = bytes(data[i:]) + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - rot(b, 14)) & m  # noqa: E702
    a ^= c; a = (a - rot(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & m  # noqa: E702
    return c


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _superblock_offset(fh) -> int | None:
    """Offset of the HDF5 superblock (0, 512, 1024, ...), or None if there is none."""
    size = os.fstat(fh.fileno()).st_size
    offset = 0
    while offset + 8 <= size:
        fh.seek(offset)
        if fh.read(8) == _HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def recover_interrupted(path: str | os.PathLike) -> bool:
    """Clear the "open for write" flags a killed writer leaves in the superblock (``h5clear -s``).

    Also raises the end-of-allocation address to the file's size (``h5clear --increment``), so new
    space is allocated after anything the killed writer may have placed there. Returns True if the
    file was changed. Refuses (:class:`CacheError`) a truncated file or one a live process holds.
    """
    import fcntl

    path = Path(path)
    with open(path, "r+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise _lock_error(path, exc) from None
        try:
            base = _superblock_offset(fh)
            if base is None:
                return False
            fh.seek(base)
            head = fh.read(12)
            version, size_of_offsets = head[8], head[9]
            if version < 3:
                return False
            end = 12 + 4 * size_of_offsets
            fh.seek(base)
            block = bytearray(fh.read(end + 4))
            stored = int.from_bytes(block[end : end + 4], "little")
            if _lookup3(bytes(block[:end])) != stored:
                raise CacheError(f"{path}: the HDF5 superblock checksum does not match; the file is corrupt")
            flags = block[11]
            eoa_at = 12 + 2 * size_of_offsets
            eoa = int.from_bytes(block[eoa_at : eoa_at + size_of_offsets], "little")
            file_size = os.fstat(fh.fileno()).st_size - base
            if file_size < eoa:
                raise CacheError(_truncated_message(path, file_size + base, eoa + base))
            if flags == 0:
                return False
            block[11] = 0
            block[eoa_at : eoa_at + size_of_offsets] = max(eoa, file_size).to_bytes(size_of_offsets, "little")
            block[end : end + 4] = _lookup3(bytes(block[:end])).to_bytes(4, "little")
            fh.seek(base)
            fh.write(bytes(block))
            fh.flush()
            os.fsync(fh.fileno())
            return True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _truncated_message(path: Path, size: int, expected: int) -> str:
    return (
        f"{path} is truncated ({size} bytes on disk, the HDF5 header expects at least {expected}); "
        "the copy or download was cut short: recreate it with 'refinedepth cache --overwrite'"
    )


def _open_h5(path: str | os.PathLike, mode: str = "r", *, allow_recover: bool = False) -> h5py.File:
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
        if _superblock_offset(fh) is None:
            raise CacheError(
                f"{path} is not a refinedepth cache: not an HDF5 file; make one with 'refinedepth cache'"
            )
    if mode == "r":
        # Readers take no lock, so an `inspect` or a training job never blocks a writer.
        kwargs: dict[str, Any] = {"rdcc_nbytes": _CHUNK_CACHE_BYTES, "locking": False}
    else:
        kwargs = {"libver": "latest"}
    for _ in range(_LOCK_RETRIES):
        try:
            return h5py.File(path, mode, **kwargs)
        except OSError as exc:
            text = str(exc)
        if "truncated file" in text:
            raise CacheError(_truncated_message(path, path.stat().st_size, _parse_stored_eof(text))) from None
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
    import re

    match = re.search(r"stored_eof\s*=\s*(\d+)", text)
    return int(match.group(1)) if match else -1


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_config(f: h5py.File, path: Path) -> CacheConfig:
    if _attr(f.attrs.get("format")) != FORMAT:
        raise CacheError(
            f"{path} is not a refinedepth cache (HDF5 without format={FORMAT!r} attribute); "
            "make one with 'refinedepth cache'"
        )
    version = int(_attr(f.attrs.get("schema_version", 0)))
    if version > SCHEMA_VERSION:
        raise CacheError(
            f"{path} uses cache schema {version}, this refinedepth reads up to {SCHEMA_VERSION}; upgrade refinedepth"
        )
    try:
        return CacheConfig.from_dict(json.loads(_attr(f.attrs["config"])))
    except (KeyError, ValueError, TypeError) as exc:
        raise CacheError(f"{path}: the 'config' attribute is missing or not valid JSON ({exc})") from None


# --------------------------------------------------------------------------------------------
# Writing


def _filters(compression: str) -> dict[str, Any]:
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": True}
    return {"compression": "lzf", "shuffle": True}


class CacheWriter:
    """Low-level writer of one cache file (or one shard of it).

    Create a new file with :meth:`create`, continue an existing one with :meth:`resume`, or let
    :meth:`open` decide. Samples are written by index with :meth:`write` / :meth:`write_batch`;
    data is flushed before the sample is marked done, and the done mark is flushed too.

    Example::

        cfg = CacheConfig(num_samples=2, rough_size=(64, 64), gt_size=(48, 64), max_depth=10)
        with CacheWriter.create("toy.h5", cfg) as w:
            w.write(0, rough=r0, gt=g0, sample_id="a")
            w.write(1, rough=r1, gt=g1, sample_id="b")
    """

    def __init__(self, f: h5py.File, path: Path, config: CacheConfig, start: int, stop: int) -> None:
        self._f = f
        self.path = path
        self.config = config
        self.start, self.stop = start, stop
        self._rough = f["rough"]
        self._gt = f["gt"]
        self._rgb = f["rgb"] if "rgb" in f else None
        self._valid = f["valid"] if "valid" in f else None
        self._ids = f["sample_id"]
        self._done = f["done"]
        self._done_cache = self._done[:].astype(bool)
        f.swmr_mode = True
        # An SWMR writer holds no HDF5 file lock; this shared flock tells recover_interrupted and
        # other writers that the file is alive. The kernel drops it when the process dies.
        self._liveness = _hold_shared_lock(path)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        config: CacheConfig,
        *,
        overwrite: bool = False,
        compression: str = DEFAULT_COMPRESSION,
        shard: tuple[int, int] | None = None,
        extra_attrs: Mapping[str, Any] | None = None,
    ) -> CacheWriter:
        """Create ``path`` for ``config``. ``shard=(index, count)`` makes the file hold only that
        rank's contiguous block of samples (see :func:`shard_range`)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise CacheError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
        if path.exists():
            _hold_shared_lock(path, exclusive=True).close()  # never replace a file being written
        filters = _filters(compression)
        start, stop = (0, config.num_samples) if shard is None else shard_range(config.num_samples, *shard)
        n = stop - start
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".creating")
        f = h5py.File(tmp, "w", libver="latest")
        try:
            h, w = config.rough_size
            gh, gw = config.gt_size
            chunked = n > 0
            f.create_dataset(
                "rough", (n, 1, h, w), dtype=config.rough_dtype, chunks=(1, 1, h, w) if chunked else None,
                **(filters if chunked else {}),
            )
            f.create_dataset(
                "gt", (n, gh, gw), dtype="float32", chunks=(1, gh, gw) if chunked else None,
                **(filters if chunked else {}),
            )
            if config.with_rgb:
                f.create_dataset(
                    "rgb", (n, h, w, 3), dtype="uint8", chunks=(1, h, w, 3) if chunked else None,
                    **(filters if chunked else {}),
                )
            if config.with_valid:
                f.create_dataset(
                    "valid", (n, gh, gw), dtype="bool", chunks=(1, gh, gw) if chunked else None,
                    **(filters if chunked else {}),
                )
            f.create_dataset("sample_id", (n,), dtype=h5py.string_dtype())
            f.create_dataset("done", (n,), dtype="uint8", fillvalue=0)
            attrs = _root_attrs(config, compression)
            if shard is not None:
                attrs.update(shard_index=shard[0], shard_count=shard[1], shard_start=start, shard_stop=stop)
            attrs.update(extra_attrs or {})
            for key, value in attrs.items():
                f.attrs[key] = value
            f.flush()
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        f.close()
        os.replace(tmp, path)
        return cls.resume(path, config)

    @classmethod
    def resume(cls, path: str | os.PathLike, config: CacheConfig | None = None) -> CacheWriter:
        """Reopen ``path`` to continue writing; refuses when ``config`` differs from the file's."""
        path = Path(path)
        f = _open_h5(path, "r+", allow_recover=True)
        try:
            stored = _read_config(f, path)
            if config is not None and stored != config:
                raise CacheError(_mismatch_message(path, stored, config))
            start = int(_attr(f.attrs.get("shard_start", 0)))
            stop = int(_attr(f.attrs.get("shard_stop", stored.num_samples)))
            return cls(f, path, stored, start, stop)
        except BaseException:
            f.close()
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        config: CacheConfig,
        *,
        overwrite: bool = False,
        compression: str = DEFAULT_COMPRESSION,
        shard: tuple[int, int] | None = None,
    ) -> CacheWriter:
        """Resume ``path`` if it exists and was made for ``config``, create it otherwise;
        ``overwrite`` replaces an existing file unconditionally."""
        path = Path(path)
        if path.exists() and not overwrite:
            writer = cls.resume(path, config)
            expected = (0, config.num_samples) if shard is None else shard_range(config.num_samples, *shard)
            if (writer.start, writer.stop) != expected:
                writer.close()
                raise CacheError(
                    f"{path} holds samples {writer.start}..{writer.stop - 1}, this run writes "
                    f"{expected[0]}..{expected[1] - 1} (a different number of processes?); "
                    "pass --overwrite to start again"
                )
            return writer
        return cls.create(path, config, overwrite=True, compression=compression, shard=shard)

    # -- state -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def num_done(self) -> int:
        return int(self._done_cache.sum())

    def pending(self) -> list[int]:
        """Global indices of the samples not yet done, in order."""
        return [self.start + i for i in np.flatnonzero(~self._done_cache)]

    def is_done(self, index: int) -> bool:
        return bool(self._done_cache[self._local(index)])

    def _local(self, index: int) -> int:
        if not self.start <= index < self.stop:
            raise IndexError(f"sample index {index} outside this file's range {self.start}..{self.stop - 1}")
        return index - self.start

    # -- writing -----------------------------------------------------------------------------

    def write(
        self,
        index: int,
        *,
        rough: Any,
        gt: Any,
        sample_id: str | None = None,
        rgb: Any = None,
        valid: Any = None,
    ) -> None:
        """Write one sample (global ``index``) and mark it done."""
        self.write_batch(
            [index],
            rough=_as_numpy(rough)[None],
            gt=_as_numpy(gt)[None],
            sample_ids=None if sample_id is None else [sample_id],
            rgb=None if rgb is None else _as_numpy(rgb)[None],
            valid=None if valid is None else _as_numpy(valid)[None],
        )

    def write_batch(
        self,
        indices: Sequence[int],
        *,
        rough: Any,
        gt: Any,
        sample_ids: Sequence[str] | None = None,
        rgb: Any = None,
        valid: Any = None,
    ) -> None:
        """Write ``len(indices)`` samples: ``rough`` [B,1,h,w] (or [B,h,w]), ``gt`` [B,H,W],
        ``rgb`` [B,h,w,3] uint8, ``valid`` [B,H,W]; then flush, mark them done and flush again."""
        cfg = self.config
        h, w = cfg.rough_size
        gh, gw = cfg.gt_size
        b = len(indices)
        rough = _as_numpy(rough)
        if rough.ndim == 3:
            rough = rough[:, None]
        _check_shape("rough", rough, (b, 1, h, w), self.path)
        gt = _as_numpy(gt).astype(np.float32, copy=False)
        _check_shape("gt", gt, (b, gh, gw), self.path)
        gt = np.where(np.isfinite(gt) & (gt > 0), gt, np.float32(0)).astype(np.float32)
        if self._rgb is not None:
            if rgb is None:
                raise ShapeError(f"{self.path} stores rgb: pass rgb=[B,{h},{w},3] uint8 to write_batch")
            rgb = _as_numpy(rgb)
            _check_shape("rgb", rgb, (b, h, w, 3), self.path)
            if rgb.dtype != np.uint8:
                raise ShapeError(f"{self.path}: rgb must be uint8, got {rgb.dtype}")
        if self._valid is not None:
            valid = (gt > 0) if valid is None else _as_numpy(valid).astype(bool)
            _check_shape("valid", valid, (b, gh, gw), self.path)
        if cfg.rough_dtype == "float16" and np.nanmax(np.abs(rough), initial=0) > np.finfo(np.float16).max:
            raise DataError(
                f"{self.path}: rough values up to {np.nanmax(np.abs(rough)):.4g} do not fit float16 "
                "(max 65504); use --dtype float32"
            )
        rough = rough.astype(cfg.rough_dtype, copy=False)
        locals_ = [self._local(int(i)) for i in indices]
        for k, j in enumerate(locals_):
            self._rough[j] = rough[k]
            self._gt[j] = gt[k]
            if self._rgb is not None:
                self._rgb[j] = rgb[k]
            if self._valid is not None:
                self._valid[j] = valid[k]
            self._ids[j] = str(indices[k]) if sample_ids is None else str(sample_ids[k])
        # The data must be on disk before the sample is marked done (SPEC §5: complete or absent).
        self._f.flush()
        for j in locals_:
            self._done[j] = 1
            self._done_cache[j] = True
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()
        if self._liveness is not None:
            self._liveness.close()
            self._liveness = None

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _hold_shared_lock(path: Path, exclusive: bool = False):
    """Open ``path`` and take a shared (or exclusive) ``flock`` on it; the returned file object
    holds it until closed. Returns None where flock does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fh = open(path, "rb")  # noqa: SIM115 - held for the writer's lifetime
    try:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise _lock_error(path, exc) from None
    return fh


def _lock_error(path: Path, exc: OSError) -> CacheError:
    import errno

    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
        return CacheError(f"{path} is open for writing in another process; wait for it to finish")
    return CacheError(
        f"{path}: cannot lock the file ({exc.strerror}); the filesystem may not support locks: "
        "write the cache on a local disk"
    )


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...], path: Path) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ShapeError(f"{path}: {name} must have shape {list(expected)}, got {list(array.shape)}")


def _root_attrs(config: CacheConfig, compression: str) -> dict[str, Any]:
    from . import __version__

    attrs: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "refinedepth_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_json(),
        "compression": compression,
        "valid_rule": "stored" if config.with_valid else "gt > 0",
        "gt_units": "metres",
    }
    for key, value in config.to_dict().items():
        if isinstance(value, dict | list) and key not in ("rough_size", "gt_size"):
            attrs[key] = _dumps(value)
        elif value is None:
            attrs[key] = ""
        else:
            attrs[key] = value
    return attrs


def _mismatch_message(path: Path, stored: CacheConfig, wanted: CacheConfig) -> str:
    diffs = wanted.differences(stored)
    listed = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
    return (
        f"{path} was made by a different command ({listed} — this command vs the file); "
        "pass --overwrite to replace it or choose another --out"
    )


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


def write_cache(
    path: str | os.PathLike,
    *,
    rough: Any,
    gt: Any,
    rgb: Any = None,
    sample_ids: Sequence[str] | None = None,
    overwrite: bool = True,
    compression: str = DEFAULT_COMPRESSION,
    **config: Any,
) -> Path:
    """Write a whole cache from arrays in one call (tests, small experiments).

    ``rough`` [N,1,h,w] or [N,h,w]; ``gt`` [N,H,W]; ``rgb`` [N,h,w,3] uint8; ``config`` sets any
    other :class:`CacheConfig` field (``max_depth``, ``output_kind``, ``rough_dtype`` ...).
    """
    rough = _as_numpy(rough)
    if rough.ndim == 3:
        rough = rough[:, None]
    gt = _as_numpy(gt)
    n = rough.shape[0]
    cfg = CacheConfig(
        num_samples=n,
        rough_size=tuple(rough.shape[-2:]),
        gt_size=tuple(gt.shape[-2:]),
        with_rgb=rgb is not None,
        **config,
    )
    ids = list(sample_ids) if sample_ids is not None else [f"{i:06d}" for i in range(n)]
    with CacheWriter.create(path, cfg, overwrite=overwrite, compression=compression) as w:
        if n:
            w.write_batch(list(range(n)), rough=rough, gt=gt, rgb=rgb, sample_ids=ids)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Reading


class CacheReader:
    """Read access to a cache (or a merged file of shards). Use :func:`open_cache`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._f = _open_h5(self.path, "r")
        try:
            self.config = _read_config(self._f, self.path)
            self.attrs = {k: _attr(v) for k, v in self._f.attrs.items()}
            for name in ("rough", "gt", "sample_id", "done"):
                if name not in self._f:
                    raise CacheError(f"{self.path} is not a complete refinedepth cache: dataset {name!r} is missing")
            try:
                self._rough = self._f["rough"]
                self._gt = self._f["gt"]
                self._rgb = self._f["rgb"] if "rgb" in self._f else None
                self._valid = self._f["valid"] if "valid" in self._f else None
                self._ids = self._f["sample_id"]
                self._done = self._f["done"]
            except (KeyError, OSError) as exc:
                # h5py reports a half-written header this way: the file is corrupt, or a writer
                # is creating it right now (before it switches to SWMR mode)
                raise CacheError(
                    f"{self.path}: cannot read its datasets ({' '.join(str(exc).split())}); the file "
                    "is corrupt or still being created: wait for the writer, or run 'refinedepth "
                    "inspect --verify' on it"
                ) from exc
        except BaseException:
            self._f.close()
            raise

    # -- metadata ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._rough.shape[0])

    @property
    def rough_size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self._rough.shape[-2:])

    @property
    def gt_size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self._gt.shape[-2:])

    @property
    def has_rgb(self) -> bool:
        return self._rgb is not None

    @property
    def done(self) -> np.ndarray:
        """bool [N]: which samples are complete."""
        return self._done[:].astype(bool)

    @property
    def num_done(self) -> int:
        return int(self.done.sum())

    @property
    def complete(self) -> bool:
        return self.num_done == len(self)

    @property
    def is_virtual(self) -> bool:
        return bool(self._rough.is_virtual)

    def sample_ids(self) -> list[str]:
        return list(self._ids.asstr()[:])

    def datasets(self) -> dict[str, dict[str, Any]]:
        """Per dataset: shape, dtype, chunks, compression, virtual or not."""
        out = {}
        for name, ds in self._f.items():
            out[name] = {
                "shape": list(ds.shape),
                "dtype": str(ds.dtype),
                "chunks": list(ds.chunks) if ds.chunks else None,
                "compression": ds.compression,
                "shuffle": bool(ds.shuffle),
                "virtual": bool(ds.is_virtual),
            }
        return out

    # -- samples -----------------------------------------------------------------------------

    def read(self, index: int, *, with_rgb: bool = True) -> dict[str, Any]:
        """Sample ``index`` as numpy: ``rough`` float32 [1,h,w], ``gt`` float32 [H,W], ``valid``
        bool [H,W], ``rgb`` uint8 [h,w,3] (or None), ``id``, ``index``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample {index} out of range for {self.path} with {n} samples")
        index = index % n
        rough = self._rough[index].astype(np.float32, copy=False)
        gt = self._gt[index].astype(np.float32, copy=False)
        valid = self._valid[index].astype(bool) if self._valid is not None else gt > 0
        rgb = self._rgb[index] if (with_rgb and self._rgb is not None) else None
        sample_id = self._ids[index]
        return {
            "rough": rough,
            "gt": gt,
            "valid": valid,
            "rgb": rgb,
            "id": sample_id.decode() if isinstance(sample_id, bytes) else str(sample_id),
            "index": index,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.read(index)

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_cache(path: str | os.PathLike) -> CacheReader:
    """Open a cache for reading; raises :class:`CacheError` with a one-line reason if ``path`` is
    missing, not HDF5, truncated or not a refinedepth cache."""
    return CacheReader(path)


# --------------------------------------------------------------------------------------------
# torch Dataset


class CacheDataset:
    """A ``torch.utils.data.Dataset`` over a cache, for training and evaluation.

    Items are dicts: ``rough`` float32 [1,h,w], ``gt`` float32 [1,H,W], ``valid`` bool [1,H,W],
    ``rgb`` float32 [3,h,w] in [0,1] (with ``with_rgb``), ``id`` str, ``index`` int.

    Args:
        path: the cache file.
        target_size: ``(h, w)`` to resize ``gt``/``valid`` to (nearest), e.g. the refiner's
            training size; ``None`` keeps the evaluation resolution.
        augment: ``None``, ``"paper"`` (the paper's horizontal flip, scale augmentation with
            depth / s and brightness, SPEC §4: :class:`refinedepth.transforms.PairedAugment`,
            reproducible per sample index and epoch) or a callable ``item -> item`` applied last.
        with_rgb: also return ``rgb`` (the cache must store it).
        require_complete: refuse a cache whose samples are not all done; with False, only the
            done samples are indexed.

    The HDF5 file is opened on first access in each process (DataLoader worker), never in
    ``__init__``, so forked workers do not share a handle.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        target_size: tuple[int, int] | None = None,
        augment: str | Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        with_rgb: bool = False,
        require_complete: bool = True,
    ) -> None:
        self.path = Path(path)
        with open_cache(self.path) as reader:
            self.config = reader.config
            self.attrs = reader.attrs
            done = reader.done
            n = len(reader)
            has_rgb = reader.has_rgb
            self.rough_size = reader.rough_size
            self.gt_size = reader.gt_size
        if with_rgb and not has_rgb:
            raise CacheError(
                f"{self.path} has no rgb dataset; re-create it with 'refinedepth cache ... --with-rgb'"
            )
        if require_complete and not done.all():
            raise CacheError(
                f"{self.path} is incomplete: {int(done.sum())} of {n} samples done; re-run the same "
                "'refinedepth cache' command to finish it"
            )
        self.indices = np.flatnonzero(done) if not require_complete else np.arange(n)
        self.target_size = None if target_size is None else (int(target_size[0]), int(target_size[1]))
        if isinstance(augment, str):
            if augment != "paper":
                raise ConfigError(f"augment must be None, 'paper' or a callable, got {augment!r}")
            from .transforms import PairedAugment

            augment = PairedAugment(seed=0)
        self.augment = augment
        self.with_rgb = with_rgb
        self._reader: CacheReader | None = None
        self._pid: int | None = None

    @property
    def max_depth(self) -> float:
        return self.config.max_depth

    @property
    def output_kind(self) -> str:
        return self.config.output_kind

    def __len__(self) -> int:
        return len(self.indices)

    def _get_reader(self) -> CacheReader:
        if self._reader is None or self._pid != os.getpid():
            self._reader = open_cache(self.path)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = None
        state["_pid"] = None
        return state

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        index = int(self.indices[i])
        s = self._get_reader().read(index, with_rgb=self.with_rgb)
        item: dict[str, Any] = {
            "rough": torch.from_numpy(np.ascontiguousarray(s["rough"])),
            "gt": torch.from_numpy(np.ascontiguousarray(s["gt"]))[None],
            "valid": torch.from_numpy(np.ascontiguousarray(s["valid"]))[None],
            "id": s["id"],
            "index": index,
        }
        if self.with_rgb:
            item["rgb"] = torch.from_numpy(np.ascontiguousarray(s["rgb"])).permute(2, 0, 1).float() / 255.0
        if self.target_size is not None and tuple(item["gt"].shape[-2:]) != self.target_size:
            item["gt"] = _resize_nearest(item["gt"], self.target_size)
            item["valid"] = _resize_nearest(item["valid"], self.target_size)
        if self.augment is not None:
            item = self.augment(item)
        return item

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the augmentation (a new draw per epoch, reproducible per sample)."""
        if hasattr(self.augment, "set_epoch"):
            self.augment.set_epoch(epoch)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _resize_nearest(x, size: tuple[int, int]):
    import torch.nn.functional as F

    dtype = x.dtype
    out = F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0]
    return out.to(dtype)


# --------------------------------------------------------------------------------------------
# Shards: join with a virtual dataset


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
        f.create_dataset("sample_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("done", data=np.ones(n, dtype=np.uint8))
        for key, value in first_attrs.items():
            if key.startswith("shard_"):
                continue
            f.attrs[key] = value
        f.attrs["shards"] = _dumps([os.path.relpath(s.resolve(), base) for *_, s, _, _ in infos])
        f.attrs["merged"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------------------------
# Inspection and verification


def describe_cache(path: str | os.PathLike, *, value_ranges: bool = True, max_samples: int = 64) -> dict[str, Any]:
    """Attributes, datasets, counts and (from up to ``max_samples`` done samples spread over the
    file) value ranges of a cache, as a JSON-able dict."""
    with open_cache(path) as r:
        done = r.done
        report: dict[str, Any] = {
            "path": str(r.path),
            "kind": "cache",
            "samples": len(r),
            "done": int(done.sum()),
            "complete": bool(done.all()),
            "virtual": r.is_virtual,
            "rough_size": list(r.rough_size),
            "gt_size": list(r.gt_size),
            "file_bytes": r.path.stat().st_size,
            "attributes": {k: v for k, v in r.attrs.items() if k != "config"},
            "config": r.config.to_dict(),
            "datasets": r.datasets(),
        }
        if value_ranges and done.any():
            picks = np.flatnonzero(done)
            if len(picks) > max_samples:
                picks = picks[np.linspace(0, len(picks) - 1, max_samples).round().astype(int)]
            ranges: dict[str, list[float]] = {}
            valid_fraction = []
            for i in picks:
                s = r.read(int(i), with_rgb=False)
                _extend_range(ranges, "rough", s["rough"])
                _extend_range(ranges, "gt (valid)", s["gt"][s["valid"]])
                valid_fraction.append(float(s["valid"].mean()))
            report["value_ranges"] = {
                "samples_read": len(picks),
                **{k: [float(v[0]), float(v[1])] for k, v in ranges.items()},
                "valid_fraction_mean": float(np.mean(valid_fraction)),
            }
    return report


def _extend_range(ranges: dict[str, list[float]], key: str, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    if key in ranges:
        ranges[key] = [min(ranges[key][0], lo), max(ranges[key][1], hi)]
    else:
        ranges[key] = [lo, hi]


def verify_cache(path: str | os.PathLike, *, progress=None) -> dict[str, Any]:
    """Read every sample and report problems: samples not done, unreadable chunks (e.g. a missing
    shard), non-finite values, empty ground truth, wrong shapes. ``ok`` is True when none."""
    problems: list[str] = []
    counts = {"not_done": 0, "unreadable": 0, "nonfinite_rough": 0, "nonfinite_gt": 0, "empty_gt": 0}
    with open_cache(path) as r:
        cfg = r.config
        expect = {
            "rough": (len(r), 1, *cfg.rough_size),
            "gt": (len(r), *cfg.gt_size),
        }
        if cfg.with_rgb:
            expect["rgb"] = (len(r), *cfg.rough_size, 3)
        datasets = r.datasets()
        for name, shape in expect.items():
            if name not in datasets:
                problems.append(f"dataset {name!r} is missing")
            elif tuple(datasets[name]["shape"]) != shape:
                problems.append(f"dataset {name!r} has shape {datasets[name]['shape']}, expected {list(shape)}")
        if r.is_virtual:
            for s in json.loads(r.attrs.get("shards", "[]")):
                if not (r.path.parent / s).exists():
                    problems.append(f"shard {s} (relative to {r.path.parent}) is missing")
        done = r.done
        ids = r.sample_ids()
        n = len(r)
        for i in range(n):
            if not done[i]:
                counts["not_done"] += 1
                if counts["not_done"] <= 5:
                    problems.append(f"sample {i} is not done")
            else:
                try:
                    s = r.read(i)
                except (OSError, RuntimeError, KeyError) as exc:
                    counts["unreadable"] += 1
                    if counts["unreadable"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}) cannot be read: {' '.join(str(exc).split())}")
                    continue
                if not np.isfinite(s["rough"]).all():
                    counts["nonfinite_rough"] += 1
                    if counts["nonfinite_rough"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}): rough has non-finite values")
                if not np.isfinite(s["gt"]).all():
                    counts["nonfinite_gt"] += 1
                    if counts["nonfinite_gt"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}): gt has non-finite values")
                if not s["valid"].any():
                    counts["empty_gt"] += 1
                    if counts["empty_gt"] <= 5:
                        problems.append(f"sample {i} ({ids[i]}): gt has no valid pixel")
            if progress is not None:
                progress(i + 1, n, desc="verify")
        for key, count in counts.items():
            if count > 5:
                problems.append(f"... {count} samples in all: {key.replace('_', ' ')}")
    return {"path": str(path), "samples": n, "done": int(done.sum()), **counts, "problems": problems, "ok": not problems}


__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CacheConfig",
    "CacheWriter",
    "CacheReader",
    "CacheDataset",
    "open_cache",
    "write_cache",
    "merge_shards",
    "shard_range",
    "shard_path",
    "describe_cache",
    "verify_cache",
    "recover_interrupted",
    "sha256_path",
]
