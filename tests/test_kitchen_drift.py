"""benchmarks/kitchen_drift.py: the log-linear fit and the scale on hand-made pairs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kitchen_drift import fit_log_linear, fit_scale, main  # noqa: E402


def _pairs():
    rng = np.random.default_rng(0)
    for k in range(3):
        rough = rng.uniform(0.5, 6.0, size=(8, 10))
        gt = 2.0 * rough**1.5  # log gt = log 2 + 1.5 log rough
        gt[0, :3] = 0.0  # invalid pixels are ignored
        rough[0, :3] = 1e6
        yield f"frame-{k}", rough, gt


def test_log_linear_fit_recovers_a_power_law():
    a, b = fit_log_linear(list(_pairs()), stride=1)
    assert b == pytest.approx(1.5, abs=1e-9)
    assert a == pytest.approx(math.log(2.0), abs=1e-9)


def test_scale_is_the_geometric_mean_ratio():
    pairs = [("f", np.array([[1.0, 2.0, 5.0]]), np.array([[2.0, 8.0, 0.0]]))]  # ratios 2 and 4
    assert fit_scale(pairs) == pytest.approx(math.sqrt(8.0))


def test_missing_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["kitchen_drift.py", str(tmp_path)])
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cache-train.h5 does not exist" in err
