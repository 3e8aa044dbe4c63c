"""The cache as a ``torch.utils.data.Dataset``: :class:`CacheDataset` (importing this module does
not import torch; reading an item does)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheError, ConfigError
from ..geometry import resize_depth, resize_mask
from .reader import CacheReader, open_cache


class CacheDataset:
    """A ``torch.utils.data.Dataset`` over a cache, for training and evaluation.

    Items are dicts: ``rough`` float32 [1,h,w], ``gt`` float32 [1,H,W], ``valid`` bool [1,H,W],
    ``rgb`` float32 [3,h,w] in [0,1] (with ``with_rgb``), ``id`` str, ``index`` int.

    Args:
        path: the cache file.
        target_size: ``(h, w)`` to resize ``gt``/``valid`` to (nearest), e.g. the refiner's
            training size; ``None`` keeps the evaluation resolution.
        augment: ``None``, ``"paper"`` (the paper's horizontal flip, scale augmentation with
            depth / s and brightness, SPEC §4: :class:`refinedepth.augment.PairedAugment`,
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
            from ..augment import PairedAugment

            augment = PairedAugment(seed=0, kind=self.config.output_kind)
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
            item["gt"] = resize_depth(item["gt"], self.target_size)
            item["valid"] = resize_mask(item["valid"], self.target_size)
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


class JoinedCacheDataset:
    """Several :class:`CacheDataset` objects end to end, for training on more than one cache
    (several scenes, datasets, or caches made by different first-stage weights).

    The caches must hold rough maps of one kind (metric, relative, disparity) and one
    ``max_depth``, since the refiner normalises them all alike, and arrays of one size (rough,
    ground truth, RGB), since they are batched together; ``attrs`` and ``config`` are the first
    cache's. Items keep their own cache's ``index``.
    """

    def __init__(self, parts: list[CacheDataset]) -> None:
        if not parts:
            raise ConfigError("expected at least one cache to join")
        first = parts[0]
        sizes = _sizes(first)
        for part in parts[1:]:
            if part.output_kind != first.output_kind:
                raise ConfigError(
                    f"{part.path} holds {part.output_kind!r} rough maps but {first.path} holds "
                    f"{first.output_kind!r} ones; train on caches of one backbone kind"
                )
            if part.max_depth != first.max_depth:
                raise ConfigError(
                    f"{part.path} has max_depth {part.max_depth:g} m but {first.path} has "
                    f"{first.max_depth:g} m; re-create one with the other's --max-depth"
                )
            theirs = _sizes(part)
            for name, option in (("rough_size", "--size"), ("gt_size", "--gt-size"), ("rgb_size", "--rgb-size")):
                a, b = sizes[name], theirs[name]
                if a != b:
                    raise ConfigError(
                        f"{part.path} stores {name} {b[0]}x{b[1]} but {first.path} {a[0]}x{a[1]}; "
                        f"re-create one with the other's {option} (caches are batched together)"
                    )
        self.parts = list(parts)
        self._ends = np.cumsum([len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getattr__(self, name: str) -> Any:  # output_kind, max_depth, attrs, config, path, ...
        if name in ("parts", "_ends"):
            raise AttributeError(name)
        return getattr(self.parts[0], name)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        k = int(np.searchsorted(self._ends, i, side="right"))
        return self.parts[k][i - (int(self._ends[k - 1]) if k else 0)]

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def close(self) -> None:
        for part in self.parts:
            part.close()


def _sizes(dataset: CacheDataset) -> dict[str, tuple[int, int]]:
    config = dataset.config
    rgb = config.rgb_size if config.with_rgb and config.rgb_size is not None else config.rough_size
    return {"rough_size": tuple(config.rough_size), "gt_size": tuple(config.gt_size), "rgb_size": tuple(rgb)}


__all__ = ["CacheDataset", "JoinedCacheDataset"]
