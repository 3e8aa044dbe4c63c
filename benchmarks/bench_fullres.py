"""Full-resolution refinement: training memory does not grow with the image, and a 1080x1920
map refines on a CPU (issue 14, item 5).

For each image size (480x640 and 1080x1920 by default) the script writes a small synthetic
cache at that size (rough = the ground truth blurred and scaled, RGB, gt, all at full size),
then, in a fresh child process each, trains the ``guided`` preset for a few steps on random
full-resolution crops (``--crop``, default 256x256) with the sample loading in a DataLoader
worker, and reports the training process's peak resident memory (``VmHWM``) and its growth
over the run's first step. Because the head only ever sees crops and the U-Net its fixed model
size, both figures should be the same for both sizes. Then it times ``Refiner.refine`` of one
1080x1920 map (and one 480x640 map) with the trained refiner, and the peak memory of that,
whole and detail-only (``--detail-sigma``, default 32 px; 0 leaves those rows out).

    .venv/bin/python benchmarks/bench_fullres.py            # ~2-4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_fullres.py --quick    # smaller, to check it runs

Prints a Markdown table; ``--json F`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb  # noqa: E402


def make_cache(path: Path, size: tuple[int, int], n: int, seed: int = 0) -> Path:
    """A synthetic cache at ``size``: gt from the synthetic renderer, rough = gt blurred over 8x8
    blocks and x1.15, RGB at the same size."""
    import torch
    import torch.nn.functional as F

    from refinedepth.cache import write_cache
    from refinedepth.data import open_dataset

    ds = open_dataset("synthetic:indoor", split="train", limit=n, size=list(size), seed=seed)
    rgb = np.stack([ds[i].rgb for i in range(n)])
    gt = np.stack([ds[i].depth for i in range(n)]).astype(np.float32)
    g = torch.from_numpy(gt)[:, None]
    rough = F.interpolate(F.avg_pool2d(g, 8), size=size, mode="bilinear", align_corners=False) * 1.15
    return write_cache(
        path, rough=rough.numpy().astype(np.float32), gt=gt, rgb=rgb, max_depth=10.0, output_kind="metric",
        protocol="none", backbone="blurred-gt", dataset="synthetic:indoor", split="train", compression="lzf",
    )


def child_train(cache: str, out: str, steps: int, crop: str, workers: int) -> dict:
    """Runs in a fresh process: train for ``steps`` steps, report peak RSS before/after."""
    import torch

    from refinedepth.config import TrainConfig
    from refinedepth.refiner.train import train_refiner

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    before = peak_rss_mb()
    marks = {}

    def progress(done, total, desc="", **fields):
        if desc == "train" and done == 1 and "first" not in marks:
            marks["first"] = peak_rss_mb()

    crop_hw = tuple(int(v) for v in crop.split("x"))
    t = time.perf_counter()
    train_refiner(
        TrainConfig(train=cache, out=out, preset="guided", crop=crop_hw, max_steps=steps, batch_size=1,
                    device="cpu", workers=workers, overwrite=True, augment=()),
        progress=progress,
    )
    seconds = time.perf_counter() - t
    peak = peak_rss_mb()
    return {"rss_before_mb": before, "rss_after_first_step_mb": marks.get("first"), "peak_rss_mb": peak,
            "s_per_step": seconds / steps}


def child_refine(run: str, size: str, repeats: int, detail_sigma: float = 0.0) -> dict:
    import torch

    from refinedepth.refiner import Refiner

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    h, w = (int(v) for v in size.split("x"))
    refiner = Refiner.from_pretrained(run, detail_sigma=detail_sigma or None)
    gen = np.random.default_rng(0)
    rough = (2.0 + gen.random((h, w))).astype(np.float32)
    rgb = gen.integers(0, 255, (h, w, 3), dtype=np.uint8)
    kwargs = {"rgb": rgb} if refiner.needs_rgb else {}
    refiner.refine(rough, **kwargs)  # warm-up
    before = peak_rss_mb()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = refiner.refine(rough, **kwargs)
        times.append(time.perf_counter() - t)
    assert out.shape == (h, w) and np.isfinite(out).all()
    return {"s_per_map": min(times), "peak_rss_mb": peak_rss_mb(),
            "rss_after_warmup_mb": before}


def _run_child(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="480x640,1080x1920")
    ap.add_argument("--crop", default="256x256")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--detail-sigma", type=float, default=32.0, help="also time detail-only refinement (0: not)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        kind, *rest = args.child
        if kind == "train":
            print(json.dumps(child_train(rest[0], rest[1], int(rest[2]), rest[3], int(rest[4]))))
        else:
            print(json.dumps(child_refine(rest[0], rest[1], int(rest[2]), float(rest[3]))))
        return 0

    if args.quick:
        args.sizes, args.steps, args.samples, args.crop, args.repeats = "120x160,240x320", 3, 2, "64x64", 1
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = None
        for size in sizes:
            cache = make_cache(tmp / f"c{size[0]}.h5", size, args.samples)
            run = tmp / f"run{size[0]}"
            r = _run_child("train", str(cache), str(run), str(args.steps), args.crop, str(args.workers))
            rows.append({"what": "train step", "image": f"{size[0]}x{size[1]}", "crop": args.crop, **r})
        for size in sizes:
            for sigma in (0.0, args.detail_sigma) if args.detail_sigma else (0.0,):
                r = _run_child("refine", str(run), f"{size[0]}x{size[1]}", str(args.repeats), str(sigma))
                what = f"refine, detail < {sigma:g} px" if sigma else "refine"
                rows.append({"what": what, "image": f"{size[0]}x{size[1]}", "crop": "-", **r})

    load = os.getloadavg()[0]
    print(f"guided preset on CPU ({os.cpu_count()} cores, load average {load:.2f} at the end); peak RSS = the "
          "process's VmHWM (sample loading in a DataLoader worker for training)")
    print()
    print("| what | image | crop | s/step or s/map | peak RSS MB | RSS after first step / warm-up MB |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        t = r.get("s_per_step", r.get("s_per_map"))
        mid = r.get("rss_after_first_step_mb", r.get("rss_after_warmup_mb"))
        print(f"| {r['what']} | {r['image']} | {r['crop']} | {t:.3f} | {r['peak_rss_mb']:.0f} | "
              f"{mid:.0f} |" if mid is not None else f"| {r['what']} | {r['image']} | {r['crop']} | {t:.3f} | "
              f"{r['peak_rss_mb']:.0f} | - |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
