"""Reading and writing depth maps and RGB images.

Depth in memory is always ``float32 [H, W]`` in metres with ``0`` (or non-finite) marking invalid
pixels. On disk:

* 16-bit PNG: ``round(depth * scale)`` as ``uint16`` (``0`` = invalid); NYU-style files use
  ``scale=1000`` (millimetres), KITTI ``256``. :func:`write_depth_png` records the scale in the PNG's
  text metadata (key ``depth_scale``) and :func:`read_depth_png` uses it when no scale is given.
* ``.npy``: float depth in metres (read with ``allow_pickle=False``, always).
* ``.pfm``: single-channel Portable Float Map, metres.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DataError, FileFormatError
from .base import as_depth

PNG_SCALE_KEY = "depth_scale"
PNG_KIND_KEY = "output_kind"  # written for relative/disparity maps, whose values are not metres
DEPTH_EXTENSIONS = (".png", ".npy", ".pfm")
RGB_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def _to_numpy(depth) -> np.ndarray:
    if hasattr(depth, "detach"):  # a torch tensor, without importing torch
        depth = depth.detach().cpu().numpy()
    return np.asarray(depth)


def _open_image(path: Path, allow_truncated: bool = False):
    from PIL import Image, ImageFile, UnidentifiedImageError

    if not path.is_file():
        raise FileFormatError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        if allow_truncated and "truncated" in str(exc):
            # Decode what is there (the rest is filled grey); PIL's switch is global, so restore it.
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                image = Image.open(path)
                image.load()
                return image
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
        raise FileFormatError(f"{path}: not a readable image ({exc}); expected a PNG/JPEG file") from None
    return image


def read_rgb(path: str | os.PathLike, allow_truncated: bool = False) -> np.ndarray:
    """Read an image as ``uint8 [H, W, 3]`` (grey and RGBA are converted; 16-bit is scaled down).

    ``allow_truncated`` decodes a truncated file instead of failing (Make3D's test set has one).
    """
    path = Path(path)
    image = _open_image(path, allow_truncated)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        array = np.clip(array / 257.0, 0, 255).astype(np.uint8)
        return np.repeat(array[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def png_depth_scale(path: str | os.PathLike) -> float | None:
    """The ``depth_scale`` recorded in a PNG's text metadata, or ``None``."""
    image = _open_image(Path(path))
    value = getattr(image, "text", {}).get(PNG_SCALE_KEY)
    return float(value) if value is not None else None


def read_depth_png(
    path: str | os.PathLike, scale: float | None = None, invalid: Iterable[int] = ()
) -> np.ndarray:
    """Read a 16-bit depth PNG as metres: ``value / scale``, with ``0`` and ``invalid`` values -> 0.

    ``scale`` defaults to the one recorded in the file (``depth_scale`` text chunk); a file without
    one needs an explicit scale (1000 for millimetres as NYU/Kinect, 256 for KITTI).
    """
    path = Path(path)
    image = _open_image(path)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        bits = "8-bit" if image.mode in ("L", "P", "1", "RGB", "RGBA", "LA") else f"mode {image.mode!r}"
        raise FileFormatError(
            f"{path}: expected a 16-bit single-channel depth PNG, got {bits} ({image.mode}); "
            "save depth as uint16 (e.g. millimetres) with write_depth_png"
        )
    raw = np.asarray(image)
    if raw.dtype != np.uint16:
        if raw.min() < 0 or raw.max() > 65535:
            raise FileFormatError(f"{path}: expected uint16 depth values, got range {raw.min()}..{raw.max()}")
        raw = raw.astype(np.uint16)
    if scale is None:
        recorded = getattr(image, "text", {}).get(PNG_SCALE_KEY)
        if recorded is None:
            raise DataError(
                f"{path}: no depth scale given and none recorded in the PNG; "
                "pass scale= (1000 for millimetres, 256 for KITTI)"
            )
        scale = float(recorded)
    if not scale > 0:
        raise DataError(f"{path}: depth scale must be > 0, got {scale}")
    depth = raw.astype(np.float32) / np.float32(scale)
    bad = raw == 0
    for value in invalid:
        bad |= raw == int(value)
    depth[bad] = 0.0
    return depth


def write_depth_png(path: str | os.PathLike, depth_m, scale: float = 1000.0, kind: str = "metric") -> Path:
    """Write metres as a 16-bit PNG of ``round(depth * scale)``; invalid (<= 0, non-finite) -> 0.

    The scale is recorded in the file (exactly: ``repr``), and a ``kind`` other than ``metric``
    (a relative or disparity map's values, not metres) in its ``output_kind`` text. Depths that do
    not fit in 16 bits raise :class:`DataError` (choose a smaller scale).
    """
    from PIL import Image, PngImagePlugin

    path = Path(path)
    depth = as_depth(_to_numpy(depth_m), str(path)).astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    values = np.where(valid, np.round(depth * scale), 0.0)
    if values.max(initial=0) > 65535:
        raise DataError(
            f"{path}: depth up to {depth[valid].max():.3f} m does not fit a 16-bit PNG at scale {scale:g} "
            f"(max {65535 / scale:.3f} m); use a smaller scale or .npy"
        )
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_SCALE_KEY, repr(float(scale)))
    if kind != "metric":
        info.add_text(PNG_KIND_KEY, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path, pnginfo=info)
    return path


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` depth map in metres (``[H,W]``, ``[1,H,W]`` or ``[H,W,1]``); never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise FileFormatError(f"{path}: not a plain .npy array ({exc}); object arrays are not read") from None
    if not isinstance(array, np.ndarray):
        raise FileFormatError(f"{path}: expected a single array, got {type(array).__name__}")
    return as_depth(array, str(path))


def write_npy(path: str | os.PathLike, depth_m) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, as_depth(_to_numpy(depth_m), str(path)), allow_pickle=False)
    return path


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel PFM (``Pf``); rows are stored bottom-up in the format."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found")
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header == b"PF":
            raise FileFormatError(f"{path}: colour PFM (PF) found; expected a single-channel depth PFM (Pf)")
        if header != b"Pf":
            raise FileFormatError(f"{path}: not a PFM file (header {header[:8]!r}, expected b'Pf')")
        line = f.readline()
        while line.startswith(b"#"):
            line = f.readline()
        dims = re.match(rb"^\s*(\d+)\s+(\d+)\s*$", line)
        if not dims:
            raise FileFormatError(f"{path}: malformed PFM size line {line[:32]!r}")
        width, height = int(dims.group(1)), int(dims.group(2))
        try:
            scale = float(f.readline().strip())
        except ValueError:
            raise FileFormatError(f"{path}: malformed PFM scale line") from None
        dtype = "<f4" if scale < 0 else ">f4"
        data = np.frombuffer(f.read(), dtype=dtype)
    if data.size != width * height:
        raise FileFormatError(f"{path}: expected {width}x{height}={width * height} floats, found {data.size}")
    return np.flipud(data.reshape(height, width)).astype(np.float32)


def write_pfm(path: str | os.PathLike, depth_m) -> Path:
    path = Path(path)
    depth = as_depth(_to_numpy(depth_m), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = depth.shape
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1.0\n" % (w, h))
        f.write(np.flipud(depth).astype("<f4").tobytes())
    return path


def read_depth(path: str | os.PathLike, scale: float | None = None, invalid: Iterable[int] = ()) -> np.ndarray:
    """Read a depth map in metres by extension: ``.png`` (16-bit, ``scale``), ``.npy``, ``.pfm``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".png":
        return read_depth_png(path, scale=scale, invalid=invalid)
    if ext == ".npy":
        depth = read_npy(path)
    elif ext == ".pfm":
        depth = read_pfm(path)
    else:
        raise FileFormatError(f"{path}: unsupported depth format {ext!r}; expected one of {', '.join(DEPTH_EXTENSIONS)}")
    return depth


def write_depth(path: str | os.PathLike, depth_m, scale: float = 1000.0) -> Path:
    """Write metres by extension: ``.png`` (16-bit at ``scale``), ``.npy`` or ``.pfm``."""
    ext = Path(path).suffix.lower()
    if ext == ".png":
        return write_depth_png(path, depth_m, scale)
    if ext == ".npy":
        return write_npy(path, depth_m)
    if ext == ".pfm":
        return write_pfm(path, depth_m)
    raise FileFormatError(f"{path}: unsupported depth format {ext!r}; expected one of {', '.join(DEPTH_EXTENSIONS)}")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image or depth file, reading only its header."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # reads the header only
        shape = tuple(s for s in shape if s != 1) if len(shape) == 3 else shape
        return int(shape[0]), int(shape[1])
    if path.suffix.lower() == ".pfm":
        with open(path, "rb") as f:
            f.readline()
            line = f.readline()
            while line.startswith(b"#"):
                line = f.readline()
            w, h = (int(x) for x in line.split())
        return h, w
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
    except OSError as exc:
        raise FileFormatError(f"{path}: not a readable image ({exc})") from None
    return h, w
