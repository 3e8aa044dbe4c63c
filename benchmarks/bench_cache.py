"""Cache throughput: building (backbone + HDF5 writing) and reading (CacheDataset + DataLoader).

Measures, on this machine:

1. ``build_cache`` with FCRN (exact NYU architecture by default, 228x304 input) over synthetic
   scenes: samples/s, the backbone's time per sample, the HDF5 writing time per sample and its
   share of the backbone's time (target: under 10% at 256x256);
2. the writing cost alone for each compression / rough dtype, on the arrays of that run;
3. reading pairs of 256x256 (float16 rough + float32 gt) through ``CacheDataset`` and a
   ``DataLoader`` with 0 and 2 workers (target: at least 500 pairs/s with 2 workers);
4. the cost of HDF5's Fletcher-32 checksums (on every dataset by default): writing and reading
   the arrays of run 1 with and without them, per compression, against the backbone's time.

Prints markdown tables; ``--update-docs`` also puts them into ``docs/performance.md`` (between
``<!-- cache:start -->`` and ``<!-- cache:end -->``). ``--quick`` runs a smaller version.

    python benchmarks/bench_cache.py --quick
    python benchmarks/bench_cache.py --update-docs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PERFORMANCE_MD = REPO / "docs" / "performance.md"


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r[k]) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


def _machine() -> str:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import cpu_model

    cpu = cpu_model()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {load} at the start"
    )


def bench_build(tmp: Path, n: int, batch: int, workers: int, backbone_args: dict) -> tuple[dict, Path]:
    from refinedepth.cache import build_cache

    out = tmp / "build.h5"
    res = build_cache(
        out, backbone="fcrn", backbone_args=backbone_args, dataset="synthetic", split="train", limit=n,
        size=(256, 256), batch_size=batch, workers=workers, device="cpu", overwrite=True,
    )
    s = res.seconds
    row = {
        "backbone": "fcrn " + str(backbone_args.get("encoder", "laina-resnet50")),
        "samples": n,
        "batch": batch,
        "workers": workers,
        "samples_s": n / s["total"],
        "backbone_ms": 1000 * s["backbone"] / n,
        "load_ms": 1000 * s["load"] / n,
        "write_ms": 1000 * s["write"] / n,
        "share": 100 * s["write"] / s["backbone"],
        "wall_share": 100 * s["write"] / s["total"],
    }
    return row, out


def bench_write(tmp: Path, source: Path, backbone_ms: float, repeats: int) -> list[dict]:
    from refinedepth.cache import CacheConfig, CacheWriter, open_cache

    with open_cache(source) as r:
        samples = [r.read(i, with_rgb=False) for i in range(len(r))]
        gt_size = r.gt_size
    rough = np.stack([s["rough"] for s in samples])
    gt = np.stack([s["gt"] for s in samples])
    rows = []
    for compression in ("gzip", "lzf", "none"):
        for dtype in ("float32", "float16"):
            best = float("inf")
            for k in range(repeats):
                cfg = CacheConfig(num_samples=len(samples), rough_size=(256, 256), gt_size=gt_size, rough_dtype=dtype)
                path = tmp / f"w-{compression}-{dtype}-{k}.h5"
                t = time.perf_counter()
                with CacheWriter.create(path, cfg, compression=compression) as w:
                    for i in range(0, len(samples), 4):
                        idx = list(range(i, min(i + 4, len(samples))))
                        w.write_batch(idx, rough=rough[idx], gt=gt[idx])
                best = min(best, time.perf_counter() - t)
            size = path.stat().st_size
            ms = 1000 * best / len(samples)
            rows.append({
                "compression": compression + ("+shuffle" if compression != "none" else ""),
                "dtype": dtype,
                "gt": f"{gt_size[0]}x{gt_size[1]}",
                "write_ms": ms,
                "share": 100 * ms / backbone_ms,
                "kb": size / len(samples) / 1024,
            })
    return rows


def bench_checksums(tmp: Path, source: Path, backbone_ms: float, repeats: int) -> list[dict]:
    """Write (batches of 4, as the cache command) and read back (``CacheReader.read``, one
    process) the arrays of the build run, with and without Fletcher-32; best of ``repeats``."""
    from refinedepth.cache import CacheConfig, CacheWriter, open_cache

    with open_cache(source) as r:
        samples = [r.read(i, with_rgb=False) for i in range(len(r))]
        gt_size = r.gt_size
    rough = np.stack([s["rough"] for s in samples])
    gt = np.stack([s["gt"] for s in samples])
    n = len(samples)
    rows = []
    for compression in ("lzf", "gzip", "none"):
        for checksums in (False, True):
            write, read = float("inf"), float("inf")
            for k in range(repeats):
                cfg = CacheConfig(num_samples=n, rough_size=(256, 256), gt_size=gt_size)
                path = tmp / f"sum-{compression}-{checksums}-{k}.h5"
                t = time.perf_counter()
                with CacheWriter.create(path, cfg, compression=compression, checksums=checksums) as w:
                    for i in range(0, n, 4):
                        idx = list(range(i, min(i + 4, n)))
                        w.write_batch(idx, rough=rough[idx], gt=gt[idx])
                write = min(write, time.perf_counter() - t)
                with open_cache(path) as r:
                    t = time.perf_counter()
                    for i in range(n):
                        r.read(i, with_rgb=False)
                    read = min(read, time.perf_counter() - t)
            rows.append({
                "compression": compression + ("+shuffle" if compression != "none" else ""),
                "checksums": "fletcher32" if checksums else "none",
                "write_ms": 1000 * write / n,
                "read_ms": 1000 * read / n,
                "share": 100 * 1000 * write / n / backbone_ms,
            })
    for row in rows:  # the checksum's own cost: with minus without, same compression
        if row["checksums"] == "fletcher32":
            base = next(r for r in rows if r["compression"] == row["compression"] and r["checksums"] == "none")
            row["extra"] = f"{row['write_ms'] - base['write_ms']:+.2f} / {row['read_ms'] - base['read_ms']:+.2f}"
        else:
            row["extra"] = ""
    return rows


def bench_read(tmp: Path, source: Path, n: int, epochs: int) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from refinedepth.cache import CacheDataset, open_cache, write_cache

    with open_cache(source) as r:
        base = [r.read(i, with_rgb=False) for i in range(len(r))]
    rough = np.stack([base[i % len(base)]["rough"] for i in range(n)])
    gt = torch.from_numpy(np.stack([base[i % len(base)]["gt"] for i in range(n)]))
    gt = F.interpolate(gt[:, None], size=(256, 256), mode="nearest-exact")[:, 0].numpy()
    rows = []
    # One intra-op thread in this process: with more, torch.stack in the collate of a
    # workers=0 loader spins in OpenMP on a loaded machine and runs ~15x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for compression in ("gzip", "lzf"):
        path = write_cache(tmp / f"read-{compression}.h5", rough=rough, gt=gt, rough_dtype="float16",
                           compression=compression)
        for workers in (0, 2):
            ds = CacheDataset(path)
            # Workers are started afresh each epoch, so that their CPU time is collected when
            # the loader joins them (RUSAGE_CHILDREN) and start-up is part of the figure.
            loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(0))
            best, cpu_ms = 0.0, float("inf")
            for _ in range(epochs):
                count, c0, t = 0, _cpu_seconds(), time.perf_counter()
                for batch in loader:
                    count += batch["rough"].shape[0]
                wall = time.perf_counter() - t
                best = max(best, count / wall)
                cpu_ms = min(cpu_ms, 1000 * (_cpu_seconds() - c0) / count)
            rows.append({
                "compression": compression + "+shuffle",
                "pairs": n,
                "workers": workers,
                "pairs_s": best,
                "cpu_ms": cpu_ms,
                "ceiling": 1000 * max(1, min(workers, os.cpu_count() or 1)) / cpu_ms,
                "target": "≥ 500" if workers == 2 else "",
            })
            del loader
    torch.set_num_threads(threads)
    return rows


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (user + system)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    parser.add_argument("--encoder", default=None, help="timm encoder instead of the exact FCRN ResNet-50")
    parser.add_argument("--update-docs", action="store_true", help="write the tables into docs/performance.md")
    args = parser.parse_args(argv)

    n_build = 8 if args.quick else 32
    n_read = 256 if args.quick else 1024
    backbone_args = {} if args.encoder is None else {"encoder": args.encoder}
    machine = _machine()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as d:
        tmp = Path(d)
        build, source = bench_build(tmp, n_build, batch=4, workers=2, backbone_args=backbone_args)
        writes = bench_write(tmp, source, build["backbone_ms"], repeats=1 if args.quick else 3)
        reads = bench_read(tmp, source, n_read, epochs=2 if args.quick else 3)
        sums = bench_checksums(tmp, source, build["backbone_ms"], repeats=1 if args.quick else 3)

    text = "\n".join([
        f"Measured with `python benchmarks/bench_cache.py{' --quick' if args.quick else ''}` on {machine}.",
        "",
        "Building a cache (`refinedepth cache`): synthetic 240x320 scenes, FCRN at 228x304, rough maps "
        "stored at 256x256 float32, gt at 240x320, lzf+shuffle (the default); HDF5 writing share = writing time / "
        "backbone time (target < 10%).",
        "",
        _table([build], [("backbone", "backbone"), ("samples", "samples"), ("batch", "batch"),
                         ("workers", "workers"), ("samples_s", "samples/s"),
                         ("backbone_ms", "backbone ms/sample"), ("load_ms", "waiting for data ms/sample"),
                         ("write_ms", "HDF5 write ms/sample"), ("share", "write % of backbone time"),
                         ("wall_share", "write % of wall time")]),
        "",
        "Writing alone (same arrays, batches of 4, flush + done mark per batch), against the backbone time above:",
        "",
        _table(writes, [("compression", "compression"), ("dtype", "rough dtype"), ("gt", "gt"),
                        ("write_ms", "write ms/sample"), ("share", "share of backbone %"),
                        ("kb", "KiB/sample on disk")]),
        "",
        "Reading 256x256 pairs (float16 rough + float32 gt) with `CacheDataset` + `DataLoader(batch_size=16, "
        "shuffle=True)`, file in the page cache, best epoch, 1 torch thread in the main process:",
        "",
        _table(reads, [("compression", "compression"), ("pairs", "pairs"), ("workers", "workers"),
                       ("pairs_s", "pairs/s"), ("target", "target"), ("cpu_ms", "CPU ms/pair (all processes)"),
                       ("ceiling", "CPU-bound pairs/s on idle cores")]),
        "",
        "CPU ms/pair counts the CPU time of the main process and the workers; it hardly depends on "
        "other jobs, unlike pairs/s. The last column is what that cost allows when max(1, workers) "
        "cores are free for the loader: the figure to compare with the target on a loaded machine.",
        "",
        "Fletcher-32 checksums (on every dataset of a new cache): the arrays of the build run written "
        "(batches of 4) and read back (`CacheReader.read`, one process), with and without; write share "
        "= write time / backbone time above (target: the checksums keep it under 10%):",
        "",
        _table(sums, [("compression", "compression"), ("checksums", "checksums"),
                      ("write_ms", "write ms/sample"), ("read_ms", "read ms/sample"),
                      ("share", "write % of backbone"), ("extra", "checksum cost write / read ms")]),
    ])
    print(text)
    if args.update_docs:
        _replace_marked(PERFORMANCE_MD, "cache", text)
        print(f"\nupdated {PERFORMANCE_MD}", file=sys.stderr)
    return 0


def _replace_marked(path: Path, name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Cache\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
