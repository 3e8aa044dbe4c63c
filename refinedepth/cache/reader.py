"""Reading caches: :class:`CacheReader` and :func:`open_cache`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheError
from .h5 import READ_ERRORS, damaged_metadata, open_h5, read_metadata


def damaged_sample(path: Path, index: int, sample_id: str | None, what: str) -> CacheError:
    """The one-line error for a sample whose data cannot be read back intact."""
    name = f"sample {index}" + (f" ({sample_id!r})" if sample_id is not None else " (id unreadable)")
    return CacheError(
        f"{path}: {name} is damaged ({what} fails its checksum or cannot be decoded); re-create the "
        f"file with 'refinedepth cache ... --overwrite' ('refinedepth inspect {path} --verify' "
        "lists every damaged sample)"
    )


class CacheReader:
    """Read access to a cache (or a merged file of shards). Use :func:`open_cache`.

    A damaged chunk (checksum mismatch, undecodable data) or header is a one-line
    :class:`~refinedepth.errors.CacheError` naming the file and the sample, never an ``OSError``.
    """

    def __init__(self, path: str | os.PathLike, check_shards: bool = True) -> None:
        self.path = Path(path)
        self._f = open_h5(self.path, "r")
        try:
            self.config, self.attrs = read_metadata(self._f, self.path)
            try:
                for name in ("rough", "gt", "sample_id", "done"):
                    if name not in self._f:
                        raise CacheError(
                            f"{self.path} is not a complete refinedepth cache: dataset {name!r} is missing"
                        )
                self._rough = self._f["rough"]
                self._gt = self._f["gt"]
                self._rgb = self._f["rgb"] if "rgb" in self._f else None
                self._valid = self._f["valid"] if "valid" in self._f else None
                self._ids = self._f["sample_id"]
                self._done = self._f["done"]
                self._n = int(self._rough.shape[0])
                self._rough_size = tuple(int(s) for s in self._rough.shape[-2:])
                self._gt_size = tuple(int(s) for s in self._gt.shape[-2:])
                self._virtual = bool(self._rough.is_virtual)
                if check_shards:  # HDF5 would read a missing shard's samples as zeros
                    self._check_shards()
            except READ_ERRORS as exc:
                if isinstance(exc, CacheError):
                    raise
                # h5py reports a half-written header this way: the file is corrupt, or a writer
                # is creating it right now (before it switches to SWMR mode)
                raise CacheError(
                    f"{self.path}: cannot read its datasets ({' '.join(str(exc).split())}); the file "
                    "is corrupt or still being created: wait for the writer, or run 'refinedepth "
                    "inspect --verify' on it"
                ) from None
        except BaseException:
            self._f.close()
            raise

    def missing_shards(self) -> list[str]:
        """The shard files (relative to the merged file) a merged cache refers to and that are
        not there; ``[]`` for an ordinary cache."""
        import json

        if not self._virtual:
            return []
        return [s for s in json.loads(self.attrs.get("shards", "[]") or "[]") if not (self.path.parent / s).exists()]

    def _check_shards(self) -> None:
        missing = self.missing_shards()
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CacheError(
                f"{self.path}: shard {missing[0]} (relative to {self.path.parent}) is missing{more}, and its "
                "samples would read as zeros; put the shard files back beside the merged file (the same "
                "relative paths) or re-create the cache with 'refinedepth cache ... --overwrite'"
            )

    # -- metadata ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def rough_size(self) -> tuple[int, int]:
        return self._rough_size

    @property
    def gt_size(self) -> tuple[int, int]:
        return self._gt_size

    @property
    def file(self):
        """The open ``h5py.File`` (low-level access: :func:`~refinedepth.cache.verify.verify_cache`)."""
        return self._f

    @property
    def has_rgb(self) -> bool:
        return self._rgb is not None

    @property
    def done(self) -> np.ndarray:
        """bool [N]: which samples are complete."""
        try:
            return self._done[:].astype(bool)
        except READ_ERRORS:
            raise CacheError(
                f"{self.path}: the 'done' bitmap is damaged (fails its checksum or cannot be "
                "decoded); re-create the file with 'refinedepth cache ... --overwrite'"
            ) from None

    @property
    def num_done(self) -> int:
        return int(self.done.sum())

    @property
    def complete(self) -> bool:
        return self.num_done == len(self)

    @property
    def is_virtual(self) -> bool:
        return self._virtual

    def sample_ids(self) -> list[str]:
        try:
            return list(self._ids.asstr()[:])
        except READ_ERRORS:
            raise CacheError(
                f"{self.path}: the 'sample_id' dataset is damaged (fails its checksum or cannot be "
                "decoded); re-create the file with 'refinedepth cache ... --overwrite'"
            ) from None

    def sample_id(self, index: int) -> str | None:
        """The id of sample ``index``, or None when it cannot be read."""
        try:
            value = self._ids[index]
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except (*READ_ERRORS, UnicodeDecodeError):
            return None

    def datasets(self) -> dict[str, dict[str, Any]]:
        """Per dataset: shape, dtype, chunks, compression, virtual or not."""
        out = {}
        try:
            for name, ds in self._f.items():
                out[name] = {
                    "shape": list(ds.shape),
                    "dtype": str(ds.dtype),
                    "chunks": list(ds.chunks) if ds.chunks else None,
                    "compression": ds.compression,
                    "shuffle": bool(ds.shuffle),
                    "fletcher32": bool(ds.fletcher32),
                    "virtual": bool(ds.is_virtual),
                }
        except READ_ERRORS as exc:
            raise damaged_metadata(self.path, exc) from None
        return out

    # -- samples -----------------------------------------------------------------------------

    def read(self, index: int, *, with_rgb: bool = True) -> dict[str, Any]:
        """Sample ``index`` as numpy: ``rough`` float32 [1,h,w], ``gt`` float32 [H,W], ``valid``
        bool [H,W], ``rgb`` uint8 [h,w,3] (or None), ``id``, ``index``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample {index} out of range for {self.path} with {n} samples")
        index = index % n
        what = "rough"
        try:
            rough = self._rough[index].astype(np.float32, copy=False)
            what = "gt"
            gt = self._gt[index].astype(np.float32, copy=False)
            what = "valid"
            valid = self._valid[index].astype(bool) if self._valid is not None else gt > 0
            what = "rgb"
            rgb = self._rgb[index] if (with_rgb and self._rgb is not None) else None
        except READ_ERRORS:
            raise damaged_sample(self.path, index, self.sample_id(index), what) from None
        sample_id = self.sample_id(index)
        if sample_id is None:
            raise damaged_sample(self.path, index, None, "sample_id")
        return {"rough": rough, "gt": gt, "valid": valid, "rgb": rgb, "id": sample_id, "index": index}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.read(index)

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_cache(path: str | os.PathLike, *, check_shards: bool = True) -> CacheReader:
    """Open a cache for reading; raises :class:`CacheError` with a one-line reason if ``path`` is
    missing, not HDF5, truncated or not a refinedepth cache, or is a merged file one of whose
    shards is missing (``check_shards=False``: open it anyway, as ``inspect --verify`` does to list
    the damage)."""
    return CacheReader(path, check_shards=check_shards)


__all__ = ["CacheReader", "open_cache", "damaged_sample"]
