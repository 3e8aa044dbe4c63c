"""Paired win rates of the last stage of a ``refinedepth evaluate --csv`` file, against each other
stage and against all of them at once (the frames on which it is better than every one).

    .venv/bin/python benchmarks/win_rates.py runs/eval/per_sample.csv [--metric abs_rel ...]
    .venv/bin/python benchmarks/win_rates.py per_sample.csv --target 0.9   # + PASS/FAIL line

``evaluate`` prints the win rate against each row separately; this adds the column "all": a
frame counts only if the last stage beats rough, ``rough x scale`` and ``rough x (scale, shift)``
(and any other earlier stage) on it. The shares are ``refinedepth.report.win_rate``'s: lower is
better for errors, higher for d1-d3 and boundary_f1, a tie is not a win, and a frame where a value
is missing, NaN or infinite is left out of that metric (NaN when no frame is left); an unknown
metric name is an error.

``--target F`` adds one line: PASS when the "all" share is at least F on every metric (issue 14's
item 2 asks for 0.9 on abs_rel, rmse, silog and dbe_acc), else FAIL naming the metrics short of it.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict

METRICS = ("abs_rel", "rmse", "silog", "dbe_acc")


def win_rates(rows: list[dict[str, str]], metrics=METRICS) -> tuple[str, dict[str, dict[str, float]]]:
    """``(last stage, {metric: {other stage or "all": share of frames}})`` from the CSV's rows, by
    :func:`refinedepth.report.win_rate` over the frames that have every stage; per metric, frames
    where a value is missing, NaN or infinite are left out of every column, so that "all" and the
    single columns share one denominator."""
    from refinedepth.report import win_rate

    stages: list[str] = []
    values: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)  # id -> stage -> metrics
    for r in rows:
        if r["stage"] not in stages:
            stages.append(r["stage"])
        values[r["id"]][r["stage"]] = {m: float(r[m]) if r.get(m) not in (None, "") else math.nan for m in metrics}
    if len(stages) < 2:
        raise ValueError("the CSV holds one stage only: nothing to compare")
    last, others = stages[-1], stages[:-1]
    complete = [per_stage for per_stage in values.values() if all(s in per_stage for s in stages)]
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        column = {s: [per_stage[s][m] for per_stage in complete] for s in stages}
        # one denominator for every column: the frames where all the stages' values are finite
        defined = [all(math.isfinite(column[s][i]) for s in stages) for i in range(len(complete))]
        column = {s: [v for v, ok in zip(vs, defined) if ok] for s, vs in column.items()}
        out[m] = {o: win_rate(column[last], column[o], m) for o in others}
        out[m]["all"] = win_rate(column[last], [column[o] for o in others], m)
    return last, out
def verdict(rates: dict[str, dict[str, float]], target: float) -> str:
    """``PASS ...`` when the "all" share reaches ``target`` on every metric, else ``FAIL ...``
    naming the metrics short of it (a metric with no frames counts as short)."""
    short = [m for m, r in rates.items() if not r["all"] >= target]
    if not short:
        return f"PASS: better than every other stage on at least {100 * target:.0f}% of the frames on each metric"
    shown = ", ".join(f"{m} {100 * rates[m]['all']:.0f}%" for m in short)
    return f"FAIL: better than every other stage on fewer than {100 * target:.0f}% of the frames on {shown}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="a per-sample CSV from 'refinedepth evaluate --csv'")
    parser.add_argument("--metric", action="append", help=f"metrics (default: {', '.join(METRICS)})")
    parser.add_argument("--target", type=float, help="print PASS/FAIL: the 'all' share at least this (0-1)")
    args = parser.parse_args()
    try:
        with open(args.csv, newline="") as f:
            rows = list(csv.DictReader(f))
        last, rates = win_rates(rows, tuple(args.metric or METRICS))
    except (OSError, KeyError, ValueError) as e:
        print(f"{args.csv}: {e}", file=sys.stderr)
        return 1
    others = list(next(iter(rates.values())))
    print(f"Share of frames on which {last} is better:")
    print()
    print("| metric | " + " | ".join(others) + " |")
    print("|---|" + "---:|" * len(others))
    for m, r in rates.items():
        print(f"| {m} | " + " | ".join(f"{100 * r[o]:.0f}%" for o in others) + " |")
    if args.target is not None:
        print()
        print(verdict(rates, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
