"""Checkerboard and border artifacts of the refiner's decoder: transposed vs resize-convolution.

For the ``small`` preset's layer lists, build the generator with ``upsample="transposed"`` (the
papers') and ``upsample="resize"`` (bilinear x2 + 3x3 convolution, Odena et al. 2016; its border
padding replicated, and for comparison reflected or zero), untrained (pix2pix's N(0, 0.02)
initialisation, output layer included) and briefly trained (L1 on synthetic residual pairs, the
output layer starting at zero as the residual preset does). It prints, averaged over a few
synthetic scenes at the preset's 128x128:

- ``stride %``: the share of the spectral energy of the generator's output (untrained) or of the
  refined-minus-rough residual it predicts (trained) that lies at the decoder's stride
  frequencies: the 2D FFT bins at multiples of H/P, W/P for the upsampling periods P (2, 4, 8 px
  by default), DC excluded from both sums. Coarser periods (16 .. 64 px at 128 px) fall on the
  scene's own low frequencies and are left out (``--periods`` changes this). The ``target`` row
  is the true residual's share, what the content itself puts there.
- ``P=2 / P=4 / P=8``: the same share per period (bins new at that period).
- ``flat``: on a constant input, whose ideal output is constant, the RMS deviation of the output
  from its median in the interior and the mean absolute deviation on the outer 2-pixel frame
  (``border``), both relative to the RMS of the scene outputs: a periodic texture shows in the
  first, a pattern along the image border in the second.

Usage: ``python benchmarks/bench_checkerboard.py [--quick] [--steps 200] [--inputs 8] [--json F]``.
The default run takes about 1-3 minutes on 2 CPU cores; ``--quick`` (a few steps) checks that it
works.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from refinedepth.refiner import fast
from refinedepth.refiner.models import build_generator
from refinedepth.refiner.presets import get_preset

MAX_DEPTH = 10.0
PADS = {"replicate": nn.ReplicationPad2d, "reflect": nn.ReflectionPad2d, "zeros": nn.ZeroPad2d}


# -- synthetic scenes ---------------------------------------------------------------------------


def scenes(n: int, size: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` piecewise-planar depth maps (metres) and their rough versions: a Gaussian blur
    (no periodic structure of its own) times 1.15, the degraded-sensor pattern of issue 14."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    gts = []
    for _ in range(n):
        a, b, c = (torch.rand(3, generator=g) * torch.tensor([3.0, 2.0, 2.0])).tolist()
        d = 4.0 + a + b * yy - c * xx
        for _ in range(int(torch.randint(3, 7, (1,), generator=g))):
            y0, x0 = (torch.rand(2, generator=g) * 0.8).tolist()
            hh, ww = (0.1 + torch.rand(2, generator=g) * 0.4).tolist()
            depth = 1.0 + float(torch.rand(1, generator=g)) * 4.0
            box = (yy >= y0) & (yy < y0 + hh) & (xx >= x0) & (xx < x0 + ww)
            d = torch.where(box, depth + 0.5 * (yy - y0), d)
        gts.append(d.clamp(0.5, 9.5))
    gt = torch.stack(gts)[:, None]
    rough = (_blur(gt, sigma=3.0) * 1.15).clamp(0.3, MAX_DEPTH)
    return gt, rough


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def to_unit(d: torch.Tensor) -> torch.Tensor:
    return d / MAX_DEPTH * 2 - 1


# -- the measure --------------------------------------------------------------------------------


def stride_masks(size: tuple[int, int], periods: list[int]) -> dict[int, torch.Tensor]:
    """For each period P, the FFT bins at multiples of (H/P, W/P) not already in a finer period's
    set, DC excluded. (Bins for P are a superset of those for P/2.)"""
    h, w = size
    u = torch.arange(h).view(-1, 1)
    v = torch.arange(w).view(1, -1)
    seen = torch.zeros(h, w, dtype=torch.bool)
    seen[0, 0] = True
    out = {}
    for p in sorted(periods):
        if h % p or w % p:
            raise SystemExit(f"period {p} does not divide the size {h}x{w}")
        m = ((u % (h // p)) == 0) & ((v % (w // p)) == 0) & ~seen
        out[p] = m
        seen |= m
    return out


def stride_shares(r: torch.Tensor, masks: dict[int, torch.Tensor]) -> dict[int, float]:
    """Mean over images of the share of non-DC spectral energy of ``r`` [B,1,H,W] in each mask."""
    e = torch.fft.fft2(r[:, 0].double()).abs() ** 2
    total = e.sum((-2, -1)) - e[:, 0, 0]
    return {p: float((e[:, m].sum(-1) / total.clamp_min(1e-300)).mean()) for p, m in masks.items()}


def flat_artifacts(g: nn.Module, size: tuple[int, int], scale: float, frame: int = 2) -> tuple[float, float]:
    """Interior RMS deviation from the median and border mean |deviation| on constant inputs."""
    h, w = size
    x = torch.tensor([-0.6, -0.2, 0.2]).view(-1, 1, 1, 1).expand(3, 1, h, w).contiguous()
    with torch.no_grad():
        y = g(x).double()[:, 0]
    interior = y[:, 8:-8, 8:-8]
    med = interior.flatten(1).median(1).values.view(-1, 1, 1)
    inner = float((interior - med).pow(2).mean().sqrt())
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[frame:-frame, frame:-frame] = False
    border = float((y - med)[:, ring].abs().mean())
    return inner / scale, border / scale


# -- models -------------------------------------------------------------------------------------


def generator(upsample: str, pad: str, *, zero_output: bool, seed: int) -> nn.Module:
    cfg = dataclasses.replace(
        get_preset("small").generator_config("rough"), upsample=upsample, zero_init_output=zero_output
    )
    g = build_generator(cfg, seed=seed)
    if pad != "replicate":  # the built resize blocks replicate; swap the (parameter-free) pads
        for block in [*g.decoder, g.head]:
            for i, m in enumerate(block):
                if isinstance(m, nn.ReplicationPad2d):
                    block[i] = PADS[pad](1)
    return g


def train(g: nn.Module, steps: int, batch: int, crop: int, seed: int) -> float:
    """L1 on synthetic residual pairs (random crops); returns the last 20 steps' mean loss."""
    gt, rough = scenes(32, (128, 128), seed=seed + 100)
    x_all, t_all = to_unit(rough), to_unit(gt) - to_unit(rough)
    fast.prepare_for_training(g)
    opt = fast.adam(g.parameters(), lr=1e-3, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    g.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        y0, x0 = torch.randint(0, 128 - crop + 1, (2,), generator=gen).tolist()
        x = x_all[idx, :, y0 : y0 + crop, x0 : x0 + crop]
        t = t_all[idx, :, y0 : y0 + crop, x0 : x0 + crop]
        loss = (g(x) - t).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    fast.use_gemm_kernels(g, enable=False)
    return sum(losses[-20:]) / len(losses[-20:])


# -- the table ----------------------------------------------------------------------------------


def measure(g: nn.Module, x: torch.Tensor, masks: dict[int, torch.Tensor], size) -> dict[str, float]:
    g.eval()
    with torch.no_grad():
        r = g(x)
    shares = stride_shares(r, masks)
    scale = float(r.double().pow(2).mean().sqrt())
    inner, border = flat_artifacts(g, size, max(scale, 1e-12))
    return {"stride_share": sum(shares.values()), **{f"P{p}": s for p, s in shares.items()},
            "flat_interior": inner, "flat_border": border}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few steps and inputs: check that it runs")
    ap.add_argument("--steps", type=int, default=200, help="L1 training steps per trained model")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, default=64, help="training crop side (pixels)")
    ap.add_argument("--inputs", type=int, default=8, help="synthetic test scenes")
    ap.add_argument("--periods", default="2,4,8", help="upsampling periods counted (pixels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.inputs = 10, 2
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # dropout masks
    size = get_preset("small").size
    masks = stride_masks(size, [int(p) for p in a.periods.split(",")])
    gt, rough = scenes(a.inputs, size, seed=a.seed + 1)
    x = to_unit(rough)
    target = to_unit(gt) - x
    rows = [{"model": "target residual", "state": "-", **{f"P{p}": s for p, s in stride_shares(target, masks).items()}}]
    rows[0]["stride_share"] = sum(v for k, v in rows[0].items() if k.startswith("P"))
    variants = [("transposed", "replicate"), ("resize", "replicate"), ("resize", "reflect"), ("resize", "zeros")]
    t0 = time.perf_counter()
    for up, pad in variants:
        name = "transposed" if up == "transposed" else f"resize ({pad})"
        g = generator(up, pad, zero_output=False, seed=a.seed)
        rows.append({"model": name, "state": "untrained", **measure(g, x, masks, size)})
    for up, pad in variants:
        name = "transposed" if up == "transposed" else f"resize ({pad})"
        g = generator(up, pad, zero_output=True, seed=a.seed)
        t = time.perf_counter()
        loss = train(g, a.steps, a.batch, a.crop, a.seed)
        rows.append({"model": name, "state": f"{a.steps} L1 steps", "train_l1": loss,
                     "train_s": time.perf_counter() - t, **measure(g, x, masks, size)})
    periods = sorted(masks)
    head = ["model", "state", "stride %", *[f"P={p} %" for p in periods], "flat %", "border %", "train L1"]
    print(f"# stride-frequency energy, small preset {size[0]}x{size[1]}, {a.inputs} scenes, periods {periods}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], r["state"], f"{100 * r['stride_share']:.3g}", *[f"{100 * r[f'P{p}']:.3g}" for p in periods]]
        cells += [f"{100 * r[k]:.3g}" if k in r else "-" for k in ("flat_interior", "flat_border")]
        cells.append(f"{r['train_l1']:.4f}" if "train_l1" in r else "-")
        print("| " + " | ".join(cells) + " |")
    print(f"# {time.perf_counter() - t0:.0f} s, torch threads {torch.get_num_threads()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
