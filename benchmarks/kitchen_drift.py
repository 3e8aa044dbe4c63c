"""Do the first stage's errors stay the same along the video? A two-number test on a
``benchmarks/real_kitchen.py`` run.

A refiner learns the errors the FCRN makes on its training frames; it can only carry them to
the test frames if those errors are the same there. The simplest error that is not a global
scale is a depth-dependent one, ``log gt = a + b log rough`` (``gt = e^a rough^b``; ``b > 1``:
the FCRN compresses the depth range, ``b < 1``: it stretches it). This script fits ``(a, b)``
by least squares over the valid pixels of each cache of the run (train, val, test, and the test
frames in windows), then applies the training fit to the test frames and scores it beside
``rough x scale``, frame by frame.

The baseline rows (``rough x scale`` here, and ``rough x (scale, shift)`` with ``--headroom``) use the
fits the run's refiner stored in its checkpoint (``refiner/``'s ``config.json``, ``"baselines"``:
fitted on every training cache of the refiner, as ``evaluate`` applies them), so they are the rows
``evaluate`` prints. A refiner without stored baselines is a one-line error. Shares of frames are
``refinedepth.report.win_rate``'s: a tie is not a win, and a frame where a value is NaN (dbe_acc on a
frame without ground-truth edges) is left out of that metric's share.

With ``--headroom`` it also asks how far a refiner could get that changes only *detail*: the
test frames' ``rough x scale`` corrected by the part of the true log error finer than a Gaussian
of ``sigma`` pixels (``log gt - log(rough x scale)`` minus its low-pass, computed from the ground
truth itself), at a fraction ``alpha`` of its size. That is an upper bound for a refiner that
gets the direction of every detail right and leaves the large scale to the global scale; the
table shows on how many test frames it would beat all three baseline rows (rough, ``rough x
scale`` and ``rough x (scale, shift)``, the refiner's stored fits) on each metric.

    .venv/bin/python benchmarks/kitchen_drift.py runs/real-kitchen-guided [--headroom]

Reads the run's ``cache-train.h5``, ``cache-val.h5``, ``cache-test.h5`` and ``refiner/`` checkpoint
(its ``config.json`` only); prints two tables (three with ``--headroom``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def frames(path: Path):
    """``(id, rough, gt)`` per sample, rough resized to the ground truth as the scorer does and as
    depth (a disparity map inverted, as the stored baselines expect), clamped to the smallest
    positive float32 (a rough depth at that floor was <= 0); invalid ground truth is 0."""
    from refinedepth.baselines import baseline_depth
    from refinedepth.cache import CacheDataset

    dataset = CacheDataset(path)
    kind = dataset.output_kind
    for i in range(len(dataset)):
        item = dataset[i]
        gt = item["gt"][0].double().numpy()
        gt = np.where(item["valid"][0].numpy() & np.isfinite(gt) & (gt > 0), gt, 0.0)
        depth = baseline_depth(item["rough"][None], kind, gt.shape)[0, 0].double()
        yield item["id"], depth.clamp_min(ROUGH_FLOOR).numpy(), gt


ROUGH_FLOOR = float(np.finfo(np.float32).tiny)  # frames() clamps rough depths <= 0 to this


def fit_log_linear(pairs, stride: int = 7) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``log gt = a + b log rough`` over every ``stride``-th valid pixel
    (ground truth > 0, rough depth finite and above :data:`ROUGH_FLOOR`: a clamped one is dropped)."""
    xs, ys = [], []
    for _, rough, gt in pairs:
        v = (gt > 0) & np.isfinite(rough) & (rough > ROUGH_FLOOR)
        xs.append(np.log(rough[v])[::stride])
        ys.append(np.log(gt[v])[::stride])
    b, a = np.polyfit(np.concatenate(xs), np.concatenate(ys), 1)
    return float(a), float(b)


def stored_baselines(run: Path):
    """The :class:`refinedepth.baselines.Baselines` the run's refiner (``RUN/refiner``, its best
    checkpoint first, as ``evaluate`` loads it) stored; ValueError with a one-line reason when there
    is no checkpoint or it stores none."""
    from refinedepth.baselines import Baselines
    from refinedepth.errors import CheckpointError
    from refinedepth.refiner.checkpoint import read_config, resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(run / "refiner")
        meta = read_config(ckpt)
    except CheckpointError as e:
        raise ValueError(f"{e} (the baselines come from the run's refiner)") from None
    if not meta.get("baselines"):
        raise ValueError(
            f"refiner {str(ckpt)!r} stores no baselines (trained before baselines existed): retrain it "
            "with benchmarks/real_kitchen.py to get the rough x scale and rough x (scale, shift) fits"
        )
    try:
        return Baselines.from_dict(meta["baselines"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"refiner {str(ckpt)!r}: its stored baselines are unreadable ({e!r})") from None


def detail_only(base: np.ndarray, gt: np.ndarray, sigma: float, alpha: float) -> np.ndarray:
    """``base`` corrected by ``alpha`` times the part of ``log gt - log base`` finer than a
    Gaussian of ``sigma`` pixels (a low-pass over the valid pixels only: normalised convolution).
    Where ``gt`` is invalid, ``base`` is kept."""
    from scipy.ndimage import gaussian_filter

    v = gt > 0
    error = np.where(v, np.log(np.where(v, gt, 1.0)) - np.log(base), 0.0)
    weight = gaussian_filter(v.astype(np.float64), sigma, mode="nearest")
    low = gaussian_filter(error, sigma, mode="nearest") / np.maximum(weight, 1e-12)
    return base * np.exp(alpha * np.where(v, error - low, 0.0))


HEADROOM_METRICS = ("abs_rel", "rmse", "silog", "dbe_acc")


def headroom(baselines, test, sigmas=(16.0, 64.0), alphas=(0.25, 0.5, 1.0)) -> list[dict]:
    """Rows of the detail-only table: per ``(sigma, alpha)`` the mean metrics and the share of
    test frames on which it is better than every baseline row (rough and ``baselines``' two rows),
    per metric (:func:`refinedepth.report.win_rate`)."""
    from refinedepth.boundary import boundary_metrics
    from refinedepth.metrics import compute_metrics
    from refinedepth.report import win_rate

    def score(pred, gt):
        m = compute_metrics(pred, gt)
        m.update(boundary_metrics(pred, gt))
        return m

    rows = [[score(b, gt) for b in (rough, baselines.apply(rough, "scale"), baselines.apply(rough, "scale_shift"))]
            for _, rough, gt in test]  # per frame: the three baseline rows' metrics
    base = {k: [[r[j][k] for r in rows] for j in range(3)] for k in HEADROOM_METRICS}
    out = []
    for sigma in sigmas:
        for alpha in alphas:
            ms = [score(detail_only(baselines.apply(rough, "scale"), gt, sigma, alpha), gt) for _, rough, gt in test]
            out.append({
                "sigma": sigma, "alpha": alpha,
                "mean": {k: float(np.mean([m[k] for m in ms])) for k in HEADROOM_METRICS},
                "wins": {k: win_rate([m[k] for m in ms], base[k], k) for k in HEADROOM_METRICS},
            })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a benchmarks/real_kitchen.py --out folder")
    parser.add_argument("--window", type=int, default=30, help="test frames per window in the first table")
    parser.add_argument("--headroom", action="store_true",
                        help="also print the detail-only upper bound (needs scipy and scikit-image)")
    args = parser.parse_args()
    run = Path(args.run)
    for name in ("cache-train.h5", "cache-val.h5", "cache-test.h5"):
        if not (run / name).is_file():
            print(f"{run / name} does not exist: pass the --out folder of a finished benchmarks/real_kitchen.py run",
                  file=sys.stderr)
            return 1
    try:
        baselines = stored_baselines(run)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1

    from refinedepth.metrics import compute_metrics
    from refinedepth.report import win_rate

    train = list(frames(run / "cache-train.h5"))
    test = list(frames(run / "cache-test.h5"))
    a, b = fit_log_linear(train)
    scale = baselines.scale

    print("| frames | b | a |")
    print("|---|---:|---:|")
    print(f"| train ({train[0][0]} .. {train[-1][0]}) | {b:.3f} | {a:+.3f} |")
    val = list(frames(run / "cache-val.h5"))
    va, vb = fit_log_linear(val)
    print(f"| val ({val[0][0]} .. {val[-1][0]}) | {vb:.3f} | {va:+.3f} |")
    ta, tb = fit_log_linear(test)
    print(f"| test ({test[0][0]} .. {test[-1][0]}) | {tb:.3f} | {ta:+.3f} |")
    for start in range(0, len(test), args.window):
        part = test[start : start + args.window]
        wa, wb = fit_log_linear(part)
        print(f"| test {part[0][0]} .. {part[-1][0]} | {wb:.3f} | {wa:+.3f} |")

    rows = {"rough x scale": [], "rough x e^a rough^b (train fit)": []}
    for _, rough, gt in test:
        rows["rough x scale"].append(compute_metrics(scale * rough, gt))
        rows["rough x e^a rough^b (train fit)"].append(compute_metrics(np.exp(a) * rough**b, gt))
    print()
    print(f"Test frames ({len(test)}), the fits from the training pairs (scale {scale:.3f}):")
    print()
    print("| stage | rel | rms | silog | frames better than rough x scale (rel / silog) |")
    print("|---|---:|---:|---:|---:|")
    base = rows["rough x scale"]
    for stage, ms in rows.items():
        mean = {k: float(np.mean([m[k] for m in ms])) for k in ("abs_rel", "rmse", "silog")}
        wins = [win_rate([m[k] for m in ms], [r[k] for r in base], k) for k in ("abs_rel", "silog")]
        shown = "-" if stage == "rough x scale" else f"{100 * wins[0]:.0f}% / {100 * wins[1]:.0f}%"
        print(f"| {stage} | {mean['abs_rel']:.4f} | {mean['rmse']:.4f} | {mean['silog']:.3f} | {shown} |")
    if args.headroom:
        print()
        print("Detail-only upper bound on the test frames: rough x scale corrected by alpha x the true log")
        print("error finer than sigma pixels; 'better than all' = than rough, rough x scale and")
        print("rough x (scale, shift) at once, share of frames per metric:")
        print()
        print("| sigma | alpha | rel | rms | silog | dbe_acc | better than all (rel / rms / silog / dbe_acc) |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        for row in headroom(baselines, test):
            m, w = row["mean"], row["wins"]
            shares = " / ".join(f"{100 * w[k]:.0f}%" for k in HEADROOM_METRICS)
            print(f"| {row['sigma']:g} | {row['alpha']:g} | {m['abs_rel']:.4f} | {m['rmse']:.4f} | "
                  f"{m['silog']:.3f} | {m['dbe_acc']:.3f} | {shares} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
