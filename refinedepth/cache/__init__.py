"""The rough/ground-truth HDF5 cache (SPEC §5).

One file per (backbone, dataset, split) holds, for every sample ``i``:

* ``rough``     ``[N,1,h,w]`` float32/float16 — the backbone's output, bilinearly resized to the
  cache size (default 256x256);
* ``gt``        ``[N,H,W]`` float32 — metres at the evaluation resolution, invalid pixels stored as 0;
* ``rgb``       ``[N,h,w,3]`` uint8 — optional, the input image at the cache size;
* ``valid``     ``[N,H,W]`` bool — optional; when absent it is derived as ``gt > 0``;
* ``sample_id`` ``[N]`` str (fixed-length UTF-8, so it can carry a checksum), and ``done``
  ``[N]`` uint8 — the bitmap saying which samples are complete.

Root attributes carry the :class:`CacheConfig` (as JSON under ``config`` and field by field), the
schema version, the refinedepth version and the creation time. Every array dataset is chunked one
sample per chunk and compressed with gzip or lzf plus the shuffle filter (never scale-offset, which
is lossy); every dataset carries HDF5's Fletcher-32 checksum per chunk, so a damaged chunk is a
one-line :class:`~refinedepth.errors.CacheError` naming the file and the sample when it is read.

The package, imports pointing down:

* :mod:`.config` — :class:`CacheConfig`, the format constants, :func:`sha256_path`;
* :mod:`.repair` — the superblock flags a killed writer leaves (:func:`recover_interrupted`);
* :mod:`.h5` — opening files with one-line errors, decoding attributes;
* :mod:`.shards` — :func:`shard_range`, :func:`shard_path`, :func:`merge_shards`;
* :mod:`.writer` — :class:`CacheWriter`, :func:`write_cache`, the file locks;
* :mod:`.reader` — :class:`CacheReader`, :func:`open_cache`;
* :mod:`.dataset` — :class:`CacheDataset` (torch on first item), :class:`JoinedCacheDataset`;
* :mod:`.verify` — :func:`describe_cache`, :func:`verify_cache`;
* :mod:`.build` — :func:`build_cache`, what ``refinedepth cache`` runs (imports torch);
* :mod:`.export` — :func:`export_ab`, the pix2pix "AB" export (imports torch).

Importing this package imports h5py and NumPy, not torch: ``build_cache``, ``CacheBuildResult``,
``export_ab`` and ``default_scale`` are loaded on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    FORMAT,
    ROUGH_DTYPES,
    SCHEMA_VERSION,
    CacheConfig,
    sha256_path,
)
from .dataset import CacheDataset, JoinedCacheDataset
from .reader import CacheReader, open_cache
from .repair import recover_interrupted
from .shards import merge_shards, shard_path, shard_range
from .verify import describe_cache, verify_cache
from .writer import CacheWriter, write_cache

_LAZY = {
    "build_cache": "refinedepth.cache.build",
    "CacheBuildResult": "refinedepth.cache.build",
    "export_ab": "refinedepth.cache.export",
    "default_scale": "refinedepth.cache.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refinedepth.cache' has no attribute {name!r}")


__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "ROUGH_DTYPES",
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "CacheConfig",
    "CacheWriter",
    "CacheReader",
    "CacheDataset",
    "JoinedCacheDataset",
    "open_cache",
    "write_cache",
    "merge_shards",
    "shard_range",
    "shard_path",
    "describe_cache",
    "verify_cache",
    "recover_interrupted",
    "sha256_path",
    *_LAZY,
]
