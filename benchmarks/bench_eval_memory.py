"""Peak memory of ``evaluate_cache`` versus the number of samples (SPEC §7: streaming evaluation).

Writes fabricated caches of N and 10*N samples (default 200 and 2,000), then evaluates each in a
fresh child process (rough + one refiner, per-sample CSV, picture grids) and reports the child's
peak RSS and the peak of Python-tracked allocations (``tracemalloc``: NumPy buffers included).
Streaming holds when the large cache's peaks stay within ~10% of the small one's.

    .venv/bin/python benchmarks/bench_eval_memory.py            # 200 vs 2000 samples
    .venv/bin/python benchmarks/bench_eval_memory.py --quick    # 20 vs 200

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, tracemalloc
tracemalloc.start()
from refinedepth.evaluate import evaluate_cache
cache, refiner, out = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
r = evaluate_cache(cache, [refiner], batch_size=8, device="cpu", csv_path=out + "/per_sample.csv",
                   visuals_dir=out + "/visuals", num_visuals=4)
seconds = time.perf_counter() - t
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"count": r.count, "seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "traced_peak_mib": peak / 2**20, "abs_rel": r.metrics(-1)["abs_rel"]}))
"""


def make_cache(path: Path, n: int, rough_size=(64, 64), gt_size=(120, 160), chunk: int = 100) -> None:
    """Smooth synthetic gt + degraded rough maps, written in chunks (never all in memory)."""
    import numpy as np

    from refinedepth.cache import CacheConfig, CacheWriter

    cfg = CacheConfig(num_samples=n, rough_size=rough_size, gt_size=gt_size, max_depth=10.0, backbone="bench")
    yy, xx = np.mgrid[0 : gt_size[0], 0 : gt_size[1]].astype(np.float32)
    ry, rx = np.mgrid[0 : rough_size[0], 0 : rough_size[1]].astype(np.float32)
    with CacheWriter.create(path, cfg, overwrite=True) as w:
        for start in range(0, n, chunk):
            idx = list(range(start, min(n, start + chunk)))
            offs = np.array([1.0 + (i % 17) * 0.2 for i in idx], np.float32)[:, None, None]
            gt = offs + 3.0 * xx[None] / gt_size[1] + yy[None] / gt_size[0]
            rough = 1.1 * (offs + 3.0 * rx[None] / rough_size[1] + ry[None] / rough_size[0])
            w.write_batch(idx, rough=rough[:, None], gt=gt, sample_ids=[f"s{i:06d}" for i in idx])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20 vs 200 samples")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    small = 20 if args.quick else args.small
    sizes = [small, small * args.factor]

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _helpers_evaluate import degraded_cache, tiny_refiner

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        refiner = tiny_refiner(tmp / "refiner", degraded_cache(tmp / "refiner-train.h5"), steps=1)
        for n in sizes:
            cache = tmp / f"cache-{n}.h5"
            t = time.perf_counter()
            make_cache(cache, n)
            write_s = time.perf_counter() - t
            out = tmp / f"out-{n}"
            out.mkdir()
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(cache), str(refiner), str(out)],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(samples=n, cache_mib=cache.stat().st_size / 2**20, write_s=write_s)
            rows.append(row)
            cache.unlink()

    base = rows[0]
    print("| samples | cache MiB | eval s | samples/s | peak RSS MiB | RSS vs smallest | traced peak MiB | traced vs smallest |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['samples']} | {r['cache_mib']:.1f} | {r['seconds']:.1f} | {r['count'] / r['seconds']:.0f} "
            f"| {r['rss_mib']:.0f} | {100 * (r['rss_mib'] / base['rss_mib'] - 1):+.1f}% "
            f"| {r['traced_peak_mib']:.1f} | {100 * (r['traced_peak_mib'] / base['traced_peak_mib'] - 1):+.1f}% |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
