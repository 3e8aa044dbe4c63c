"""Reading caches: :class:`CacheReader` and :func:`open_cache`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheError
from .h5 import decode_attr, open_h5, read_config


class CacheReader:
    """Read access to a cache (or a merged file of shards). Use :func:`open_cache`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._f = open_h5(self.path, "r")
        try:
            self.config = read_config(self._f, self.path)
            self.attrs = {k: decode_attr(v) for k, v in self._f.attrs.items()}
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


__all__ = ["CacheReader", "open_cache"]
