"""Can the refiner fix detail? A first stage whose only errors are blur and a constant scale.

The "degraded sensor" is the ground truth of real Kinect frames (7-Scenes "redkitchen") averaged
over 8x8 blocks (valid pixels only; a block without any takes its nearest valid block's value),
upsampled bilinearly back to 480x640 and multiplied by 1.15. Its predictions are written as
``.npy`` files and fed through ``--backbone files``, as any other program's output would be, so
the rough maps are cached at their native 480x640 and the ``rough`` row is the sensor's own
quality. A global scale (one number) removes the x1.15 but none of the blur; only a refiner that
works at full resolution can restore the edges.

Split by time, as the data's README asks (neighbouring frames are nearly identical), as
``benchmarks/real_kitchen.py`` does: frames 300-449 train the refiner, 450-479 validate it, the
held-out frames 480-599 are the test split (for another folder of N frames, ``--data``: the same
proportions, ``_common.time_split``).

    .venv/bin/python benchmarks/degraded_sensor.py                # ~15 minutes on 2 idle cores
    .venv/bin/python benchmarks/degraded_sensor.py --quick        # a smoke run (~1 minute)

Prints a Markdown table: rough, ``rough x scale``, ``rough x (scale, shift)`` (both fitted on the
refiner's training pairs, stored in its checkpoint) and refined, with the boundary metrics, and
the acceptance check of issue 14: refined at least 30% better than ``rough x scale`` on abs_rel,
silog and the boundary accuracy error (``dbe_acc``). Writes ``report.md``, ``evaluation.json``,
``per_sample.csv`` and picture grids under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_split  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "7scenes-redkitchen"
BLOCK = 8
SCALE = 1.15
CHECKED = ("abs_rel", "silog", "dbe_acc")  # refined must beat `rough x scale` by >= 30% on each


def degrade(depth: np.ndarray, block: int = BLOCK, scale: float = SCALE) -> np.ndarray:
    """The degraded sensor's map for one ground-truth map (0 / non-finite = invalid): masked
    block mean, empty blocks filled from the nearest valid block, bilinear upsampling to the
    original size (PyTorch's ``align_corners=False`` convention), times ``scale``."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, depth, 0.0).astype(np.float64)
    hb, wb = h // block, w // block
    sums = d[: hb * block, : wb * block].reshape(hb, block, wb, block).sum(axis=(1, 3))
    counts = valid[: hb * block, : wb * block].reshape(hb, block, wb, block).sum(axis=(1, 3))
    means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    if not (counts > 0).any():
        raise ValueError("a frame without any valid depth pixel")
    if (counts == 0).any():
        _, (iy, ix) = ndimage.distance_transform_edt(counts == 0, return_indices=True)
        means = means[iy, ix]
    up = F.interpolate(torch.from_numpy(means)[None, None], size=(h, w), mode="bilinear", align_corners=False)
    return (up[0, 0].numpy() * scale).astype(np.float32)


def stride_energy_share(run: Path, cache: Path, device: str = "cpu", limit: int | None = None) -> dict[str, float]:
    """Share of the spectral energy of ``refined - rough`` (at the cache's gt resolution, DC
    excluded) that lies on the lattice of the U-Net decoder's stride frequencies: for a model
    size h x w and upsampling period P = 8 model pixels (which includes P = 2 and 4), the
    frequencies (j h / P, i w / P) cycles per image, j, i = 0..P-1, both signs, as
    ``bench_checkerboard.py`` counts them (coarser periods fall on the scene's own low
    frequencies). A periodic pattern of the decoder shows there at any output resolution.
    Mean over images."""
    import torch

    from refinedepth.cache import CacheDataset
    from refinedepth.refiner import Refiner

    refiner = Refiner.from_pretrained(run, device=device)
    hm, wm = refiner.size
    stride = int(refiner.meta["refiner"]["generator"].get("downsampling", 0)) or 2 ** len(
        refiner.meta["refiner"]["generator"]["encoder"]
    )
    ds = CacheDataset(cache, with_rgb=refiner.needs_rgb)
    n = len(ds) if limit is None else min(limit, len(ds))
    shares = []
    mask = None
    for i in range(n):
        item = ds[i]
        rough = item["rough"][None].float()
        gt_size = tuple(item["gt"].shape[-2:])
        if tuple(rough.shape[-2:]) != gt_size:
            from refinedepth.geometry import resize_smooth

            rough = resize_smooth(rough, gt_size)
        rgb = item["rgb"][None] if "rgb" in item else None
        with torch.no_grad():
            refined = refiner.refine_tensor(rough, rgb=rgb)
        r = (refined - rough)[0, 0].double()
        if mask is None:
            mask = _lattice_mask(gt_size, (hm, wm), stride)
        e = torch.fft.fft2(r).abs() ** 2
        total = float(e.sum() - e[0, 0])
        shares.append(float(e[mask].sum()) / max(total, 1e-300))
    return {"stride_energy_%": 100.0 * float(np.mean(shares)), "images": n, "model_size": [hm, wm], "stride": stride}


def _lattice_mask(size: tuple[int, int], model: tuple[int, int], stride: int):
    import torch

    h, w = size
    rows, cols = set(), set()
    p = min(stride, 8)  # periods 2, 4, 8 model pixels; coarser ones fall on the scene's own content
    for j in range(p):
        for sign in (1, -1):
            rows.add(round(sign * j * model[0] / p) % h)
            cols.add(round(sign * j * model[1] / p) % w)
    mask = torch.zeros(h, w, dtype=torch.bool)
    ry = torch.tensor(sorted(rows))
    cx = torch.tensor(sorted(cols))
    mask[ry.view(-1, 1), cx.view(1, -1)] = True
    mask[0, 0] = False
    return mask


def write_predictions(data: Path, out: Path, frames: range) -> int:
    from refinedepth.data import open_dataset

    ds = open_dataset(f"folder:{data}", split="all", offset=frames.start, stop=frames.stop)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        s = ds[i]
        target = out / f"{s.id}.npy"
        if not target.exists():
            np.save(target, degrade(s.depth))
    return len(ds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the 7scenes-redkitchen folder")
    parser.add_argument("--out", default="runs/degraded-sensor")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    parser.add_argument("--preset", default="guided")
    parser.add_argument("--inputs", default=None, help="rough or rough+rgb (default: the preset's)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--gan-mode", default="none", choices=["none", "vanilla", "lsgan"])
    parser.add_argument("--extra", default="{}", help="more TrainConfig fields as JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "rgb").is_dir():
        print(f"no 7-Scenes frames at {data}: pass --data PATH (see the folder's README)", file=sys.stderr)
        return 1

    from refinedepth.cache import build_cache
    from refinedepth.evaluate import evaluate_cache
    from refinedepth.refiner.train import TrainConfig, train_refiner
    from refinedepth.report import markdown_table, write_json, write_markdown_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = args.quick
    from refinedepth.data import open_dataset

    try:
        split = time_split(len(open_dataset(f"folder:{data}", split="all")))
    except ValueError as e:
        print(f"{data}: {e}", file=sys.stderr)
        return 1
    splits = {"train": split["refiner"], "val": split["val"], "test": split["test"]}
    if q:  # the first frames of each part
        splits = {k: v[: {"train": 16, "val": 4, "test": 12}[k]] for k, v in splits.items()}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    preds = out / "predictions"
    for frames in splits.values():
        write_predictions(data, preds, frames)
    seconds["write predictions"] = time.perf_counter() - t

    t = time.perf_counter()
    caches = {}
    for name, frames in splits.items():
        caches[name] = out / f"cache-{name}.h5"
        build_cache(
            caches[name], backbone="files", backbone_args={"root": str(preds)}, dataset=f"folder:{data}",
            split="all", dataset_args={"offset": frames.start, "stop": frames.stop}, with_rgb=True,
            batch_size=8, device=args.device, overwrite=True, seed=args.seed, progress=_printer(),
        )
    seconds["cache"] = time.perf_counter() - t

    t = time.perf_counter()
    options = dict(
        train=str(caches["train"]), val=str(caches["val"]), out=str(out / "refiner"), preset=args.preset,
        epochs=1 if q else args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule="linear",
        gan_mode=args.gan_mode, seed=args.seed, device=args.device, overwrite=True,
    )
    if args.inputs:
        options["inputs"] = args.inputs
    options.update(json.loads(args.extra))
    train_refiner(TrainConfig(**options), progress=_printer())
    seconds["train refiner"] = time.perf_counter() - t

    t = time.perf_counter()
    result = evaluate_cache(
        caches["test"], [out / "refiner"], device=args.device, csv_path=out / "per_sample.csv",
        visuals_dir=out / "visuals", num_visuals=4,
    )
    seconds["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    stride = stride_energy_share(out / "refiner", caches["test"], device=args.device, limit=40)
    seconds["stride energy"] = time.perf_counter() - t

    rows = dict(result.rows)
    refined = result.rows[-1][1]
    scale_row = rows.get("rough x scale")
    check = {}
    if scale_row is not None:
        for metric in CHECKED:
            base, got = scale_row.get(metric), refined.get(metric)
            if base is not None and got is not None and base > 0:
                check[metric] = {"rough x scale": base, "refined": got, "better_%": 100.0 * (1 - got / base)}
    passed = bool(check) and len(check) == len(CHECKED) and all(c["better_%"] >= 30.0 for c in check.values())
    summary = {
        **result.to_dict(),
        "seconds": seconds,
        "acceptance": {"metrics": check, "passed": passed, "required_better_%": 30.0},
        "stride_energy": stride,
        "settings": {**vars(args), "splits": {k: [v.start, v.stop] for k, v in splits.items()}},
    }
    write_json(out / "evaluation.json", summary)
    intro = (
        f"Degraded sensor: ground truth averaged over {BLOCK}x{BLOCK} blocks, upsampled, x{SCALE}, fed "
        f"through `--backbone files`. Refiner `{args.preset}` trained on frames {splits['train'].start}-"
        f"{splits['train'].stop - 1} (validated on {splits['val'].start}-{splits['val'].stop - 1}), evaluated "
        f"on frames {splits['test'].start}-{splits['test'].stop - 1} at 480x640."
    )
    write_markdown_report(
        out / "report.md", title="Degraded-sensor benchmark", rows=result.rows, intro=intro,
        settings={"preset": args.preset, "epochs": options["epochs"], "seconds": {k: round(v) for k, v in seconds.items()}},
        images=[("RGB | rough | refined | GT | |rough - gt| | |refined - gt|", result.visuals[0])] if result.visuals else [],
    )
    print(intro)
    print()
    print(markdown_table(result.rows))
    print()
    for metric, c in check.items():
        print(f"{metric}: refined {c['refined']:.4g} vs rough x scale {c['rough x scale']:.4g} "
              f"({c['better_%']:+.1f}% better; target >= 30%)")
    if scale_row is None:
        print("no `rough x scale` row: the refiner's checkpoint stores no baselines")
    print(f"acceptance (issue 14, item 1): {'PASS' if passed else 'FAIL'}")
    print(f"stride-frequency energy of refined - rough: {stride['stride_energy_%']:.3f}% of the total "
          f"(decoder stride {stride['stride']}, model size {stride['model_size'][0]}x{stride['model_size'][1]}, "
          f"{stride['images']} test frames; issue 14 item 4: < 1%)")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"wrote {out / 'report.md'}")
    return 0


def _printer():
    last = {"desc": None, "t": 0.0}

    def progress(done, total, desc="", **fields):
        now = time.perf_counter()
        if desc != last["desc"] or now - last["t"] > 30 or done == total:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            print(f"  {desc} {done}/{total} {info}", file=sys.stderr, flush=True)
            last.update(desc=desc, t=now)

    return progress


if __name__ == "__main__":
    sys.exit(main())
