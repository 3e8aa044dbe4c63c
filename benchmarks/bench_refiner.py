"""Refiner throughput: inference and one training step (D+G) per preset, plain eager vs the fast
paths of ``refinedepth.refiner.fast``, as a share of the matmul peak measured alongside.

FLOPs are counted on the plain module with ``torch.utils.flop_counter`` (the nominal count: every
kernel tap of every output, padding included, backward passes included for training); the fast
path computes the same function, so it is credited with the same FLOPs.

Run alone: ``.venv/bin/python benchmarks/bench_refiner.py [--quick] [--presets pix2pix,paper-nyu]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MatmulPeak, format_table, interleaved, machine_info  # noqa: E402

DEFAULT_PRESETS = ("pix2pix", "paper-nyu", "paper-make3d", "small")
SIZE = (256, 256)

INFERENCE_COLUMNS = [
    ("preset", "preset"),
    ("batch", "batch"),
    ("gflop_per_image", "GFLOP/img"),
    ("plain_images_per_s", "plain img/s"),
    ("plain_share", "plain %peak"),
    ("fast_images_per_s", "fast img/s"),
    ("fast_gflops", "fast GFLOP/s"),
    ("fast_share", "fast %peak"),
    ("speedup", "speed-up"),
    ("max_abs_diff", "max abs diff"),
    ("bf16_images_per_s", "bf16 img/s"),
    ("bf16_vs_fp32", "bf16 / fast fp32"),
    ("bf16_max_abs_diff", "bf16 max abs diff"),
]
TRAINING_COLUMNS = [
    ("preset", "preset"),
    ("batch", "batch"),
    ("gflop_per_step", "GFLOP/step"),
    ("plain_step_s", "plain s/step"),
    ("plain_share", "plain %peak"),
    ("fast_step_s", "fast s/step"),
    ("fast_gflops", "fast GFLOP/s"),
    ("fast_share", "fast %peak"),
    ("speedup", "speed-up"),
    ("max_grad_diff", "rel. grad diff"),
]


def _models(preset_name: str, seed: int = 0):
    import torch

    from refinedepth.refiner.models import build_discriminator, build_generator
    from refinedepth.refiner.presets import get_preset

    preset = get_preset(preset_name)
    g = build_generator(preset.generator_config("rough"), seed=seed)
    d = build_discriminator(preset.discriminator_config("rough"), seed=seed + 1)
    if preset.residual:  # zero-initialised output layer: give it weights so outputs are not all 0
        with torch.no_grad():
            head = g.head[0]
            head.weight.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(seed + 2))
    # Trained-looking BatchNorm statistics, so folding is exercised with non-trivial values.
    gen = torch.Generator().manual_seed(seed + 3)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return g, d


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _plain_vs_fast(plain_r: dict[str, float], fast_r: dict[str, float]) -> dict[str, float]:
    """The columns both tables share, from two :func:`interleaved` results."""
    return {
        "plain_gflops": plain_r["gflops"],
        "plain_share": 100 * plain_r["share"],
        "fast_gflops": fast_r["gflops"],
        "fast_share": 100 * fast_r["share"],
        "speedup": plain_r["seconds"] / fast_r["seconds"],
    }


def native_bf16() -> bool:
    """Whether this CPU runs bf16 natively through oneDNN (AVX-512 BF16 / AMX); without it, bf16
    autocast is emulated and 10-200x slower than fp32 (measured on an AVX2 EPYC)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bench_inference(
    presets=DEFAULT_PRESETS, batches=(1, 8), peak: MatmulPeak | None = None, rounds: int = 3, progress=None,
    bf16: bool | None = None,
) -> list[dict[str, Any]]:
    """``bf16=None`` measures the bf16 columns only where the CPU has native bf16."""
    import torch

    from refinedepth.refiner.fast import optimize_for_inference

    if bf16 is None:
        bf16 = native_bf16()

    peak = peak or MatmulPeak()
    rows = []
    for name in presets:
        g, _ = _models(name)
        g.eval()
        for batch in batches:
            x = torch.randn(batch, 1, *SIZE, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                flops = count_flops(lambda: g(x))  # noqa: B023
                fast = optimize_for_inference(g, tuple(x.shape))
                diff = float((fast(x) - g(x)).abs().max())
                plain_r = interleaved(lambda: g(x), peak, flops, rounds=rounds)  # noqa: B023
                fast_r = interleaved(lambda: fast(x), peak, flops, rounds=rounds)  # noqa: B023
                fast = None  # free the prepacked weights before the bf16 copy
                bf16_r, bf16_diff = None, None
                if bf16:
                    half = optimize_for_inference(g, tuple(x.shape), precision="bf16")
                    bf16_diff = float((half(x).float() - g(x)).abs().max())
                    bf16_r = interleaved(lambda: half(x), peak, flops, rounds=rounds)  # noqa: B023
                    half = None
            rows.append(
                {
                    "preset": name,
                    "batch": batch,
                    "size": list(SIZE),
                    "gflop_per_image": flops / batch / 1e9,
                    "plain_images_per_s": batch / plain_r["seconds"],
                    "fast_images_per_s": batch / fast_r["seconds"],
                    **_plain_vs_fast(plain_r, fast_r),
                    "max_abs_diff": diff,
                    # bf16 autocast (issue 15): generator outputs are in [-1, 1], so the difference
                    # is in units of max_depth / 2
                    "bf16_images_per_s": batch / bf16_r["seconds"] if bf16_r else None,
                    "bf16_vs_fp32": fast_r["seconds"] / bf16_r["seconds"] if bf16_r else None,
                    "bf16_max_abs_diff": bf16_diff,
                }
            )
            if progress:
                progress(rows[-1])
    return rows


class TrainStep:
    """One pix2pix step, ``train_refiner``'s own (``refinedepth.refiner.train.gan_step``): D on
    (x, real) and (x, fake.detach()), BCE, loss halved, Adam step; then G with BCE on D(x, fake) +
    100 * masked L1, Adam step (its backward computes G's gradients only, not D's weight gradients).

    ``fast``: ``prepare_for_training`` on G and D and the fused Adam of ``fast.adam``.
    ``smooth``: ReLU and LeakyReLU replaced by the identity, for comparing kernels: with them, a
    rounding difference of 1e-7 can put an activation that is ~0 on the other side of the kink,
    which changes the gradient of everything upstream by far more than rounding."""

    def __init__(
        self,
        preset_name: str,
        batch: int,
        fast: bool,
        seed: int = 0,
        dtype=None,
        size=None,
        dropout: bool = True,
        smooth: bool = False,
    ) -> None:
        import torch

        from refinedepth.refiner.fast import adam, prepare_for_training

        dtype = dtype or torch.float32
        size = tuple(size or SIZE)
        self.g, self.d = _models(preset_name, seed)
        self.g.to(dtype)
        self.d.to(dtype)
        if not dropout:
            for m in self.g.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
        if smooth:
            for model in (self.g, self.d):
                for m in list(model.modules()):
                    for name, child in m.named_children():
                        if isinstance(child, torch.nn.ReLU | torch.nn.LeakyReLU):
                            setattr(m, name, torch.nn.Identity())
        if fast:
            prepare_for_training(self.g)
            prepare_for_training(self.d)
        self.g.train()
        self.d.train()
        make_adam = adam if fast else torch.optim.Adam
        self.opt_g = make_adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = make_adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        gen = torch.Generator().manual_seed(seed + 10)
        self.x = (torch.rand(batch, 1, *size, generator=gen) * 2 - 1).to(dtype)
        self.gt = (torch.rand(batch, 1, *size, generator=gen) * 2 - 1).to(dtype)
        self.valid = torch.rand(batch, 1, *size, generator=gen) > 0.1

    def __call__(self) -> tuple[float, float]:
        import torch

        from refinedepth.refiner.train import gan_step

        torch.manual_seed(0)  # same dropout masks in every variant
        losses, _ = gan_step(self.g, self.d, self.opt_g, self.opt_d, self.x, self.gt, self.valid)
        return losses["loss_d"], losses["loss_g_gan"] + 100.0 * losses["loss_g_l1"]


def grad_difference(a: TrainStep, b: TrainStep) -> float:
    """Relative difference of the gradients after one step, ``||g_a - g_b|| / ||g_b||`` over all of
    a network's parameters; the larger of G's and D's.

    Norm-wise over the whole network, because single tensors can be pure cancellation (a BatchNorm
    weight's gradient is ``sum(grad * x_hat)``, ~1e-8 in the 1-channel discriminator of
    ``paper-make3d``), where any two summation orders disagree in the first digit. Compare
    ``smooth`` steps (see :class:`TrainStep`). (Parameters after Adam's first step are not a fair
    comparison either: it moves each weight by ``lr * sign(grad)``.)"""
    worst = 0.0
    for net_a, net_b in ((a.g, b.g), (a.d, b.d)):
        diff = ref = 0.0
        for p, q in zip(net_a.parameters(), net_b.parameters()):
            if p.grad is None or q.grad is None:
                continue
            diff += float((p.grad.double() - q.grad.double()).square().sum())
            ref += float(q.grad.double().square().sum())
        if ref > 0:
            worst = max(worst, (diff / ref) ** 0.5)
    return worst


def bench_training(
    presets=DEFAULT_PRESETS, batches=(1,), peak: MatmulPeak | None = None, rounds: int = 3, progress=None
) -> list[dict[str, Any]]:
    peak = peak or MatmulPeak()
    rows = []
    for name in presets:
        for batch in batches:
            # Same function: one step without dropout and activation kinks (see TrainStep).
            check = [TrainStep(name, batch, fast=f, dropout=False, smooth=True) for f in (True, False)]
            for step in check:
                step()
            diff = grad_difference(*check)
            del check
            plain, fast = TrainStep(name, batch, fast=False), TrainStep(name, batch, fast=True)
            flops = count_flops(TrainStep(name, batch, fast=False))
            # A training step reaches its steady time after about three steps (allocator, oneDNN's
            # primitive caches; measured: 458, 377, 342, 334, 336 ... ms for paper-nyu), and a
            # training run takes thousands: time the steady state, for both paths.
            plain_r = interleaved(plain, peak, flops, rounds=rounds, repeats=2, warmup=3)
            fast_r = interleaved(fast, peak, flops, rounds=rounds, repeats=2, warmup=3)
            rows.append(
                {
                    "preset": name,
                    "batch": batch,
                    "size": list(SIZE),
                    "gflop_per_step": flops / 1e9,
                    "plain_step_s": plain_r["seconds"],
                    "fast_step_s": fast_r["seconds"],
                    **_plain_vs_fast(plain_r, fast_r),
                    "max_grad_diff": diff,
                }
            )
            if progress:
                progress(rows[-1])
            del plain, fast
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 1 inference only, 2 rounds")
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    rounds = 2 if args.quick else args.rounds
    peak = MatmulPeak()
    print(f"machine: {machine_info()}", flush=True)
    print(f"matmul peak: {peak.measure():.0f} GFLOP/s", flush=True)
    inf = bench_inference(presets, (1,) if args.quick else (1, 8), peak, rounds=rounds, progress=print)
    print(format_table(inf, INFERENCE_COLUMNS))
    train = []
    if not args.no_training and not args.quick:
        train = bench_training(presets, (1,), peak, rounds=rounds + 2, progress=print)
        print(format_table(train, TRAINING_COLUMNS))
    print(f"matmul peak: {peak.summary()}")
    return {"inference": inf, "training": train, "peak": peak.summary()}


if __name__ == "__main__":
    main()
