"""``make bench``: every benchmark in one run, a printed summary, ``benchmarks/results.json`` and
the marked tables of ``docs/performance.md``.

In order: the machine's fp32 matmul peak; refiner inference for each preset at 256x256, batch 1
and 8 (plain eager vs ``refinedepth.refiner.fast``; images/s, FLOPs per image, GFLOP/s and share of
the peak measured in the same run); one refiner training step (D+G) per preset; FCRN inference
(``bench_fcrn.py``); cache building/writing/loading throughput (``bench_cache.py``, which updates
its own section of the doc); peak RSS of each part.

Usage: ``.venv/bin/python benchmarks/run_all.py [--quick] [--skip fcrn,cache] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PERFORMANCE_MD,
    REPO,
    RESULTS_JSON,
    MatmulPeak,
    format_table,
    machine_info,
    peak_rss_mb,
    replace_marked,
    set_clock,
    write_json,
)
from bench_refiner import (  # noqa: E402
    DEFAULT_PRESETS,
    INFERENCE_COLUMNS,
    TRAINING_COLUMNS,
    bench_inference,
    bench_training,
)

PARTS = ("refiner", "training", "fcrn", "cache", "synthetic")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# Runs a script as __main__ and prints its own peak RSS at exit (VmHWM belongs to the process's
# memory after exec; getrusage(RUSAGE_CHILDREN) would report the forking parent's size).
_WRAPPER = """
import atexit, runpy, sys
def _hwm():
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                print('[peak RSS %.1f MB]' % (int(line.split()[1]) / 1024.0), flush=True)
    except OSError:
        pass
atexit.register(_hwm)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def run_script(args: list[str], timeout: float) -> dict[str, Any]:
    """Run a benchmark script in a child process; its output, exit status, time and peak RSS."""
    cmd = [sys.executable, "-c", _WRAPPER, *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        rc = "timeout"
    rss = None
    lines = out.splitlines()
    if lines and lines[-1].startswith("[peak RSS ") and lines[-1].endswith(" MB]"):
        rss = float(lines[-1][len("[peak RSS ") : -len(" MB]")])
        out = "\n".join(lines[:-1]) + "\n"
    return {
        "command": " ".join(shlex.quote(a) for a in ["python", *args]),
        "returncode": rc,
        "seconds": round(time.perf_counter() - t0, 1),
        "max_rss_mb": round(rss, 1) if rss is not None else None,
        "output": out,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller, faster version of every part")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="refiner presets")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per refiner figure")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--clock", default="wall", choices=("wall", "cpu"),
        help="cpu: time by the thread's CPU time (needs --threads 1; for busy shared machines)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--json", default=str(RESULTS_JSON), help="where to write the results")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the doc's tables from a results file")
    args = parser.parse_args(argv)
    if args.render:
        import json

        results = json.loads(Path(args.render).read_text())
        for name, body in md_sections(results).items():
            replace_marked(PERFORMANCE_MD, name, body, heading=SECTION_HEADINGS[name])
        print(render_markdown(results))
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) to skip: {', '.join(sorted(unknown))}; expected {', '.join(PARTS)}")
    presets = [p for p in args.presets.split(",") if p]
    rounds = 2 if args.quick else args.rounds
    command = "make bench" if not argv and not sys.argv[1:] else "python benchmarks/run_all.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        parser.error("--clock cpu needs --threads 1")
    set_clock(args.clock)
    t_start = time.perf_counter()
    info = machine_info()
    _say(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
         f"load average {info['load_average']}")
    results: dict[str, Any] = {
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
    }

    peak = MatmulPeak()
    first = peak.measure(repeats=5)
    _say(f"matmul peak: {first:.0f} GFLOP/s ({', '.join(f'{k} {v[-1]:.0f}' for k, v in peak.history.items())})")

    def show(row: dict[str, Any]) -> None:
        if "fast_step_s" in row:
            _say(f"  train {row['preset']:<13} batch {row['batch']}: plain {row['plain_step_s']:.3f} s "
                 f"({row['plain_share']:.0f}%), fast {row['fast_step_s']:.3f} s ({row['fast_share']:.0f}%)")
        else:
            _say(f"  infer {row['preset']:<13} batch {row['batch']}: plain {row['plain_images_per_s']:.2f} img/s "
                 f"({row['plain_share']:.0f}%), fast {row['fast_images_per_s']:.2f} img/s ({row['fast_share']:.0f}%)"
                 + (f", bf16 {row['bf16_images_per_s']:.2f} img/s ({row['bf16_vs_fp32']:.2f}x)"
                    if row.get("bf16_images_per_s") else ""))

    if "refiner" not in skip:
        _say("refiner inference ...")
        batches = (1, 8)
        results["refiner_inference"] = bench_inference(presets, batches, peak, rounds=rounds, progress=show)
    results["rss_after_inference_mb"] = round(peak_rss_mb(), 1)
    if "training" not in skip:
        _say("refiner training step ...")
        # Training steps jitter more than inference calls (~5% step to step): two more rounds.
        train_rounds = rounds if args.quick else rounds + 2
        results["refiner_training"] = bench_training(presets, (1,), peak, rounds=train_rounds, progress=show)
    results["rss_after_training_mb"] = round(peak_rss_mb(), 1)
    results["peak"] = peak.summary()
    results["torch_threads"] = torch.get_num_threads()

    if "fcrn" not in skip:
        _say("FCRN (benchmarks/bench_fcrn.py) ...")
        fcrn_args = ["benchmarks/bench_fcrn.py", *(["--quick"] if args.quick else [])]
        if args.threads:
            fcrn_args += ["--threads", str(args.threads)]
        results["fcrn"] = run_script(fcrn_args, timeout=300)
        _say(results["fcrn"]["output"].rstrip())
    if "cache" not in skip:
        _say("cache (benchmarks/bench_cache.py) ...")
        cache_args = ["benchmarks/bench_cache.py", "--quick"]
        if not args.no_docs:
            cache_args.append("--update-docs")
        results["cache"] = run_script(cache_args, timeout=300)
        _say(results["cache"]["output"].rstrip())
    if "synthetic" not in skip:
        _say("synthetic data (benchmarks/bench_synthetic.py) ...")
        synth_args = ["benchmarks/bench_synthetic.py", "--samples", "8" if args.quick else "20"]
        results["synthetic"] = run_script(synth_args, timeout=300)
        _say(results["synthetic"]["output"].rstrip())
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)

    write_json(Path(args.json), results)
    md = render_markdown(results)
    print(md)
    if not args.no_docs:
        for name, body in md_sections(results).items():
            replace_marked(PERFORMANCE_MD, name, body, heading=SECTION_HEADINGS[name])
        _say(f"wrote {args.json} and the tables in {PERFORMANCE_MD.relative_to(REPO)}")
    else:
        _say(f"wrote {args.json}")
    return 0


SECTION_HEADINGS = {
    "machine": "## Machine and matmul peak",
    "refiner": "## Refiner",
    "fcrn": "## FCRN",
    "synthetic": "## Synthetic data generator",
}


def md_sections(results: dict[str, Any]) -> dict[str, str]:
    info = results["machine"]
    peak = results.get("peak", {})
    kernels = ", ".join(f"{k} {v:.0f}" for k, v in peak.get("kernels", {}).items())
    machine = [
        f"`{results['command']}` on {results['date']}: {info['cpu']}, {info['cores']} cores, "
        f"torch {info['torch']} with {results.get('torch_threads', info['torch_threads'])} threads, "
        f"timed by {'the thread CPU time (--clock cpu)' if info.get('clock') == 'cpu' else 'wall time'}, "
        f"{info['os']}; load average at the start {info['load_average']} "
        f"(the machine was shared: see the note below). Whole run {results.get('seconds', '?')} s.",
        "",
        f"fp32 matmul peak: **{peak.get('gflops', '?')} GFLOP/s** (best over the run of {peak.get('samples', '?')} "
        f"samples of {peak.get('n', '?')}x{peak.get('n', '?')} GEMMs; per library: {kernels}).",
        "",
        f"Peak RSS: {results.get('rss_after_inference_mb', '?')} MB after refiner inference, "
        f"{results.get('rss_after_training_mb', '?')} MB after the training steps (this process); "
        + "; ".join(
            f"{part} {results[part]['max_rss_mb']} MB" if results[part].get("max_rss_mb") else f"{part} not recorded"
            for part in ("fcrn", "cache", "synthetic")
            if part in results
        )
        + (" (child processes, their own peak)." if any(p in results for p in ("fcrn", "cache", "synthetic")) else ""),
    ]
    out = {"machine": "\n".join(machine)}
    refiner = []
    if results.get("refiner_inference"):
        refiner += [
            "Inference, 256x256, fp32 (plain = the eager module as built; fast = "
            "`optimize_for_inference`; %peak = median over rounds of achieved / peak measured in the same round):",
            "",
            format_table(results["refiner_inference"], INFERENCE_COLUMNS, markdown=True),
            "",
        ]
    if results.get("refiner_training"):
        refiner += [
            "One training step (D step + G step, Adam, batch 1, 256x256; fast = `prepare_for_training` on G "
            "and D (oneDNN matrix-product kernels for the few-pixel and few-channel convolutions) and "
            "`fast.adam`, the fused Adam); FLOPs include both backward passes; rel. grad diff = "
            "||g_fast - g_plain|| / ||g_plain|| after one step without dropout and with ReLU/LeakyReLU "
            "replaced by the identity (so that rounding cannot flip an activation across its kink), the "
            "larger of G's and D's:",
            "",
            format_table(results["refiner_training"], TRAINING_COLUMNS, markdown=True),
        ]
    if refiner:
        out["refiner"] = "\n".join(refiner)
    for part in ("fcrn", "synthetic"):
        if part in results:
            r = results[part]
            out[part] = "\n".join(
                [f"`{r['command']}` (exit {r['returncode']}, {r['seconds']} s):", "", "```", r["output"].rstrip(), "```"]
            )
    return out


def render_markdown(results: dict[str, Any]) -> str:
    parts = []
    for name, body in md_sections(results).items():
        parts += [SECTION_HEADINGS[name], "", body, ""]
    return "\n".join(parts)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
