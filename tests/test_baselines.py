"""Baselines a refiner must beat (SPEC §7): a global scale and a global scale + shift fitted on
its training pairs, stored in its checkpoint, shown by evaluate with paired win rates; and the
boundary metrics in evaluate's table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from refinedepth.baselines import BaselineFit, fit_baselines
from refinedepth.cache import CacheDataset, write_cache
from refinedepth.cli.main import cli
from refinedepth.errors import DataError
from refinedepth.evaluate import evaluate_cache
from refinedepth.refiner import checkpoint as ckpt
from refinedepth.refiner.train import TrainConfig, train_refiner

from ._helpers_refiner import one_torch_thread  # noqa: F401


def _gt(n=3, size=(16, 20), seed=0):
    rng = np.random.default_rng(seed)
    return (1.0 + 5.0 * rng.random((n, *size))).astype(np.float32)


def test_a_scaled_rough_map_gives_its_scale_exactly(tmp_path):
    gt = _gt()
    gt[0, :3] = 0.0  # invalid pixels are not fitted
    cache = write_cache(tmp_path / "c.h5", rough=np.where(gt > 0, gt / 1.15, 7.0), gt=gt, max_depth=10.0)
    b = fit_baselines(CacheDataset(cache), fitted_on="c")
    assert b.scale == pytest.approx(1.15, rel=1e-6)
    assert b.scale_shift == pytest.approx((1.15, 0.0), abs=1e-5)
    assert b.pixels == int((gt > 0).sum())


def test_an_affine_rough_map_gives_its_scale_and_shift(tmp_path):
    gt = _gt(seed=1)
    rough = (gt - 2.0) / 3.0 + 1.0  # gt = 3 rough - 1
    cache = write_cache(tmp_path / "c.h5", rough=rough, gt=gt, max_depth=10.0)
    b = fit_baselines(CacheDataset(cache))
    a, s = b.scale_shift
    assert (a, s) == pytest.approx((3.0, -1.0), abs=1e-4)
    # the scale: geometric mean of the ratios, computed independently
    assert b.scale == pytest.approx(float(np.exp(np.mean(np.log(gt.astype(np.float64)) - np.log(rough)))), rel=1e-6)


def test_disparity_maps_are_fitted_in_inverse_depth_and_the_protocol_range_is_respected(tmp_path):
    gt = _gt(seed=2)
    gt[1, 0, 0] = 50.0  # beyond the nyu protocol's 10 m: not fitted
    disparity = 2.0 / gt + 0.4  # an affine-invariant disparity: 1/gt = 0.5 p - 0.2
    cache = write_cache(tmp_path / "c.h5", rough=disparity, gt=gt, max_depth=10.0, output_kind="disparity")
    b = fit_baselines(CacheDataset(cache), protocol="none")
    assert b.space == "disparity"
    assert b.scale_shift == pytest.approx((0.5, -0.2), abs=1e-5)
    np.testing.assert_allclose(b.apply(1.0 / disparity, "scale_shift"), gt, rtol=1e-4)  # calibrated exactly
    # the scale: geometric mean of gt / depth, depth = 1 / p, computed independently
    g64 = gt.astype(np.float64)
    assert b.scale == pytest.approx(float(np.exp(np.mean(np.log(g64 * disparity)))), rel=1e-6)
    # pooled least squares over the nyu-valid pixels only, by hand with NumPy (no crop at 16x20:
    # the Eigen crop is defined at 480x640 and scaled; compare against the same mask)
    from refinedepth.metrics import get_protocol, valid_mask

    m = valid_mask(g64, get_protocol("nyu"))
    noisy = disparity * (1.0 + 0.1 * np.random.default_rng(3).random(gt.shape)).astype(np.float32)
    cache = write_cache(tmp_path / "n.h5", rough=noisy, gt=gt, max_depth=10.0, output_kind="disparity")
    p = noisy.astype(np.float64)[m]
    expected = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), 1.0 / g64[m], rcond=None)[0]
    got = fit_baselines(CacheDataset(cache), protocol="nyu").scale_shift
    assert got == pytest.approx(tuple(expected), rel=1e-4)


def test_a_zero_disparity_is_fitted_as_the_zero_the_baseline_row_gives_it(tmp_path):
    """A ReLU head outputs disparity 0 where it sees the sky; where the ground truth is valid there
    (Make3D), the scale + shift is fitted on those pixels too, at the disparity 0 that the row applies,
    as the per-image fit counts every pixel. Reference: NumPy least squares over all valid pixels."""
    gt = _gt(n=2, seed=4)
    disparity = (2.0 / gt - 0.55).clip(0.0, None)  # disparity 0 beyond 3.6 m
    assert 0.2 < (disparity == 0).mean() < 0.6
    cache = write_cache(tmp_path / "c.h5", rough=disparity, gt=gt, max_depth=10.0, output_kind="disparity")
    b = fit_baselines(CacheDataset(cache), protocol="none")
    p, g = disparity.astype(np.float64).ravel(), gt.astype(np.float64).ravel()
    expected = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), 1.0 / g, rcond=None)[0]
    assert b.scale_shift == pytest.approx(tuple(expected), rel=1e-5)
    with np.errstate(divide="ignore"):
        row = b.apply(np.where(p > 0, 1.0 / np.where(p > 0, p, 1.0), np.inf), "scale_shift")
    np.testing.assert_allclose(row, 1.0 / (expected[0] * p + expected[1]), rtol=1e-5)
    # the scale, a log ratio, needs a finite depth: the zeros stay out of it
    finite = p > 0
    assert b.scale == pytest.approx(float(np.exp(np.mean(np.log(g[finite] * p[finite])))), rel=1e-6)
    assert b.pixels == int(finite.sum())


def test_no_usable_pixel_is_a_one_line_error():
    with pytest.raises(DataError, match="no pixel has both a valid ground truth"):
        BaselineFit().result("train.h5")


def _cache(path, n, seed, size=(32, 32)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    gt = np.stack([1.5 + 2.0 * (xx > rng.integers(8, 24)) + 0.05 * yy for _ in range(n)]).astype(np.float32)
    blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(gt)[:, None], 5, 1, 2, count_include_pad=False)
    return write_cache(path, rough=(blurred * 1.2).numpy(), gt=gt, max_depth=10.0), gt


def test_train_refiner_stores_the_baselines_and_evaluate_shows_them(tmp_path):
    train, gt = _cache(tmp_path / "train.h5", 4, 0)
    test, _ = _cache(tmp_path / "test.h5", 3, 1)
    run = tmp_path / "run"
    train_refiner(TrainConfig(train=str(train), val=str(test), out=str(run), size=(64, 64), max_steps=2, device="cpu"))
    meta = ckpt.read_config(run / "best")
    assert meta["baselines"]["scale"] == pytest.approx(fit_baselines(CacheDataset(train)).scale)
    assert meta["baselines"]["fitted_on"] == str(train)
    # validation scores the baseline rows too
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    val = [e["val"] for e in log if "val" in e][-1]
    assert {"rough x scale", "rough x (scale, shift)"} <= set(val)

    res = CliRunner().invoke(cli, ["evaluate", "--cache", str(test), "--refiner", str(run), "--device", "cpu",
                                   "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert "rough x scale" in res.stdout and "rough x (scale, shift)" in res.stdout
    assert "of the images (abs_rel)" in res.stdout
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["baselines"]["scale"] == meta["baselines"]["scale"]
    assert set(payload["win_rates"]["rough x scale"]) == {"abs_rel", "rmse", "silog", "dbe_acc"}
    assert "dbe_acc" in payload["stages"][0]["metrics"] and "bF1" in res.stdout


def test_a_checkpoint_without_baselines_gets_a_note(tmp_path):
    train, _ = _cache(tmp_path / "train.h5", 2, 0)
    run = tmp_path / "run"
    train_refiner(TrainConfig(train=str(train), out=str(run), size=(64, 64), max_steps=1, device="cpu"))
    for d in ("best", "last"):  # as a refiner trained before baselines existed
        cfg = run / d / ckpt.CONFIG_NAME
        meta = json.loads(cfg.read_text())
        meta.pop("baselines", None)
        cfg.write_text(json.dumps(meta))
    result = evaluate_cache(train, [run / "best"], device="cpu", boundary=False)
    assert result.stages == ["rough", "+ run"]
    assert any("stores no baselines" in n for n in result.notes)
    assert "stores no baselines" in result.table()


def test_boundary_metrics_in_evaluate_on_a_hand_made_step(tmp_path):
    # gt: a 2 m -> 4 m step; rough: the same step (exact) for sample 0, a ramp for sample 1
    gt = np.full((2, 32, 32), 2.0, np.float32)
    gt[:, :, 16:] = 4.0
    rough = gt.copy()
    rough[1] = np.linspace(2.0, 4.0, 32, dtype=np.float32)[None, :].repeat(32, 0)
    cache = write_cache(tmp_path / "c.h5", rough=rough, gt=gt, max_depth=10.0)
    result = evaluate_cache(cache, device="cpu", csv_path=tmp_path / "s.csv", averaging="image")
    import csv

    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    exact, ramp = rows[0], rows[1]
    assert float(exact["dbe_acc"]) == 0.0 and float(exact["dbe_comp"]) == 0.0 and float(exact["boundary_f1"]) == pytest.approx(1.0)
    assert float(ramp["boundary_f1"]) < 1.0 and float(ramp["dbe_comp"]) > 0.0
    assert result.metrics(0)["boundary_f1"] == pytest.approx((1.0 + float(ramp["boundary_f1"])) / 2)
    assert "dbe_acc" not in evaluate_cache(cache, device="cpu", boundary=False).metrics(0)


def _bilinear_up(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling with half-pixel centres and edge clamping, written out in NumPy."""
    out = x.astype(np.float64)
    for axis, n_out in enumerate(size):
        n_in = out.shape[axis]
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        t = src - lo
        shape = [1, 1]
        shape[axis] = n_out
        t = t.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - t) + np.take(out, hi, axis=axis) * t
    return out


def test_disparity_baseline_rows_score_what_was_fitted_resized_before_inverting(tmp_path):
    # rough disparity at 8x10, gt at 32x40: the fit resizes the disparity to the gt, then inverts
    # (as the scorer treats the rough row); the evaluated rows must do the same, not invert first
    rng = np.random.default_rng(5)
    disparity = (0.2 + rng.random((2, 8, 10))).astype(np.float32)
    depth_up = np.stack([1.0 / _bilinear_up(d, (32, 40)) for d in disparity])
    gt = (depth_up * 1.3 * (1.0 + 0.2 * rng.random(depth_up.shape))).astype(np.float32)
    cache = write_cache(tmp_path / "c.h5", rough=disparity, gt=gt, max_depth=10.0, output_kind="disparity")
    run = tmp_path / "run"
    train_refiner(TrainConfig(train=str(cache), out=str(run), size=(64, 64), max_steps=1, device="cpu"))
    b = ckpt.read_config(run / "best")["baselines"]
    assert b["scale"] == pytest.approx(float(np.exp(np.mean(np.log(gt) - np.log(depth_up)))), rel=1e-5)
    result = evaluate_cache(cache, [run / "best"], device="cpu", boundary=False, protocol="none")
    # the scale + shift acts on the disparity (fitted in inverse depth): depth = 1 / (a p + b)
    shifted = 1.0 / (b["scale_shift"][0] / depth_up + b["scale_shift"][1])
    assert b["space"] == "disparity" and (shifted > 0).all()
    for row, pred in (("rough x scale", b["scale"] * depth_up), ("rough x (scale, shift)", shifted)):
        expected = np.mean([np.mean(np.abs(p - g) / g) for p, g in zip(pred, gt)])
        assert result.metrics(row)["abs_rel"] == pytest.approx(expected, rel=1e-4), row


def test_rough_depth_inverts_disparity_as_the_scorer_does():
    from refinedepth.baselines import rough_depth

    disparity = np.array([0.5, 0.0, -0.1, np.nan, 4.0])
    expected = [2.0, np.inf, np.inf, np.nan, 0.25]  # <= 0 is infinitely far; NaN stays unknown
    np.testing.assert_array_equal(rough_depth(disparity, "disparity"), expected)
    np.testing.assert_array_equal(rough_depth(torch.tensor(disparity), "disparity").numpy(), expected)
    np.testing.assert_array_equal(rough_depth(disparity, "metric"), disparity)
