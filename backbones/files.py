"""Predictions another program already wrote, as a backbone (SPEC §3.4).

Any model, in any language, can feed the refiner: write one depth map per dataset sample under a
directory and name the files after the sample ids. The ``files`` backbone matches them by id::

    refinedepth cache --backbone files --backbone-arg root=preds/ --dataset nyu:DATA --split test

Supported files, by extension: ``.npy`` (float array, read without pickle), ``.pfm``, and 16-bit
``.png`` holding ``depth * scale`` (``scale=`` if given, else the scale recorded in the PNG's
metadata by :func:`refinedepth.data.io.write_depth_png`, else 1000, i.e. millimetres).
An id may contain ``/``: ``kitchen/frame-000123`` is ``ROOT/kitchen/frame-000123.npy``.

The module sets ``accepts_ids = True`` and is called ``model(rgb, ids=[...])``; the RGB batch only
gives the batch size and the device. Every prediction is resized to the declared ``output_size``
(by default the size of the first file under ``root``) with
:func:`refinedepth.geometry.resize_smooth` (bilinear, antialiased when shrinking). A missing
prediction, or one that is not a 2-D map or holds NaN/inf, is an error naming the sample id and
the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refinedepth.backbones.wrap import check_rgb, size_option
from refinedepth.errors import ConfigError, DataError, ShapeError
from refinedepth.geometry import resize_smooth
from refinedepth.registry import OUTPUT_KINDS, BackboneInfo

NAME = "files"
EXTENSIONS = ("npy", "pfm", "png")  # tried in this order when no pattern is given
NONFINITE = ("error", "zero")
DEFAULT_PNG_SCALE = 1000.0  # PNG values per metre when the file records none (millimetres)


def read_prediction(path: str | os.PathLike, scale: float | None = None) -> np.ndarray:
    """One depth map as float32 ``[H,W]`` from ``.npy``, ``.pfm`` or 16-bit ``.png``.

    A PNG's scale (value per metre) is ``scale`` if given, else the one recorded in the file, else
    :data:`DEFAULT_PNG_SCALE` (millimetres).
    """
    from refinedepth.data.io import png_depth_scale, read_depth

    path = Path(path)
    if path.suffix.lower() == ".png" and scale is None:
        scale = png_depth_scale(path) or DEFAULT_PNG_SCALE
    depth = read_depth(path, scale=scale)
    if depth.size == 0:
        raise DataError(f"{path}: empty depth map (shape {list(depth.shape)})")
    return depth


class FilesBackbone(nn.Module):
    """Reads per-sample predictions from ``root``; see the module docstring."""

    accepts_ids = True

    def __init__(
        self,
        root: Path,
        info: BackboneInfo,
        pattern: str | None = None,
        extensions: Sequence[str] = EXTENSIONS,
        scale: float | None = None,
        nonfinite: str = "error",
    ) -> None:
        super().__init__()
        self.root = root
        self.info = info
        self.pattern = pattern
        self.extensions = tuple(extensions)
        self.scale = scale
        self.nonfinite = nonfinite

    # ---- matching ids to files

    def candidates(self, sample_id: str) -> list[Path]:
        """The files that may hold ``sample_id``'s prediction, in priority order."""
        parts = sample_id.replace("\\", "/").split("/")
        if not sample_id or sample_id.startswith("/") or ".." in parts:
            raise DataError(
                f"files: sample id {sample_id!r} cannot name a file under {self.root}; ids must be "
                "relative paths without '..'"
            )
        if self.pattern is not None:
            return [self.root / self.pattern.format(id=sample_id, name=parts[-1])]
        return [self.root / f"{sample_id}.{ext}" for ext in self.extensions]

    def path_for(self, sample_id: str) -> Path:
        """The prediction file of ``sample_id``; :class:`DataError` naming the id if none exists."""
        paths = self.candidates(sample_id)
        for path in paths:
            if path.is_file():
                return path
        tried = paths[0].name if len(paths) == 1 else "{" + ",".join(p.name for p in paths) + "}"
        raise DataError(
            f"files: no prediction for sample {sample_id!r} under {self.root} "
            f"(looked for {tried}); "
            "write one for every sample of the dataset split, or check root= and pattern="
        )

    def available_ids(self) -> list[str]:
        """Sample ids that have a prediction under ``root`` (sorted)."""
        if self.pattern is not None:
            pieces = re.split(r"(\{id\}|\{name\})", self.pattern)
            group = {"{id}": r"(?P<id>.+)", "{name}": r"[^/]+"}
            regex = re.compile("".join(group.get(p, re.escape(p)) for p in pieces) + "$")
        else:
            exts = "|".join(re.escape(e) for e in self.extensions)
            regex = re.compile(r"(?P<id>.+)\.(?:" + exts + ")$")
        ids = set()
        for dirpath, _, filenames in os.walk(self.root):
            for filename in filenames:
                rel = (Path(dirpath) / filename).relative_to(self.root).as_posix()
                match = regex.match(rel)
                if match:
                    ids.add(match.group("id"))
        return sorted(ids)

    # ---- reading

    def read(self, sample_id: str) -> np.ndarray:
        """The prediction of ``sample_id`` at its stored size, float32 ``[H,W]``."""
        path = self.path_for(sample_id)
        depth = read_prediction(path, self.scale)
        bad = ~np.isfinite(depth)
        if bad.any():
            if self.nonfinite == "error":
                raise DataError(
                    f"files: prediction for sample {sample_id!r} ({path}) has {int(bad.sum())} "
                    "NaN/inf values; write 0 for invalid pixels or pass nonfinite=zero"
                )
            depth = np.where(bad, np.float32(0), depth)
        return depth

    def forward(self, rgb: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        rgb = check_rgb(rgb, self.info.name)
        if ids is None:
            raise ConfigError(
                "files: predictions are matched to samples by id; call model(rgb, ids=[...]) "
                "with the dataset's sample ids"
            )
        if isinstance(ids, str):
            ids = [ids]
        if len(ids) != rgb.shape[0]:
            raise ShapeError(
                f"files: got {len(ids)} sample ids for a batch of {rgb.shape[0]} images; "
                "pass one id "
                "per image"
            )
        maps = [
            resize_smooth(
                torch.from_numpy(np.ascontiguousarray(self.read(i)))[None, None],
                self.info.output_size,
            )
            for i in ids
        ]
        return torch.cat(maps).to(device=rgb.device)

    def extra_repr(self) -> str:
        root, size = str(self.root), self.info.output_size
        return f"root={root!r}, pattern={self.pattern!r}, output_size={size}"


def _extensions_option(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    exts = tuple(str(v).strip().lstrip(".").lower() for v in value if str(v).strip())
    unknown = [e for e in exts if e not in EXTENSIONS]
    if not exts or unknown:
        raise ConfigError(
            f"files: extensions must be chosen from {', '.join(EXTENSIONS)}, received {value!r}"
        )
    return exts


def create_files(
    weights: str | os.PathLike | None = None,
    *,
    root: str | os.PathLike | None = None,
    pattern: str | None = None,
    extensions: Sequence[str] | str = EXTENSIONS,
    scale: float | None = None,
    output_kind: str = "metric",
    output_size: Sequence[int] | None = None,
    input_size: Sequence[int] | None = None,
    value_range: Sequence[float] | None = None,
    nonfinite: str = "error",
) -> FilesBackbone:
    """Predictions written by another program (.npy, .pfm, 16-bit .png), matched by sample id.

    Args:
        weights: unused (there is no model); must be ``None``.
        root: the directory holding the predictions.
        pattern: file name relative to ``root`` as a format string with ``{id}`` (and ``{name}``,
            the id's last path component), e.g. ``"{id}_depth.png"``. Default: ``{id}.EXT`` for
            each extension in ``extensions``, first match wins.
        extensions: priority order of ``npy``, ``pfm``, ``png`` when no pattern is given.
        scale: PNG value per metre; default: the PNG's recorded scale, else 1000.
        output_kind: ``metric`` (metres), ``relative`` or ``disparity``.
        output_size: ``(height, width)`` every prediction is resized to (default: the first
            file's size).
        input_size: declared RGB size (the RGB is not used; default: ``output_size``).
        value_range: expected ``(min, max)`` of the values (default ``(0, inf)``).
        nonfinite: ``error`` (default) or ``zero`` (NaN/inf become 0, i.e. invalid).
    """
    if weights is not None:
        raise ConfigError(
            f"files: weights={os.fspath(weights)!r} has no meaning for stored predictions; "
            "pass root=DIR instead"
        )
    if root is None:
        raise ConfigError(
            "files: no root given; pass root=DIR (the directory of predictions), e.g. "
            "--backbone-arg root=preds/"
        )
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise ConfigError(f"files: root {os.fspath(root)!r} is not a directory; pass root=DIR")
    if output_kind not in OUTPUT_KINDS:
        raise ConfigError(
            f"files: output_kind must be one of {', '.join(OUTPUT_KINDS)}, received {output_kind!r}"
        )
    if nonfinite not in NONFINITE:
        raise ConfigError(f"files: nonfinite must be 'error' or 'zero', received {nonfinite!r}")
    if pattern is not None and pattern.count("{id}") != 1:
        raise ConfigError(
            f"files: pattern must contain {{id}} exactly once, received {pattern!r} "
            "(e.g. pattern={id}_depth.png)"
        )
    if pattern is not None:
        try:
            pattern.format(id="id", name="name")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"files: pattern {pattern!r} may only use the fields {{id}} and {{name}} "
                "(e.g. pattern={id}_depth.png)"
            ) from None
    if pattern is not None and Path(pattern).suffix.lstrip(".").lower() not in EXTENSIONS:
        raise ConfigError(
            f"files: pattern {pattern!r} must end in .npy, .pfm or .png (e.g. pattern={{id}}.npy)"
        )
    exts = _extensions_option(extensions)
    scale = None if scale is None else float(scale)
    if scale is not None and scale <= 0:
        raise ConfigError(f"files: scale must be positive (PNG value per metre), received {scale}")

    root_path = root_path.resolve()
    placeholder = BackboneInfo(NAME, output_kind, (1, 1), (1, 1))
    module = FilesBackbone(root_path, placeholder, pattern, exts, scale, nonfinite)
    out_size = size_option(output_size, "files: output_size")
    if out_size is None:
        ids = module.available_ids()
        if not ids:
            looked = pattern or "{id}." + "|".join(exts)
            raise ConfigError(
                f"files: no predictions under {root_path} matching {looked}; write them there or "
                "pass output_size=[H,W]"
            )
        out_size = tuple(read_prediction(module.path_for(ids[0]), scale).shape)
    in_size = size_option(input_size, "files: input_size") or out_size
    vrange = (
        tuple(float(v) for v in value_range) if value_range is not None else (0.0, float("inf"))
    )
    module.info = BackboneInfo(
        name=NAME,
        output_kind=output_kind,
        input_size=in_size,
        output_size=out_size,
        value_range=vrange,
        config={
            "root": str(root_path),
            "pattern": pattern,
            "extensions": list(exts),
            "scale": scale,
            "output_kind": output_kind,
            "output_size": list(out_size),
            "input_size": list(in_size),
            "nonfinite": nonfinite,
            **({"value_range": list(vrange)} if value_range is not None else {}),
        },
        description=f"predictions read from {root_path}",
    )
    return module


# Declared for tools that describe what a backbone was built from without building it
# ('refinedepth inspect' of a cache): there is no model here, so no weights and no initialisation.
create_files.has_weights = False


__all__ = ["create_files", "FilesBackbone", "read_prediction", "EXTENSIONS"]
