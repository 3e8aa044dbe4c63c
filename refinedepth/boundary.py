"""Boundary metrics: how well a depth map keeps the edges of the ground truth (SPEC §7).

Two families, both per image, averaged over images by :class:`BoundaryAccumulator`:

* **Depth boundary errors (DBE)** of iBims-1 (Koch et al., "Evaluation of CNN-based Single-Image
  Depth Estimation Methods", ECCV-W 2018). Depth edges are Canny edges
  (:func:`skimage.feature.canny`, ``sigma = sqrt(2)``, hysteresis thresholds 0.15 / 0.3 as the
  iBims-1 evaluation uses) of the depth map min-max normalised to ``[0, 1]`` over the used pixels,
  in float32 as the iBims-1 code normalises.
  With ``D_gt`` / ``D_pred`` the Euclidean distance in pixels
  (:func:`scipy.ndimage.distance_transform_edt`) to the nearest ground-truth / predicted edge,
  truncated at ``theta = 10`` pixels:

  - ``dbe_acc`` (accuracy) = mean of ``min(D_gt, theta)`` over the predicted edge pixels;
  - ``dbe_comp`` (completeness) = mean of ``min(D_pred, theta)`` over the ground-truth edge pixels.

  Lower is better, 0 is perfect, ``theta`` is the worst. No ground-truth edge: both NaN (the image
  is skipped in averages). No predicted edge: both ``theta``.

* **Boundary F1** in the style of Depth Pro (Bochkovskii et al., "Depth Pro: Sharp Monocular
  Metric Depth in Less Than a Second", 2024). For a ratio threshold ``r``, a pair of neighbouring
  pixels (horizontal or vertical) is an occluding contour when one pixel is more than ``r`` times
  farther than the other; the contour keeps its orientation (which side is the foreground), so a
  pair is one of four kinds: right/bottom neighbour farther, or nearer. Precision and recall count
  the (pair, kind) contours of the prediction and of the ground truth that coincide exactly;
  ``F1 = 2 P R / (P + R)``. ``boundary_f1`` is the weighted mean of F1 over the Depth Pro
  thresholds ``r = 1.05, ..., 1.25`` (10 values, linearly spaced, weights proportional to ``r``).
  Higher is better, 1 is perfect.

Choices made here (documented in ``docs/metrics.md``):

* **Used pixels.** A pixel is used where ``valid`` (default: everywhere) is true and the ground
  truth is finite and positive. Unused pixels never create an edge: Canny smooths with the mask
  (scikit-image's bleed-over normalisation) and drops edges on the mask's one-pixel rim and the
  image border; a contour pair needs both pixels used. Predictions are sanitised, not masked:
  NaN and values below 1 mm count as 1 mm, ``+inf`` as the largest finite prediction.
* **DBE definitions.** The iBims-1 code keeps only predicted edges within ``theta`` of a
  ground-truth edge for accuracy, and reports completeness as the symmetric truncated chamfer
  distance; here accuracy and completeness are the two directed truncated chamfer distances
  (they agree with iBims-1 on a prediction equal or shifted by any number of pixels).
  Ground-truth edges are Canny edges of the ground truth (iBims-1 ships hand-checked edge maps).
* **F1 details.** Depth Pro averages precision and recall over the four contour kinds, counting
  an empty kind as 0, so a perfect prediction of one step edge scores 0.25; here the four kinds are
  pooled, so any perfect prediction scores 1. Depth Pro compares inverse depths; on depth the same
  pairs are contours, with the two orientations swapped, so the score is the same. At a threshold
  where neither map has a contour F1 is 1 (agreement); where only one has, F1 is 0. An image whose
  ground truth has no contour at the smallest threshold gets NaN (skipped in averages).

scikit-image and scipy are optional (``pip install 'refinedepth[boundary]'``) and imported on first
use: importing this module imports neither.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ConfigError, ShapeError

BOUNDARY_METRIC_NAMES = ("dbe_acc", "dbe_comp", "boundary_f1")
#: boundary metrics where larger is better (the others are errors)
BOUNDARY_HIGHER_IS_BETTER = frozenset({"boundary_f1"})

# iBims-1 (Koch et al. 2018): Canny on the [0, 1]-normalised depth, distances truncated at theta.
CANNY_SIGMA = math.sqrt(2.0)
CANNY_LOW = 0.15
CANNY_HIGH = 0.3
DBE_THETA = 10.0
# Depth Pro (Bochkovskii et al. 2024): depth-ratio thresholds 1.05..1.25 in 10 steps, weights ~ r.
F1_RATIOS = tuple(float(r) for r in np.linspace(1.05, 1.25, 10))
# predictions are sanitised to at least 1 mm, as refinedepth.metrics clamps them
_PRED_FLOOR = 1e-3


def require():
    """``(skimage.feature, scipy.ndimage)``, or a one-line ConfigError saying what to install."""
    try:
        import scipy.ndimage as ndimage
        import skimage.feature as feature
    except ImportError as exc:
        raise ConfigError(
            f"boundary metrics need scikit-image and scipy ({exc.name or exc} is missing); "
            "install them with: pip install 'refinedepth[boundary]'"
        ) from None
    return feature, ndimage


def _as_batch(array, name: str) -> np.ndarray:
    """numpy/torch ``[H,W]``, ``[B,H,W]`` or ``[B,1,H,W]`` -> ``[B,H,W]`` numpy array."""
    if hasattr(array, "detach"):  # torch tensor, without importing torch
        array = array.detach().to("cpu").numpy()
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    raise ShapeError(f"{name}: expected [H,W], [B,H,W] or [B,1,H,W], got shape {list(array.shape)}")


def _check_image(array, name: str) -> np.ndarray:
    a = np.asarray(array.detach().to("cpu").numpy() if hasattr(array, "detach") else array)
    if a.ndim != 2:
        raise ShapeError(f"{name}: expected one [H,W] map, got shape {list(a.shape)}")
    return a


def used_pixels(gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels the boundary metrics use: ``valid`` and a finite, positive ground truth."""
    gt = np.asarray(gt, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        used = np.isfinite(gt) & (gt > 0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != gt.shape:
            raise ShapeError(f"valid {list(valid.shape)} and gt {list(gt.shape)} differ in shape")
        used &= valid
    return used


def _sanitise(pred: np.ndarray, used: np.ndarray) -> np.ndarray:
    """NaN / -inf / tiny -> 1 mm, +inf -> the largest finite prediction on the used pixels."""
    p = np.asarray(pred, dtype=np.float64)
    finite = np.isfinite(p) & used
    top = float(p[finite].max()) if finite.any() else _PRED_FLOOR
    p = np.nan_to_num(p, nan=_PRED_FLOOR, neginf=_PRED_FLOOR, posinf=max(top, _PRED_FLOOR))
    return np.maximum(p, _PRED_FLOOR)


def depth_edges(depth: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Canny edges (bool ``[H,W]``) of ``depth`` min-max normalised over ``used`` (iBims-1).

    A map that is constant over ``used`` (or has no used pixel) has no edge.
    """
    feature, _ = require()
    depth = np.asarray(depth, dtype=np.float64)
    if not used.any():
        return np.zeros(depth.shape, dtype=bool)
    lo, hi = float(depth[used].min()), float(depth[used].max())
    if not hi > lo:
        return np.zeros(depth.shape, dtype=bool)
    # float32, as the iBims-1 code normalises (`astype("f")`): on an exact two-value step the two
    # columns beside it tie in float64 and Canny keeps both; float32 rounding keeps one, as there
    norm = np.where(used, (depth - lo) / (hi - lo), 0.0).astype(np.float32)
    return feature.canny(
        norm, sigma=CANNY_SIGMA, low_threshold=CANNY_LOW, high_threshold=CANNY_HIGH, mask=used
    )


def _truncated_distance(edges: np.ndarray) -> np.ndarray:
    """Distance (pixels) of every pixel to the nearest pixel of ``edges``, truncated at theta."""
    _, ndimage = require()
    if not edges.any():
        return np.full(edges.shape, DBE_THETA)
    return np.minimum(ndimage.distance_transform_edt(~edges), DBE_THETA)


def depth_boundary_errors(pred, gt, valid=None) -> tuple[float, float]:
    """iBims-1 ``(dbe_acc, dbe_comp)`` of one ``[H,W]`` prediction, in pixels (module docstring)."""
    pred, gt = _check_image(pred, "pred"), _check_image(gt, "gt")
    _check_same(pred, gt)
    used = used_pixels(gt, valid)
    gt_edges = depth_edges(gt, used)
    if not gt_edges.any():
        return math.nan, math.nan
    pred_edges = depth_edges(_sanitise(pred, used), used)
    if not pred_edges.any():
        return DBE_THETA, DBE_THETA
    acc = float(_truncated_distance(gt_edges)[pred_edges].mean())
    comp = float(_truncated_distance(pred_edges)[gt_edges].mean())
    return acc, comp


def occluding_contours(depth: np.ndarray, used: np.ndarray, ratio: float) -> tuple[np.ndarray, ...]:
    """The four kinds of occluding contour at depth ratio ``ratio`` (Depth Pro), as bool maps.

    ``(right farther, right nearer)`` of shape ``[H, W-1]`` (pixel and its right neighbour) and
    ``(bottom farther, bottom nearer)`` of shape ``[H-1, W]``; pairs with an unused pixel are False.
    """
    d = np.asarray(depth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        right = d[:, 1:] / d[:, :-1]
        bottom = d[1:, :] / d[:-1, :]
    pair_h = used[:, 1:] & used[:, :-1]
    pair_v = used[1:, :] & used[:-1, :]
    return (
        (right > ratio) & pair_h,
        (right * ratio < 1.0) & pair_h,  # the right neighbour is more than `ratio` times nearer
        (bottom > ratio) & pair_v,
        (bottom * ratio < 1.0) & pair_v,
    )


def boundary_f1(pred, gt, valid=None) -> float:
    """Depth Pro style boundary F1 of one ``[H,W]`` prediction (module docstring)."""
    pred, gt = _check_image(pred, "pred"), _check_image(gt, "gt")
    _check_same(pred, gt)
    used = used_pixels(gt, valid)
    gt = np.asarray(gt, dtype=np.float64)
    pred = _sanitise(pred, used)
    scores, weights = [], []
    for i, ratio in enumerate(F1_RATIOS):
        gt_c = occluding_contours(gt, used, ratio)
        n_gt = sum(int(c.sum()) for c in gt_c)
        if i == 0 and n_gt == 0:
            return math.nan  # no contour in the ground truth: nothing to score
        pred_c = occluding_contours(pred, used, ratio)
        n_pred = sum(int(c.sum()) for c in pred_c)
        hits = sum(int((p & g).sum()) for p, g in zip(pred_c, gt_c))
        if n_gt == 0 and n_pred == 0:
            f1 = 1.0
        elif hits == 0:
            f1 = 0.0
        else:
            precision, recall = hits / n_pred, hits / n_gt
            f1 = 2.0 * precision * recall / (precision + recall)
        scores.append(f1)
        weights.append(ratio)
    return float(np.dot(scores, weights) / np.sum(weights))


def _check_same(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ShapeError(
            f"pred {list(pred.shape)} and gt {list(gt.shape)} differ in shape; "
            "resize the prediction to the ground truth's resolution before scoring"
        )


def boundary_metrics(pred, gt, valid=None) -> dict[str, float]:
    """``dbe_acc``, ``dbe_comp`` (pixels) and ``boundary_f1`` of one ``[H,W]`` map in metres."""
    acc, comp = depth_boundary_errors(pred, gt, valid)
    return {"dbe_acc": acc, "dbe_comp": comp, "boundary_f1": boundary_f1(pred, gt, valid)}


# State: images seen, then (sum, images used) per metric.
STATE_SIZE = 1 + 2 * len(BOUNDARY_METRIC_NAMES)


class BoundaryAccumulator:
    """Boundary metrics averaged over images: ``update`` batch by batch, ``compute`` at the end.

    Each metric is the mean of its per-image values over the images where it is defined (NaN
    values are skipped). ``merge`` another accumulator, or sum :meth:`state_array` across
    processes and rebuild with :meth:`from_state`; both give exactly the one-shot result.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(STATE_SIZE, dtype=np.float64)

    @property
    def count(self) -> int:
        """Images seen so far."""
        return int(self._state[0])

    def update(self, pred, gt, valid=None) -> dict[str, np.ndarray]:
        """Add one ``[H,W]`` pair or a ``[B,H,W]`` batch; returns the per-image values ``[B]``."""
        p, g = _as_batch(pred, "pred"), _as_batch(gt, "gt")
        if p.shape != g.shape:
            _check_same(p, g)
        v = None if valid is None else _as_batch(valid, "valid")
        if v is not None and v.shape != g.shape:
            raise ShapeError(f"valid {list(v.shape)} and gt {list(g.shape)} differ in shape")
        rows = [boundary_metrics(p[i], g[i], None if v is None else v[i]) for i in range(len(g))]
        out: dict[str, Any] = {}
        for k, name in enumerate(BOUNDARY_METRIC_NAMES):
            values = np.array([r[name] for r in rows], dtype=np.float64)
            defined = ~np.isnan(values)
            self._state[1 + 2 * k] += values[defined].sum()
            self._state[2 + 2 * k] += defined.sum()
            out[name] = values
        self._state[0] += len(g)
        return out

    def compute(self) -> dict[str, float]:
        """Per-image means (NaN where no image defined the metric) and ``count`` (images seen)."""
        result: dict[str, Any] = {}
        for k, name in enumerate(BOUNDARY_METRIC_NAMES):
            total, images = self._state[1 + 2 * k], self._state[2 + 2 * k]
            result[name] = float(total / images) if images > 0 else math.nan
        result["count"] = self.count
        return result

    def merge(self, other: BoundaryAccumulator) -> BoundaryAccumulator:
        """Add ``other``'s statistics into this accumulator."""
        if not isinstance(other, BoundaryAccumulator):
            raise ConfigError(f"cannot merge a BoundaryAccumulator with {type(other).__name__}")
        self._state += other._state
        return self

    def state_array(self) -> np.ndarray:
        return self._state.copy()

    def state_tensor(self, device=None):
        """The statistics as a float64 torch tensor (sum it across processes)."""
        import torch

        return torch.tensor(self._state, dtype=torch.float64, device=device)

    @classmethod
    def from_state(cls, state) -> BoundaryAccumulator:
        """Rebuild an accumulator from (possibly summed) :meth:`state_array` values."""
        if hasattr(state, "detach"):
            state = state.detach().to("cpu").double().numpy()
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.size != STATE_SIZE:
            raise ShapeError(
                f"boundary metric state: expected {STATE_SIZE} values, got {state.size}"
            )
        acc = cls()
        acc._state = state.copy()
        return acc

    def __repr__(self) -> str:
        return f"BoundaryAccumulator(count={self.count})"


def available() -> bool:
    """Whether scikit-image and scipy are installed (the boundary metrics can be computed)."""
    try:
        require()
    except ConfigError:
        return False
    return True


__all__ = [
    "available",
    "require",
    "BOUNDARY_HIGHER_IS_BETTER",
    "BOUNDARY_METRIC_NAMES",
    "BoundaryAccumulator",
    "boundary_f1",
    "boundary_metrics",
    "depth_boundary_errors",
    "depth_edges",
    "occluding_contours",
    "used_pixels",
]
