"""The library API (no CLI): Refiner.from_pretrained(...).refine(...) on numpy and torch input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinedepth import Refiner as LazyRefiner
from refinedepth.errors import CheckpointError, ConfigError, DataError, ShapeError
from refinedepth.refiner.api import Refiner
from refinedepth.refiner.normalize import Normalization
from refinedepth.refiner.train import TrainConfig, train_refiner

from ._helpers_refiner import make_degraded_cache, one_torch_thread  # noqa: F401
from ._threads import torch_threads


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("refiner-api")
    train = make_degraded_cache(d / "train.h5", 8, "train")
    cfg = TrainConfig(train=str(train), out=str(d / "run"), preset="small", size=(64, 64), max_steps=3, device="cpu")
    _one_thread(train_refiner, cfg)
    return d / "run"


@pytest.fixture(scope="module")
def rgb_run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("refiner-api-rgb")
    train = make_degraded_cache(d / "train.h5", 4, "train", with_rgb=True)
    cfg = TrainConfig(train=str(train), out=str(d / "run"), preset="small", size=(64, 64), max_steps=2,
                      device="cpu", inputs="rough+rgb")
    _one_thread(train_refiner, cfg)
    return d / "run"


def _one_thread(fn, *args):
    with torch_threads(1):
        return fn(*args)


def test_refine_numpy_at_an_untrained_size_returns_metric_depth_at_that_size(run_dir):
    refiner = Refiner.from_pretrained(run_dir)
    assert refiner.size == (64, 64) and refiner.max_depth == 10.0 and refiner.residual
    rng = np.random.default_rng(0)
    rough = (2.0 + rng.random((37, 91))).astype(np.float64)
    refined = refiner.refine(rough)
    assert isinstance(refined, np.ndarray) and refined.dtype == np.float32
    assert refined.shape == (37, 91)
    assert np.isfinite(refined).all() and (refined > 0).all() and (refined <= 10.0).all()
    # residual refiner after 3 steps: still close to its input
    assert np.abs(refined - rough).mean() < 1.0


def test_batches_single_maps_and_torch_agree(run_dir):
    refiner = LazyRefiner.from_pretrained(run_dir, device="cpu")
    rough = torch.rand(3, 50, 70) * 4 + 1
    batch = refiner.refine(rough)
    assert isinstance(batch, torch.Tensor) and batch.shape == (3, 50, 70)
    single = refiner.refine(rough[1].numpy())
    np.testing.assert_allclose(single, batch[1].numpy(), rtol=1e-5, atol=1e-5)
    four = refiner.refine(rough[:, None], batch_size=2)
    assert four.shape == (3, 1, 50, 70)
    torch.testing.assert_close(four[:, 0], batch)
    tensor = refiner.refine_tensor(rough[:, None])
    torch.testing.assert_close(tensor[:, 0], batch)


def test_residual_output_keeps_full_resolution_detail(run_dir):
    refiner = Refiner.from_pretrained(run_dir)
    rough = np.full((128, 128), 3.0, np.float32)
    rough[:, 64:] = 5.0  # a sharp edge the 64x64 model cannot represent
    refined = refiner.refine(rough)
    assert refined[0, 64] - refined[0, 63] > 1.5


def test_rgb_conditioned_refiner_takes_uint8_images_of_another_size(rgb_run_dir):
    refiner = Refiner.from_pretrained(rgb_run_dir)
    assert refiner.inputs == "rough+rgb"
    rough = np.full((40, 60), 2.5, np.float32)
    rgb = np.random.default_rng(1).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    assert refiner.refine(rough, rgb).shape == (40, 60)
    batch = refiner.refine(np.stack([rough, rough]), np.stack([rgb, rgb]))
    assert batch.shape == (2, 40, 60)
    with pytest.raises(ShapeError, match=r"conditioned on 'rough\+rgb' and needs rgb \[B,3,H,W\]; got rgb=None"):
        refiner.refine(rough)
    with pytest.raises(ShapeError, match=r"rgb: expected 3 channels \(channels last\), got shape \(120, 180, 4\)"):
        refiner.refine(rough, np.zeros((120, 180, 4), np.uint8))


def test_bad_inputs_get_clear_errors(run_dir):
    refiner = Refiner.from_pretrained(run_dir)
    bad = np.ones((8, 8), np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(DataError, match=r"rough has 1 non-finite values \(NaN/inf\) out of 64"):
        refiner.refine(bad)
    with pytest.raises(ShapeError, match=r"rough: expected \[H,W\], \[B,H,W\] or \[B,1,H,W\], got shape \(2, 3, 8, 8\)"):
        refiner.refine(np.ones((2, 3, 8, 8), np.float32))
    with pytest.raises(ShapeError, match=r"expected a non-empty map, got shape \(0, 8\)"):
        refiner.refine(np.ones((0, 8), np.float32))
    with pytest.raises(ConfigError, match=r"trained on metric rough maps \(max depth 10 m\) but received 'relative'"):
        refiner.refine(np.ones((8, 8), np.float32), output_kind="relative")


def test_missing_and_non_checkpoint_directories_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist: expected a directory written by 'refinedepth train-refiner"):
        Refiner.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"is not a refiner checkpoint: expected config.json in it or in its best/"):
        Refiner.from_pretrained(tmp_path)


def test_per_sample_normalisation_lifts_relative_and_disparity_maps():
    rel = Normalization(output_kind="relative", max_depth=10.0)
    x = torch.linspace(0, 1, 100).view(1, 1, 10, 10)
    u = rel.rough_to_unit(x * 7 + 3)
    torch.testing.assert_close(u, rel.rough_to_unit(x))  # scale/shift invariant
    assert u.min() == -1 and u.max() == 1
    disp = Normalization(output_kind="disparity", max_depth=10.0)
    torch.testing.assert_close(disp.rough_to_unit(x), -u)  # near (high disparity) maps low, like depth
    metric = Normalization(output_kind="metric", max_depth=10.0)
    torch.testing.assert_close(metric.rough_to_unit(torch.tensor([0.0, 5.0, 10.0, 20.0])), torch.tensor([-1.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(metric.unit_to_depth(torch.tensor([-1.0, 0.0, 1.0, 2.0])), torch.tensor([0.01, 5.0, 10.0, 10.0]))


def test_per_sample_percentiles_are_exact_on_a_large_map():
    # 1080x1440 (1.6 M pixels): NumPy's linear-interpolation percentiles, not a subsample's
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 1.0, (1, 1, 1080, 1440)).astype(np.float32)
    rel = Normalization(output_kind="relative", max_depth=10.0)
    lo, hi = np.percentile(x.astype(np.float64), [rel.low_percentile, rel.high_percentile])
    expected = np.clip((x - lo) / (hi - lo) * 2 - 1, -1, 1)
    got = rel.rough_to_unit(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_a_maps_percentiles_do_not_depend_on_its_batch(monkeypatch):
    # the limit is per map: a batch above it in total still gets each map's exact percentiles
    from refinedepth.refiner import normalize

    monkeypatch.setattr(normalize, "QUANTILE_LIMIT", 500)
    rng = np.random.default_rng(4)
    x = rng.gamma(2.0, 1.0, (4, 1, 20, 20)).astype(np.float32)  # 400 per map, 1600 in the batch
    rel = Normalization(output_kind="relative", max_depth=10.0)
    got = rel.rough_to_unit(torch.from_numpy(x)).numpy()
    for i in range(4):
        lo, hi = np.percentile(x[i].astype(np.float64), [rel.low_percentile, rel.high_percentile])
        np.testing.assert_allclose(got[i], np.clip((x[i] - lo) / (hi - lo) * 2 - 1, -1, 1), atol=2e-6)
        np.testing.assert_array_equal(got[i], rel.rough_to_unit(torch.from_numpy(x[i : i + 1])).numpy()[0])


def test_optimize_hook_runs_inference_through_the_returned_module(run_dir):
    calls = []

    class Doubler(torch.nn.Module):
        def __init__(self, g):
            super().__init__()
            self.g = g

        def forward(self, x):
            calls.append(tuple(x.shape))
            return self.g(x)

    refiner = Refiner.from_pretrained(run_dir, optimize=Doubler)
    plain = Refiner.from_pretrained(run_dir, optimize=None)
    rough = np.full((20, 20), 3.0, np.float32)
    np.testing.assert_array_equal(refiner.refine(rough), plain.refine(rough))
    assert calls == [(1, 1, 64, 64)]


def test_default_cpu_inference_path_is_the_fast_one_and_equals_plain(run_dir):
    from refinedepth.refiner.fast import FastInference

    fast = Refiner.from_pretrained(run_dir)  # optimize="auto"
    plain = Refiner.from_pretrained(run_dir, optimize=None)
    assert isinstance(fast._module, FastInference)
    assert plain._module is plain.generator
    rough = np.random.default_rng(0).uniform(0.5, 8.0, (3, 50, 70)).astype(np.float32)
    np.testing.assert_allclose(fast.refine(rough), plain.refine(rough), rtol=1e-5, atol=1e-5)
