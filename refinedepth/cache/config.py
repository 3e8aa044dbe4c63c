"""What a cache holds and how it is named: :class:`CacheConfig`, the format constants, the file
hash and the message that refuses a different command (SPEC §5)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import COMPRESSIONS, ROUGH_DTYPES, UNKNOWN_BACKBONE  # noqa: F401 (the name lists live there)
from ..errors import ConfigError

FORMAT = "refinedepth-cache"
SCHEMA_VERSION = 1
# lzf decodes 1.3-2x faster than gzip and writes 3x faster, for ~12% more disk (see
# docs/performance.md); gzip is the portable choice for tools without h5py's lzf filter.
DEFAULT_COMPRESSION = "lzf"
GZIP_LEVEL = 4


@dataclass(frozen=True)
class CacheConfig:
    """Everything that determines a cache's content: two caches with equal configs hold the same
    arrays. Stored in the file; a command whose config differs from the file's is refused.

    Attributes:
        num_samples: samples in the whole cache (all shards together).
        rough_size: ``(height, width)`` of ``rough``: the backbone's native output size, the
            evaluation size or a size of the user's choice (``refinedepth cache --size``).
        gt_size: ``(height, width)`` of ``gt`` (the evaluation resolution).
        rgb_size: ``(height, width)`` of ``rgb``; ``None`` (caches written before it existed,
            and caches without RGB) means ``rough_size``.
        rough_dtype: ``"float32"`` or ``"float16"``.
        with_rgb: whether ``rgb`` is stored.
        with_valid: whether ``valid`` is stored (otherwise it is derived as ``gt > 0``).
        output_kind: ``metric``, ``relative`` or ``disparity`` (what ``rough`` holds).
        max_depth: metres, the dataset's maximum depth (the refiner's normalisation, SPEC §6).
        protocol: the dataset's default evaluation protocol (``nyu``, ``make3d``, ``kitti``,
            ``none``).
        backbone: registry name of the first stage.
        backbone_config: options that rebuild it (``BackboneInfo.config``).
        backbone_weights: the weights path as given (informative only: not compared, the
            sha256 is).
        backbone_weights_sha256: sha256 of the weights, or ``None`` for the initialisation.
        seed: the seed set before building the backbone (matters without weights).
        dataset: dataset spec (``synthetic``, ``nyu:PATH`` ...).
        dataset_options: reader options given to ``open_dataset`` (``size``, ``scale`` ...).
        split: dataset split.
        limit: the ``--limit`` used, if any.
        refiners: refiners applied after the backbone, each ``{"path", "sha256"}``.
        ground_truth: what ``gt`` is where the dataset offers a choice (NYU: filled ``depths`` or
            ``rawDepths``), for reports; informative (not compared: ``dataset_options`` decide it).
    """

    num_samples: int
    rough_size: tuple[int, int] = (256, 256)
    gt_size: tuple[int, int] = (256, 256)
    rgb_size: tuple[int, int] | None = None
    rough_dtype: str = "float32"
    with_rgb: bool = False
    with_valid: bool = False
    output_kind: str = "metric"
    max_depth: float = 10.0
    protocol: str = "none"
    backbone: str = UNKNOWN_BACKBONE
    backbone_config: Mapping[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = field(default=None, compare=False)
    backbone_weights_sha256: str | None = None
    seed: int = 0
    dataset: str = ""
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    split: str = ""
    limit: int | None = None
    refiners: tuple[Mapping[str, Any], ...] = ()
    ground_truth: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if int(self.num_samples) < 0:
            raise ConfigError(f"num_samples must be >= 0, got {self.num_samples}")
        object.__setattr__(self, "num_samples", int(self.num_samples))
        for name in ("rough_size", "gt_size"):
            size = tuple(int(s) for s in getattr(self, name))
            if len(size) != 2 or min(size) <= 0:
                raise ConfigError(f"{name} must be (height, width) of positive ints, got {size!r}")
            object.__setattr__(self, name, size)
        rgb = self.rough_size if self.rgb_size is None or not self.with_rgb else tuple(int(v) for v in self.rgb_size)
        if len(rgb) != 2 or min(rgb) <= 0:
            raise ConfigError(f"rgb_size must be (height, width) of positive ints, got {rgb!r}")
        object.__setattr__(self, "rgb_size", rgb)
        if self.rough_dtype not in ROUGH_DTYPES:
            raise ConfigError(f"rough_dtype must be one of {ROUGH_DTYPES}, got {self.rough_dtype!r}")
        if self.output_kind not in ("metric", "relative", "disparity"):
            raise ConfigError(f"output_kind must be metric, relative or disparity, got {self.output_kind!r}")
        object.__setattr__(self, "max_depth", float(self.max_depth))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "with_rgb", bool(self.with_rgb))
        object.__setattr__(self, "with_valid", bool(self.with_valid))
        object.__setattr__(self, "backbone_config", json.loads(dumps(dict(self.backbone_config))))
        object.__setattr__(self, "dataset_options", json.loads(dumps(dict(self.dataset_options))))
        object.__setattr__(self, "refiners", tuple(dict(r) for r in self.refiners))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rough_size"] = list(self.rough_size)
        d["gt_size"] = list(self.gt_size)
        d["rgb_size"] = list(self.rgb_size)
        d["refiners"] = [dict(r) for r in self.refiners]
        return d

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CacheConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def differences(self, other: CacheConfig) -> list[str]:
        """``["field: self_value vs other_value", ...]`` for every field that differs, values in
        full; for mappings (``backbone_config``, ``dataset_options``) one entry per differing key,
        ``"dataset_options.size: [64, 64] vs (unset)"``."""
        a, b = self.to_dict(), other.to_dict()
        compared = [f.name for f in dataclasses.fields(self) if f.compare]
        out = []
        for k in compared:
            if a[k] == b[k]:
                continue
            if k == "rgb_size" and not (self.with_rgb or other.with_rgb):
                continue  # no RGB stored on either side: its size follows rough_size, not a choice
            if isinstance(a[k], dict) and isinstance(b[k], dict):
                for sub in sorted(set(a[k]) | set(b[k]), key=str):
                    x, y = a[k].get(sub, _UNSET), b[k].get(sub, _UNSET)
                    if x != y:
                        out.append(f"{k}.{sub}: {_show(x)} vs {_show(y)}")
            else:
                out.append(f"{k}: {_show(a[k])} vs {_show(b[k])}")
        return out


_UNSET = object()


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    return value if isinstance(value, str) and value else dumps(value)


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def mismatch_message(path: Path, stored: CacheConfig, wanted: CacheConfig) -> str:
    listed = "; ".join(wanted.differences(stored))
    return (
        f"{path} was made by a different command ({listed} — this command vs the file); "
        "pass --overwrite to replace it or choose another --out"
    )


__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "ROUGH_DTYPES",
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "GZIP_LEVEL",
    "CacheConfig",
    "dumps",
    "sha256_path",
    "mismatch_message",
]
