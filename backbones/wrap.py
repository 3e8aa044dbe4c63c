"""Wrap any ``nn.Module`` or callable as a refinedepth backbone (SPEC §3.1, §3.4).

A model of your own becomes a first-stage backbone without subclassing anything::

    from refinedepth import wrap_backbone

    backbone = wrap_backbone(
        my_net,                          # nn.Module or any callable: rgb -> depth
        name="my-net",
        output_kind="metric",            # metric | relative | disparity
        input_size=(240, 320),           # (height, width) callers resize RGB to
        input_range="0-255",             # what my_net expects; refinedepth feeds [0,1]
        mean=(123.675, 116.28, 103.53),  # optional normalisation, in the units of input_range
        std=(58.395, 57.12, 57.375),
    )

The wrapper converts refinedepth's RGB (``[B,3,H,W]`` float in [0,1]) to what the model expects,
accepts a ``[B,h,w]`` or ``[B,1,h,w]`` result (or an object with ``.predicted_depth``), and
returns ``[B,1,h,w]`` float32 at the declared ``output_size`` (resized with
:func:`refinedepth.geometry.resize_smooth`, bilinear and antialiased when shrinking, when the
model's native output differs). To make it available by name, register a factory::

    from refinedepth import register_backbone

    register_backbone("my-net", lambda weights=None, **opts: wrap_backbone(MyNet(**opts), ...))

The helpers :func:`check_rgb`, :func:`as_depth_batch` and :func:`size_option` are shared by the
``hf`` and ``files`` adapters; sizes are parsed and maps resized by :mod:`refinedepth.geometry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from refinedepth.errors import ConfigError, ShapeError
from refinedepth.geometry import parse_hw, resize_smooth
from refinedepth.registry import OUTPUT_KINDS, BackboneInfo

INPUT_RANGES = ("0-1", "0-255")


def check_rgb(rgb: Any, name: str) -> torch.Tensor:
    """Validate a backbone input: a float tensor ``[B,3,H,W]``; returns it as float32."""
    if not isinstance(rgb, torch.Tensor):
        raise ShapeError(
            f"backbone {name!r}: expected RGB as a torch.Tensor [B,3,H,W] in [0,1], "
            f"received {type(rgb).__name__}"
        )
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ShapeError(
            f"backbone {name!r}: expected RGB [B,3,H,W] in [0,1], "
            f"received shape {list(rgb.shape)}; "
            "add a batch dimension or move channels first (rgb.permute(0,3,1,2))"
        )
    if not rgb.is_floating_point():
        raise ShapeError(
            f"backbone {name!r}: expected float RGB in [0,1], received dtype {rgb.dtype}; "
            "divide uint8 images by 255"
        )
    return rgb.float()


def as_depth_batch(out: Any, batch_size: int, name: str) -> torch.Tensor:
    """Coerce a model's result into float32 ``[B,1,h,w]``.

    Accepts a tensor ``[B,h,w]`` or ``[B,1,h,w]``, a mapping with ``"predicted_depth"`` or
    ``"depth"``, or an object with a ``.predicted_depth`` attribute (Hugging Face outputs).
    """
    if not isinstance(out, torch.Tensor):
        if isinstance(out, Mapping):
            out = out.get("predicted_depth", out.get("depth"))
        elif hasattr(out, "predicted_depth"):
            out = out.predicted_depth
    if not isinstance(out, torch.Tensor):
        raise ShapeError(
            f"backbone {name!r}: expected the model to return a depth tensor [B,1,h,w] or [B,h,w], "
            f"received {type(out).__name__}"
        )
    if out.ndim == 3:
        out = out.unsqueeze(1)
    if out.ndim != 4 or out.shape[1] != 1 or out.shape[0] != batch_size:
        raise ShapeError(
            f"backbone {name!r}: expected depth [B,1,h,w] or [B,h,w] with B={batch_size}, "
            f"received shape {list(out.shape)}"
        )
    return out.float()


def _channel_stats(values: Any, what: str) -> torch.Tensor | None:
    if values is None:
        return None
    if isinstance(values, int | float):
        values = [float(values)] * 3
    values = [float(v) for v in values]
    if len(values) != 3:
        raise ConfigError(f"wrap_backbone: {what} must have 3 values (R, G, B), received {values}")
    if what == "std" and any(v <= 0 for v in values):
        raise ConfigError(f"wrap_backbone: std must be positive, received {values}")
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


class WrappedBackbone(nn.Module):
    """A backbone made from a user's module or callable; build it with :func:`wrap_backbone`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        info: BackboneInfo,
        input_range: str = "0-1",
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        accepts_ids: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(fn, nn.Module):
            self.model = fn  # a submodule: .to(), .eval() and .parameters() reach it
        else:
            self._fn = fn
            owner = getattr(fn, "__self__", None)
            if isinstance(owner, nn.Module):  # a bound method such as net.predict
                self.owner = owner
        self.info = info
        self.input_range = input_range
        self.accepts_ids = accepts_ids
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _call(self, x: torch.Tensor, ids: Sequence[str] | None) -> Any:
        fn = self.model if "model" in self._modules else self._fn
        return fn(x, ids=ids) if self.accepts_ids else fn(x)

    def forward(self, rgb: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        name = self.info.name
        x = check_rgb(rgb, name)
        if self.input_range == "0-255":
            x = x * 255.0
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        depth = as_depth_batch(self._call(x, ids), x.shape[0], name)
        return resize_smooth(depth, self.info.output_size)

    def extra_repr(self) -> str:
        i = self.info
        return (
            f"name={i.name!r}, output_kind={i.output_kind!r}, input_size={i.input_size}, "
            f"output_size={i.output_size}, input_range={self.input_range!r}"
        )


def wrap_backbone(
    model_or_fn: Callable[..., Any],
    *,
    name: str,
    output_kind: str,
    input_size: Sequence[int],
    output_size: Sequence[int] | None = None,
    value_range: Sequence[float] = (0.0, math.inf),
    input_range: str = "0-1",
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    description: str = "",
    config: Mapping[str, Any] | None = None,
    accepts_ids: bool = False,
) -> WrappedBackbone:
    """Make ``model_or_fn`` a backbone honouring the contract of SPEC §3.1.

    Args:
        model_or_fn: an ``nn.Module`` or any callable mapping an image batch ``[B,3,H,W]`` to depth
            ``[B,h,w]`` / ``[B,1,h,w]`` (or an object with ``.predicted_depth``).
        name: the backbone's name (recorded in caches; use the registry name if you register it).
        output_kind: ``"metric"`` (metres), ``"relative"`` or ``"disparity"``.
        input_size: preferred input ``(height, width)``; callers resize RGB to it.
        output_size: declared output ``(height, width)``; the model's output is resized to it
            (:func:`refinedepth.geometry.resize_smooth`: bilinear, antialiased when shrinking).
            Defaults to ``input_size``.
        value_range: expected ``(min, max)`` of the output.
        input_range: ``"0-1"`` or ``"0-255"``: the RGB range the model expects.
        mean, std: per-channel normalisation applied after the range conversion, in its units
            (e.g. ImageNet ``(0.485, 0.456, 0.406)`` for ``"0-1"``); ``None`` skips it.
        description: one line for listings.
        config: options recorded as ``info.config``.
        accepts_ids: pass the sample ids through: the callable is called ``fn(x, ids=ids)``.

    Returns:
        a :class:`WrappedBackbone` (an ``nn.Module``) with ``.info``.
    """
    if not callable(model_or_fn):
        raise ConfigError(
            "wrap_backbone: expected an nn.Module or a callable, "
            f"received {type(model_or_fn).__name__}"
        )
    if output_kind not in OUTPUT_KINDS:
        raise ConfigError(
            f"wrap_backbone: output_kind must be one of {', '.join(OUTPUT_KINDS)}, "
            f"received {output_kind!r}"
        )
    if input_range not in INPUT_RANGES:
        raise ConfigError(
            f"wrap_backbone: input_range must be '0-1' or '0-255', received {input_range!r}"
        )
    in_size = parse_hw(input_size, "wrap_backbone: input_size")
    out_size = size_option(output_size, "wrap_backbone: output_size") or in_size
    try:
        info = BackboneInfo(
            name=name,
            output_kind=output_kind,
            input_size=in_size,
            output_size=out_size,
            value_range=tuple(value_range),
            config=dict(config or {}),
            description=description or f"wrapped {type(model_or_fn).__name__}",
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"wrap_backbone: {exc}") from None
    return WrappedBackbone(
        model_or_fn,
        info,
        input_range=input_range,
        mean=_channel_stats(mean, "mean"),
        std=_channel_stats(std, "std"),
        accepts_ids=accepts_ids,
    )


def size_option(value: Any, what: str) -> tuple[int, int] | None:
    """A backbone's optional ``(height, width)`` option: ``None`` stays ``None``; anything else
    goes through :func:`refinedepth.geometry.parse_hw` (``"240x320"``, ``[240, 320]``, an int for
    a square), whose errors name ``what``."""
    return None if value is None else parse_hw(value, what)


__all__ = ["WrappedBackbone", "wrap_backbone", "check_rgb", "as_depth_batch", "size_option"]
