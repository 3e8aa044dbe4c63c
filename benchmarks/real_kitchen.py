"""The whole two-stage pipeline on real Kinect frames: 7-Scenes "redkitchen" (600 frames).

Split by time, as the data's README asks (neighbouring frames are nearly identical); the frame
numbers are those of the 600-frame folder in ``../shared/data``, and any other folder of N frames
(``--data``) is split in the same proportions (1/2, 1/4, 1/20, the last 1/5):

* frames   0-299: train the small FCRN (stage 1);
* frames 300-449: cache the FCRN's rough maps and train the refiner on them (stage 2), so the
  refiner learns the errors the FCRN makes on frames it has not seen; frames 450-479 validate it
  (the checkpoint with the best abs_rel is kept);
* frames 480-599: the held-out test split: evaluate rough vs refined at the native 480x640.

``--test-data PATH`` tests on every frame of another folder instead (another scene, in the same
layout), so that the refiner is judged on views unlike its training views: the fair test of
issue 14's item 2, which one video cannot give (``docs/results.md``). The ``--data`` folder's
last fifth is then left unused.

``--detail-sigma S`` (with ``--detail-scale global|image``) also evaluates the refiner
detail-only, and ``--target F`` prints issue 14's item-2 verdict for each evaluation: PASS when
the refiner is better than rough, ``rough x scale`` and ``rough x (scale, shift)`` at once on at
least a share F of the test frames, on abs_rel, rmse, silog and dbe_acc (``win_rates.py``).
``--stage1-from RUN`` reuses another run's FCRN caches and trains only a new refiner, so two
refiner settings are compared on the same rough maps.

``--out-of-fold`` also trains the refiner on frames 0-299 (stacking, Wolpert 1992): two more FCRNs,
one on frames 0-149 and one on 150-299, give each other's half rough maps of frames they have not
seen, and the refiner (and the baselines fitted on its training pairs) learns from all 450 frames.
``--in-sample`` adds the test FCRN's own maps of its training frames 0-299, as the paper
trains its cGAN on the FCRN's maps of the FCRN's training images (with ``--stage1-from``, made
with that run's FCRN at its caches' sizes); the baselines are then fitted on those 450 pairs too.

Depth is Kinect v1 (0 and 65535 invalid), RGB and depth only roughly registered.

    .venv/bin/python benchmarks/real_kitchen.py                  # ~10 CPU minutes on 2 cores
    .venv/bin/python benchmarks/real_kitchen.py --quick          # a smoke run
    .venv/bin/python benchmarks/real_kitchen.py --data PATH --out runs/kitchen
    .venv/bin/python benchmarks/real_kitchen.py --test-data OTHER --out runs/cross-scene

Prints the table (Markdown) and writes ``report.md`` (table + picture grid) under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_split  # noqa: E402
from win_rates import verdict, win_rates  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "7scenes-redkitchen"
QUICK_SPLIT = (40, 24, 8, 16)  # --quick: frames for the FCRN, the refiner, validation, test
QUICK_FRAMES = sum(QUICK_SPLIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the 7scenes-redkitchen folder")
    parser.add_argument("--test-data", metavar="PATH",
                        help="test on every frame of this other folder of frames (another scene) instead of "
                        "the last fifth of --data")
    parser.add_argument("--out", default="runs/real-kitchen")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    parser.add_argument("--fcrn-epochs", type=int, default=15)
    parser.add_argument("--refiner-epochs", type=int, default=10)
    parser.add_argument("--gan-mode", default="vanilla", choices=["none", "vanilla", "lsgan"])
    parser.add_argument("--inputs", default="rough+rgb", choices=["rough", "rough+rgb"])
    parser.add_argument("--preset", default="small", help="refiner preset (small, guided, ...)")
    parser.add_argument("--cache-size", default="64x64", help="rough maps in the caches: native, gt or HxW")
    parser.add_argument("--rgb-size", default="rough", help="RGB in the caches: gt, rough or HxW")
    parser.add_argument("--refiner-size", default="64x64", help="the refiner's model size (HxW)")
    parser.add_argument("--train-gt-size", default="240x320",
                        help="ground truth in the refiner's train/val caches: HxW or native (480x640; "
                        "what a full-resolution head should train at, the test cache's resolution)")
    parser.add_argument("--refiner-extra", default="{}", help="more TrainConfig fields as JSON")
    parser.add_argument("--out-of-fold", action="store_true",
                        help="also train the refiner on out-of-fold rough maps of frames 0-299 (stacking)")
    parser.add_argument("--in-sample", action="store_true",
                        help="also train the refiner on the FCRN's rough maps of its own training frames 0-299 "
                        "(the paper's protocol: stage 2 learns from stage 1's maps of stage 1's training images)")
    parser.add_argument("--bf16", action="store_true", help="also evaluate in bf16 and print the abs_rel change")
    parser.add_argument("--stage1-from", metavar="RUN",
                        help="reuse the FCRN caches of an earlier run folder (its --out) and train only the refiner")
    parser.add_argument("--detail-sigma", type=float,
                        help="also evaluate the refiner detail-only, keeping its correction finer than S pixels")
    parser.add_argument("--detail-scale", default="global", choices=["global", "image"],
                        help="with --detail-sigma: the large scale from rough x scale (global) or with the "
                        "refiner's per-image scale (image)")
    parser.add_argument("--target", type=float,
                        help="print PASS/FAIL per evaluation: refined better than every baseline row on at "
                        "least this share of the test frames on abs_rel, rmse, silog and dbe_acc (item 2: 0.9)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "rgb").is_dir():
        print(f"no 7-Scenes frames at {data}: pass --data PATH (see the folder's README)", file=sys.stderr)
        return 1
    test_data = Path(args.test_data) if args.test_data else None
    if test_data is not None and not (test_data / "rgb").is_dir():
        print(f"no frames at {test_data}: --test-data takes a folder with rgb/ and depth/, as --data does",
              file=sys.stderr)
        return 1

    from refinedepth.cache import build_cache, open_cache
    from refinedepth.data import open_dataset
    from refinedepth.evaluate import evaluate_cache
    from refinedepth.refiner.train import TrainConfig, train_refiner
    from refinedepth.report import improvement, markdown_table, write_json, write_markdown_report
    from refinedepth.train_backbone import WEIGHTS_NAME, TrainBackboneConfig, train_backbone

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = f"folder:{data}"
    q = args.quick
    frames = len(open_dataset(spec, split="all"))
    try:
        split = time_split(frames)
        if q and frames < QUICK_FRAMES:
            raise ValueError(f"{frames} frames are too few for --quick: need at least {QUICK_FRAMES}")
    except ValueError as e:
        print(f"{data}: {e}", file=sys.stderr)
        return 1
    fcrn_frames, refiner_frames, val_frames, test_frames = (
        QUICK_SPLIT if q else (len(split["fcrn"]), len(split["refiner"]), len(split["val"]), len(split["test"]))
    )
    backbone_args = {
        "encoder": "resnet18",
        "encoder_args": {"channels": [16, 32, 64, 128], "stem_width": 16},
        "input_size": [64, 96],
    }
    cache_size = args.cache_size if args.cache_size in ("native", "gt") else tuple(int(v) for v in args.cache_size.split("x"))
    seconds: dict[str, float] = {}
    cache_args = dict(backbone="fcrn", dataset=spec, size=cache_size, with_rgb=True,
                      rgb_size=args.rgb_size if args.rgb_size in ("gt", "rough") else tuple(int(v) for v in args.rgb_size.split("x")),
                      batch_size=16, device=args.device, overwrite=True, seed=args.seed, progress=_printer())
    train_gt = None if args.train_gt_size == "native" else args.train_gt_size  # build_cache parses "HxW"

    def in_sample_cache(weights: Path, path: Path, like: Path | None = None) -> Path:
        """The FCRN's rough maps of its own training frames (0 .. fcrn_frames - 1), at the sizes of
        the cache ``like`` (another run's, which it joins) or of this command's options."""
        sizes = dict(gt_size=train_gt)
        if like is not None:
            with open_cache(like) as other:
                c = other.config
            sizes = dict(size=tuple(c.rough_size), gt_size=tuple(c.gt_size), with_rgb=c.with_rgb,
                         rgb_size=tuple(c.rgb_size or c.rough_size))
        build_cache(path, split="train", dataset_args={"split_index": fcrn_frames}, limit=fcrn_frames,
                    **{**cache_args, "weights": str(weights), **sizes})
        return path

    if args.stage1_from:  # another run's FCRN caches: only the refiner is trained here
        caches = Path(args.stage1_from)
        names = ["cache-train.h5", "cache-val.h5"] + ([] if test_data else ["cache-test.h5"])
        folds = sorted(caches.glob("cache-train-fold*.h5")) if args.out_of_fold else []
        missing = [n for n in names if not (caches / n).is_file()] + (["cache-train-fold*.h5"] if args.out_of_fold and not folds else [])
        if missing:
            print(f"{caches}: no {', '.join(missing)}; pass the --out folder of a finished run", file=sys.stderr)
            return 1
        train_caches = [caches / "cache-train.h5", *folds]
        if args.in_sample:  # that run's in-sample cache, or one made here with its FCRN
            made = caches / "cache-train-insample.h5"
            if not made.is_file():
                weights = caches / "fcrn" / WEIGHTS_NAME  # where train_backbone wrote that run's FCRN
                if not weights.is_file():
                    print(f"{caches}: no cache-train-insample.h5 and no fcrn/{WEIGHTS_NAME} to make it; "
                          "pass the --out folder of a finished run", file=sys.stderr)
                    return 1
                t = time.perf_counter()
                made = in_sample_cache(weights, out / "cache-train-insample.h5", like=caches / "cache-train.h5")
                seconds["cache"] = time.perf_counter() - t
            train_caches.append(made)
    else:
        caches = out
        t = time.perf_counter()
        stage1_config = TrainBackboneConfig(
            dataset=spec,
            out=str(out / "fcrn"),
            backbone="fcrn",
            backbone_args=backbone_args,
            dataset_args={"split_index": fcrn_frames},
            split="train",
            val_split=None,
            epochs=1 if q else args.fcrn_epochs,
            batch_size=16,
            optimizer="adam",
            lr=3e-3,
            lr_step=max(1, (2 * args.fcrn_epochs) // 3),
            lr_gamma=0.3,
            seed=args.seed,
            device=args.device,
        )
        stage1 = train_backbone(stage1_config, progress=_printer(), overwrite=True)  # as the caches and refiner below
        seconds["train FCRN"] = time.perf_counter() - t

        t = time.perf_counter()
        common = dict(weights=str(stage1.weights), **cache_args)
        # frames fcrn_frames .. fcrn_frames + refiner_frames - 1: the "test" side of split_index=fcrn_frames
        build_cache(out / "cache-train.h5", split="test", dataset_args={"split_index": fcrn_frames},
                    limit=refiner_frames, gt_size=train_gt, **common)
        build_cache(out / "cache-val.h5", split="test", dataset_args={"split_index": fcrn_frames + refiner_frames},
                    limit=val_frames, gt_size=train_gt, **common)
        if test_data is None:  # the last test_frames frames at the native 480x640
            build_cache(out / "cache-test.h5", split="test", dataset_args={"split_index": frames - test_frames}, **common)
        train_caches = [out / "cache-train.h5"]
        if args.out_of_fold:  # fold k's FCRN caches the other fold's frames (fcrn_frames split in two halves)
            half = fcrn_frames // 2
            folds = [({"split_index": half}, "test", {"split_index": half, "stop": fcrn_frames - half}),
                     ({"split_index": fcrn_frames, "offset": half}, "train", {"split_index": half})]
            for k, (fit_args, split, fold_args) in enumerate(folds):
                weights = train_backbone(replace(stage1_config, out=str(out / f"fcrn-fold{k}"), dataset_args=fit_args),
                                         progress=_printer(), overwrite=True).weights
                train_caches.append(out / f"cache-train-fold{k}.h5")
                build_cache(train_caches[-1], split=split, dataset_args=fold_args, gt_size=train_gt,
                            **{**common, "weights": str(weights)})
        if args.in_sample:
            train_caches.append(in_sample_cache(stage1.weights, out / "cache-train-insample.h5"))
        seconds["cache"] = time.perf_counter() - t

    t = time.perf_counter()
    train_refiner(
        TrainConfig(
            train=tuple(str(p) for p in train_caches),
            val=str(caches / "cache-val.h5"),
            out=str(out / "refiner"),
            preset=args.preset,
            inputs=args.inputs,
            size=tuple(int(v) for v in args.refiner_size.split("x")),
            epochs=1 if q else args.refiner_epochs,
            batch_size=4,
            lr=1e-3,
            lr_schedule="linear",
            gan_mode=args.gan_mode,
            seed=args.seed,
            device=args.device,
            overwrite=True,
            **json.loads(args.refiner_extra),
        ),
        progress=_printer(),
    )
    seconds["train refiner"] = time.perf_counter() - t

    test_cache = caches / "cache-test.h5"
    if test_data is not None:  # every frame of the other folder (--quick: its first few), through this FCRN
        t = time.perf_counter()
        weights = stage1.weights if not args.stage1_from else caches / "fcrn" / WEIGHTS_NAME
        if not Path(weights).is_file():
            print(f"{caches}: no fcrn/{WEIGHTS_NAME} to cache --test-data with; pass the --out folder of a "
                  "finished run", file=sys.stderr)
            return 1
        sizes = {}  # this command's --cache-size and --rgb-size, or those of --stage1-from's test cache
        if args.stage1_from and (caches / "cache-test.h5").is_file():
            with open_cache(caches / "cache-test.h5") as tested:
                c = tested.config
            as_gt = lambda hw: "gt" if tuple(hw) == tuple(c.gt_size) else tuple(hw)  # noqa: E731
            sizes = dict(size=as_gt(c.rough_size), with_rgb=c.with_rgb, rgb_size=as_gt(c.rgb_size or c.rough_size))
        test_cache = out / "cache-test-scene.h5"
        build_cache(test_cache, **{**cache_args, "dataset": f"folder:{test_data}", "weights": str(weights), **sizes},
                    split="all", limit=test_frames if q else None)
        seconds["cache test scene"] = time.perf_counter() - t
    t = time.perf_counter()
    result = evaluate_cache(test_cache, [out / "refiner"], device=args.device,
                            csv_path=out / "per_sample.csv", visuals_dir=out / "visuals", num_visuals=4)
    seconds["evaluate"] = time.perf_counter() - t
    csvs = [out / "per_sample.csv"]
    rows = list(result.rows)
    if args.detail_sigma is not None:
        t = time.perf_counter()
        detail = evaluate_cache(test_cache, [out / "refiner"], device=args.device, csv_path=out / "per_sample_detail.csv",
                                detail_sigma=args.detail_sigma, detail_scale=args.detail_scale)
        seconds["evaluate detail-only"] = time.perf_counter() - t
        csvs.append(out / "per_sample_detail.csv")
        rows.append(detail.rows[-1])
    improved = improvement(result.metrics(0), result.metrics(-1))
    extra = {}
    if args.bf16:
        t = time.perf_counter()
        half = evaluate_cache(test_cache, [out / "refiner"], device=args.device, precision="bf16")
        seconds["evaluate bf16"] = time.perf_counter() - t
        fp32, bf16 = result.metrics(-1)["abs_rel"], half.metrics(-1)["abs_rel"]
        extra["bf16"] = {"abs_rel_fp32": fp32, "abs_rel_bf16": bf16, "change": bf16 - fp32}
    shares = {}  # per evaluated refiner row: the share of frames better than every other row at once
    for path in csvs:
        with open(path, newline="") as f:
            stage, rates = win_rates(list(csv.DictReader(f)))
        shares[stage] = {m: r["all"] for m, r in rates.items()}
        if args.target is not None:
            extra.setdefault("verdicts", {})[stage] = verdict(rates, args.target)
    write_json(out / "evaluation.json", {**result.to_dict(), "better_than_all": shares, "seconds": seconds,
                                         "improved": improved, **extra})
    write_markdown_report(
        out / "report.md",
        title="refinedepth on real Kinect frames (7-Scenes redkitchen)",
        rows=rows,
        intro=(
            f"FCRN trained on frames 0-{fcrn_frames - 1}, refiner on frames {fcrn_frames}-"
            f"{fcrn_frames + refiner_frames - 1} (validated on the next {val_frames}), evaluated on "
            + (f"frames {frames - test_frames}-{frames - 1} at 480x640." if test_data is None else
               f"{result.count} frames of another folder, {test_data}, at its native resolution.")
            + (f" The refiner also trained on out-of-fold rough maps of frames 0-{fcrn_frames - 1}." if args.out_of_fold else "")
            + (f" The refiner also trained on the FCRN's own (in-sample) rough maps of frames 0-{fcrn_frames - 1}."
               if args.in_sample else "")
        ),
        settings={"backbone": backbone_args, "inputs": args.inputs, "gan_mode": args.gan_mode,
                  "data": str(data), "test_data": str(test_data) if test_data else None,
                  "out_of_fold": args.out_of_fold, "in_sample": args.in_sample, "stage1_from": args.stage1_from,
                  "seconds": {k: round(v) for k, v in seconds.items()}},
        images=[("RGB | rough | refined | GT | |rough - gt| | |refined - gt|", result.visuals[0])] if result.visuals else [],
    )
    print(markdown_table(rows))
    wins = result.to_dict().get("win_rates") or {}
    for stage, rates in wins.items():
        shown = ", ".join(f"{k} {100 * v:.0f}%" for k, v in rates.items() if v is not None)
        print(f"refined better than {stage} on: {shown} of the {result.count} test frames")
    for stage, share in shares.items():
        shown = " / ".join(f"{100 * v:.0f}%" for v in share.values())
        print(f"{stage} better than every other row on ({', '.join(share)}): {shown}"
              + (f"; {extra['verdicts'][stage]}" if args.target is not None else ""))
    if "bf16" in extra:
        b = extra["bf16"]
        print(f"bf16 inference: abs_rel {b['abs_rel_bf16']:.5f} vs fp32 {b['abs_rel_fp32']:.5f} ({b['change']:+.2e})")
    print(json.dumps({"improved": improved, "seconds": {k: round(v, 1) for k, v in seconds.items()}}))
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
