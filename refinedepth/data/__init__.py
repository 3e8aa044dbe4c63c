"""Datasets of RGB-D samples (SPEC §4).

Every reader is a map-style dataset of :class:`Sample` with a length, a deterministic order and
splits. Datasets are named by a spec string, as on the command line::

    open_dataset("nyu:/data/nyu_depth_v2_labeled.mat", split="test")
    open_dataset("make3d:/data/make3d", split="train")
    open_dataset("folder:/data/scans", split="all", scale=1000)
    open_dataset("synthetic:outdoor", split="test", limit=64, size=(240, 320))

Reader options are keyword arguments of :func:`open_dataset` (``size=``, ``scale=``, ``raw=``...).
New readers can be added with :func:`register_reader`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import import_module
from typing import Any

from ..errors import ConfigError
from .base import SPLITS, DepthDataset, Sample

# reader name -> "module:class" (imported on first use) or a factory callable.
_READERS: dict[str, str | Callable[..., DepthDataset]] = {
    "nyu": "refinedepth.data.nyu:NYUDataset",
    "make3d": "refinedepth.data.make3d:Make3DDataset",
    "folder": "refinedepth.data.folder:FolderDataset",
    "synthetic": "refinedepth.data.synthetic:SyntheticDataset",
}
# readers whose spec needs a path after the colon
_NEEDS_ARGUMENT = {"nyu", "make3d", "folder"}


def register_reader(name: str, factory: Callable[..., DepthDataset], needs_argument: bool = True) -> None:
    """Make ``name:ARG`` specs open ``factory(ARG, split=..., limit=..., spec=..., **options)``."""
    _READERS[name] = factory
    if needs_argument:
        _NEEDS_ARGUMENT.add(name)
    else:
        _NEEDS_ARGUMENT.discard(name)


def list_readers() -> list[str]:
    return sorted(_READERS)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"nyu:/a/b.mat"`` -> ``("nyu", "/a/b.mat")``; ``"synthetic"`` -> ``("synthetic", None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected a dataset spec such as 'nyu:PATH' or 'synthetic', got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _READERS:
        hint = difflib.get_close_matches(name, list(_READERS), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"unknown dataset {name!r} in spec {spec!r}{did_you_mean}; "
            f"expected one of: {', '.join(f'{r}:PATH' if r in _NEEDS_ARGUMENT else r for r in list_readers())}"
        )
    if name in _NEEDS_ARGUMENT and not arg:
        raise ConfigError(f"dataset spec {spec!r} needs a path: write it as '{name}:PATH'")
    return name, (arg if sep and arg else None)


def _reader(name: str) -> Callable[..., DepthDataset]:
    factory = _READERS[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(import_module(module), attr)
        _READERS[name] = factory
    return factory


def open_dataset(spec: str, split: str = "train", limit: int | None = None, **options: Any) -> DepthDataset:
    """Open the dataset named by ``spec`` (see the module docstring) at ``split``.

    ``limit`` keeps the first N samples of the split. Extra keyword arguments go to the reader.
    The result has ``len``, ``ds[i] -> Sample`` and the attributes ``spec``, ``name``, ``split``,
    ``native_size``, ``max_depth`` and ``protocol``.
    """
    name, arg = parse_spec(spec)
    return _reader(name)(arg, split=split, limit=limit, spec=spec.strip(), **options)


__all__ = [
    "SPLITS",
    "DepthDataset",
    "Sample",
    "list_readers",
    "open_dataset",
    "parse_spec",
    "register_reader",
]
