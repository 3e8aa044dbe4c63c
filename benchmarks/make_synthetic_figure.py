"""Render a few synthetic samples (RGB next to colourised depth) into docs/images/.

    .venv/bin/python benchmarks/make_synthetic_figure.py [--out docs/images/synthetic_samples.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from refinedepth.data import open_dataset
from refinedepth.visualize import colorize_depth, save_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/synthetic_samples.png"))
    parser.add_argument("--per-family", type=int, default=3)
    args = parser.parse_args()

    rows, row_labels = [], []
    for family in ("indoor", "outdoor"):
        ds = open_dataset(f"synthetic:{family}", split="train", limit=args.per_family)
        for pair in range(0, len(ds) - 1, 2):
            a, b = ds[pair], ds[pair + 1]
            row = []
            for s in (a, b):
                row += [s.rgb, colorize_depth(s.depth)]
            rows.append(row)
            row_labels.append(f"{family} {pair}-{pair + 1}")
        if len(ds) % 2:
            s = ds[len(ds) - 1]
            rows.append([s.rgb, colorize_depth(s.depth)])
            row_labels.append(f"{family} {len(ds) - 1}")
    labels = ["RGB", "depth (near dark, far bright)", "RGB", "depth (near dark, far bright)"]
    path = save_grid(args.out, rows, labels, row_labels=row_labels)
    print(path)


if __name__ == "__main__":
    main()
