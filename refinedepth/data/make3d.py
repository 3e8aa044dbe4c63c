"""Make3D (Saxena et al.), 400 train / 134 test outdoor scenes (SPEC §4).

Layout as distributed (folder names may vary; the split is taken from them):
``Train400Img/img-<name>.jpg`` + ``Train400Depth/depth_sph_corr-<name>.mat`` and
``Test134/img-<name>.jpg`` (or ``Test134Img/``) + ``Test134Depth/depth_sph_corr-<name>.mat``
(sometimes inside ``Gridlaserdata/``, or a bare ``Gridlaserdata/`` beside ``Test134/``, as
``Test134Depth.tar.gz`` unpacks: depth files outside a Train*/Test* folder pair with the image of
their name). Images are 2272x1704 (height x width, portrait).

Ground truth is ``Position3DGrid[:, :, 3]`` (the 4th channel, distance in metres) of a laser grid
that the dataset's readme gives as 55x305x4, with channel 1 the vertical and channel 2 the
horizontal position. Its axis order relative to the image: the grid's first axis (55 samples) is
the image's vertical axis, top row first, and the second (305 samples) the horizontal, left first.
Saxena's own code indexes it as ``Position3DGrid(RowTop:RowBottom, ColumnLeft:ColumnRight, 4)``
with ``VertYNuDepth = 55`` rows and ``HoriXNuDepth = 305`` columns, and the evaluation code of
Garg/monodepth and its successors crops the *image rows* and the grid's *first axis* by the same
central fraction. So the grid is already in image orientation at a very anisotropic sampling
(55 rows for 2272 pixel rows, 305 columns for 1704); it must not be transposed. The reader resizes
it (nearest) to ``size`` so that depth and image share their orientation and aspect.

``size`` defaults to 460x345, the resolution FCRN and the paper evaluate at; RGB is resized to
it too (:func:`refinedepth.geometry.resize_rgb`: bilinear, antialiased). ``size=None`` keeps the
full-resolution image and the raw 55x305 grid. Sample ids are the ``<name>`` part of the file
names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, FileFormatError
from .base import DepthDataset, Sample, check_split
from .io import read_rgb

GRID_KEY = "Position3DGrid"
DEPTH_CHANNEL = 3
DEFAULT_SIZE = (460, 345)
_IMAGE_RE = re.compile(r"^img-(.+)\.(jpe?g|png)$", re.IGNORECASE)
_DEPTH_RE = re.compile(r"^depth_sph_corr-(.+)\.mat$", re.IGNORECASE)
URL = "http://make3d.cs.cornell.edu/data.html"


def _split_of(path: Path, root: Path) -> str | None:
    for part in path.relative_to(root).parts[:-1]:
        low = part.lower()
        if low.startswith("train"):
            return "train"
        if low.startswith("test"):
            return "test"
    return None


def read_make3d_depth(path: str | os.PathLike) -> np.ndarray:
    """``Position3DGrid[:, :, 3]`` of a ``depth_sph_corr-*.mat`` file, float32, image orientation."""
    path = Path(path)
    try:
        from scipy.io import loadmat
    except ImportError:  # pragma: no cover
        raise ConfigError(f"{path}: reading Make3D (MATLAB v5) needs scipy; pip install 'refinedepth[scipy]'") from None
    try:
        # some of the distributed files fail scipy's zlib integrity check yet decode correctly
        mat = loadmat(str(path), variable_names=[GRID_KEY], verify_compressed_data_integrity=False)
    except Exception as exc:
        raise FileFormatError(f"{path}: not a readable MATLAB v5 file ({exc})") from None
    if GRID_KEY not in mat:
        raise FileFormatError(f"{path}: variable {GRID_KEY} missing; expected a Make3D depth_sph_corr-*.mat")
    grid = np.asarray(mat[GRID_KEY])
    if grid.ndim != 3 or grid.shape[2] <= DEPTH_CHANNEL:
        raise FileFormatError(f"{path}: expected {GRID_KEY} of shape (rows, cols, 4), got {list(grid.shape)}")
    return np.ascontiguousarray(grid[:, :, DEPTH_CHANNEL], dtype=np.float32)


class Make3DDataset(DepthDataset):
    """``make3d:PATH``, PATH holding the extracted train/test folders.

    Options: ``size=(460, 345)`` (height, width of both RGB and depth; ``None`` for native).
    """

    name = "make3d"
    protocol = "make3d"
    max_depth = 80.0

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        limit: int | None = None,
        spec: str | None = None,
        size: tuple[int, int] | list[int] | None = DEFAULT_SIZE,
    ) -> None:
        root = Path(path).expanduser()
        spec = spec or f"make3d:{root}"
        check_split(split, name=spec)
        if not root.is_dir():
            raise DataError(f"Make3D folder not found: {root}; download Train400/Test134 from {URL} and extract them there")
        images: dict[tuple[str, str], Path] = {}
        depths: dict[tuple[str | None, str], Path] = {}
        for file in sorted(root.rglob("*")):
            m_img, m_dep = _IMAGE_RE.match(file.name), _DEPTH_RE.match(file.name)
            if not (m_img or m_dep) or not file.is_file():
                continue
            part = _split_of(file, root)
            if m_img and part is not None:
                images[(part, m_img.group(1))] = file
            elif m_dep:
                # Test134Depth.tar.gz unpacks to a bare Gridlaserdata/: a depth file outside any
                # Train*/Test* folder pairs with the image of its name
                depths[(part, m_dep.group(1))] = file
        for (part, name), file in list(depths.items()):
            if part is None:
                for split_name in ("train", "test"):
                    depths.setdefault((split_name, name), file)
        parts = ["train", "test"] if split == "all" else [split]
        items = []
        for part in parts:
            keys = sorted(k for k in images if k[0] == part)
            missing = [k[1] for k in keys if k not in depths]
            if missing:
                raise DataError(
                    f"{root}: {len(missing)} {part} image(s) have no depth_sph_corr-<name>.mat, e.g. "
                    f"img-{missing[0]}.jpg; extract the {part} depth archive next to the images"
                )
            items += [(part, k[1], images[k], depths[k]) for k in keys]
        if not items:
            raise DataError(
                f"{root}: no Make3D {split} pairs found (img-*.jpg under Train*/Test* folders with "
                "depth_sph_corr-*.mat); download from " + URL
            )
        super().__init__(spec, split, items, limit)
        if size is not None:
            from ..geometry import parse_hw

            size = parse_hw(size, f"{spec}: size")
        self.size = size

    @property
    def native_size(self) -> tuple[int, int] | None:
        if self.size is not None:
            return self.size
        return None if not self._items else tuple(read_make3d_depth(self._items[0][3]).shape)

    def _item_id(self, item) -> str:
        return item[1]

    def _load(self, item) -> Sample:
        _, name, image_path, depth_path = item
        rgb = read_rgb(image_path, allow_truncated=True)  # one Test134 JPEG is truncated
        depth = read_make3d_depth(depth_path)
        if self.size is not None:
            from ..geometry import resize_depth, resize_rgb

            rgb = resize_rgb(rgb, self.size)  # bilinear, antialiased: as everywhere else
            depth = resize_depth(depth, self.size)  # nearest at pixel centres
        return Sample(rgb=np.ascontiguousarray(rgb), depth=np.ascontiguousarray(depth), id=name)
