"""Shared helpers for the benchmark scripts: the machine's matmul peak, interleaved timing,
machine description, peak RSS, tables, the marked table in ``docs/performance.md``, and the time
split of a folder of video frames.

Timings on a shared machine are noisy, so a figure that is compared with the peak is measured in
rounds, each round timing the peak and then the workload back to back; the share of the peak is the
median of the per-round ratios, which cancels slow drifts in load.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_JSON = REPO / "benchmarks" / "results.json"
PERFORMANCE_MD = REPO / "docs" / "performance.md"


# ---------------------------------------------------------------------------------------------
# timing

CLOCKS = ("wall", "cpu")
# Child benchmark scripts inherit the clock through the environment (run_all sets it).
_CLOCK_ENV = "REFINEDEPTH_BENCH_CLOCK"
_CLOCK: Callable[[], float] = time.thread_time if os.environ.get(_CLOCK_ENV) == "cpu" else time.perf_counter


def set_clock(name: str) -> None:
    """``wall`` (default) or ``cpu``: the calling thread's CPU time (``time.thread_time``).

    With one torch thread every kernel runs on the calling thread, so its CPU time is the time
    the work took while it had a core: on a shared, busy machine this stays close to the quiet
    machine's wall time, where wall time is inflated by waiting for a core. Only meaningful with
    ``torch.set_num_threads(1)``.
    """
    global _CLOCK
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}: expected one of {CLOCKS}")
    if name == "cpu":
        import torch

        if torch.get_num_threads() != 1:
            raise ValueError("the cpu clock needs torch.set_num_threads(1) (other threads' work is not counted)")
    _CLOCK = time.thread_time if name == "cpu" else time.perf_counter
    os.environ[_CLOCK_ENV] = name


def clock_name() -> str:
    return "cpu" if _CLOCK is time.thread_time else "wall"


def best_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Best time of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (seconds), on the
    clock chosen with :func:`set_clock` (wall time by default)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = _CLOCK()
        fn()
        best = min(best, _CLOCK() - t)
    return best


class MatmulPeak:
    """The machine's fp32 matrix-multiply peak, as the best of the GEMMs torch can reach.

    Two libraries do fp32 GEMM on CPU here: MKL (``torch.mm``) and oneDNN (the library behind
    the convolutions; reached through ``mkldnn._linear_pointwise`` with a prepacked weight). On
    AMD CPUs MKL takes its AVX2 path, about half of oneDNN's AVX-512 rate, so taking only
    ``torch.mm`` would understate the peak and overstate every share. Square ``n x n`` products,
    ``2 n^3`` FLOPs each. On CUDA, ``torch.mm`` on the device (TF32 off).
    """

    def __init__(self, n: int = 2048, device: str = "cpu") -> None:
        import torch

        self.n = n
        self.device = torch.device(device)
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(n, n, generator=g).to(self.device)
        self.b = torch.randn(n, n, generator=g).to(self.device)
        self.flops = 2.0 * n**3
        self.kernels: dict[str, Callable[[], Any]] = {"torch.mm": lambda: torch.mm(self.a, self.b)}
        if self.device.type == "cpu":
            onednn = _onednn_gemm(self.a, self.b)
            if onednn is not None:
                self.kernels["oneDNN"] = onednn
        self.history: dict[str, list[float]] = {k: [] for k in self.kernels}

    def measure(self, repeats: int = 3) -> float:
        """GFLOP/s of the fastest kernel now (best of ``repeats`` each); recorded in ``history``."""
        best = 0.0
        for name, fn in self.kernels.items():
            t = best_time(fn, repeats=repeats, warmup=1)
            if self.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            gflops = self.flops / t / 1e9
            self.history[name].append(gflops)
            best = max(best, gflops)
        return best

    def summary(self) -> dict[str, Any]:
        per_kernel = {k: round(max(v), 1) for k, v in self.history.items() if v}
        return {
            "gflops": round(max(per_kernel.values()), 1) if per_kernel else None,
            "kernels": per_kernel,
            "n": self.n,
            "samples": sum(len(v) for v in self.history.values()),
        }


def _onednn_gemm(a, b) -> Callable[[], Any] | None:
    import torch

    try:
        ops = torch.ops.mkldnn
        w = b.t().contiguous()  # linear computes a @ w.T
        try:
            packed = ops._reorder_linear_weight(w)
        except (AttributeError, RuntimeError):
            packed = w.to_mkldnn()
        fn = lambda: ops._linear_pointwise(a, packed, None, "none", [], "")  # noqa: E731
        if not torch.allclose(fn(), a @ b, rtol=1e-3, atol=1e-2):
            return None
        return fn
    except (AttributeError, RuntimeError):
        return None


def interleaved(
    workload: Callable[[], Any],
    peak: MatmulPeak,
    flops: float,
    rounds: int = 3,
    repeats: int = 2,
    warmup: int = 1,
) -> dict[str, float]:
    """Time ``workload`` in ``rounds``, each after a fresh peak measurement, after ``warmup``
    untimed calls.

    Returns the best time (s), GFLOP/s at the best time, and ``share``: the median over rounds of
    (workload GFLOP/s) / (peak GFLOP/s) measured in the same round.
    """
    for _ in range(max(1, warmup)):
        workload()  # allocations, prepacking, lazy init
    times, ratios = [], []
    for _ in range(max(1, rounds)):
        p = peak.measure()
        t = best_time(workload, repeats=repeats, warmup=0)
        times.append(t)
        ratios.append(flops / t / 1e9 / p)
    best = min(times)
    return {"seconds": best, "gflops": flops / best / 1e9, "share": statistics.median(ratios)}


# ---------------------------------------------------------------------------------------------
# machine


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB): ``VmHWM``, the high-water mark of its
    own address space, where Linux has it. (``ru_maxrss`` is carried over ``exec``, so a child
    started by a parent grown to 1.7 GB would report at least that.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if platform.system() != "Darwin" else r / 1024.0 / 1024.0


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import torch

    cpu = cpu_model()
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "clock": clock_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


# ---------------------------------------------------------------------------------------------
# output


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], markdown: bool = False) -> str:
    """Rows of dicts as an aligned text table (or a markdown one); ``columns`` = (key, header)."""
    cells = [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    headers = [h for _, h in columns]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"
    return str(v)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def replace_marked(path: Path, name: str, body: str, heading: str | None = None) -> None:
    """Put ``body`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``.

    Re-runs replace only that block; when the markers are missing the block is appended (under
    ``heading`` if given), and a missing file is created.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text and text.index(start) < text.index(end):
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        prefix = text.rstrip() + "\n\n" if text.strip() else ""
        text = prefix + (f"{heading}\n\n" if heading else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the time split of the real-frame benchmarks

def time_split(frames: int) -> dict[str, range]:
    """The time-ordered split of ``frames`` video frames that ``real_kitchen.py`` and
    ``degraded_sensor.py`` use: the first half trains the first stage (``fcrn``), the next quarter
    the refiner (``refiner``), the next twentieth validates it (``val``), the last fifth is the test
    split (``test``). For the 600 frames in ``../shared/data``: 0-299, 300-449, 450-479, 480-599."""
    sizes = (frames // 2, frames // 4, frames // 20)
    if min(sizes) < 1:
        raise ValueError(f"{frames} frames are too few for the time split (first stage, refiner, validation, test): need at least 20")
    a, b, c = sizes[0], sizes[0] + sizes[1], sum(sizes)
    return {"fcrn": range(0, a), "refiner": range(a, b), "val": range(b, c), "test": range(frames - frames // 5, frames)}
