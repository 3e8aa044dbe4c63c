"""NYU Depth v2, labeled subset (SPEC §4).

``nyu_depth_v2_labeled.mat`` is a MATLAB v7.3 file, i.e. HDF5, read with h5py. MATLAB stores arrays
column-major, so h5py sees them with the axes reversed: ``images`` is ``(1449, 3, 640, 480)``
(sample, channel, width, height) and ``depths`` ``(1449, 640, 480)``. A sample is therefore
``images[i].transpose(2, 1, 0)`` -> ``(480, 640, 3)`` and ``depths[i].T`` -> ``(480, 640)``.

The official split (795 train / 654 test) lives in ``splits.mat``, a MATLAB v5 file that h5py
cannot read (scipy does), with 1-based, non-contiguous ``trainNdxs`` / ``testNdxs``. The reader
looks for it next to the labeled .mat unless ``splits=PATH`` is given; ``split="all"`` needs none.

Ground truth is the filled ``depths`` by default (what FCRN evaluated against); ``raw=True``
selects the unfilled ``rawDepths`` (0 = no Kinect measurement). Reports should say which.
Sample ids are the 1-based index in the .mat, zero-padded (``"0001"``), as in ``splits.mat``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, FileFormatError
from .base import DepthDataset, Sample, check_split

LABELED_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
LABELED_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
SPLITS_URL = "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
NATIVE_SIZE = (480, 640)


def read_nyu_splits(path: str | os.PathLike, count: int | None = None) -> dict[str, np.ndarray]:
    """Read ``splits.mat``; return 0-based ``{"train": idx, "test": idx}`` in the file's order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"NYU split file not found: {path}; download splits.mat (the official 795/654 split) from "
            f"{SPLITS_URL} and put it next to {LABELED_NAME}, pass splits=PATH, or use split 'all'"
        )
    try:
        from scipy.io import loadmat
    except ImportError:  # pragma: no cover - scipy is in the dev extras
        raise ConfigError(
            f"{path}: reading the NYU split (MATLAB v5) needs scipy; install it with "
            "pip install 'refinedepth[scipy]'"
        ) from None
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError/TypeError/NotImplementedError on bad files
        raise FileFormatError(f"{path}: not a readable MATLAB v5 split file ({exc})") from None
    out = {}
    for split, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        if key not in mat:
            raise FileFormatError(f"{path}: expected variables trainNdxs and testNdxs, {key} is missing")
        idx = np.asarray(mat[key]).astype(np.int64).ravel() - 1  # MATLAB indices are 1-based
        if idx.size and (idx.min() < 0 or (count is not None and idx.max() >= count)):
            raise FileFormatError(
                f"{path}: {key} holds indices {idx.min() + 1}..{idx.max() + 1}, outside 1..{count} "
                "of the labeled .mat; is this the splits.mat of the labeled dataset?"
            )
        out[split] = idx
    return out


class NYUDataset(DepthDataset):
    """``nyu:PATH`` where PATH is ``nyu_depth_v2_labeled.mat`` or a folder holding it.

    Options: ``raw=False`` (``rawDepths`` instead of the filled ``depths``), ``splits=PATH``
    (default: ``splits.mat`` next to the .mat).
    """

    name = "nyu"
    protocol = "nyu"
    max_depth = 10.0

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        limit: int | None = None,
        spec: str | None = None,
        raw: bool = False,
        splits: str | os.PathLike | None = None,
    ) -> None:
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / LABELED_NAME
        spec = spec or f"nyu:{path}"
        check_split(split, name=spec)
        if not path.is_file():
            raise DataError(f"NYU labeled file not found: {path}; download {LABELED_NAME} from {LABELED_URL}")
        import h5py

        if not h5py.is_hdf5(str(path)):
            raise FileFormatError(
                f"{path}: not an HDF5 file (MATLAB v7.3); expected {LABELED_NAME} as downloaded from {LABELED_URL}"
            )
        self.path = path
        self.depth_key = "rawDepths" if raw else "depths"
        with h5py.File(path, "r") as f:
            for key in ("images", self.depth_key):
                if key not in f:
                    raise FileFormatError(f"{path}: dataset {key!r} missing; is this {LABELED_NAME}?")
            n, c, w, h = f["images"].shape
            if c != 3 or f[self.depth_key].shape != (n, w, h):
                raise FileFormatError(
                    f"{path}: expected images (N,3,W,H) and {self.depth_key} (N,W,H), got "
                    f"{f['images'].shape} and {f[self.depth_key].shape}"
                )
        self._size = (int(h), int(w))
        if split == "all":
            items = list(range(n))
        else:
            splits_path = Path(splits).expanduser() if splits is not None else path.parent / SPLITS_NAME
            items = [int(i) for i in read_nyu_splits(splits_path, count=n)[split]]
            self.splits_path = splits_path
        super().__init__(spec, split, items, limit)
        self.raw = bool(raw)
        self._file = None
        self._pid = None

    @property
    def native_size(self) -> tuple[int, int]:
        return self._size

    @property
    def description(self) -> str:
        split = "official split" if self.split != "all" else "all 1449 labeled frames"
        return f"NYU Depth v2 labeled, {self.split} ({split}), {len(self)} samples, ground truth: {self.ground_truth}"

    @property
    def ground_truth(self) -> str:
        return "raw Kinect depth (rawDepths)" if self.raw else "filled depth (depths)"

    def _h5(self):
        # Opened lazily, once per process: h5py handles must not cross a fork (DataLoader workers).
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _item_id(self, item) -> str:
        return f"{item + 1:04d}"

    def _load(self, item) -> Sample:
        f = self._h5()
        rgb = np.ascontiguousarray(np.asarray(f["images"][item]).transpose(2, 1, 0), dtype=np.uint8)
        depth = np.ascontiguousarray(np.asarray(f[self.depth_key][item]).T, dtype=np.float32)
        return Sample(rgb=rgb, depth=depth, id=self._item_id(item))
