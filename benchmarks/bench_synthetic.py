"""Throughput of the synthetic RGB-D generator (samples/s, one process, one thread).

    .venv/bin/python benchmarks/bench_synthetic.py [--samples 40] [--sizes 240x320,120x160,480x640]

Prints wall-clock samples/s and CPU milliseconds per sample for each family and size. CPU time
is the steadier figure on a shared machine (wall time includes waiting for other processes);
the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    # The renderer is NumPy-only; keep BLAS to one thread so the figure is per core.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from refinedepth.data.synthetic import render_sample

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="samples per family and size")
    parser.add_argument("--sizes", default="240x320,120x160,480x640", help="HxW list")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    rows = []
    for family in ("indoor", "outdoor"):
        for size in sizes:
            render_sample(family, 10_000, "train", size=size)  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(args.samples):
                render_sample(family, i, "train", size=size)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append((family, f"{size[0]}x{size[1]}", args.samples / wall, 1e3 * cpu / args.samples))

    print(f"synthetic generator, {args.samples} samples each, load average {os.getloadavg()[0]:.2f}")
    print(f"{'family':<8} {'size':>8} {'samples/s':>10} {'cpu ms/sample':>14}")
    for family, size, rate, cpu_ms in rows:
        print(f"{family:<8} {size:>8} {rate:>10.1f} {cpu_ms:>14.1f}")


if __name__ == "__main__":
    main()
