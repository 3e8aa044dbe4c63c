"""Do the first stage's errors stay the same along the video? A two-number test on a
``benchmarks/real_kitchen.py`` run.

A refiner learns the errors the FCRN makes on its training frames; it can only carry them to
the test frames if those errors are the same there. The simplest error that is not a global
scale is a depth-dependent one, ``log gt = a + b log rough`` (``gt = e^a rough^b``; ``b > 1``:
the FCRN compresses the depth range, ``b < 1``: it stretches it). This script fits ``(a, b)``
by least squares over the valid pixels of each cache of the run (train, val, test, and the test
frames in windows), then applies the training fit to the test frames and scores it beside
``rough x scale`` (the scale fitted on the same training pairs), frame by frame.

    .venv/bin/python benchmarks/kitchen_drift.py runs/real-kitchen-guided

Reads the run's ``cache-train.h5``, ``cache-val.h5`` and ``cache-test.h5``; prints two tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def frames(path: Path):
    """``(id, rough, gt)`` per sample, rough resized to the ground truth as the scorer does;
    invalid ground truth is 0."""
    import torch

    from refinedepth.cache import CacheDataset
    from refinedepth.geometry import resize_smooth

    dataset = CacheDataset(path)
    for i in range(len(dataset)):
        item = dataset[i]
        gt = item["gt"][0].double().numpy()
        gt = np.where(item["valid"][0].numpy() & np.isfinite(gt) & (gt > 0), gt, 0.0)
        rough = item["rough"][None].float()
        if tuple(rough.shape[-2:]) != gt.shape:
            rough = resize_smooth(rough, gt.shape)
        yield item["id"], rough[0, 0].double().clamp_min(torch.finfo(torch.float32).tiny).numpy(), gt


def fit_log_linear(pairs, stride: int = 7) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``log gt = a + b log rough`` over every ``stride``-th valid pixel."""
    xs, ys = [], []
    for _, rough, gt in pairs:
        v = gt > 0
        xs.append(np.log(rough[v])[::stride])
        ys.append(np.log(gt[v])[::stride])
    b, a = np.polyfit(np.concatenate(xs), np.concatenate(ys), 1)
    return float(a), float(b)


def fit_scale(pairs) -> float:
    """The ``rough x scale`` row's scale: ``exp(mean(log gt - log rough))`` over valid pixels."""
    total, count = 0.0, 0
    for _, rough, gt in pairs:
        v = gt > 0
        total += float(np.sum(np.log(gt[v]) - np.log(rough[v])))
        count += int(v.sum())
    return float(np.exp(total / count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a benchmarks/real_kitchen.py --out folder")
    parser.add_argument("--window", type=int, default=30, help="test frames per window in the first table")
    args = parser.parse_args()
    run = Path(args.run)
    for name in ("cache-train.h5", "cache-val.h5", "cache-test.h5"):
        if not (run / name).is_file():
            print(f"{run / name} does not exist: pass the --out folder of a finished benchmarks/real_kitchen.py run",
                  file=sys.stderr)
            return 1

    from refinedepth.metrics import compute_metrics

    train = list(frames(run / "cache-train.h5"))
    test = list(frames(run / "cache-test.h5"))
    a, b = fit_log_linear(train)
    scale = fit_scale(train)

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
        wins = [float(np.mean([m[k] < r[k] for m, r in zip(ms, base)])) for k in ("abs_rel", "silog")]
        shown = "-" if stage == "rough x scale" else f"{100 * wins[0]:.0f}% / {100 * wins[1]:.0f}%"
        print(f"| {stage} | {mean['abs_rel']:.4f} | {mean['rmse']:.4f} | {mean['silog']:.3f} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
