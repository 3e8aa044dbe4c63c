"""Is synthetic depth predictable from the pictures? Train a tiny U-Net and compare with priors.

    .venv/bin/python benchmarks/synthetic_learnability.py [--family indoor] [--train 600] [--epochs 12]

Trains a 4-level U-Net (24-96 channels, log-L1 loss) on the train split at a small resolution and
prints held-out metrics next to two baselines that ignore the picture: the training set's median
depth everywhere, and its median depth per image row. A few minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from refinedepth.data import open_dataset
from refinedepth.metrics import compute_metrics


def _block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class TinyUNet(nn.Module):
    def __init__(self, max_depth: float) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.e1, self.e2, self.e3, self.e4 = _block(3, 24), _block(24, 48), _block(48, 96), _block(96, 96)
        self.d3, self.d2, self.d1 = _block(192, 48), _block(96, 24), _block(48, 24)
        self.out = nn.Conv2d(24, 1, 3, padding=1)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(F.max_pool2d(a, 2))
        c = self.e3(F.max_pool2d(b, 2))
        d = self.e4(F.max_pool2d(c, 2))
        u = self.d3(torch.cat([F.interpolate(d, size=c.shape[-2:]), c], 1))
        u = self.d2(torch.cat([F.interpolate(u, size=b.shape[-2:]), b], 1))
        u = self.d1(torch.cat([F.interpolate(u, size=a.shape[-2:]), a], 1))
        return torch.exp(self.out(u)) * self.max_depth / 4


def _tensors(ds):
    samples = [ds[i] for i in range(len(ds))]
    rgb = torch.from_numpy(np.stack([s.rgb for s in samples])).permute(0, 3, 1, 2).float() / 255
    depth = torch.from_numpy(np.stack([s.depth for s in samples]))[:, None]
    return rgb, depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="indoor", choices=["indoor", "outdoor"])
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", default="60x80", help="HxW")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    size = tuple(int(v) for v in args.size.split("x"))

    t0 = time.perf_counter()
    train = open_dataset(f"synthetic:{args.family}", split="train", limit=args.train, size=size)
    test = open_dataset(f"synthetic:{args.family}", split="test", limit=args.test, size=size)
    x_train, y_train = _tensors(train)
    x_test, y_test = _tensors(test)
    t_render = time.perf_counter() - t0

    net = TinyUNet(train.max_depth)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for batch in torch.randperm(len(x_train)).split(16):
            pred, gt = net(x_train[batch]), y_train[batch]
            valid = (gt > 0) & (gt < train.max_depth)
            loss = (torch.log(pred[valid]) - torch.log(gt[valid])).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    t_train = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        pred = net(x_test)[:, 0].numpy()

    gt = y_test[:, 0].numpy()
    train_gt = y_train[:, 0].numpy()
    constant = np.full_like(gt, np.median(train_gt))
    per_row = np.broadcast_to(np.median(train_gt, axis=(0, 2))[None, :, None], gt.shape)
    rows = [
        ("tiny U-Net", compute_metrics(pred, gt)),
        ("tiny U-Net, median-aligned", compute_metrics(pred, gt, align="median")),
        ("constant (train median)", compute_metrics(constant, gt)),
        ("per-row median prior", compute_metrics(per_row, gt)),
    ]
    print(f"synthetic:{args.family} {size[0]}x{size[1]}, {len(train)} train / {len(test)} test, "
          f"{args.epochs} epochs (render {t_render:.0f} s, train {t_train:.0f} s)")
    print(f"{'predictor':<28} {'abs_rel':>8} {'rmse':>8} {'d1':>6}")
    for name, m in rows:
        print(f"{name:<28} {m['abs_rel']:>8.3f} {m['rmse']:>8.3f} {m['d1']:>6.3f}")


if __name__ == "__main__":
    main()
