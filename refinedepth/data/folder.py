"""A folder of RGB-D pairs: ``rgb/<stem>.<jpg|png|...>`` + ``depth/<stem>.<png|npy|pfm>`` (SPEC §4).

Depth is a 16-bit PNG of ``metres * scale`` (NYU/Kinect 1000, KITTI 256; the scale recorded by
:func:`~refinedepth.data.io.write_depth_png` is used when present, else 1000, or 256 with
``protocol="kitti"``, the KITTI devkit's unit), or ``.npy``/``.pfm`` in metres. Raw PNG value ``0`` is invalid, and so are the sentinels in ``invalid`` (default
``(65535,)``, the saturated value some sensors write, e.g. the 7-Scenes Kinect frames).

Samples are ordered by a natural sort of their stems (``frame-2`` before ``frame-10``), which is
time order for video. Video frames must be split by time, never at random, since neighbours are
nearly identical: ``train`` is the first ``split_index`` samples (default
``floor(split_fraction * N)``, ``split_fraction=0.8``), ``test`` the rest, ``all`` everything.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..errors import ConfigError, DataError
from .base import DepthDataset, Sample, check_split
from .io import DEPTH_EXTENSIONS, RGB_EXTENSIONS, image_size, png_depth_scale, read_depth, read_rgb

DEFAULT_SCALE = 1000.0
# PNG units per metre when neither the option nor the file gives one: KITTI's devkit writes depth
# as metres x 256 and records nothing, Kinect-style folders millimetres
PROTOCOL_SCALES = {"kitti": 256.0}
# max_depth (the refiner's normalisation) when none is given: as the make3d reader for Make3D
# (80 m; its protocol scores below 70 m) and KITTI's 80 m cap; indoor 10 m otherwise
PROTOCOL_MAX_DEPTHS = {"kitti": 80.0, "make3d": 80.0}
DEFAULT_MAX_DEPTH = 10.0


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically: ``a2`` < ``a10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _index(folder: Path, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for file in folder.iterdir():
        if file.is_file() and file.suffix.lower() in extensions and not file.name.startswith("."):
            if file.stem in found:
                raise DataError(
                    f"{folder}: two {what} files share the stem {file.stem!r} "
                    f"({found[file.stem].name}, {file.name}); keep one"
                )
            found[file.stem] = file
    return found


class FolderDataset(DepthDataset):
    """``folder:PATH`` with ``PATH/rgb`` and ``PATH/depth``.

    Options: ``scale`` (PNG units per metre; default: recorded in the file, else 1000, or 256
    with ``protocol="kitti"``), ``invalid=(65535,)`` (raw PNG sentinels treated as invalid,
    besides 0), ``split_fraction=0.8`` or ``split_index=N`` (time-ordered train/test boundary),
    ``protocol="none"`` (the evaluation protocol caches record: ``nyu``, ``kitti``, ``make3d``),
    ``max_depth`` (default: 80 for ``kitti`` and ``make3d``, as their readers and caps, else 10),
    ``strict=True`` (an RGB image without depth is an error; ``False`` skips it).
    """

    name = "folder"

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        limit: int | None = None,
        spec: str | None = None,
        scale: float | None = None,
        invalid: tuple[int, ...] | list[int] = (65535,),
        split_fraction: float = 0.8,
        split_index: int | None = None,
        max_depth: float | None = None,
        protocol: str = "none",
        strict: bool = True,
    ) -> None:
        root = Path(path).expanduser()
        spec = spec or f"folder:{root}"
        check_split(split, name=spec)
        if not root.is_dir():
            raise DataError(f"{root}: folder not found; expected a folder with rgb/ and depth/ sub-folders")
        missing = [name for name in ("rgb", "depth") if not (root / name).is_dir()]
        if missing:
            raise DataError(
                f"{root}: expected sub-folders rgb/ and depth/ with matching file stems; missing {', '.join(m + '/' for m in missing)}"
            )
        rgb_files = _index(root / "rgb", RGB_EXTENSIONS, "rgb")
        depth_files = _index(root / "depth", DEPTH_EXTENSIONS, "depth")
        if not rgb_files or not depth_files:
            raise DataError(
                f"{root}: empty dataset: rgb/ has {len(rgb_files)} image(s) and depth/ {len(depth_files)} depth "
                f"file(s); expected pairs like rgb/0001.jpg + depth/0001.png (depth as {', '.join(DEPTH_EXTENSIONS)})"
            )
        unmatched = sorted(set(rgb_files) - set(depth_files), key=natural_key)
        if unmatched and strict:
            raise DataError(
                f"{root}: {len(unmatched)} rgb image(s) have no depth file with the same stem, e.g. "
                f"rgb/{rgb_files[unmatched[0]].name}; add depth/{unmatched[0]}.png or pass strict=False to skip them"
            )
        stems = sorted(set(rgb_files) & set(depth_files), key=natural_key)
        if not stems:
            raise DataError(f"{root}: no rgb/depth pairs with matching stems (e.g. rgb/0001.jpg + depth/0001.png)")
        n = len(stems)
        if split_index is None:
            if not 0.0 <= float(split_fraction) <= 1.0:
                raise ConfigError(f"{spec}: split_fraction must be in [0, 1], got {split_fraction}")
            boundary = int(math.floor(float(split_fraction) * n))
        else:
            boundary = int(split_index)
            if not 0 <= boundary <= n:
                raise ConfigError(f"{spec}: split_index must be in 0..{n}, got {split_index}")
        chosen = {"train": stems[:boundary], "test": stems[boundary:], "all": stems}[split]
        if not chosen:
            raise DataError(
                f"{root}: split {split!r} is empty ({n} samples, train/test boundary at {boundary}); "
                "adjust split_fraction or split_index"
            )
        items = [(stem, rgb_files[stem], depth_files[stem]) for stem in chosen]
        super().__init__(spec, split, items, limit)
        if scale is not None and not float(scale) > 0:
            raise ConfigError(f"{spec}: scale must be > 0, got {scale}")
        self.root = root
        self.scale = None if scale is None else float(scale)
        self.invalid = tuple(int(v) for v in invalid)
        from ..metrics import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise ConfigError(f"{spec}: unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
        self.protocol = protocol
        self.max_depth = float(PROTOCOL_MAX_DEPTHS.get(protocol, DEFAULT_MAX_DEPTH) if max_depth is None else max_depth)
        self.default_scale = PROTOCOL_SCALES.get(protocol, DEFAULT_SCALE)
        self.split_index = boundary
        self._native_size: tuple[int, int] | None | bool = False  # False = not computed yet

    @property
    def native_size(self) -> tuple[int, int] | None:
        if self._native_size is False:
            sizes = {image_size(item[2]) for item in self._items}
            self._native_size = sizes.pop() if len(sizes) == 1 else None
        return self._native_size

    def _item_id(self, item) -> str:
        return item[0]

    def _load(self, item) -> Sample:
        stem, rgb_path, depth_path = item
        rgb = read_rgb(rgb_path)
        scale = self.scale
        if scale is None and depth_path.suffix.lower() == ".png":
            scale = png_depth_scale(depth_path) or self.default_scale
        depth = read_depth(depth_path, scale=scale, invalid=self.invalid)
        if rgb.shape[:2] != depth.shape:
            raise DataError(
                f"sample {stem!r}: rgb {rgb_path.name} is {rgb.shape[0]}x{rgb.shape[1]} but depth "
                f"{depth_path.name} is {depth.shape[0]}x{depth.shape[1]} (height x width); "
                f"resize one of them in {self.root}"
            )
        return Sample(rgb=rgb, depth=depth, id=stem)
