"""Depth for image files: backbone, then optional refiners, then files on disk (SPEC §8 ``predict``).

For each input image ``NAME.EXT`` it writes, under the output folder (``NAME`` is the whole file
name without its last extension: ``scan.001.jpg`` gives ``scan.001_depth.*``):

* ``NAME_depth.png``: 16-bit PNG, depth times ``png_scale`` (1000 = millimetres), the scale
  recorded in the PNG's text metadata (``refinedepth.data.io.write_depth_png``); 0 = invalid;
* ``NAME_depth.npy``: float32 depth in metres (plain ``np.save``, readable without pickle);
* ``NAME_depth_color.png``: the depth colourised for viewing (near dark, far bright; each image
  on its own range).

Without refiners a ``relative`` or ``disparity`` backbone's map is written as it is, not in
metres: the PNG then records ``output_kind`` beside its scale, and the colour picture still shows
near dark (a disparity map is inverted for it).

Photos are turned upright by their EXIF orientation, as viewers show them, and the outputs have
that orientation. Hidden files (names starting with ``.``, e.g. macOS ``._IMG.jpg``) in input
folders are skipped.

Nothing is replaced by accident: every output path is checked, and every image read, before
anything is written, and an existing file is refused unless ``overwrite=True`` (``--overwrite``);
two inputs that would write the same output, or an output that is one of the inputs, are refused
always.

Images are resized to the backbone's ``info.input_size`` and run in batches through the backbone,
then through the :class:`~refinedepth.refiner.chain.RefinerChain` (refiners in order) with the
image as loaded: the last refiner, and any refiner with a full-resolution head, outputs at the
image's own size directly (its correction resized there from the model size; a head guided by the
full-resolution image); without refiners the rough map is resized to the image's size (all
resizing with :mod:`refinedepth.geometry`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, DataError, FileFormatError
from .progress import ProgressCallback

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
PNG_MAX = 65535
#: what each image's outputs are called: ``NAME`` + suffix
OUTPUT_SUFFIXES = {"png": "_depth.png", "npy": "_depth.npy", "color": "_depth_color.png"}


@dataclass
class PredictResult:
    """What :func:`predict_images` wrote: one entry per image; ``warnings`` said once each."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    out_dir: str = ""
    output_kind: str = "metric"
    clipped_pixels: int = 0
    warnings: list[str] = field(default_factory=list)


def _stem(name: str) -> str:
    """``scan.001.jpg`` -> ``scan.001``; ``sub/a.png`` -> ``sub/a`` (the last extension only)."""
    p = PurePosixPath(name)
    return str(p.parent / p.stem) if str(p.parent) != "." else p.stem


def find_images(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Expand files and folders into ``(path, name)`` pairs; ``name`` is the output stem (the
    file name without its last extension).

    Folders are searched recursively for image files (sorted); their names keep the relative
    sub-folder (``sub/frame-0001``). The same file given twice is used once. A missing input or an
    empty folder is a :class:`DataError`; two files with one name a :class:`ConfigError`.
    """
    found: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)  # ._IMG.jpg, .cache/
            )
            if not files:
                raise DataError(
                    f"folder {str(p)!r} holds no images: expected files ending in {', '.join(IMAGE_EXTENSIONS)}"
                )
            found += [(f, _stem(f.relative_to(p).as_posix())) for f in files]
        elif p.is_file():
            found.append((p, _stem(p.name)))
        else:
            raise DataError(f"input {str(p)!r} does not exist: expected an image file or a folder of images")
    seen: dict[str, Path] = {}
    unique: list[tuple[Path, str]] = []
    for path, name in found:
        if name in seen:
            if os.path.samefile(seen[name], path):
                continue
            raise ConfigError(
                f"two inputs would write the same outputs {name!r}: {str(seen[name])!r} and {str(path)!r}; "
                "pass them in separate runs or rename one"
            )
        seen[name] = path
        unique.append((path, name))
    return unique


def output_paths(out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """``{"png", "npy", "color"}`` output paths of the image named ``name`` (see the module)."""
    return {key: Path(out_dir) / f"{name}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}


def plan_outputs(
    images: Sequence[tuple[Path, str]], out_dir: str | os.PathLike, *, overwrite: bool = False
) -> list[dict[str, Path]]:
    """The output paths of every image, checked before anything is written.

    Refused with a one-line :class:`ConfigError`: two images writing one path, an output that is
    an input image, and (unless ``overwrite``) an output that already exists.
    """
    inputs = {os.path.normcase(os.path.realpath(p)): p for p, _ in images}
    owners: dict[str, Path] = {}
    plans = []
    for path, name in images:
        plan = output_paths(out_dir, name)
        for target in plan.values():
            key = os.path.normcase(os.path.realpath(target))
            if key in owners:
                raise ConfigError(
                    f"two inputs would write the same output {str(target)!r}: {str(owners[key])!r} and "
                    f"{str(path)!r}; pass them in separate runs or rename one"
                )
            owners[key] = path
            if key in inputs:
                raise ConfigError(
                    f"output {str(target)!r} would replace the input image {str(inputs[key])!r}; "
                    "choose another --out"
                )
            if target.is_dir():
                raise ConfigError(f"output {str(target)!r} is a folder; remove it or choose another --out")
            if target.exists() and not overwrite:
                raise ConfigError(
                    f"output {str(target)!r} already exists; pass --overwrite to replace it or choose another --out"
                )
        plans.append(plan)
    return plans


def read_image(path: str | os.PathLike):
    """uint8 HxWx3 RGB from any image file PIL reads, upright by its EXIF orientation (as viewers
    show a photo); a :class:`FileFormatError` naming it if not."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise FileFormatError(
                    f"cannot use {str(path)!r} as an RGB image: it is a single-channel {img.mode} image "
                    "(a depth map?); expected an 8-bit colour photo"
                )
            rgb = np.array(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(
            f"cannot read image {str(path)!r} ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "expected a readable JPEG/PNG/BMP/TIFF file"
        ) from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise FileFormatError(f"image {str(path)!r} is empty (size {rgb.shape[:2]}); expected a non-empty image")
    return rgb


def load_backbone(backbone: str | Any, weights: str | None = None, options: dict[str, Any] | None = None):
    """A backbone module by registry name (or an already built module), in eval mode."""
    if isinstance(backbone, str):
        from .registry import create_backbone

        model = create_backbone(backbone, weights=weights, **(options or {}))
    else:
        model = backbone
    model.eval()
    return model


def predict_images(
    inputs: Sequence[str | os.PathLike],
    backbone: str | Any,
    out_dir: str | os.PathLike,
    *,
    weights: str | None = None,
    backbone_options: dict[str, Any] | None = None,
    refiners: Sequence[str | os.PathLike] = (),
    batch_size: int = 4,
    device: str = "auto",
    png_scale: float = 1000.0,
    overwrite: bool = False,
    precision: str = "fp32",
    detail_sigma: float | None = None,
    detail_scale: str = "global",
    any_backbone: bool = False,
    progress: ProgressCallback | None = None,
) -> PredictResult:
    """Predict depth for every image in ``inputs`` and write PNG/NPY/colour files to ``out_dir``.

    Every output path is checked before anything is written (:func:`plan_outputs`): an existing
    file is replaced only with ``overwrite=True``. A backbone without weights (random
    initialisation, different on every run) gets one warning, also listed in the result.
    ``precision`` (``fp32`` or ``bf16``) is the refiners' inference precision; ``detail_sigma``
    makes them detail-only, ``detail_scale="image"`` keeping their per-image scale
    (:meth:`~refinedepth.refiner.api.Refiner.set_detail`). Refiners trained on another
    backbone's maps are refused unless ``any_backbone``.
    Returns a :class:`PredictResult` listing, per image, its outputs and depth range.
    """
    import numpy as np
    import torch

    from .contract import write_atomically
    from .data.io import write_depth_png
    from .device import resolve_device
    from .geometry import resize_rgb, resize_smooth
    from .refiner.chain import RefinerChain
    from .visualize import colorize_depth

    if png_scale <= 0:
        raise ConfigError(f"png_scale must be positive, got {png_scale}")
    images = find_images(inputs)
    out_dir = Path(out_dir)
    plans = plan_outputs(images, out_dir, overwrite=overwrite)
    for path, _name in images:  # an unreadable image stops the run before any output is written
        read_image(path)
    dev = resolve_device(device)
    chain = RefinerChain.load(refiners, dev, precision=precision, detail_sigma=detail_sigma,
                              detail_scale=detail_scale)
    model = load_backbone(backbone, weights, backbone_options).to(dev)
    info = model.info
    chain.check_backbone(info.name, "--backbone is", any_backbone=any_backbone)
    kind = chain.output_kind(info.output_kind)
    accepts_ids = bool(getattr(model, "accepts_ids", False))
    result = PredictResult(out_dir=str(out_dir), output_kind=kind)
    if _randomly_initialised(model, weights, backbone_options):
        message = (
            f"backbone {info.name!r} has no weights: its random initialisation gives different depth "
            "on every run; pass --weights for meaningful, repeatable results"
        )
        result.warnings.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    out_dir.mkdir(parents=True, exist_ok=True)

    total = len(images)
    if progress is not None:
        progress(0, total, desc="predict")
    for start in range(0, total, batch_size):
        chunk = images[start : start + batch_size]
        chunk_plans = plans[start : start + batch_size]
        arrays = [read_image(path) for path, _ in chunk]
        full = [torch.from_numpy(a).permute(2, 0, 1).float() / 255.0 for a in arrays]  # [3,H,W] in [0,1]
        batch = torch.stack([resize_rgb(x, info.input_size) for x in full]).to(dev)
        with torch.no_grad():
            if accepts_ids:
                rough = model(batch, ids=[name for _, name in chunk])
            else:
                rough = model(batch)
            rough = rough.float()
            preds: list[Any] = [None] * len(chunk)
            if not len(chain):
                preds = list(rough)
            else:
                # the refiners see each image as loaded, and a full-resolution head outputs at the
                # image's size (as evaluate does at the ground truth's): one call per image size
                by_size: dict[tuple[int, int], list[int]] = {}
                for i, a in enumerate(arrays):
                    by_size.setdefault(tuple(a.shape[:2]), []).append(i)
                for hw, idx in by_size.items():
                    rgb_full = torch.stack([full[i] for i in idx]).to(dev)
                    out = chain(rough[idx], rgb_full, kind=info.output_kind, out_size=hw)[-1]
                    for i, depth in zip(idx, out):
                        preds[i] = depth
        for (path, _name), plan, rgb, depth in zip(chunk, chunk_plans, arrays, preds):
            h, w = rgb.shape[:2]
            d = resize_smooth(depth[None].float(), (h, w))[0, 0]  # a no-op where a head output at (h, w)
            d = d.cpu().numpy().astype(np.float32)
            if not np.isfinite(d).all():
                raise DataError(
                    f"prediction for {str(path)!r} has non-finite values: check the backbone weights "
                    "and the refiners"
                )
            plan["npy"].parent.mkdir(parents=True, exist_ok=True)
            limit = (PNG_MAX - 1) / png_scale
            result.clipped_pixels += int((d > limit).sum())
            # each file written beside its name and renamed: an interrupted run leaves no half file
            # under an output's name, and --overwrite replaces a file only with a complete one
            write_atomically(plan["npy"], np.save, d)
            write_atomically(plan["png"], write_depth_png, np.clip(d, 0.0, limit), scale=png_scale, kind=kind)
            # near dark, far bright: a disparity map (high = near) is shown by its inverse
            shown = np.where(d > 0, 1.0 / np.maximum(d, 1e-12), 0.0) if kind == "disparity" else d
            write_atomically(plan["color"], _save_rgb, colorize_depth(shown))
            result.outputs.append(
                {
                    "image": str(path),
                    "png": str(plan["png"]),
                    "npy": str(plan["npy"]),
                    "color": str(plan["color"]),
                    "size": [h, w],
                    "min": float(d.min()),
                    "max": float(d.max()),
                }
            )
        if progress is not None:
            progress(min(start + batch_size, total), total, desc="predict")
    return result


def _randomly_initialised(model: Any, weights: Any, options: dict[str, Any] | None) -> bool:
    """Whether a backbone runs on its random initialisation: no ``weights``, learnable parameters,
    and no ``model=`` option naming where its weights come from (the ``hf`` adapter's way). A
    backbone may say so itself with a boolean ``pretrained`` attribute."""
    flag = getattr(model, "pretrained", None)
    if isinstance(flag, bool):
        return not flag
    if weights is not None or (options or {}).get("model") is not None:
        return False
    parameters = getattr(model, "parameters", None)
    return callable(parameters) and any(True for _ in parameters())


def _save_rgb(path: Path, img) -> None:
    from PIL import Image

    Image.fromarray(img).save(path)


__all__ = [
    "IMAGE_EXTENSIONS",
    "OUTPUT_SUFFIXES",
    "PredictResult",
    "find_images",
    "load_backbone",
    "output_paths",
    "plan_outputs",
    "predict_images",
    "read_image",
]
