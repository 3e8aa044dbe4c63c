"""Learning curve of the ``small`` refiner preset on held-out synthetic scenes, and its CPU step time.

Rough maps imitate a first stage's systematic errors (blurred, biased x1.15 + 0.15 m, noisy); the
validation split renders rooms the refiner never saw. Prints steps vs validation abs_rel (rough
and refined) and the mean time per training step at the preset's default size (128x128, batch 1).

    .venv/bin/python benchmarks/refiner_small_curve.py --train 200 --val 50 --epochs 6 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from refinedepth.cache import write_cache
from refinedepth.data import open_dataset
from refinedepth.refiner.train import TrainConfig, train_refiner


def degraded_cache(path: Path, split: str, n: int, seed: int) -> Path:
    ds = open_dataset("synthetic:indoor", split=split, limit=n)
    gt = np.stack([ds[i].depth for i in range(n)]).astype(np.float32)
    g = torch.from_numpy(gt)[:, None]
    blurred = F.avg_pool2d(g, 9, stride=1, padding=4, count_include_pad=False)
    rough = F.interpolate(blurred, size=(256, 256), mode="bilinear", align_corners=False)
    rough = rough * 1.15 + 0.15 + 0.05 * torch.randn(rough.shape, generator=torch.Generator().manual_seed(seed))
    return write_cache(path, rough=rough.clamp_min(0.05).numpy(), gt=gt, max_depth=ds.max_depth,
                       output_kind="metric", protocol="none", backbone="degraded-gt", dataset=ds.spec, split=split)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--val", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--gan-mode", default="vanilla", choices=["vanilla", "lsgan", "none"])
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = degraded_cache(tmp / "train.h5", "train", args.train, 0)
        val = degraded_cache(tmp / "val.h5", "test", args.val, 1)
        cfg = TrainConfig(train=str(train), val=str(val), out=str(tmp / "run"), preset=args.preset,
                          epochs=args.epochs, device="cpu", gan_mode=args.gan_mode, batch_size=args.batch_size)
        times: list[float] = []
        last = [time.perf_counter()]

        def progress(done, total, desc="", **fields):
            now = time.perf_counter()
            if desc == "train":
                times.append(now - last[0])
            last[0] = now

        t0 = time.perf_counter()
        result = train_refiner(cfg, progress=progress)
        wall = time.perf_counter() - t0
    steady = sorted(times[5:])[len(times[5:]) // 2] if len(times) > 10 else float("nan")
    print(f"preset {args.preset}, gan {args.gan_mode}, batch {args.batch_size}, {args.train} train / "
          f"{args.val} held-out samples, threads {args.threads}")
    print(f"{'epoch':>5} {'steps':>6} {'rough abs_rel':>14} {'refined abs_rel':>16} {'refined rmse':>13}")
    for h in result.history:
        v = h["val"]
        print(f"{h['epoch']:>5} {h['step']:>6} {v['rough']['abs_rel']:>14.4f} {v['refined']['abs_rel']:>16.4f} "
              f"{v['refined']['rmse']:>13.4f}")
    print(f"median time per training step (batch {args.batch_size}, 128x128, incl. data): {steady * 1000:.1f} ms; "
          f"total wall {wall:.0f} s")


if __name__ == "__main__":
    main()
