"""Scoring: a stage's prediction -> metric depth -> metric accumulators (SPEC §7).

This is the one scoring path of refinedepth: ``evaluate``, the refiner's training validation and
stage-1 validation all go through :class:`Scorer`, so a number means the same thing wherever it is
printed. :mod:`refinedepth.metrics` keeps the sufficient statistics; this module decides what is
compared with the ground truth.

A prediction has a **kind** (the backbone's ``output_kind``, SPEC §3.1; refined maps are always
``metric``):

* ``metric``: depth in metres, scored as it is (or aligned, if asked);
* ``relative``: depth up to an unknown scale (and shift): aligned in depth space;
* ``disparity``: relative inverse depth: inverted to depth.

**Alignment**, per image, fitted on the pixels that are scored (the protocol's valid pixels):

* ``median``: invert first (disparity), then scale the depth by ``median(gt) / median(depth)``
  (the median scaling of Eigen et al. / monodepth2);
* ``lstsq``: least-squares scale and shift. For ``metric`` and ``relative`` maps it is fitted in
  depth space, ``s * pred + t ~ gt``; for ``disparity`` in inverse-depth space,
  ``s * pred + t ~ 1 / gt``, then inverted, as MiDaS evaluates (Ranftl et al., 2020); a fitted
  disparity ``<= 0`` is infinitely far and ends up at the protocol's upper depth bound;
* ``none``: no alignment. Only metric maps can be scored so: a relative or disparity map has no
  metric scale, and ``align="none"`` on one is a :class:`ConfigError`;
* ``auto`` (the default of ``evaluate`` and refiner validation): ``none`` for metric maps and
  ``lstsq`` for the others, stage by stage: relative depth is defined up to a scale and a shift,
  and affine-invariant disparity (MiDaS, Depth Anything) is evaluated with a scale and shift
  fitted in inverse depth (Ranftl et al., 2020), so that is the first stage's own quality. A table
  over a disparity backbone's cache shows its rough row so aligned and the refined rows as the
  refiner predicts them (the refiner is meant to lift relative depth to metres, which alignment
  would hide). Before 2026-12-07 ``auto`` median-scaled them, which cannot remove a shift.

An explicit ``median`` or ``lstsq`` applies to every stage, metric ones included.

Predictions of any size are first resized to the ground truth's resolution with
:func:`refinedepth.geometry.resize_smooth` (bilinear), in their own kind (disparity is resized as
disparity), then converted. Non-finite and out-of-range depths are clamped to the protocol's range
after alignment by the accumulators (see :mod:`refinedepth.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .config import ALIGNMENTS  # noqa: F401 (auto = none for metric maps, lstsq for the others)
from .config import OUTPUT_KINDS as KINDS
from .errors import ConfigError, ShapeError
from .metrics import AVERAGING, MetricAccumulator, as_batch, get_protocol, valid_mask

_AVERAGING_ALIASES = {"pixel": "pooled"}


def resolve_align(align: str, kind: str) -> str:
    """The alignment actually used for a map of ``kind``: ``auto`` resolved, ``none`` refused for
    maps without metric scale."""
    if kind not in KINDS:
        raise ConfigError(f"unknown output kind {kind!r}: expected one of {', '.join(KINDS)}")
    if align not in ALIGNMENTS:
        raise ConfigError(f"unknown alignment {align!r}: expected one of {', '.join(ALIGNMENTS)}")
    if align == "auto":
        return "none" if kind == "metric" else "lstsq"
    if align == "none" and kind != "metric":
        raise ConfigError(
            f"{kind} maps have no metric scale and cannot be scored with align 'none': "
            "pass --align auto (lstsq for them), lstsq or median"
        )
    return align


def _fit_affine(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``s, t`` with ``s * x + t ~ y`` (closed form, float64); ``s = 0`` when ``x``
    is constant."""
    x_mean, y_mean = x.mean(), y.mean()
    var = np.mean((x - x_mean) ** 2)
    if var <= 1e-12 * max(x_mean * x_mean, 1e-12):
        return 0.0, float(y_mean)
    s = np.mean((x - x_mean) * (y - y_mean)) / var
    return float(s), float(y_mean - s * x_mean)


def _invert(disparity: np.ndarray) -> np.ndarray:
    """Depth from disparity; ``<= 0`` (infinitely far) becomes +inf, NaN stays NaN
    (:func:`refinedepth.baselines.rough_depth`, which the baseline rows use too)."""
    from .baselines import rough_depth

    return rough_depth(disparity, "disparity")


def _image_to_metric(p: np.ndarray, g: np.ndarray | None, v: np.ndarray | None, kind: str, align: str) -> np.ndarray:
    """One ``[H, W]`` float64 prediction -> metric depth (``align`` already resolved)."""
    if align == "lstsq" and kind == "disparity":
        use = v & np.isfinite(p)
        if not use.any():
            return _invert(p)
        s, t = _fit_affine(p[use], 1.0 / g[use])
        return _invert(s * p + t)
    depth = _invert(p) if kind == "disparity" else p
    if align == "none":
        return depth
    use = v & ~np.isnan(depth)
    if kind != "disparity":  # an inverted disparity of 0 is +inf: far, and counted as such
        use &= np.isfinite(depth)
    if align == "median":
        if not use.any():
            return depth
        med = np.median(depth[use])
        scale = np.median(g[use]) / med if med != 0 and math.isfinite(med) else 1.0
        return depth * scale
    if not use.any():  # lstsq, metric or relative: in depth space
        return depth
    s, t = _fit_affine(depth[use], g[use])
    return s * depth + t


def to_metric(pred, kind: str = "metric", *, gt=None, valid=None, align: str = "none"):
    """A prediction of ``kind`` -> metric depth, aligned per image to ``gt`` over ``valid``.

    ``pred``: ``[H,W]``, ``[B,H,W]`` or ``[B,1,H,W]`` (NumPy or torch) at ``gt``'s size; the
    result has ``pred``'s shape, as float64 NumPy (a torch float64 tensor for a tensor). ``gt``
    is needed for any alignment; ``valid`` (default: finite ``gt > 0``) says which pixels the fit
    uses. See the module docstring for what each ``kind``/``align`` does.
    """
    align = resolve_align(align, kind)
    p = as_batch(pred, "pred")
    g = v = None
    if align != "none":
        if gt is None:
            raise ConfigError(f"align {align!r} needs the ground truth: pass gt=")
        g = as_batch(gt, "gt")
        if g.shape != p.shape:
            raise ShapeError(
                f"pred {list(p.shape)} and gt {list(g.shape)} differ in shape; "
                "resize the prediction to the ground truth's resolution first"
            )
        with np.errstate(invalid="ignore"):
            v = np.isfinite(g) & (g > 0)
        if valid is not None:
            vb = as_batch(valid, "valid").astype(bool)
            if vb.shape != g.shape:
                raise ShapeError(f"valid {list(vb.shape)} and gt {list(g.shape)} differ in shape")
            v &= vb
    out = np.stack(
        [
            _image_to_metric(p[i], None if g is None else g[i], None if v is None else v[i], kind, align)
            for i in range(p.shape[0])
        ]
    )
    out = out.reshape(np.shape(pred))
    if hasattr(pred, "detach"):
        import torch

        return torch.from_numpy(out).to(pred.device)
    return out


class Scorer:
    """Metrics of several stages (``rough``, ``+ refiner`` ...) scored the same way.

    ``update(stage, pred, gt, kind=..., valid=...)`` resizes ``pred`` to ``gt``'s resolution
    (:func:`refinedepth.geometry.resize_smooth`), turns it into metric depth
    (:func:`to_metric`: disparity inverted, aligned as ``align`` says, per kind), and feeds the
    stage's :class:`~refinedepth.metrics.MetricAccumulator`. Alignment is fitted on the pixels
    the protocol scores (its crop and depth range, and ``valid``).

    Args:
        stages: stage names, in table order.
        protocol: ``nyu``, ``make3d``, ``kitti`` or ``none`` (crop and depth range).
        align: ``auto``, ``none``, ``median`` or ``lstsq`` (module docstring).
        averaging: ``image`` (mean of per-image metrics) or ``pooled`` (``pixel``) over all pixels.
        boundary: also compute the boundary metrics of :mod:`refinedepth.boundary` (``dbe_acc``,
            ``dbe_comp``, ``boundary_f1``; per-image means, on the scored pixels of the converted
            and aligned map). Needs scikit-image and scipy (the ``boundary`` extra).
        max_depth: where a protocol has no upper depth bound (``none``), infinitely far
            predictions (a disparity ``<= 0``) are scored at this depth, as MiDaS caps depth at
            ``1 / max_depth``; ``evaluate`` and refiner validation pass the cache's ``max_depth``.
            ``None``: they stay infinite (and so does any error they enter).
    """

    def __init__(
        self,
        stages: Sequence[str],
        *,
        protocol: str = "none",
        align: str = "none",
        averaging: str = "image",
        boundary: bool = False,
        max_depth: float | None = None,
    ) -> None:
        self.stages = [str(s) for s in stages]
        if not self.stages or len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"stages must be distinct names, at least one; got {self.stages!r}")
        self.protocol = get_protocol(protocol)
        if align not in ALIGNMENTS:
            raise ConfigError(f"unknown alignment {align!r}: expected one of {', '.join(ALIGNMENTS)}")
        self.align = align
        averaging = _AVERAGING_ALIASES.get(averaging, averaging)
        if averaging not in AVERAGING:
            raise ConfigError(f"unknown averaging {averaging!r}: expected image, pixel or pooled")
        self.averaging = averaging
        # the depth +inf predictions are scored at: the protocol's bound, else max_depth (if given)
        self.far = self.protocol.max_depth
        if not math.isfinite(self.far) and max_depth is not None and math.isfinite(float(max_depth)) and max_depth > 0:
            self.far = float(max_depth)
        self._accs = {s: MetricAccumulator(self.protocol, "none", averaging) for s in self.stages}
        self.boundary = bool(boundary)
        self._bounds = {}
        if self.boundary:
            from .boundary import BoundaryAccumulator, require

            require()  # a missing scikit-image / scipy is one clear error before any work
            self._bounds = {s: BoundaryAccumulator() for s in self.stages}
        #: per stage, the alignment used (``auto`` resolved), once a batch was scored
        self.alignments: dict[str, str | None] = {s: None for s in self.stages}

    def _acc(self, stage: str) -> MetricAccumulator:
        if stage not in self._accs:
            raise ConfigError(f"unknown stage {stage!r}: this scorer has {', '.join(self.stages)}")
        return self._accs[stage]

    def convert(self, pred, gt, *, kind: str = "metric", valid=None) -> tuple[np.ndarray, np.ndarray]:
        """``(depth, gt)`` as float64 ``[B,H,W]``: the prediction resized, converted and aligned;
        the ground truth with every pixel this scorer does not score set to 0."""
        align = resolve_align(self.align, kind)
        g = as_batch(gt, "gt")
        p = _resized(pred, g.shape[-2:])
        if p.shape != g.shape:
            raise ShapeError(f"pred {list(p.shape)} and gt {list(g.shape)}: batch sizes differ")
        mask = valid_mask(g, self.protocol)
        if valid is not None:
            vb = as_batch(valid, "valid").astype(bool)
            if vb.shape != g.shape:
                raise ShapeError(f"valid {list(vb.shape)} and gt {list(g.shape)} differ in shape")
            mask &= vb
        depth = to_metric(p, kind, gt=g, valid=mask, align=align)
        if self.far != self.protocol.max_depth:  # the accumulators clamp to a protocol's own bound
            depth = np.where(np.isposinf(depth), self.far, depth)
        return depth, np.where(mask, g, 0.0)

    def update(self, stage: str, pred, gt, *, kind: str = "metric", valid=None) -> dict[str, np.ndarray]:
        """Score a batch for ``stage``; returns its per-image metrics (arrays ``[B]``, ``count`` =
        valid pixels per image)."""
        acc = self._acc(stage)
        depth, g = self.convert(pred, gt, kind=kind, valid=valid)
        self.alignments[stage] = resolve_align(self.align, kind)
        out = acc.update(depth, g)
        if self.boundary:
            out.update(self._bounds[stage].update(depth, g, valid=g > 0))
        return out

    def per_image(self, stage: str, pred, gt, *, kind: str = "metric", valid=None) -> dict[str, np.ndarray]:
        """Per-image metrics of a batch, scored as :meth:`update` would, without accumulating."""
        acc = self._acc(stage)
        depth, g = self.convert(pred, gt, kind=kind, valid=valid)
        out = MetricAccumulator(acc.protocol, "none", acc.averaging).update(depth, g)
        if self.boundary:
            from .boundary import BoundaryAccumulator

            out.update(BoundaryAccumulator().update(depth, g, valid=g > 0))
        return out

    def merge(self, other: Scorer) -> Scorer:
        """Add ``other``'s statistics (same stages and settings) into this scorer."""
        if other.stages != self.stages or other.align != self.align:
            raise ConfigError(
                f"cannot merge scorers of stages/align {self.stages}/{self.align} and {other.stages}/{other.align}"
            )
        if other.boundary != self.boundary:
            raise ConfigError("cannot merge a scorer with boundary metrics and one without")
        for s in self.stages:
            self._accs[s].merge(other._accs[s])
            if self.boundary:
                self._bounds[s].merge(other._bounds[s])
            self.alignments[s] = self.alignments[s] or other.alignments[s]
        return self

    def state_array(self) -> np.ndarray:
        """Every stage's sufficient statistics, ``[len(stages), STATE_SIZE]`` float64 (the
        boundary accumulators' appended when ``boundary``)."""
        if self.boundary:
            return np.stack(
                [np.concatenate([self._accs[s].state_array(), self._bounds[s].state_array()]) for s in self.stages]
            )
        return np.stack([self._accs[s].state_array() for s in self.stages])

    def load_state(self, state) -> Scorer:
        """Replace the statistics by ``state`` (e.g. summed :meth:`state_array` of several processes)."""
        if hasattr(state, "detach"):
            state = state.detach().to("cpu").double().numpy()
        state = np.asarray(state, dtype=np.float64)
        if state.shape[0] != len(self.stages):
            raise ShapeError(f"scorer state: expected {len(self.stages)} rows, got {state.shape[0]}")
        from .boundary import STATE_SIZE as BOUNDARY_STATE

        for s, row in zip(self.stages, state):
            if self.boundary:
                row, brow = row[: len(row) - BOUNDARY_STATE], row[len(row) - BOUNDARY_STATE :]
                from .boundary import BoundaryAccumulator

                self._bounds[s] = BoundaryAccumulator.from_state(brow)
            self._accs[s] = MetricAccumulator.from_state(row, self.protocol, "none", self.averaging)
        return self

    def all_reduce(self, group=None, device=None) -> Scorer:
        """Sum the statistics over the processes of ``torch.distributed`` (no-op when it is not
        initialised). ``device``: where the reduction runs (default: the current CUDA device for
        NCCL, else the CPU)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if device is None:
            nccl = dist.get_backend(group) == "nccl"
            device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        state = torch.from_numpy(self.state_array()).to(device)
        dist.all_reduce(state, group=group)
        return self.load_state(state)

    def compute(self) -> dict[str, dict[str, float]]:
        """``{stage: metrics}`` (each with ``count``, the images scored)."""
        out = {s: self._accs[s].compute() for s in self.stages}
        if self.boundary:
            for s in self.stages:
                out[s].update({k: v for k, v in self._bounds[s].compute().items() if k != "count"})
        return out

    def __repr__(self) -> str:
        return (
            f"Scorer(stages={self.stages!r}, protocol={self.protocol.name!r}, align={self.align!r}, "
            f"averaging={self.averaging!r})"
        )


def _resized(pred, size) -> np.ndarray:
    """``pred`` as float64 ``[B,H,W]`` at ``size``, resized with ``geometry.resize_smooth``."""
    size = tuple(int(s) for s in size)
    shape = tuple(np.shape(pred))
    if len(shape) < 2 or shape[-2:] == size:
        return as_batch(pred, "pred")
    import torch

    from .geometry import resize_smooth

    t = pred if hasattr(pred, "detach") else torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))
    return as_batch(resize_smooth(t.detach().float(), size), "pred")


# -- running stages over a cache -------------------------------------------------------------------
StagesFn = Callable[[Any, Any, str], Sequence[Any]]


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of cache items (tensors stacked; ``index`` a tensor; ids as ``str``)."""
    import torch

    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif key == "index":
            out[key] = torch.as_tensor([int(v) for v in values])
        else:
            out[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    return out


def score_dataset(
    dataset,
    stages: StagesFn,
    scorer: Scorer,
    *,
    kind: str,
    device,
    batch_size: int = 1,
    limit: int | None = None,
    workers: int = 0,
    progress=None,
    desc: str = "evaluate",
    on_batch: Callable[[dict[str, Any], list[Any], list[dict[str, np.ndarray]]], None] | None = None,
) -> int:
    """Run ``stages`` over the first ``limit`` samples of a cache dataset and score each stage.

    ``dataset`` yields cache items (``rough`` ``[1,h,w]``, ``gt``/``valid`` ``[1,H,W]``, optional
    ``rgb``, ``id``, ``index``; :class:`refinedepth.cache.CacheDataset`). ``stages(rough, rgb,
    kind, out_size=gt_size)`` returns one ``[B,1,h,w]`` prediction per stage of ``scorer``
    (at any size; ``out_size`` is the ground truth's, where full-resolution refiners output), rough first (a
    :class:`~refinedepth.refiner.chain.RefinerChain` is such a callable); the first stage has the
    cache's ``kind``, later ones are metric (refined). ``on_batch(batch, preds, per_image)`` sees
    every batch with its predictions and per-stage per-image metrics. Returns the samples scored.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    total = len(dataset) if limit is None else min(len(dataset), int(limit))
    subset = dataset if total == len(dataset) else Subset(dataset, range(total))
    loader = DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_samples,
        generator=torch.Generator(),  # its base seed is not drawn from the caller's global RNG
    )
    done = 0
    for batch in loader:
        rough = batch["rough"].to(device).float()
        rgb = batch["rgb"].to(device) if "rgb" in batch else None
        gt_size = tuple(int(v) for v in batch["gt"].shape[-2:])
        with torch.no_grad():
            preds = list(stages(rough, rgb, kind, out_size=gt_size))
        if len(preds) != len(scorer.stages):
            raise ShapeError(f"stages returned {len(preds)} predictions for {len(scorer.stages)} stages")
        gt, valid = batch["gt"], batch["valid"]
        per_image = [
            scorer.update(name, pred.detach().float().cpu(), gt, kind=kind if i == 0 else "metric", valid=valid)
            for i, (name, pred) in enumerate(zip(scorer.stages, preds))
        ]
        if on_batch is not None:
            on_batch(batch, preds, per_image)
        done += int(gt.shape[0])
        if progress is not None:
            progress(done, total, desc=desc)
    return done


__all__ = [
    "ALIGNMENTS",
    "KINDS",
    "Scorer",
    "collate_samples",
    "resolve_align",
    "score_dataset",
    "to_metric",
]
