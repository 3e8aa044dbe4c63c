"""FCRN inference throughput on CPU: the exact NYU architecture at 228x304 and small-encoder
variants, as images/s and as a share of the matmul peak measured alongside.

FLOPs are counted with ``torch.utils.flop_counter`` (convolutions and matmuls, nominal count).
Also times one training step (forward + berHu + backward + Adam) of the small variants, the unit
of the stage-1 demo's budget.

Run alone: ``.venv/bin/python benchmarks/bench_fcrn.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MatmulPeak, format_table, interleaved, machine_info  # noqa: E402

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("exact (laina-resnet50)", {}),
    ("resnet18", {"encoder": "resnet18", "input_size": [96, 128]}),
    ("resnet18 narrow-32", {"encoder": "resnet18", "encoder_args": {"channels": [32, 64, 128, 256], "stem_width": 32}, "input_size": [96, 128]}),
    ("resnet18 @228x304", {"encoder": "resnet18"}),
]
COLUMNS = [
    ("variant", "variant"),
    ("input", "input"),
    ("output", "output"),
    ("params_m", "params (M)"),
    ("batch", "batch"),
    ("gflop_per_image", "GFLOP/img"),
    ("images_per_s", "img/s"),
    ("gflops", "GFLOP/s"),
    ("share", "%peak"),
    ("train_ms", "train step ms (B=16)"),
]


def _flops(model, x) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def main() -> None:
    import torch

    from refinedepth.backbones.fcrn import create_fcrn
    from refinedepth.losses import berhu_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=1, help="inference batch size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, repeats = (1, 2) if args.quick else (3, 3)
    peak = MatmulPeak()
    rows = []
    for name, options in VARIANTS:
        model = create_fcrn(**options).eval()
        h, w = model.info.input_size
        x = torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0))
        flops = _flops(model, x)

        def infer(model=model, x=x):
            with torch.no_grad():
                model(x)

        timing = interleaved(infer, peak, flops, rounds=rounds, repeats=repeats)
        row = {
            "variant": name,
            "input": f"{h}x{w}",
            "output": "x".join(map(str, model.info.output_size)),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "batch": args.batch,
            "gflop_per_image": flops / args.batch / 1e9,
            "images_per_s": args.batch / timing["seconds"],
            "gflops": timing["gflops"],
            "share": 100 * timing["share"],
            "train_ms": None,
        }
        if options and "input_size" in options:  # training step of the CPU-sized variants
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            xb = torch.rand(16, 3, h, w, generator=torch.Generator().manual_seed(1))
            gt = torch.rand(16, 1, *model.info.output_size, generator=torch.Generator().manual_seed(2)) * 9 + 1

            def step(model=model, opt=opt, xb=xb, gt=gt):
                loss = berhu_loss(model(xb), gt)
                opt.zero_grad()
                loss.backward()
                opt.step()

            from _common import best_time

            row["train_ms"] = 1e3 * best_time(step, repeats=repeats, warmup=1)
        rows.append(row)
        del model
    info = machine_info()
    print(f"FCRN inference on CPU ({torch.get_num_threads()} threads); matmul peak "
          f"{peak.summary()['gflops']} GFLOP/s; {info.get('cpu', '')}")
    print(format_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
