"""The one scoring path (``refinedepth.scoring``): kind-aware conversion to metric depth, alignment,
and the same numbers in ``evaluate`` and in the refiner's validation.

References are NumPy formulas written here (MiDaS's inverse-depth least squares, median scaling,
abs_rel/rmse), not calls into the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from refinedepth.cache import CacheDataset, write_cache
from refinedepth.cli.main import cli
from refinedepth.errors import ConfigError
from refinedepth.evaluate import evaluate_cache
from refinedepth.scoring import Scorer, resolve_align, to_metric

H, W = 24, 32


def _gt(n=4, seed=0, holes=True):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    gt = np.stack([1.0 + 4.0 * xx / W + rng.uniform(0, 3) + 0.7 * (yy > H // 2) for _ in range(n)])
    gt = gt.astype(np.float32)
    if holes:
        gt[:, :2, :3] = 0.0  # invalid corner
    return gt


def _abs_rel(d, g):
    """Per-image mean of |d - g| / g over g > 0, averaged over images (NumPy, float64)."""
    d, g = np.asarray(d, np.float64), np.asarray(g, np.float64)
    return float(np.mean([np.mean(np.abs(di[gi > 0] - gi[gi > 0]) / gi[gi > 0]) for di, gi in zip(d, g)]))


def _rmse(d, g):
    d, g = np.asarray(d, np.float64), np.asarray(g, np.float64)
    return float(np.mean([np.sqrt(np.mean((di[gi > 0] - gi[gi > 0]) ** 2)) for di, gi in zip(d, g)]))


# -- to_metric ---------------------------------------------------------------------------------------
def test_exact_maps_of_every_kind_come_back_as_the_ground_truth():
    gt = _gt(holes=False).astype(np.float64)
    cases = [
        ("disparity", 5.0 / gt, "median"),
        ("disparity", 0.3 / gt + 0.02, "lstsq"),  # scale and shift in inverse depth
        ("relative", 0.25 * gt, "median"),
        ("relative", 0.25 * gt - 0.4, "lstsq"),
        ("metric", 2.0 * gt, "median"),
        ("metric", gt, "none"),
    ]
    for kind, pred, align in cases:
        np.testing.assert_allclose(to_metric(pred, kind, gt=gt, align=align), gt, rtol=1e-10, err_msg=f"{kind}/{align}")


def test_disparity_lstsq_is_fitted_in_inverse_depth_like_midas():
    rng = np.random.default_rng(3)
    gt = _gt(1, holes=True)[0].astype(np.float64)
    disp = 2.0 / np.maximum(gt, 0.5) + 0.1 + 0.05 * rng.standard_normal(gt.shape)
    valid = gt > 0
    # MiDaS (compute_scale_and_shift): least squares of [disp, 1] against 1 / gt on valid pixels
    A = np.stack([disp[valid], np.ones(valid.sum())], axis=1)
    (s, t), *_ = np.linalg.lstsq(A, 1.0 / gt[valid], rcond=None)
    expected = 1.0 / (s * disp + t)
    np.testing.assert_allclose(to_metric(disp, "disparity", gt=gt, align="lstsq"), expected, rtol=1e-9)
    # median: invert, then scale by median(gt) / median(depth) over the valid pixels
    depth = 1.0 / disp
    expected = depth * np.median(gt[valid]) / np.median(depth[valid])
    np.testing.assert_allclose(to_metric(disp, "disparity", gt=gt, align="median"), expected, rtol=1e-12)


def test_torch_in_torch_out_and_shapes():
    gt = torch.from_numpy(_gt(2, holes=False))[:, None]
    out = to_metric(3.0 / gt, "disparity", gt=gt, align="median")
    assert isinstance(out, torch.Tensor) and out.shape == gt.shape
    torch.testing.assert_close(out, gt.double(), rtol=1e-6, atol=0)


def test_align_auto_and_none():
    assert resolve_align("auto", "metric") == "none"
    assert resolve_align("auto", "relative") == resolve_align("auto", "disparity") == "lstsq"
    assert resolve_align("lstsq", "metric") == "lstsq"
    with pytest.raises(ConfigError) as err:
        to_metric(np.ones((4, 4)), "disparity")
    assert str(err.value) == (
        "disparity maps have no metric scale and cannot be scored with align 'none': "
        "pass --align auto (lstsq for them), lstsq or median"
    )
    with pytest.raises(ConfigError, match="unknown alignment 'scale'"):
        Scorer(["rough"], align="scale")


# -- Scorer -------------------------------------------------------------------------------------------
def test_scorer_resizes_converts_and_masks_like_a_numpy_reference():
    rng = np.random.default_rng(1)
    gt = _gt(3)
    small = (12, 16)
    disp = torch.from_numpy(1.0 / np.maximum(gt, 1.0) + 0.03 * rng.standard_normal(gt.shape)).float()[:, None]
    disp_small = F.interpolate(disp, size=small, mode="area")
    valid = torch.from_numpy(gt > 0)[:, None]
    valid[:, :, -1, :] = False  # the caller's own mask counts too
    scorer = Scorer(["rough"], protocol="none", align="lstsq")
    scorer.update("rough", disp_small, torch.from_numpy(gt)[:, None], kind="disparity", valid=valid)
    got = scorer.compute()["rough"]

    up = F.interpolate(disp_small, size=(H, W), mode="bilinear", align_corners=False)[:, 0].double().numpy()
    g = np.where(valid[:, 0].numpy(), gt, 0.0)
    depth = []
    for p, gi in zip(up, g):
        m = gi > 0
        (s, t), *_ = np.linalg.lstsq(np.stack([p[m], np.ones(m.sum())], 1), 1.0 / gi[m], rcond=None)
        depth.append(1.0 / (s * p + t))
    assert got["count"] == 3
    assert got["abs_rel"] == pytest.approx(_abs_rel(depth, g), rel=1e-6)
    assert got["rmse"] == pytest.approx(_rmse(depth, g), rel=1e-6)


def test_scorer_merge_and_state_equal_one_pass():
    gt = torch.from_numpy(_gt(4))[:, None]
    pred = gt * 1.1 + 0.2
    whole = Scorer(["a", "b"], protocol="nyu", align="auto")
    whole.update("a", pred, gt)
    whole.update("b", 2.0 / gt.clamp_min(0.1), gt, kind="disparity")
    parts = [Scorer(["a", "b"], protocol="nyu", align="auto") for _ in range(2)]
    for part, sl in zip(parts, (slice(0, 1), slice(1, 4))):
        part.update("a", pred[sl], gt[sl])
        part.update("b", 2.0 / gt[sl].clamp_min(0.1), gt[sl], kind="disparity")
    merged = parts[0].merge(parts[1]).compute()
    rebuilt = Scorer(["a", "b"], protocol="nyu", align="auto").load_state(
        parts[0].state_array()  # already holds both parts
    ).compute()
    for stage in ("a", "b"):
        for key, value in whole.compute()[stage].items():
            assert merged[stage][key] == pytest.approx(value, rel=1e-12), (stage, key)
            assert rebuilt[stage][key] == pytest.approx(value, rel=1e-12), (stage, key)
    assert whole.alignments == {"a": "none", "b": "lstsq"}


# -- acceptance: evaluate and refiner validation, one function, the same numbers ------------------------
def _disparity_cache(path, c=5.0, n=4):
    gt = _gt(n)
    rough = np.where(gt > 0, c / np.where(gt > 0, gt, 1.0), 0.0).astype(np.float32)
    return write_cache(path, rough=rough, gt=gt, output_kind="disparity", max_depth=10.0, protocol="none"), gt


def test_perfect_disparity_cache_scores_zero_in_evaluate_and_in_refiner_validation(tmp_path):
    from refinedepth.refiner.api import Refiner
    from refinedepth.refiner.train import validate

    from ._helpers_evaluate import tiny_refiner

    cache, _ = _disparity_cache(tmp_path / "disp.h5")
    runner = CliRunner()
    res = runner.invoke(
        cli, ["evaluate", "--cache", str(cache), "--align", "lstsq", "--json", str(tmp_path / "e.json"), "-q", "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    import json

    cli_rough = json.loads((tmp_path / "e.json").read_text())["stages"][0]["metrics"]
    assert cli_rough["abs_rel"] < 1e-6 and cli_rough["rmse"] < 1e-5 and cli_rough["d1"] == 1.0

    ref = tiny_refiner(tmp_path / "ref", cache)
    evaluated = evaluate_cache(cache, [ref], align="auto", batch_size=3, device="cpu")
    refiner = Refiner.from_pretrained(ref, optimize=None)
    validated = validate(
        refiner.generator, CacheDataset(cache), norm=refiner.normalization, inputs=refiner.inputs,
        residual=refiner.residual, size=refiner.size, protocol="none", device=torch.device("cpu"), batch_size=2,
    )
    assert validated["rough_align"] == "lstsq" and evaluated.alignments == {
        "rough": "lstsq", "rough x scale": "none", "rough x (scale, shift)": "none", "+ ref": "none"
    }
    assert validated["rough"]["abs_rel"] < 1e-6
    for key, value in validated["rough"].items():
        assert evaluated.metrics("rough")[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        assert cli_rough[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    for key, value in validated["refined"].items():  # evaluate's refiner runs the fast CPU path
        assert evaluated.metrics("+ ref")[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_relative_affine_cache_scores_zero_with_lstsq(tmp_path):
    gt = _gt(5)
    rough = (0.3 * gt + 2.0).astype(np.float32)
    cache = write_cache(tmp_path / "rel.h5", rough=rough, gt=gt, output_kind="relative", max_depth=10.0)
    out = tmp_path / "e.json"
    res = CliRunner().invoke(cli, ["evaluate", "--cache", str(cache), "--align", "lstsq", "--json", str(out), "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    import json

    metrics = json.loads(out.read_text())["stages"][0]["metrics"]
    assert metrics["abs_rel"] < 1e-6 and metrics["count"] == 5
    # median scaling cannot undo the shift: a clearly non-zero error
    assert evaluate_cache(cache, align="median", device="cpu").metrics(0)["abs_rel"] > 0.05


def test_align_none_on_a_disparity_cache_is_one_line(tmp_path):
    cache, _ = _disparity_cache(tmp_path / "d.h5")
    res = CliRunner().invoke(cli, ["evaluate", "--cache", str(cache), "--align", "none", "-q"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert lines == [
        f"Error: cache {str(cache)!r} holds disparity rough maps, which have no metric scale: --align none "
        "cannot score them; pass --align auto (lstsq for them), lstsq or median"
    ]
    # the default, auto, scores them (median-scaled)
    assert evaluate_cache(cache, device="cpu").metrics(0)["abs_rel"] < 1e-6


def test_non_positive_disparity_is_infinitely_far_and_clamped_to_the_protocol_range():
    gt = np.full((1, 480, 640), 5.0)
    disp = np.full((1, 480, 640), 0.2)  # 5 m everywhere ...
    disp[0, 100:200, 100:200] = 0.0  # ... except a block at infinity
    d = to_metric(disp, "disparity", gt=gt, align="median")
    assert np.isinf(d[0, 150, 150]) and d[0, 0, 0] == pytest.approx(5.0)
    scorer = Scorer(["rough"], protocol="nyu", align="median")
    scorer.update("rough", disp, gt, kind="disparity")
    # NumPy: the block counts as 10 m (the nyu upper bound) inside the Eigen crop, rows 45:471, cols 41:601
    far = 100 * 100
    pixels = (471 - 45) * (601 - 41)
    assert scorer.compute()["rough"]["abs_rel"] == pytest.approx(far * (10.0 - 5.0) / 5.0 / pixels, rel=1e-9)


def _all_reduce_worker(rank, world, init_file, out_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gt = torch.from_numpy(_gt(4))[:, None]
        mine = slice(0, 1) if rank == 0 else slice(1, 4)
        scorer = Scorer(["rough"], protocol="none", align="median")
        scorer.update("rough", 3.0 / gt[mine].clamp_min(0.5), gt[mine], kind="disparity")
        result = scorer.all_reduce().compute()["rough"]
        if rank == 0:
            np.save(out_file, np.array([result["abs_rel"], result["rmse"], result["count"]]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_over_two_gloo_processes_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "r.npy"
    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    gt = torch.from_numpy(_gt(4))[:, None]
    one = Scorer(["rough"], protocol="none", align="median")
    one.update("rough", 3.0 / gt.clamp_min(0.5), gt, kind="disparity")
    expected = one.compute()["rough"]
    np.testing.assert_allclose(np.load(out), [expected["abs_rel"], expected["rmse"], 4], rtol=1e-12)


def test_auto_alignment_removes_an_affine_disparity_error_as_midas_evaluates():
    # disparity known up to scale and shift (MiDaS, Depth Anything): auto fits both in inverse depth
    rng = np.random.default_rng(3)
    gt = rng.uniform(1.0, 9.0, size=(2, 48, 64))
    disparity = 2.0 / gt + 0.3
    auto = Scorer(["rough"], protocol="nyu", align="auto")
    auto.update("rough", disparity, gt, kind="disparity")
    assert auto.alignments["rough"] == "lstsq" and auto.compute()["rough"]["abs_rel"] < 1e-9
    median = Scorer(["rough"], protocol="nyu", align="median")
    median.update("rough", disparity, gt, kind="disparity")
    assert median.compute()["rough"]["abs_rel"] > 0.05  # a scale cannot remove the shift


def test_infinitely_far_predictions_are_scored_at_max_depth_where_the_protocol_has_no_bound():
    # a disparity of 0 (e.g. the sky of a ReLU head) is infinitely far; under `none` it was an infinite error
    gt = np.full((1, 8, 8), 4.0)
    disparity = np.full((1, 8, 8), 0.25)
    disparity[0, 0, :4] = 0.0
    capped = Scorer(["rough"], protocol="none", max_depth=10.0)  # the converted depth, to isolate the cap
    depth = np.where(disparity > 0, 1.0 / np.where(disparity > 0, disparity, 1.0), np.inf)
    capped.update("rough", depth, gt)
    want = 4 * abs(10.0 - 4.0) / 4.0 / 64  # four pixels at 10 m against 4 m, the rest exact
    assert capped.compute()["rough"]["abs_rel"] == pytest.approx(want, rel=1e-12)
    uncapped = Scorer(["rough"], protocol="none")
    with np.errstate(over="ignore"):
        uncapped.update("rough", depth, gt)
        assert uncapped.compute()["rough"]["abs_rel"] > 1e300
    nyu = Scorer(["rough"], protocol="nyu", max_depth=80.0)  # a protocol's own bound wins
    assert nyu.far == 10.0
