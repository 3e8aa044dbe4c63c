"""Paired win rates of the last stage of a ``refinedepth evaluate --csv`` file, against each other
stage and against all of them at once (the frames on which it is better than every one).

    .venv/bin/python benchmarks/win_rates.py runs/eval/per_sample.csv [--metric abs_rel ...]
    .venv/bin/python benchmarks/win_rates.py per_sample.csv --target 0.9   # + PASS/FAIL line

``evaluate`` prints the win rate against each row separately; this adds the column "all": a
frame counts only if the last stage beats rough, ``rough x scale`` and ``rough x (scale, shift)``
(and any other earlier stage) on it. Lower is better for every metric it accepts.

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
    """``(last stage, {metric: {other stage or "all": share of frames}})`` from the CSV's rows;
    frames where a value is missing or NaN are left out of that metric."""
    stages: list[str] = []
    values: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)  # id -> stage -> metrics
    for r in rows:
        if r["stage"] not in stages:
            stages.append(r["stage"])
        values[r["id"]][r["stage"]] = {m: float(r[m]) if r.get(m) not in (None, "") else math.nan for m in metrics}
    if len(stages) < 2:
        raise ValueError("the CSV holds one stage only: nothing to compare")
    last, others = stages[-1], stages[:-1]
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        wins: dict[str, list[bool]] = {o: [] for o in [*others, "all"]}
        for per_stage in values.values():
            if last not in per_stage or any(o not in per_stage for o in others):
                continue
            mine = per_stage[last][m]
            theirs = [per_stage[o][m] for o in others]
            if math.isnan(mine) or any(math.isnan(t) for t in theirs):
                continue
            for o, t in zip(others, theirs):
                wins[o].append(mine < t)
            wins["all"].append(all(mine < t for t in theirs))
        out[m] = {o: (sum(w) / len(w) if w else math.nan) for o, w in wins.items()}
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
