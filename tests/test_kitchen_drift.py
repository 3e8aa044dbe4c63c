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


def test_scale_shift_is_ordinary_least_squares():
    from kitchen_drift import fit_scale_shift

    rough = np.array([[1.0, 2.0, 3.0, 4.0, 9.0]])
    gt = np.array([[2.5, 4.5, 6.5, 8.5, 0.0]])  # 2 rough + 0.5 where valid
    s, t = fit_scale_shift([("f", rough, gt)])
    assert s == pytest.approx(2.0) and t == pytest.approx(0.5)


def test_detail_only_upper_bound():
    pytest.importorskip("scipy")
    from kitchen_drift import detail_only

    rng = np.random.default_rng(1)
    base = rng.uniform(1.0, 3.0, (40, 50))
    # an error that is one constant is all large-scale: nothing is corrected
    np.testing.assert_allclose(detail_only(base, 1.3 * base, sigma=4.0, alpha=1.0), base, rtol=1e-12)
    # alpha = 1 with an error of a 2-pixel period (a column checkerboard): restored away from the border
    ripple = np.where(np.arange(50) % 2 == 0, 0.05, -0.05)[None, :] * np.ones((40, 1))
    gt = base * np.exp(ripple)
    gt[0, 0] = 0.0  # an invalid pixel keeps the base
    out = detail_only(base, gt, sigma=3.0, alpha=1.0)
    assert out[0, 0] == base[0, 0]
    np.testing.assert_allclose(out[15:25, 15:35], gt[15:25, 15:35], rtol=1e-6)


def test_headroom_rows_beat_every_baseline_when_the_detail_is_all_there_is():
    pytest.importorskip("skimage")
    from kitchen_drift import headroom

    rng = np.random.default_rng(2)
    frames = []
    for k in range(2):
        rough = rng.uniform(1.0, 3.0, (48, 64))
        ripple = np.where(np.arange(64) % 2 == 0, 0.05, -0.05)[None, :] * np.ones((48, 1))
        frames.append((f"f{k}", rough, 1.2 * rough * np.exp(ripple)))
    (row,) = headroom(frames, frames, sigmas=(2.0,), alphas=(1.0,))
    assert row["sigma"] == 2.0 and row["alpha"] == 1.0
    assert row["mean"]["abs_rel"] < 0.01 and row["wins"]["abs_rel"] == 1.0 and row["wins"]["silog"] == 1.0
