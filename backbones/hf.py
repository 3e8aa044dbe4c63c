"""Hugging Face depth estimators (``AutoModelForDepthEstimation``) as backbones (SPEC §3.4).

Any model that ``transformers.AutoModelForDepthEstimation`` loads — DPT, GLPN, Depth Anything
v1/v2 (relative and metric), ZoeDepth, Depth Pro, … — from a local directory written by
``save_pretrained`` or from a hub id. transformers is the optional extra ``hf``
(``pip install 'refinedepth[hf]'``) and is imported only when the backbone is built.

What the adapter does for you:

* **Output kind from the model family** (override with ``output_kind=``): DPT (MiDaS-style) and
  relative Depth Anything predict relative inverse depth -> ``disparity``; GLPN, ZoeDepth,
  Depth Anything with ``depth_estimation_type="metric"`` (and the other metric heads) predict
  metres -> ``metric``; Depth Pro is ``metric`` when its field-of-view head is present (depth =
  1 / (canonical inverse depth · 2·tan(fov/2)), the rule of its image processor), else
  ``disparity``. Prompt Depth Anything is ``relative``: only a prompt depth map (which the
  adapter does not pass) maps its output to metres.
* **Preprocessing as the model's image processor does it**, read from ``preprocessor_config.json``
  in the model directory when present (family defaults otherwise): target ``size``,
  ``keep_aspect_ratio``, ``ensure_multiple_of``, GLPN's ``size_divisor``, resampling, rescale and
  mean/std normalisation, ZoeDepth's reflection padding, and each processor's resize call
  (ZoeDepth: ``align_corners=True`` without antialiasing; Depth Pro: without antialiasing). It
  runs on tensors, on the model's device, inside ``forward``.
* **Declared sizes**: ``info.input_size`` is what callers resize RGB to, default 480x640 (NYU and
  Kinect frames) for every family: at the images' own size the callers' resize does nothing and
  the adapter alone applies the processor's resize (its aspect-ratio rule, multiple and
  resampling), as transformers does. Images of another shape (KITTI's 375x1242) want
  ``input_size`` set to their size, or a ``keep_aspect_ratio`` model sees them squashed. The
  prediction is resized to ``info.output_size`` (default: ``input_size``, the image's size, where
  transformers post-processes to) with :func:`refinedepth.geometry.resize_smooth` (bilinear,
  antialiased when shrinking, as the scorer resizes predictions).

Weights are only ever read from safetensors (``use_safetensors=True``): a repository that has only
``pytorch_model.bin`` is refused rather than unpickled. A hub id is resolved through the Hugging
Face cache: an id already cached is loaded from there without contacting the hub; with
``HF_HUB_OFFLINE=1`` (or no network) an id that is not cached is a one-line error saying how to
fetch it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from refinedepth.backbones.wrap import as_depth_batch, check_rgb, size_option
from refinedepth.errors import CheckpointError, ConfigError, PluginError
from refinedepth.geometry import resize_nearest, resize_smooth
from refinedepth.registry import OUTPUT_KINDS, BackboneInfo

NAME = "hf"
INSTALL_HINT = "pip install 'refinedepth[hf]'"

# ImageNet statistics as transformers names them.
_IMAGENET_DEFAULT = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_IMAGENET_STANDARD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

# Image-processor defaults per model family (model_type), used when a model directory has no
# preprocessor_config.json. Facts from the families' image processors in transformers.
_FAMILY_PREPROCESS: dict[str, dict[str, Any]] = {
    "dpt": {"size": (384, 384), "resample": "bicubic", "stats": _IMAGENET_STANDARD},
    "depth_anything": {
        "size": (518, 518),
        "keep_aspect_ratio": True,
        "multiple": 14,
        "resample": "bicubic",
        "stats": _IMAGENET_DEFAULT,
    },
    "glpn": {"size": None, "size_divisor": 32, "resample": "bilinear", "stats": None},
    # ZoeDepthImageProcessor.resize calls F.interpolate(align_corners=True), no antialiasing
    "zoedepth": {
        "size": (384, 512),
        "keep_aspect_ratio": True,
        "multiple": 32,
        "resample": "bilinear",
        "stats": _IMAGENET_STANDARD,
        "reflect_pad": True,
        "align_corners": True,
        "antialias": False,
    },
    # DepthProImageProcessor resizes with antialias=False
    "depth_pro": {
        "size": (1536, 1536),
        "resample": "bilinear",
        "stats": _IMAGENET_STANDARD,
        "antialias": False,
    },
}
_FAMILY_PREPROCESS["prompt_depth_anything"] = _FAMILY_PREPROCESS["depth_anything"]
_GENERIC_PREPROCESS: dict[str, Any] = {
    "size": (384, 384),
    "resample": "bilinear",
    "stats": _IMAGENET_STANDARD,
}

# Families whose head regresses metres directly.
_METRIC_FAMILIES = {"glpn", "zoedepth", "chmv2", "tipsv2_dpt"}
# Families that predict relative inverse depth (MiDaS-style).
_DISPARITY_FAMILIES = {"dpt"}
# Families whose kind is in config.depth_estimation_type ("relative" means relative disparity).
_TYPED_FAMILIES = {"depth_anything"}

# Default input_size for every family: NYU/Kinect frames. Callers resize RGB to it before the
# adapter, so it must be the images' own size for the processor's resize (aspect ratio kept,
# bicubic) to be the only one; a processor's square target size would squash them.
_DEFAULT_INPUT_SIZE = (480, 640)

# PIL resampling codes, as stored in preprocessor_config.json.
_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class HFPreprocess:
    """How a depth model's image processor turns an RGB image into ``pixel_values``.

    Attributes:
        size: target ``(height, width)``, or ``None`` to keep the input's size.
        keep_aspect_ratio: scale both sides by the factor closest to 1 (DPT/Depth Anything rule).
        multiple: round each side to a multiple of this, then truncate (``ensure_multiple_of``;
            it may be fractional: ZoeDepth's processor class default is 1/32).
        size_divisor: floor each side to a multiple of this (GLPN), or ``None``.
        resample: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        antialias: antialias when shrinking (torchvision's resize of the 8-bit image, whose
            bicubic overshoot is clipped); ZoeDepth and Depth Pro resize the float image without.
        align_corners: ``F.interpolate``'s corner alignment (ZoeDepth's resize uses ``True``).
        input_scale: factor from refinedepth's [0,1] RGB to the model's range before
            normalisation (``255 * rescale_factor``; 255 when the processor does not rescale).
        mean, std: per-channel normalisation, or ``None``.
        reflect_pad: ZoeDepth's reflection padding of ``int(sqrt(side / 2) * 3)`` pixels.
    """

    size: tuple[int, int] | None = (384, 384)
    keep_aspect_ratio: bool = False
    multiple: int | float = 1
    size_divisor: int | None = None
    resample: str = "bilinear"
    antialias: bool = True
    align_corners: bool = False
    input_scale: float = 1.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    reflect_pad: bool = False

    @classmethod
    def for_family(cls, family: str, processor: dict[str, Any] | None = None) -> HFPreprocess:
        """Combine a processor config (as in ``preprocessor_config.json``) with family defaults."""
        base = _FAMILY_PREPROCESS.get(family, _GENERIC_PREPROCESS)
        p = dict(processor or {})
        size = base.get("size")
        if "size" in p:
            size = _parse_size(p["size"])
        if p.get("do_resize") is False:
            size = None
        stats = base.get("stats")
        mean, std = stats if stats else (None, None)
        if "do_normalize" in p or "image_mean" in p:
            if p.get("do_normalize", True):
                mean = _triple(p.get("image_mean", mean or _IMAGENET_STANDARD[0]))
                std = _triple(p.get("image_std", std or _IMAGENET_STANDARD[1]))
            else:
                mean = std = None
        input_scale = 1.0
        if p.get("do_rescale", True) is False:
            input_scale = 255.0
        elif p.get("rescale_factor") is not None:
            input_scale = 255.0 * float(p["rescale_factor"])
        multiple = float(p.get("ensure_multiple_of") or base.get("multiple", 1))
        divisor = p.get("size_divisor", base.get("size_divisor"))
        if family != "glpn" and size is not None and divisor and p.get("do_pad"):
            # DPT's optional padding to a multiple of size_divisor: resizing to that multiple
            # instead keeps the output aligned with the input (no border to crop).
            multiple, divisor = float(divisor), None
        elif family != "glpn" and size is not None:
            divisor = None
        return cls(
            size=size,
            keep_aspect_ratio=bool(
                p.get("keep_aspect_ratio", base.get("keep_aspect_ratio", False))
            ),
            multiple=int(multiple) if multiple.is_integer() else multiple,
            size_divisor=int(divisor) if divisor else None,
            resample=_RESAMPLE.get(p.get("resample"), base.get("resample", "bilinear")),
            antialias=base.get("antialias", True),
            align_corners=base.get("align_corners", False),
            input_scale=input_scale,
            mean=mean,
            std=std,
            reflect_pad=bool(p.get("do_pad", base.get("reflect_pad", False)))
            and family == "zoedepth",
        )

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` the model sees for an input of ``(height, width)``."""
        if self.size is None:
            h, w = height, width
        else:
            scale_h, scale_w = self.size[0] / height, self.size[1] / width
            if self.keep_aspect_ratio:
                # scale as little as possible: keep the factor closer to 1 for both sides
                if abs(1 - scale_w) < abs(1 - scale_h):
                    scale_h = scale_w
                else:
                    scale_w = scale_h
            h = _round_to_multiple(scale_h * height, self.multiple)
            w = _round_to_multiple(scale_w * width, self.multiple)
        if self.size_divisor:
            d = self.size_divisor
            h, w = max(d, h // d * d), max(d, w // d * d)
        return h, w

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round_to_multiple(value: float, multiple: float) -> int:
    # transformers' constrain_to_multiple_of: round to the multiple, then truncate (ZoeDepth's
    # fractional multiples give e.g. 392.69 -> 392); never below one multiple or one pixel
    return max(math.ceil(multiple), int(round(value / multiple) * multiple))


def _parse_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int | float):
        return int(size), int(size)
    if isinstance(size, list | tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
        if "shortest_edge" in size:
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ConfigError(
        f"hf: cannot read the image processor's size {size!r}; expected "
        "{'height': H, 'width': W}; pass input_size=[H,W] and fix preprocessor_config.json"
    )


def _triple(values: Any) -> tuple[float, float, float]:
    if isinstance(values, int | float):
        return (float(values),) * 3
    values = tuple(float(v) for v in values)
    return values if len(values) == 3 else (values[0],) * 3


def _read_processor_config(model_dir: Path) -> dict[str, Any] | None:
    """The image processor settings stored with a model, or ``None`` when there are none."""
    for filename in ("preprocessor_config.json", "processor_config.json"):
        path = model_dir / filename
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: not readable as JSON ({exc}); re-save it with "
                "image_processor.save_pretrained(DIR) or delete it to use the family's defaults"
            ) from None
        if isinstance(data.get("image_processor"), dict):  # combined processor file
            data = data["image_processor"]
        return data
    return None


# --------------------------------------------------------------------------- output kind


def output_kind_for(config: Any) -> str | None:
    """``metric``/``relative``/``disparity`` from a transformers config's family, or ``None``."""
    family = getattr(config, "model_type", "")
    if family == "prompt_depth_anything":
        # the head's output becomes metres only through the prompt depth map's min/max
        # (predicted * (max - min) + min); without a prompt, which the adapter never passes, it is
        # depth up to scale and shift, whatever depth_estimation_type says
        return "relative"
    if family in _TYPED_FAMILIES:
        kind = getattr(config, "depth_estimation_type", "relative")
        return "metric" if kind == "metric" else "disparity"
    if family == "depth_pro":
        return "metric" if getattr(config, "use_fov_model", False) else "disparity"
    if family in _METRIC_FAMILIES:
        return "metric"
    if family in _DISPARITY_FAMILIES:
        return "disparity"
    return None


def _max_value(config: Any, kind: str) -> float:
    """The largest value the head can output, from its config (``inf`` when unbounded)."""
    family = getattr(config, "model_type", "")
    if family == "prompt_depth_anything":
        # the "metric" head ends in a sigmoid that is not scaled by max_depth; "relative" in a ReLU
        metric_head = getattr(config, "depth_estimation_type", "relative") == "metric"
        return 1.0 if metric_head else math.inf
    if kind != "metric":
        return math.inf
    if family == "zoedepth":
        bins = getattr(config, "bin_configurations", None) or []
        values = [float(b["max_depth"]) for b in bins if "max_depth" in b]
        return max(values) if values else math.inf
    if family in _TYPED_FAMILIES or family in {"glpn", "chmv2", "tipsv2_dpt"}:
        value = getattr(config, "max_depth", None)
        return float(value) if value else math.inf
    return math.inf


# --------------------------------------------------------------------------- the module


class HFDepthBackbone(nn.Module):
    """A transformers depth model plus the preprocessing its image processor would apply."""

    accepts_ids = False

    def __init__(
        self,
        model: nn.Module,
        preprocess: HFPreprocess,
        info: BackboneInfo,
        fov_to_metric: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.info = info
        self.fov_to_metric = fov_to_metric
        mean = None if preprocess.mean is None else torch.tensor(preprocess.mean).view(1, 3, 1, 1)
        std = None if preprocess.std is None else torch.tensor(preprocess.std).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def pixel_values(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB ``[B,3,H,W]`` in [0,1] -> the model's ``pixel_values`` (resized, normalised)."""
        pre = self.preprocess
        x = check_rgb(rgb, self.info.name)
        if pre.reflect_pad:
            pad_h, pad_w = _zoe_pad(x.shape[-2], x.shape[-1])
            x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
        size = pre.model_size(x.shape[-2], x.shape[-1])
        if tuple(x.shape[-2:]) != size:
            if pre.resample == "nearest":  # PIL's NEAREST: pixel centres, as geometry samples them
                x = resize_nearest(x, size)
            else:
                x = F.interpolate(
                    x,
                    size=size,
                    mode=pre.resample,
                    align_corners=pre.align_corners,
                    antialias=pre.antialias,
                )
                if pre.resample == "bicubic" and pre.antialias:
                    x = x.clamp(0.0, 1.0)  # as resizing the 8-bit image does
        if pre.input_scale != 1.0:
            x = x * pre.input_scale
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        outputs = self.model(pixel_values=self.pixel_values(rgb))
        depth = as_depth_batch(outputs, rgb.shape[0], self.info.name)
        if self.preprocess.reflect_pad:
            # back to the padded input's size, then drop the border (ZoeDepth's post-processing)
            pad_h, pad_w = _zoe_pad(height, width)
            depth = resize_smooth(depth, (height + 2 * pad_h, width + 2 * pad_w))
            depth = depth[..., pad_h : pad_h + height, pad_w : pad_w + width]
        depth = resize_smooth(depth, self.info.output_size)
        if self.fov_to_metric:
            fov = getattr(outputs, "field_of_view", None)
            if fov is not None:
                # width / focal = 2 tan(fov / 2): canonical inverse depth -> metres
                ratio = 2.0 * torch.tan(0.5 * torch.deg2rad(fov.float().reshape(-1, 1, 1, 1)))
                depth = 1.0 / torch.clamp(depth * ratio, min=1e-4, max=1e4)
        return depth

    def extra_repr(self) -> str:
        i = self.info
        return (
            f"output_kind={i.output_kind!r}, input_size={i.input_size}, output_size={i.output_size}"
        )


def _zoe_pad(height: int, width: int) -> tuple[int, int]:
    # ZoeDepth pads int(sqrt(side / 2) * 3) pixels on each side against border artefacts;
    # reflection needs the pad to be smaller than the side.
    return (
        min(int(math.sqrt(height / 2) * 3), height - 1),
        min(int(math.sqrt(width / 2) * 3), width - 1),
    )


# --------------------------------------------------------------------------- loading


def _import_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise PluginError(
            f"the 'hf' backbone needs the transformers package ({exc}); install it with "
            f"{INSTALL_HINT}"
        ) from None
    return transformers


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _offline() -> bool:
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def _not_cached(ref: str, reason: str = "") -> CheckpointError:
    why = f" ({reason})" if reason else ""
    return CheckpointError(
        f"hf: model {ref!r} is not in the local Hugging Face cache and cannot be downloaded"
        f"{why}; fetch it once with network access (`hf download {ref}` or "
        f"`huggingface-cli download {ref}`), or pass model=DIR with a directory written by "
        "save_pretrained"
    )


def _resolve(ref: str) -> tuple[Path | None, str | None]:
    """``(local_dir, None)`` for a directory, ``(None, hub_id)`` for a hub id."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path, None
    if path.exists():
        raise ConfigError(
            f"hf: model={ref!r} is a file; expected a directory written by save_pretrained "
            "(config.json + model.safetensors) or a hub id such as 'Intel/dpt-large'"
        )
    looks_like_path = ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1
    if looks_like_path or not _HUB_ID.match(ref):
        raise ConfigError(
            f"hf: model directory {ref!r} does not exist; pass model=DIR (a save_pretrained "
            "directory) or a hub id such as 'Intel/dpt-large'"
        )
    return None, ref


def _check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"hf: {model_dir} has no config.json; expected a directory written by "
            "model.save_pretrained(DIR)"
        )
    if not any(model_dir.glob("*.safetensors")):
        pickles = sorted(p.name for p in model_dir.glob("*.bin"))
        found = f"only {', '.join(pickles)} (pickle)" if pickles else "no weights"
        raise CheckpointError(
            f"hf: {model_dir} has {found}; refinedepth loads safetensors only: re-save it with "
            "model.save_pretrained(DIR, safe_serialization=True)"
        )


def _hub_processor_config(hub_id: str, cached_only: bool) -> dict[str, Any] | None:
    """The processor config of a hub model, from the cache (or downloaded when online)."""
    try:
        import huggingface_hub
    except ImportError:
        return None
    path = huggingface_hub.try_to_load_from_cache(hub_id, "preprocessor_config.json")
    if not isinstance(path, str) and not cached_only and not _offline():
        try:
            path = huggingface_hub.hf_hub_download(hub_id, "preprocessor_config.json")
        except Exception:  # absent file or no network: fall back to the family's defaults
            path = None
    if not isinstance(path, str):
        return None
    return _read_processor_config(Path(path).parent)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _load_model(transformers, source: str, hub_id: str | None, local_only: bool) -> nn.Module:
    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        return transformers.AutoModelForDepthEstimation.from_pretrained(
            source, use_safetensors=True, local_files_only=local_only
        )
    except (ValueError, KeyError) as exc:
        first = _first_line(exc)
        raise ConfigError(
            f"hf: {source!r} is not a depth-estimation model transformers can load ({first}); "
            "use a DPT, GLPN, Depth Anything, ZoeDepth or Depth Pro checkpoint"
        ) from None
    except OSError as exc:
        first = _first_line(exc)
        if hub_id is not None:
            raise _not_cached(hub_id, first) from None
        raise CheckpointError(f"hf: cannot load {source} ({first})") from None
    finally:
        if bars:
            logging.enable_progress_bar()


def create_hf(
    weights: str | os.PathLike | None = None,
    *,
    model: str | os.PathLike | None = None,
    output_kind: str | None = None,
    input_size: tuple[int, int] | list[int] | None = None,
    output_size: tuple[int, int] | list[int] | None = None,
) -> HFDepthBackbone:
    """Hugging Face AutoModelForDepthEstimation (DPT, GLPN, Depth Anything, ZoeDepth, ...).

    Args:
        weights: the model (directory or hub id) when ``model`` is not given; otherwise a
            ``.safetensors`` state dict to load into it (e.g. fine-tuned weights).
        model: a directory written by ``save_pretrained`` or a hub id.
        output_kind: override the family's kind (``metric``, ``relative``, ``disparity``).
        input_size: ``(height, width)`` callers resize RGB to (default 480x640; set it to the
            images' size so the processor's own resize, e.g. keeping the aspect ratio, applies).
        output_size: ``(height, width)`` of the returned depth (default: ``input_size``).
    """
    if model is None and weights is None:
        raise ConfigError(
            "hf: no model given; pass model=DIR (a save_pretrained directory) or model=HUB_ID, "
            "e.g. --backbone-arg model=depth-anything/Depth-Anything-V2-Small-hf"
        )
    extra_weights = None
    if model is None:
        model, weights = weights, None
    else:
        extra_weights = weights
    ref = os.fspath(model)
    if output_kind is not None and output_kind not in OUTPUT_KINDS:
        raise ConfigError(
            f"hf: output_kind must be one of {', '.join(OUTPUT_KINDS)}, received {output_kind!r}"
        )

    model_dir, hub_id = _resolve(ref)
    if model_dir is not None:
        _check_model_dir(model_dir)
    transformers = _import_transformers()
    cached = False
    if hub_id is not None:
        import huggingface_hub

        cached = isinstance(huggingface_hub.try_to_load_from_cache(hub_id, "config.json"), str)
        if not cached and _offline():
            raise _not_cached(hub_id, "HF_HUB_OFFLINE is set")

    # a hub model already in the cache is used as cached: no network, reproducible caches
    source = str(model_dir) if model_dir is not None else hub_id
    net = _load_model(transformers, source, hub_id, local_only=cached or _offline())
    if extra_weights is not None:
        _load_extra_weights(net, Path(extra_weights))
    net.eval()

    config = net.config
    family = getattr(config, "model_type", "?")
    kind = output_kind or output_kind_for(config)
    if kind is None:
        raise ConfigError(
            f"hf: cannot tell whether a {family!r} model predicts metric depth or disparity; "
            "pass output_kind=metric, relative or disparity"
        )
    processor = (
        _read_processor_config(model_dir)
        if model_dir is not None
        else _hub_processor_config(hub_id, cached_only=cached)
    )
    preprocess = HFPreprocess.for_family(family, processor)
    in_size = size_option(input_size, "hf: input_size") or _DEFAULT_INPUT_SIZE
    out_size = size_option(output_size, "hf: output_size") or in_size
    max_value = _max_value(config, kind)
    fov_to_metric = (
        family == "depth_pro" and kind == "metric" and getattr(net, "fov_model", None) is not None
    )

    recorded = str(model_dir.resolve()) if model_dir is not None else hub_id
    options: dict[str, Any] = {
        "model": recorded,
        "output_kind": kind,
        "input_size": list(in_size),
        "output_size": list(out_size),
    }
    if extra_weights is not None:
        options["weights"] = str(Path(extra_weights).resolve())
    info = BackboneInfo(
        name=NAME,
        output_kind=kind,
        input_size=in_size,
        output_size=out_size,
        value_range=(0.0, max_value),
        config=options,
        description=f"Hugging Face {type(net).__name__} ({family}, {kind}) from {recorded}",
    )
    return HFDepthBackbone(net, preprocess, info, fov_to_metric=fov_to_metric)


def _load_extra_weights(net: nn.Module, path: Path) -> None:
    if path.suffix != ".safetensors" or not path.is_file():
        raise CheckpointError(
            f"hf: weights={str(path)!r} is not a .safetensors file; give the model itself as "
            "model=DIR_OR_HUB_ID and fine-tuned weights as weights=FILE.safetensors"
        )
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"hf: {path} is not a readable safetensors file ({exc})") from None
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"hf: {path} does not match the model: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )


__all__ = ["create_hf", "HFDepthBackbone", "HFPreprocess", "output_kind_for", "INSTALL_HINT"]
