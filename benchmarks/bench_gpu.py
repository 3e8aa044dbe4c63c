"""GPU figures in one run (``benchmarks/gpu.sh``): refiner inference and training throughput in
bf16 with channels-last and ``torch.compile``, each as a share of the bf16 matmul rate measured in
the same run; the time of the paper's NYU schedule; DDP (NCCL) over every visible GPU.

Sized to finish in under five minutes on one H100/H200-class GPU. ``--device cpu --quick`` runs
the same code on tiny sizes (fp32 autocast off, no compile, gloo DDP over two processes) so the
suite can check the script works on machines without a GPU; its figures mean nothing.

Usage: ``bash benchmarks/gpu.sh [--device cuda] [--quick] [--presets pix2pix,paper-nyu]
[--no-compile] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import format_table  # noqa: E402

NYU_PAIRS, NYU_EPOCHS = 795, 20  # paper §4: 795 training pairs, ~20 epochs, batch 1


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs (device synced)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_rate(device, dtype, n: int) -> float:
    """GFLOP/s of an ``n x n`` matrix product in ``dtype`` on ``device``."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = timed(lambda: torch.mm(a, b), device, repeats=5, warmup=2)
    return 2.0 * n**3 / t / 1e9


def flops_of(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def build(preset: str, device, channels_last: bool):
    import torch

    from refinedepth.refiner.models import build_discriminator, build_generator
    from refinedepth.refiner.presets import get_preset

    p = get_preset(preset)
    g = build_generator(p.generator_config("rough"), seed=0).to(device)
    d = build_discriminator(p.discriminator_config("rough"), seed=1).to(device)
    if channels_last:
        g = g.to(memory_format=torch.channels_last)
        d = d.to(memory_format=torch.channels_last)
    return p, g, d


class Step:
    """One D+G training step, ``train_refiner``'s own (``refinedepth.refiner.train.gan_step``: BCE
    cGAN + 100 masked L1, D loss halved), on random inputs with 10% invalid pixels."""

    def __init__(self, g, d, batch: int, size, device, amp: bool, compile: bool) -> None:
        import torch

        self.g, self.d, self.device, self.amp = g, d, device, amp
        fused = {"fused": True} if device.type == "cuda" else {}
        self.opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), **fused)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), **fused)
        gen = torch.Generator(device=device).manual_seed(0)
        self.x = torch.rand(batch, 1, *size, device=device, generator=gen) * 2 - 1
        self.gt = torch.rand(batch, 1, *size, device=device, generator=gen) * 2 - 1
        self.valid = torch.rand(batch, 1, *size, device=device, generator=gen) > 0.1
        self.g_fwd = torch.compile(g) if compile else g
        self.d_fwd = torch.compile(d) if compile else d

    def __call__(self) -> None:
        from refinedepth.refiner.train import gan_step

        gan_step(self.g_fwd, self.d_fwd, self.opt_g, self.opt_d, self.x, self.gt, self.valid, amp=self.amp)


def bench_preset(preset: str, args, device, peak: float) -> list[dict[str, Any]]:
    import torch

    amp = device.type == "cuda"
    compile = args.compile and device.type == "cuda"
    p, g, d = build(preset, device, channels_last=True)
    size = (64, 64) if args.quick else p.size
    rows: list[dict[str, Any]] = []
    g.eval()
    fwd = torch.compile(g) if compile else g
    for batch in args.infer_batches:
        x = (torch.rand(batch, 1, *size, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last)

        def infer(x=x):
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return fwd(x)

        with torch.no_grad():
            flops = flops_of(lambda x=x: g(x))
        t = timed(infer, device, repeats=args.repeats, warmup=args.warmup)
        rows.append(_row(preset, "inference", batch, size, t, flops, peak, images=batch))
    g.train()
    for batch in args.train_batches:
        step = Step(g, d, batch, size, device, amp=amp, compile=compile)
        flops = flops_of(Step(g, d, batch, size, device, amp=False, compile=False))
        t = timed(step, device, repeats=args.repeats, warmup=args.warmup)
        row = _row(preset, "train D+G", batch, size, t, flops, peak, images=batch)
        steps = NYU_EPOCHS * -(-NYU_PAIRS // batch)
        row["NYU schedule min"] = round(steps * t / 60.0, 2)
        rows.append(row)
    return rows


def _row(preset, what, batch, size, seconds, flops, peak, images) -> dict[str, Any]:
    rate = flops / seconds / 1e9
    return {
        "preset": preset,
        "what": what,
        "batch": batch,
        "size": f"{size[0]}x{size[1]}",
        "ms": round(seconds * 1e3, 2),
        "img/s": round(images / seconds, 1),
        "GFLOP": round(flops / 1e9, 2),
        "TFLOP/s": round(rate / 1e3, 2),
        "% matmul peak": round(100 * rate / peak, 1),
    }


def ddp_worker(args) -> None:
    """Run under torchrun: a DDP training step of ``small`` (NCCL on CUDA, gloo on CPU)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    preset = args.presets[0]
    _, g, d = build(preset, device, channels_last=cuda)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [local] if cuda else None
    g, d = DDP(g, device_ids=ids), DDP(d, device_ids=ids)
    size = (64, 64) if args.quick else (256, 256)
    step = Step(g, d, args.train_batches[-1], size, device, amp=cuda, compile=False)
    t = timed(step, device, repeats=args.repeats, warmup=args.warmup)
    times = torch.tensor([t], device=device)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    if rank == 0:
        print("DDP_RESULT " + json.dumps({"world": world, "seconds": float(times[0]), "preset": preset,
                                          "batch_per_rank": args.train_batches[-1]}), flush=True)
    dist.destroy_process_group()


def bench_ddp(args) -> dict[str, Any]:
    import torch

    n = torch.cuda.device_count() if args.device.startswith("cuda") else 2
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           __file__, "--ddp-worker", "--device", args.device, "--presets", ",".join(args.presets),
           "--train-batches", str(args.train_batches[-1]), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup)] + (["--quick"] if args.quick else [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("DDP_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    return {"world": n, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for CPU smoke runs")
    ap.add_argument("--presets", default="pix2pix,paper-nyu")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--infer-batches", default=None)
    ap.add_argument("--train-batches", default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    args.infer_batches = [int(b) for b in (args.infer_batches or ("1,2" if args.quick else "1,8,32")).split(",")]
    args.train_batches = [int(b) for b in (args.train_batches or ("1" if args.quick else "1,8")).split(",")]
    args.repeats = args.repeats or (1 if args.quick else 10)
    args.warmup = args.warmup or (1 if args.quick else 3)
    if args.ddp_worker:
        ddp_worker(args)
        return {}

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here; run with --device cpu --quick for a smoke test")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = "CPU"
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_rate(device, peak_dtype, 256 if args.quick else 8192)
    print(f"device: {name}; {'bf16' if device.type == 'cuda' else 'fp32'} matmul peak {peak:.0f} GFLOP/s "
          f"(the '% matmul peak' column's reference); torch {torch.__version__}", flush=True)
    rows: list[dict[str, Any]] = []
    for preset in args.presets:
        rows += bench_preset(preset, args, device, peak)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    columns = [(k, k) for k in keys]
    print(format_table(rows, columns, markdown=True))
    print(f"NYU schedule = {NYU_PAIRS} pairs x {NYU_EPOCHS} epochs at the step time above (batch 1 is the "
          "paper's; whether a larger batch trains as well is not measured here)")
    ddp = bench_ddp(args)
    print(f"DDP over {ddp.get('world')} {'GPU' if device.type == 'cuda' else 'process'}(es): "
          + (f"{ddp['seconds'] * 1e3:.1f} ms per step of {ddp['preset']}, batch {ddp['batch_per_rank']} per rank"
             if "seconds" in ddp else f"failed: {ddp.get('error')}"), flush=True)
    result = {"device": name, "peak_gflops": peak, "rows": rows, "ddp": ddp, "quick": args.quick}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
