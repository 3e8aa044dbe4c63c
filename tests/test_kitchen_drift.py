"""benchmarks/kitchen_drift.py: the log-linear fit on hand-made pairs, the refiner's stored baselines."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kitchen_drift import ROUGH_FLOOR, fit_log_linear, main, stored_baselines  # noqa: E402

from refinedepth.baselines import Baselines  # noqa: E402


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


def test_log_linear_fit_drops_clamped_rough_pixels():
    pairs = list(_pairs())
    rough = pairs[0][1]
    rough[1, :4] = ROUGH_FLOOR  # frames() clamps a rough depth <= 0 to the floor: not a data point
    rough[2, 0] = math.nan
    a, b = fit_log_linear(pairs, stride=1)
    assert b == pytest.approx(1.5, abs=1e-9)
    assert a == pytest.approx(math.log(2.0), abs=1e-9)


def _refiner(run: Path, baselines: dict | None, sub: str = "best") -> Path:
    ckpt = run / "refiner" / sub
    ckpt.mkdir(parents=True)
    meta = {"format": "refinedepth-refiner", "format_version": 1}
    if baselines is not None:
        meta["baselines"] = baselines
    (ckpt / "config.json").write_text(json.dumps(meta))
    return ckpt


def test_baselines_come_from_the_refiner_checkpoint(tmp_path):
    stored = {"scale": 1.25, "scale_shift": [0.9, 0.3], "pixels": 10, "fitted_on": "a.h5, b.h5", "space": "depth"}
    _refiner(tmp_path, stored)
    got = stored_baselines(tmp_path)
    assert got == Baselines(1.25, (0.9, 0.3), 10, "a.h5, b.h5")
    rough = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(got.apply(rough, "scale"), [[1.25, 2.5]])
    np.testing.assert_allclose(got.apply(rough, "scale_shift"), [[1.2, 2.1]])


def _caches(run: Path):
    for name in ("cache-train.h5", "cache-val.h5", "cache-test.h5"):
        (run / name).write_bytes(b"")  # main checks they exist before it reads the refiner


def test_refiner_without_baselines_is_one_line(tmp_path, monkeypatch, capsys):
    _caches(tmp_path)
    ckpt = _refiner(tmp_path, None)
    monkeypatch.setattr(sys, "argv", ["kitchen_drift.py", str(tmp_path)])
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stores no baselines" in err and str(ckpt) in err


def test_run_without_refiner_is_one_line(tmp_path, monkeypatch, capsys):
    _caches(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kitchen_drift.py", str(tmp_path)])
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refiner" in err and "does not exist" in err


def test_missing_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["kitchen_drift.py", str(tmp_path)])
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cache-train.h5 does not exist" in err


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
    baselines = Baselines(1.2, (1.0, 0.5), 1)  # the stored fits: the scale is the true one
    (row,) = headroom(baselines, frames, sigmas=(2.0,), alphas=(1.0,))
    assert row["sigma"] == 2.0 and row["alpha"] == 1.0
    assert row["mean"]["abs_rel"] < 0.01 and row["wins"]["abs_rel"] == 1.0 and row["wins"]["silog"] == 1.0


def test_headroom_leaves_out_frames_without_ground_truth_edges():
    pytest.importorskip("skimage")
    from kitchen_drift import headroom

    rng = np.random.default_rng(3)
    rough = rng.uniform(1.0, 3.0, (48, 64))
    ripple = np.where(np.arange(64) % 2 == 0, 0.05, -0.05)[None, :] * np.ones((48, 1))
    flat = np.full((48, 64), 2.0)  # a constant ground truth has no edge: dbe_acc is NaN on it
    frames = [("edges", rough, 1.2 * rough * np.exp(ripple)), ("flat", flat / 1.2 * 1.01, flat)]
    (row,) = headroom(Baselines(1.2, (1.0, 0.5), 1), frames, sigmas=(2.0,), alphas=(1.0,))
    # the flat frame's error is one constant, so the detail-only map is rough x scale itself: a tie on
    # abs_rel, counted and not a win (1 of 2); its dbe_acc is NaN, left out (1 of 1, not 1 of 2)
    assert row["wins"]["abs_rel"] == 0.5
    assert row["wins"]["dbe_acc"] == 1.0
