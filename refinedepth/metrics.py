"""Depth evaluation metrics as sufficient statistics (SPEC §7).

Every metric is computed from sums over valid pixels (``pooled``) and from sums of per-image
values (``image``), so a :class:`MetricAccumulator` can take batches one at a time, be merged with
another, or be all-reduced across processes as one float64 vector, and still give exactly the
one-shot result. Shaped after torchmetrics: ``update`` gathers sums, ``compute`` finishes.

Definitions, over the valid pixels ``i`` of an image with prediction ``d`` and ground truth ``g``
(both metres), ``e = ln d - ln g``:

* ``abs_rel = mean(|d - g| / g)``, ``sq_rel = mean((d - g)^2 / g)``
* ``rmse = sqrt(mean((d - g)^2))``, ``rmse_log = sqrt(mean(e^2))``
* ``log10 = mean(|log10 d - log10 g|)``
* ``silog = 100 * sqrt(mean(e^2) - mean(e)^2)`` (scale-invariant log error, as BTS/AdaBins report)
* ``d1, d2, d3``: share of pixels with ``max(d/g, g/d) < 1.25, 1.25^2, 1.25^3``

``averaging="image"`` (default; BTS/AdaBins convention) computes each metric per image and
averages over images; ``averaging="pooled"`` pools all valid pixels of all images first (FCRN's
MATLAB evaluation). Images without a valid pixel are skipped (``count`` counts the images used).

Protocols decide which ground-truth pixels are valid and clamp predictions to the same range, as
the common evaluation code does (BTS, AdaBins, monodepth2): non-finite and out-of-range
predictions are clamped to ``[max(min_depth, 1e-3), max_depth]`` (NaN -> lower bound, +inf -> upper
bound) *after* alignment. ``gt`` is valid where finite and ``min_depth < gt < max_depth``, inside the
protocol's crop:

* ``nyu``: Eigen crop, rows 45:471 and columns 41:601 at 480x640, ``1e-3 < gt < 10``;
* ``kitti``: Garg crop (rows 0.4081-0.9919, columns 0.0359-0.9641 of the image), ``1e-3 < gt < 80``;
* ``make3d``: C1, ``0 < gt < 70``, no crop;
* ``none``: every finite ``gt > 0``; predictions clamped below at 1e-3 only.

Crops are defined at a reference resolution and scaled to the ground truth's size.

Everything here takes metric depth. Turning a stage's prediction (metric, relative or disparity)
into metric depth, and aligning it, is :mod:`refinedepth.scoring`'s job (:class:`~refinedepth.
scoring.Scorer`); the ``align`` arguments below (``none|median|lstsq``, per image on the valid
pixels, in depth space) call the same code, for metric maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, ShapeError

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
#: metrics where larger is better (the others are errors)
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3"})
ALIGNMENTS = ("none", "median", "lstsq")
AVERAGING = ("image", "pooled")
# lower bound of clamped predictions: log metrics need d > 0
_PRED_FLOOR = 1e-3


@dataclass(frozen=True)
class Protocol:
    """Which ground-truth pixels count, and the range predictions are clamped to."""

    name: str
    min_depth: float  # gt must be > min_depth
    max_depth: float  # gt must be < max_depth
    crop: str | None = None  # "eigen" or "garg"
    description: str = ""

    def crop_box(self, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """``(top, bottom, left, right)`` of the crop for a ground truth of ``size = (H, W)``."""
        h, w = size
        if self.crop == "eigen":
            # Eigen et al.'s crop, defined at 480x640 (rows 45:471, columns 41:601), scaled.
            return round(45 * h / 480), round(471 * h / 480), round(41 * w / 640), round(601 * w / 640)
        if self.crop == "garg":
            # Garg et al.'s crop as fractions of the image, as monodepth/BTS apply it.
            return int(0.40810811 * h), int(0.99189189 * h), int(0.03594771 * w), int(0.96405229 * w)
        return None

    @property
    def pred_range(self) -> tuple[float, float]:
        return max(self.min_depth, _PRED_FLOOR), self.max_depth


PROTOCOLS = {
    "nyu": Protocol("nyu", 1e-3, 10.0, "eigen", "NYU Depth v2: Eigen crop, 1e-3 < d < 10 m"),
    "make3d": Protocol("make3d", 0.0, 70.0, None, "Make3D C1: 0 < d < 70 m"),
    "kitti": Protocol("kitti", 1e-3, 80.0, "garg", "KITTI: Garg crop, 1e-3 < d < 80 m"),
    "none": Protocol("none", 0.0, math.inf, None, "all finite d > 0"),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def _check_choice(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def as_batch(array, name: str) -> np.ndarray:
    """numpy/torch ``[H,W]``, ``[B,H,W]`` or ``[B,1,H,W]`` -> float64 ``[B,H,W]``."""
    if hasattr(array, "detach"):  # torch tensor, without importing torch
        array = array.detach().to("cpu").double().numpy()
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    raise ShapeError(f"{name}: expected [H,W], [B,H,W] or [B,1,H,W], got shape {list(array.shape)}")


def valid_mask(gt, protocol: str | Protocol = "none") -> np.ndarray:
    """Boolean mask (same shape as ``gt``) of the pixels a protocol evaluates."""
    proto = get_protocol(protocol)
    squeeze = np.ndim(gt) == 2
    g = as_batch(gt, "gt")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(g) & (g > proto.min_depth) & (g < proto.max_depth) & (g > 0)
    box = proto.crop_box(g.shape[-2:])
    if box is not None:
        top, bottom, left, right = box
        crop = np.zeros(g.shape[-2:], dtype=bool)
        crop[top:bottom, left:right] = True
        mask &= crop[None]
    return mask[0] if squeeze else mask


def align_prediction(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, align: str) -> np.ndarray:
    """Align one metric prediction to its ground truth over ``valid`` pixels (``none|median|lstsq``).

    Kept for compatibility: alignment lives in :func:`refinedepth.scoring.to_metric`, which also
    handles relative and disparity maps."""
    from .scoring import to_metric

    return to_metric(pred, "metric", gt=gt, valid=valid, align=align)


# State layout: pixel sums for pooled averaging, then sums of per-image values.
_POOLED = ("pixels", "abs_rel", "sq_rel", "sq_err", "sq_log", "abs_log10", "log", "d1", "d2", "d3")
_IMAGE = ("images",) + METRIC_NAMES
STATE_SIZE = len(_POOLED) + len(_IMAGE)


def _image_stats(d: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Pixel sums (pooled state) and the metrics of one image from its valid pixels ``d``, ``g``."""
    n = d.size
    diff = d - g
    e = np.log(d) - np.log(g)
    ratio = np.maximum(d / g, g / d)
    sums = np.array([
        n,
        np.sum(np.abs(diff) / g),
        np.sum(diff * diff / g),
        np.sum(diff * diff),
        np.sum(e * e),
        np.sum(np.abs(np.log10(d) - np.log10(g))),
        np.sum(e),
        np.sum(ratio < 1.25),
        np.sum(ratio < 1.25**2),
        np.sum(ratio < 1.25**3),
    ])
    return sums, _finish_pooled(sums)


def _finish_pooled(s: np.ndarray) -> dict[str, float]:
    n = s[0]
    if n == 0:
        return {name: math.nan for name in METRIC_NAMES}
    mean_log = s[6] / n
    return {
        "abs_rel": s[1] / n,
        "sq_rel": s[2] / n,
        "rmse": math.sqrt(s[3] / n),
        "rmse_log": math.sqrt(s[4] / n),
        "log10": s[5] / n,
        "silog": 100.0 * math.sqrt(max(s[4] / n - mean_log * mean_log, 0.0)),
        "d1": s[7] / n,
        "d2": s[8] / n,
        "d3": s[9] / n,
    }


def _evaluate(pred, gt, protocol: Protocol, align: str):
    """Per-image pooled sums ``[B, len(_POOLED)]`` and metric dicts for a batch."""
    p = as_batch(pred, "pred")
    g = as_batch(gt, "gt")
    if p.shape != g.shape:
        raise ShapeError(
            f"pred {list(p.shape)} and gt {list(g.shape)} differ in shape; "
            "resize the prediction to the ground truth's resolution before scoring"
        )
    masks = valid_mask(g, protocol)
    lo, hi = protocol.pred_range
    sums, per_image = [], []
    for pi, gi, mi in zip(p, g, masks):
        if align != "none":
            pi = align_prediction(pi, gi, mi, align)
        d = pi[mi]
        # BTS/AdaBins convention: +inf -> upper bound, NaN -> lower bound, then clamp to range
        d = np.where(np.isnan(d), lo, d)
        d = np.clip(d, lo, hi if math.isfinite(hi) else np.finfo(np.float64).max)
        s, m = _image_stats(d, gi[mi])
        sums.append(s)
        per_image.append(m)
    return np.stack(sums), per_image


def per_image_metrics(pred, gt, protocol: str | Protocol = "none", align: str = "none") -> dict[str, Any]:
    """Metrics of each image: floats for a single ``[H,W]`` map, arrays ``[B]`` for a batch.

    ``count`` is the number of valid pixels; images without one get NaN metrics.
    """
    proto = get_protocol(protocol)
    _check_choice(align, ALIGNMENTS, "alignment")
    sums, per_image = _evaluate(pred, gt, proto, align)
    out: dict[str, Any] = {name: np.array([m[name] for m in per_image]) for name in METRIC_NAMES}
    out["count"] = sums[:, 0].astype(np.int64)
    if np.ndim(gt) == 2:
        return {k: (int(v[0]) if k == "count" else float(v[0])) for k, v in out.items()}
    return out


class MetricAccumulator:
    """Streaming depth metrics: ``update`` batch by batch, ``compute`` at the end.

    ``merge`` another accumulator, or all-reduce :meth:`state_tensor` across processes and rebuild
    with :meth:`from_state`; both give exactly the one-shot result.
    """

    def __init__(self, protocol: str | Protocol = "none", align: str = "none", averaging: str = "image") -> None:
        self.protocol = get_protocol(protocol)
        self.align = _check_choice(align, ALIGNMENTS, "alignment")
        self.averaging = _check_choice(averaging, AVERAGING, "averaging")
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(STATE_SIZE, dtype=np.float64)

    @property
    def count(self) -> int:
        """Images with at least one valid pixel seen so far."""
        return int(self._state[len(_POOLED)])

    @property
    def pixels(self) -> int:
        """Valid pixels seen so far."""
        return int(self._state[0])

    def update(self, pred, gt) -> dict[str, np.ndarray]:
        """Add a prediction/ground-truth pair or batch; returns the batch's per-image metrics."""
        sums, per_image = _evaluate(pred, gt, self.protocol, self.align)
        self._state[: len(_POOLED)] += sums.sum(axis=0)
        for s, m in zip(sums, per_image):
            if s[0] > 0:
                self._state[len(_POOLED)] += 1
                self._state[len(_POOLED) + 1 :] += [m[name] for name in METRIC_NAMES]
        out: dict[str, Any] = {name: np.array([m[name] for m in per_image]) for name in METRIC_NAMES}
        out["count"] = sums[:, 0].astype(np.int64)
        return out

    def compute(self) -> dict[str, float]:
        """The metrics so far (NaN when no valid pixel was seen) and ``count`` (images used)."""
        if self.averaging == "pooled":
            result = _finish_pooled(self._state[: len(_POOLED)])
        else:
            images = self._state[len(_POOLED)]
            sums = self._state[len(_POOLED) + 1 :]
            result = {
                name: (float(v / images) if images > 0 else math.nan) for name, v in zip(METRIC_NAMES, sums)
            }
        result = {k: float(v) for k, v in result.items()}
        result["count"] = self.count
        return result

    def _config(self) -> tuple:
        return self.protocol, self.align, self.averaging

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Add ``other``'s statistics into this accumulator (same protocol/align/averaging)."""
        if self._config() != other._config():
            raise ConfigError(
                f"cannot merge metrics with protocol/align/averaging {self.protocol.name}/{self.align}/"
                f"{self.averaging} and {other.protocol.name}/{other.align}/{other.averaging}"
            )
        self._state += other._state
        return self

    def state_array(self) -> np.ndarray:
        return self._state.copy()

    def state_tensor(self, device=None):
        """The sufficient statistics as a float64 torch tensor (sum it across processes)."""
        import torch

        return torch.tensor(self._state, dtype=torch.float64, device=device)

    @classmethod
    def from_state(
        cls, state, protocol: str | Protocol = "none", align: str = "none", averaging: str = "image"
    ) -> MetricAccumulator:
        """Rebuild an accumulator from (possibly all-reduced) :meth:`state_tensor` values."""
        if hasattr(state, "detach"):
            state = state.detach().to("cpu").double().numpy()
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.size != STATE_SIZE:
            raise ShapeError(f"metric state: expected {STATE_SIZE} values, got {state.size}")
        acc = cls(protocol, align, averaging)
        acc._state = state.copy()
        return acc

    def __repr__(self) -> str:
        return (
            f"MetricAccumulator(protocol={self.protocol.name!r}, align={self.align!r}, "
            f"averaging={self.averaging!r}, count={self.count})"
        )


def compute_metrics(
    pred, gt, protocol: str | Protocol = "none", align: str = "none", averaging: str = "image"
) -> dict[str, float]:
    """One-shot metrics of a prediction/ground-truth pair or batch (see the module docstring)."""
    acc = MetricAccumulator(protocol, align, averaging)
    acc.update(pred, gt)
    return acc.compute()


__all__ = [
    "ALIGNMENTS",
    "AVERAGING",
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "PROTOCOLS",
    "MetricAccumulator",
    "Protocol",
    "align_prediction",
    "as_batch",
    "compute_metrics",
    "get_protocol",
    "per_image_metrics",
    "valid_mask",
]
