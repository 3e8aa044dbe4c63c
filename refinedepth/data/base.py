"""The sample type and the base class every dataset reader derives from (SPEC §4)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError, ShapeError

SPLITS = ("train", "test", "all")


@dataclass(frozen=True, eq=False)
class Sample:
    """One RGB-D frame.

    Attributes:
        rgb: ``uint8`` array ``[H, W, 3]``.
        depth: ``float32`` array ``[H, W]`` in metres; ``0`` or non-finite marks an invalid pixel.
            Its size may differ from the RGB's (e.g. Make3D's laser grid is resized to a fixed size).
        id: a stable identifier, unique within the dataset (used to match files and caches).
    """

    rgb: np.ndarray
    depth: np.ndarray
    id: str

    def __post_init__(self) -> None:
        rgb, depth = self.rgb, self.depth
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            got = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ShapeError(f"sample {self.id!r}: expected rgb uint8 [H,W,3], got {got}")
        if not (isinstance(depth, np.ndarray) and depth.dtype == np.float32 and depth.ndim == 2):
            got = f"{depth.dtype} {list(depth.shape)}" if isinstance(depth, np.ndarray) else type(depth).__name__
            raise ShapeError(f"sample {self.id!r}: expected depth float32 [H,W], got {got}")

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of pixels with a usable depth (finite and > 0)."""
        return np.isfinite(self.depth) & (self.depth > 0)

    def __repr__(self) -> str:
        return f"Sample(id={self.id!r}, rgb={list(self.rgb.shape)}, depth={list(self.depth.shape)})"


def check_split(split: str, allowed: Sequence[str] = SPLITS, name: str = "dataset") -> str:
    if split not in allowed:
        raise ConfigError(f"{name}: unknown split {split!r}; expected one of {', '.join(allowed)}")
    return split


class DepthDataset:
    """A map-style dataset of :class:`Sample`: ``len(ds)``, ``ds[i]``, deterministic order.

    Subclasses set the descriptive attributes in ``__init__`` and implement :meth:`_load`, which
    reads the sample at position ``i`` of :attr:`_indices` (the split's items after ``limit``).
    Nothing heavy is opened in ``__init__``, so a dataset can be handed to DataLoader workers.
    """

    #: The reader's name in dataset specs (``nyu``, ``make3d``, ``folder``, ``synthetic``).
    name: str = "dataset"
    #: The evaluation protocol that fits this data (``nyu``, ``make3d``, ``kitti`` or ``none``).
    protocol: str = "none"
    #: Largest meaningful depth in metres (used to normalise the refiner's input).
    max_depth: float = 10.0

    def __init__(self, spec: str, split: str, items: Sequence, limit: int | None = None) -> None:
        self.spec = spec
        self.split = split
        self._items = list(items)
        self.select(limit=limit)

    def select(self, frames: slice | None = None, limit: int | None = None) -> DepthDataset:
        """Keep the samples ``frames`` picks (a slice of the split), then the first ``limit`` of
        them; in place, returns ``self``."""
        items = self._items if frames is None else self._items[frames]
        if limit is not None:
            if int(limit) < 1:
                raise ConfigError(f"{self.spec}: limit must be a positive number of samples, got {limit}")
            items = items[: int(limit)]
        self._items = list(items)
        return self

    @property
    def native_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the ground truth, or ``None`` when it varies between samples."""
        return None

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:
        n = len(self._items)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self.spec}: index must be an int, got {type(index).__name__}")
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"{self.spec} ({self.split}): index {index} out of range for {n} samples")
        return self._load(self._items[int(index)])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def description(self) -> str:
        """One line for reports: what the data and its ground truth are."""
        return f"{self.spec} ({self.split}, {len(self)} samples)"

    @property
    def ground_truth(self) -> str:
        """What the ground truth is, for reports, where a dataset offers a choice (NYU's filled or
        raw depth); ``""`` where there is nothing to say. Caches record it."""
        return ""

    @property
    def ids(self) -> list[str]:
        """The sample ids in order (cheap: no pixel data is read)."""
        return [self._item_id(item) for item in self._items]

    def _item_id(self, item) -> str:
        return self._load(item).id

    def _load(self, item) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, split={self.split!r}, len={len(self)})"


def as_depth(array: np.ndarray, where: str) -> np.ndarray:
    """Return ``array`` as a float32 ``[H, W]`` depth map; raise naming ``where`` otherwise."""
    array = np.asarray(array)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2:
        raise DataError(f"{where}: expected a depth map [H,W], got shape {list(array.shape)}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{where}: expected numeric depth, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)
