"""``evaluate_cache`` and ``refinedepth evaluate`` on fabricated caches.

References are computed here independently of the evaluation loop: the metrics module called
once on whole arrays, the predictions resized with plain ``F.interpolate``.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from refinedepth.cache import write_cache
from refinedepth.cli.main import cli
from refinedepth.evaluate import evaluate_cache, stage_names
from refinedepth.metrics import METRIC_NAMES, compute_metrics

N, ROUGH, GT = 7, (24, 32), (36, 48)


def _scene(n=N, seed=0):
    """gt with a few invalid pixels, and a rough map = blurred, biased, noisy gt at ROUGH size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : GT[0], 0 : GT[1]]
    gt = np.stack([1.0 + 3.0 * (xx / GT[1]) + rng.uniform(0, 2) + 0.5 * (yy > GT[0] // 2) for _ in range(n)])
    gt = gt.astype(np.float32)
    gt[:, :2, :3] = 0.0  # invalid corner
    gt[:, 5, 5] = np.nan
    small = F.interpolate(torch.from_numpy(np.nan_to_num(gt))[:, None], size=ROUGH, mode="area")
    rough = (small * 1.1 + 0.05 * torch.from_numpy(rng.standard_normal((n, 1, *ROUGH))).float()).numpy()
    rgb = rng.integers(0, 256, size=(n, *ROUGH, 3), dtype=np.uint8)
    return rough.astype(np.float32), gt, rgb


def _reference(rough, gt, **kw):
    pred = F.interpolate(torch.from_numpy(rough), size=GT, mode="bilinear", align_corners=False)[:, 0]
    return compute_metrics(pred.numpy(), np.where(np.isfinite(gt), gt, 0.0), **kw)


@pytest.fixture(scope="module")
def metric_cache(tmp_path_factory):
    rough, gt, rgb = _scene()
    path = tmp_path_factory.mktemp("eval") / "metric.h5"
    write_cache(path, rough=rough, gt=gt, rgb=rgb, max_depth=10.0, protocol="none", backbone="toy")
    return path, rough, gt


@pytest.mark.parametrize("averaging", ["image", "pixel"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_rough_row_equals_metrics_module(metric_cache, averaging, batch_size):
    path, rough, gt = metric_cache
    result = evaluate_cache(path, averaging=averaging, batch_size=batch_size, device="cpu")
    assert result.stages == ["rough"] and result.count == N
    expected = _reference(rough, gt, averaging="pooled" if averaging == "pixel" else averaging)
    for name in METRIC_NAMES:
        assert result.metrics(0)[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), name


def test_protocol_defaults_to_the_caches(tmp_path):
    rough, gt, _ = _scene(3)
    gt = gt * 4  # some gt beyond 10 m: the nyu range drops them
    path = write_cache(tmp_path / "nyu.h5", rough=rough * 4, gt=gt, protocol="nyu", max_depth=10.0)
    result = evaluate_cache(path, device="cpu")
    assert result.protocol == "nyu"
    assert result.metrics(0)["rmse"] == pytest.approx(_reference(rough * 4, gt, protocol="nyu")["rmse"], rel=1e-6)
    other = evaluate_cache(path, protocol="none", device="cpu")
    assert other.metrics(0)["rmse"] != pytest.approx(result.metrics(0)["rmse"], rel=1e-3)


def test_lstsq_alignment_on_a_relative_cache(tmp_path):
    rough, gt, _ = _scene(4)
    # a relative backbone: depth up to an unknown scale and shift
    relative = (rough - 0.5) * 0.2
    path = write_cache(tmp_path / "rel.h5", rough=relative, gt=gt, output_kind="relative", max_depth=10.0)
    auto = evaluate_cache(path, device="cpu")  # align auto: scale and shift for relative maps
    scaled = evaluate_cache(path, align="median", device="cpu")
    assert auto.align == "auto" and auto.alignments == {"rough": "lstsq"}
    expected = _reference(relative, gt, align="lstsq")
    assert auto.metrics(0)["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-6)
    assert scaled.metrics(0)["abs_rel"] == pytest.approx(_reference(relative, gt, align="median")["abs_rel"], rel=1e-6)
    assert auto.metrics(0)["abs_rel"] < scaled.metrics(0)["abs_rel"]  # median cannot undo a shift


def test_per_sample_csv_and_limit(metric_cache, tmp_path):
    path, rough, gt = metric_cache
    out = tmp_path / "per_sample.csv"
    result = evaluate_cache(path, csv_path=out, limit=5, device="cpu")
    assert result.count == 5
    rows = list(csv.DictReader(out.open()))
    assert [r["index"] for r in rows] == [str(i) for i in range(5)]
    assert {r["stage"] for r in rows} == {"rough"}
    mean = np.mean([float(r["abs_rel"]) for r in rows])
    assert mean == pytest.approx(result.metrics(0)["abs_rel"], rel=1e-6)
    assert mean == pytest.approx(_reference(rough[:5], gt[:5])["abs_rel"], rel=1e-6)


def test_stage_names():
    assert stage_names([]) == ["rough"]
    assert stage_names(["runs/r1", "runs/r2/"]) == ["rough", "+ r1", "+ r1 + r2"]


def test_table_layout(metric_cache):
    path, _, _ = metric_cache
    table = evaluate_cache(path, device="cpu").table()
    lines = table.splitlines()
    assert "metric.h5" in lines[0] and "7 samples" in lines[0]
    assert lines[1].split()[:4] == ["stage", "rel", "sq_rel", "rms"]
    assert lines[3].startswith("rough")


def test_cli_json_and_errors(metric_cache, tmp_path):
    path, rough, gt = metric_cache
    out = tmp_path / "eval.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", "--cache", str(path), "--json", str(out), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "rough" in result.output
    payload = json.loads(out.read_text())
    assert payload["count"] == N and payload["stages"][0]["name"] == "rough"
    assert payload["stages"][0]["metrics"]["rmse"] == pytest.approx(_reference(rough, gt)["rmse"], rel=1e-6)

    missing = runner.invoke(cli, ["evaluate", "--cache", str(tmp_path / "nope.h5"), "-q"])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines()[-1] == (
        f"Error: cache {str(tmp_path / 'nope.h5')!r} does not exist: expected an HDF5 file from 'refinedepth cache'"
    )
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    junk = runner.invoke(cli, ["evaluate", "--cache", str(tmp_path / "junk.h5"), "-q"])
    assert junk.exit_code == 1 and junk.output.startswith("Error: ") and "junk.h5" in junk.output
    assert len(junk.output.strip().splitlines()) == 1

    no_refiner = runner.invoke(cli, ["evaluate", "--cache", str(path), "--refiner", str(tmp_path / "none"), "-q"])
    assert no_refiner.exit_code == 1
    assert "refiner checkpoint" in no_refiner.output and "does not exist" in no_refiner.output


def test_the_json_averaging_is_what_the_option_takes_and_unwritable_outputs_name_the_users_path(metric_cache, tmp_path):
    path, _, _ = metric_cache
    runner = CliRunner()
    out = tmp_path / "p.json"
    res = runner.invoke(cli, ["evaluate", "--cache", str(path), "--averaging", "pixel", "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["averaging"] == "pixel"  # feeds back into --averaging
    assert "pooled over all pixels (boundary columns: mean over images)" in res.output
    (tmp_path / "k.h5").write_bytes(b"")
    res = runner.invoke(cli, ["evaluate", "--cache", str(path), "--csv", str(tmp_path / "k.h5" / "x.csv"), "-q"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        f"Error: cannot write {str(tmp_path / 'k.h5' / 'x.csv')!r}: {str(tmp_path / 'k.h5')!r} is a file, not a "
        "folder; choose another path"
    )


def test_visuals_are_written(metric_cache, tmp_path):
    from PIL import Image

    path, _, _ = metric_cache
    result = evaluate_cache(path, visuals_dir=tmp_path / "vis", num_visuals=3, device="cpu")
    assert result.visuals[0].endswith("grid.png") and len(result.visuals) == 4
    grid = np.asarray(Image.open(result.visuals[0]))
    single = np.asarray(Image.open(result.visuals[1]))
    assert grid.ndim == 3 and grid.shape[0] > 2 * single.shape[0] and grid.shape[1] == single.shape[1]


def test_two_chained_refiners_give_three_rows(tmp_path):
    from refinedepth.refiner.api import Refiner

    from ._helpers_evaluate import degraded_cache, shared_refiner

    ref = shared_refiner()
    cache = degraded_cache(tmp_path / "test.h5", n=4, seed=1)
    result = evaluate_cache(cache, [ref, ref], batch_size=3, device="cpu", csv_path=tmp_path / "s.csv")
    assert result.stages == ["rough", "rough x scale", "rough x (scale, shift)", "+ refiner", "+ refiner + refiner"]
    # reference: the refiner applied by hand to the whole batch, then the metrics module
    with __import__("refinedepth.cache", fromlist=["open_cache"]).open_cache(cache) as reader:
        rough = np.stack([reader.read(i)["rough"] for i in range(4)])
        gt = np.stack([reader.read(i)["gt"] for i in range(4)])
    r = Refiner.from_pretrained(ref)
    once = r.refine_tensor(torch.from_numpy(rough), output_kind="metric")
    twice = r.refine_tensor(once, output_kind="metric")
    rows = dict(result.rows)
    base = r.meta["baselines"]
    a, b = base["scale_shift"]
    ups = {}
    for name, pred in zip(["rough", "+ refiner", "+ refiner + refiner"], [torch.from_numpy(rough), once, twice]):
        # 64x64 -> 48x64 shrinks the rows: bilinear with antialiasing (the geometry convention)
        ups[name] = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear", align_corners=False, antialias=True)[:, 0].numpy()
    ups["rough x scale"] = base["scale"] * ups["rough"]
    ups["rough x (scale, shift)"] = a * ups["rough"] + b
    for name, up in ups.items():
        expected = compute_metrics(up, gt)
        for metric in METRIC_NAMES:
            assert rows[name][metric] == pytest.approx(expected[metric], rel=1e-5, abs=1e-7), (name, metric)
    per_sample = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(per_sample) == 20 and [r["stage"] for r in per_sample[:5]] == result.stages
    # win rates: a count over the per-sample rows
    last = {r["id"]: float(r["abs_rel"]) for r in per_sample if r["stage"] == "+ refiner + refiner"}
    for other in ("rough", "rough x scale", "rough x (scale, shift)"):
        theirs = {r["id"]: float(r["abs_rel"]) for r in per_sample if r["stage"] == other}
        expected = np.mean([last[k] < theirs[k] for k in last])
        assert result.win_rates[other]["abs_rel"] == pytest.approx(expected)
    assert "+ refiner" not in result.win_rates  # an earlier stage of the chain is not a baseline


def test_cli_visuals_message_counts_samples(metric_cache, tmp_path):
    path, _, _ = metric_cache
    res = CliRunner().invoke(
        cli, ["evaluate", "--cache", str(path), "--visuals", str(tmp_path / "v"), "--num-visuals", "3", "-q", "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert f"wrote a picture grid of 3 sample(s) and 3 per-sample picture(s) to {tmp_path / 'v'}" in res.output
    assert sorted(p.name for p in (tmp_path / "v").iterdir())[0] == "grid.png"
    assert len(list((tmp_path / "v").iterdir())) == 4
