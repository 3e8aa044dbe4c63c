"""Depth for image files: backbone, then optional refiners, then files on disk (SPEC §8 ``predict``).

For each input image ``NAME.jpg`` it writes, under the output folder:

* ``NAME_depth.png``: 16-bit PNG, depth times ``png_scale`` (1000 = millimetres), the scale
  recorded in the PNG's text metadata (``refinedepth.data.io.write_depth_png``); 0 = invalid;
* ``NAME_depth.npy``: float32 depth in metres (plain ``np.save``, readable without pickle);
* ``NAME_depth_color.png``: the depth colourised for viewing.

Images are resized to the backbone's ``info.input_size``, run in batches, the prediction (after
any refiners, chained in order) is resized back to the image's own size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError, FileFormatError
from .progress import ProgressCallback

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
PNG_MAX = 65535


@dataclass
class PredictResult:
    """What :func:`predict_images` wrote: one entry per image."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    out_dir: str = ""
    output_kind: str = "metric"
    clipped_pixels: int = 0


def find_images(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Expand files and folders into ``(path, name)`` pairs; ``name`` is the output stem.

    Folders are searched recursively for image files (sorted); their names keep the relative
    sub-folder (``sub/frame-0001``). A missing input or an empty folder is a :class:`DataError`.
    """
    found: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise DataError(
                    f"folder {str(p)!r} holds no images: expected files ending in {', '.join(IMAGE_EXTENSIONS)}"
                )
            found += [(f, f.relative_to(p).with_suffix("").as_posix()) for f in files]
        elif p.is_file():
            found.append((p, p.stem))
        else:
            raise DataError(f"input {str(p)!r} does not exist: expected an image file or a folder of images")
    seen: dict[str, Path] = {}
    for path, name in found:
        if name in seen and seen[name] != path:
            raise ConfigError(
                f"two inputs would write the same outputs {name!r}: {str(seen[name])!r} and {str(path)!r}; "
                "pass them in separate runs or rename one"
            )
        seen[name] = path
    return found


def read_image(path: str | os.PathLike):
    """uint8 HxWx3 RGB from any image file PIL reads; a :class:`FileFormatError` naming it if not."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise FileFormatError(
                    f"cannot use {str(path)!r} as an RGB image: it is a single-channel {img.mode} image "
                    "(a depth map?); expected an 8-bit colour photo"
                )
            rgb = np.array(img.convert("RGB"), dtype=np.uint8)
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
    progress: ProgressCallback | None = None,
) -> PredictResult:
    """Predict depth for every image in ``inputs`` and write PNG/NPY/colour files to ``out_dir``.

    Returns a :class:`PredictResult` listing, per image, its outputs and depth range.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from .data.io import write_depth_png
    from .device import resolve_device
    from .evaluate import load_refiners, run_chain
    from .visualize import colorize_depth

    if png_scale <= 0:
        raise ConfigError(f"png_scale must be positive, got {png_scale}")
    images = find_images(inputs)
    dev = resolve_device(device)
    model = load_backbone(backbone, weights, backbone_options).to(dev)
    info = model.info
    models = load_refiners(refiners, dev)
    kind = "metric" if models else info.output_kind
    accepts_ids = bool(getattr(model, "accepts_ids", False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = PredictResult(out_dir=str(out_dir), output_kind=kind)

    total = len(images)
    for start in range(0, total, batch_size):
        chunk = images[start : start + batch_size]
        arrays = [read_image(path) for path, _ in chunk]
        batch = torch.stack(
            [
                F.interpolate(
                    torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0,
                    size=info.input_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0]
                for a in arrays
            ]
        ).to(dev)
        with torch.no_grad():
            if accepts_ids:
                rough = model(batch, ids=[name for _, name in chunk])
            else:
                rough = model(batch)
            rgb_small = F.interpolate(batch, size=tuple(rough.shape[-2:]), mode="bilinear", align_corners=False)
            pred = run_chain(rough.float(), models, info.output_kind, rgb=rgb_small)[-1]
        for (path, name), rgb, depth in zip(chunk, arrays, pred):
            h, w = rgb.shape[:2]
            d = F.interpolate(depth[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            d = d.cpu().numpy().astype(np.float32)
            if not np.isfinite(d).all():
                raise DataError(
                    f"prediction for {str(path)!r} has non-finite values: check the backbone weights "
                    "and the refiners"
                )
            base = out_dir / f"{name}_depth"
            base.parent.mkdir(parents=True, exist_ok=True)
            np.save(base.with_suffix(".npy"), d)
            limit = (PNG_MAX - 1) / png_scale
            result.clipped_pixels += int((d > limit).sum())
            write_depth_png(base.with_suffix(".png"), np.clip(d, 0.0, limit), scale=png_scale)
            color = out_dir / f"{name}_depth_color.png"
            _save_rgb(color, colorize_depth(d))
            result.outputs.append(
                {
                    "image": str(path),
                    "png": str(base.with_suffix(".png")),
                    "npy": str(base.with_suffix(".npy")),
                    "color": str(color),
                    "size": [h, w],
                    "min": float(d.min()),
                    "max": float(d.max()),
                }
            )
        if progress is not None:
            progress(min(start + batch_size, total), total, desc="predict")
    return result


def _save_rgb(path: Path, img) -> None:
    from PIL import Image

    Image.fromarray(img).save(path)


__all__ = ["PredictResult", "find_images", "read_image", "load_backbone", "predict_images", "IMAGE_EXTENSIONS"]
