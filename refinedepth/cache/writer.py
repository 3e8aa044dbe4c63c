"""Writing caches: :class:`CacheWriter` (create, resume, write samples crash-safely),
:func:`write_cache` (a whole cache from arrays) and the file locks that keep one writer per file.

Crash safety: writers use HDF5's single-writer/multiple-reader (SWMR) mode, whose ordered metadata
flushes keep the file consistent on disk at every instant, and mark a sample done only after its
data has been flushed. A killed writer therefore leaves a readable file in which every sample is
either complete or not marked done; :func:`~refinedepth.cache.repair.recover_interrupted` lets the
next writer continue it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import CacheError, ConfigError, DataError, ShapeError
from .config import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    FORMAT,
    GZIP_LEVEL,
    SCHEMA_VERSION,
    CacheConfig,
    dumps,
    mismatch_message,
)
from .h5 import READ_ERRORS, damaged_metadata, open_h5, read_metadata
from .repair import lock_error
from .shards import shard_range

SAMPLE_ID_BYTES = 512  # fixed-length ids: HDF5 cannot checksum variable-length strings
SMALL_CHUNK = 1024  # samples per chunk of sample_id and done


def dataset_filters(compression: str, checksums: bool = True) -> dict[str, Any]:
    """h5py ``create_dataset`` filter options: ``compression`` (gzip/lzf, with the shuffle
    filter, or none) and HDF5's Fletcher-32 checksum per chunk when ``checksums``."""
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    out: dict[str, Any] = {"fletcher32": True} if checksums else {}
    if compression == "gzip":
        out.update(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)
    elif compression == "lzf":
        out.update(compression="lzf", shuffle=True)
    return out


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
        self._fixed_ids = self._ids.dtype.kind == "S"
        self._done = f["done"]
        self._done_cache, self.requeued = self._read_done()
        f.swmr_mode = True
        # An SWMR writer holds no HDF5 file lock; this shared flock tells recover_interrupted and
        # other writers that the file is alive. The kernel drops it when the process dies.
        self._liveness = _hold_shared_lock(path)

    def _read_done(self) -> tuple[np.ndarray, list[int]]:
        """The done bitmap, chunk by chunk. A chunk that fails its checksum (a write torn by a
        crash, or later damage) is rewritten as "not done": its samples are written again, which
        gives the same data. Returns the bitmap and the global indices so re-queued."""
        n = self.stop - self.start
        step = int(self._done.chunks[0]) if self._done.chunks else max(n, 1)
        done = np.zeros(n, dtype=bool)
        requeued: list[int] = []
        for a in range(0, n, step):
            b = min(n, a + step)
            try:
                done[a:b] = self._done[a:b].astype(bool)
            except READ_ERRORS:
                if not self._done.chunks:  # an old, unchunked bitmap: nothing to rewrite alone
                    raise CacheError(
                        f"{self.path}: the 'done' bitmap is damaged; re-create the file with "
                        "'refinedepth cache ... --overwrite'"
                    ) from None
                self._done[a:b] = 0  # the whole chunk: HDF5 writes it without reading it
                requeued.extend(range(self.start + a, self.start + b))
        if requeued:
            self._f.flush()
        return done, requeued

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
        checksums: bool = True,
    ) -> CacheWriter:
        """Create ``path`` for ``config``. ``shard=(index, count)`` makes the file hold only that
        rank's contiguous block of samples (see :func:`shard_range`).

        Every dataset gets HDF5's Fletcher-32 checksum per chunk (``checksums=False`` writes the
        layout of caches made before checksums existed: for tests and benchmarks), and
        ``sample_id`` is stored as fixed-length UTF-8 (at most :data:`SAMPLE_ID_BYTES` bytes) so
        that it can carry one too."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise CacheError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
        if path.exists():
            with no_writer(path):
                pass
        filters = dataset_filters(compression, checksums)
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
                rh, rw = config.rgb_size
                f.create_dataset(
                    "rgb", (n, rh, rw, 3), dtype="uint8", chunks=(1, rh, rw, 3) if chunked else None,
                    **(filters if chunked else {}),
                )
            if config.with_valid:
                f.create_dataset(
                    "valid", (n, gh, gw), dtype="bool", chunks=(1, gh, gw) if chunked else None,
                    **(filters if chunked else {}),
                )
            if checksums and chunked:
                small = {"chunks": (min(n, SMALL_CHUNK),), "fletcher32": True}
                f.create_dataset(
                    "sample_id", (n,), dtype=h5py.string_dtype("utf-8", SAMPLE_ID_BYTES), **small,
                    **({"compression": filters["compression"]} if "compression" in filters else {}),
                )
                f.create_dataset("done", (n,), dtype="uint8", fillvalue=0, **small)
            else:
                f.create_dataset("sample_id", (n,), dtype=h5py.string_dtype())
                f.create_dataset("done", (n,), dtype="uint8", fillvalue=0)
            attrs = _root_attrs(config, compression)
            attrs["checksums"] = "fletcher32" if checksums else "none"
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
        f = open_h5(path, "r+", allow_recover=True)
        try:
            stored, attrs = read_metadata(f, path)
            if config is not None and stored != config:
                raise CacheError(mismatch_message(path, stored, config))
            start = int(attrs.get("shard_start", 0))
            stop = int(attrs.get("shard_stop", stored.num_samples))
            try:
                return cls(f, path, stored, start, stop)
            except READ_ERRORS as exc:
                raise damaged_metadata(path, exc) from None
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
            rh, rw = cfg.rgb_size
            if rgb is None:
                raise ShapeError(f"{self.path} stores rgb: pass rgb=[B,{rh},{rw},3] uint8 to write_batch")
            rgb = _as_numpy(rgb)
            _check_shape("rgb", rgb, (b, rh, rw, 3), self.path)
            if rgb.dtype != np.uint8:
                raise ShapeError(f"{self.path}: rgb must be uint8, got {rgb.dtype}")
        if self._valid is not None:
            valid = (gt > 0) if valid is None else _as_numpy(valid).astype(bool)
            _check_shape("valid", valid, (b, gh, gw), self.path)
        ids = [str(indices[k]) if sample_ids is None else str(sample_ids[k]) for k in range(b)]
        usable = (gt > 0).reshape(b, -1).any(1)
        if self._valid is not None:
            usable &= (valid & (gt > 0)).reshape(b, -1).any(1)
        if not usable.all():
            k = int(np.flatnonzero(~usable)[0])
            raise DataError(
                f"sample {ids[k]!r} (index {int(indices[k])}) has no valid ground-truth pixel (all "
                f"zero, negative or non-finite), so it cannot be scored or trained on; fix or remove "
                f"it from the dataset (or use --limit); the {self.num_done} sample(s) already in "
                f"{self.path} are kept"
            )
        encoded = [i.encode("utf-8") for i in ids]
        if self._fixed_ids:
            for k, e in enumerate(encoded):
                if len(e) > self._ids.dtype.itemsize:
                    raise DataError(
                        f"sample id {ids[k]!r} (index {int(indices[k])}) is {len(e)} bytes long, "
                        f"a cache stores ids of up to {self._ids.dtype.itemsize}; shorten the file "
                        "names or folder depth of the dataset"
                    )
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
            self._ids[j] = encoded[k] if self._fixed_ids else ids[k]
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


@contextlib.contextmanager
def no_writer(path: str | os.PathLike):
    """Hold an exclusive lock on the existing cache ``path`` for the ``with`` block: a one-line
    :class:`CacheError` if a writer holds it, so a file being written is never replaced."""
    fh = _hold_shared_lock(Path(path), exclusive=True)
    try:
        yield
    finally:
        if fh is not None:
            fh.close()


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
        raise lock_error(path, exc) from None
    return fh


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...], path: Path) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ShapeError(f"{path}: {name} must have shape {list(expected)}, got {list(array.shape)}")


def _root_attrs(config: CacheConfig, compression: str) -> dict[str, Any]:
    from .. import __version__

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
        if isinstance(value, dict | list) and key not in ("rough_size", "gt_size", "rgb_size"):
            attrs[key] = dumps(value)
        elif value is None:
            attrs[key] = ""
        else:
            attrs[key] = value
    return attrs


def write_cache(
    path: str | os.PathLike,
    *,
    rough: Any,
    gt: Any,
    rgb: Any = None,
    sample_ids: Sequence[str] | None = None,
    overwrite: bool = True,
    compression: str = DEFAULT_COMPRESSION,
    checksums: bool = True,
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
        rgb_size=None if rgb is None else tuple(np.shape(rgb)[1:3]),
        with_rgb=rgb is not None,
        **config,
    )
    ids = list(sample_ids) if sample_ids is not None else [f"{i:06d}" for i in range(n)]
    with CacheWriter.create(path, cfg, overwrite=overwrite, compression=compression, checksums=checksums) as w:
        if n:
            w.write_batch(list(range(n)), rough=rough, gt=gt, rgb=rgb, sample_ids=ids)
    return Path(path)


__all__ = ["CacheWriter", "write_cache", "dataset_filters", "SAMPLE_ID_BYTES"]
