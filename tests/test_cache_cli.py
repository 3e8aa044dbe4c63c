"""``refinedepth cache`` / ``cache-merge`` / ``export-ab`` / ``inspect`` end to end.

The slow tests run the real command in subprocesses: one is SIGKILLed mid-way and resumed, one
runs under ``torchrun`` with two CPU ranks (gloo). Both compare against an uninterrupted
single-process run. ``OMP_NUM_THREADS=1`` everywhere, and batch sizes that give every sample the
same batch shape in both runs, make the backbone's floating point bitwise reproducible.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from refinedepth.cache import open_cache, write_cache
from refinedepth.cli.main import cli
from refinedepth.errors import CacheError

from ._threads import torch_threads

# A small FCRN (timm resnet18 encoder at 64x80) over tiny synthetic scenes: ~0.05 s a sample.
BACKBONE = ["--backbone", "fcrn", "--backbone-arg", "encoder=resnet18", "--backbone-arg", "input_size=[64,80]"]
DATA = ["--dataset", "synthetic", "--dataset-arg", "size=[48,64]", "--split", "train"]
COMMON = [*BACKBONE, *DATA, "--size", "32x40", "--device", "cpu", "-q"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("REFINEDEPTH_DEBUG", None)
    return env


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "refinedepth", *args], env=_env(), capture_output=True, text=True, **kw)


def _reference(args: list[str], out: Path) -> None:
    """The uninterrupted single-process run, in this process with one torch thread (the same
    kernels as a subprocess with OMP_NUM_THREADS=1, without paying its start-up)."""
    with torch_threads(1):
        result = _invoke([*args, "--workers", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output


def _assert_same_cache(a: Path, b: Path) -> None:
    with open_cache(a) as x, open_cache(b) as y:
        assert x.config == y.config
        assert len(x) == len(y) and x.complete and y.complete
        assert x.sample_ids() == y.sample_ids()
        for i in range(len(x)):
            sx, sy = x.read(i), y.read(i)
            for key in ("rough", "gt", "valid", "rgb"):
                if sx[key] is None:
                    assert sy[key] is None
                else:
                    np.testing.assert_array_equal(sx[key], sy[key], err_msg=f"{key} of sample {i}")


def _done_count(path: Path) -> int:
    """Poll the file the way a user would (`inspect`): readers take no lock and read via SWMR."""
    try:
        with open_cache(path) as c:
            return c.num_done
    except CacheError:  # not created yet, or the writer has not switched to SWMR yet
        return -1


@pytest.mark.slow
def test_killed_cache_resumes_to_the_uninterrupted_result(tmp_path):
    args = ["cache", *COMMON, "--limit", "8", "--batch-size", "1", "--with-rgb", "--dtype", "float16"]
    _reference(args, tmp_path / "ref.h5")

    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "refinedepth", *args, "--workers", "1", "--out", str(out)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _done_count(out) >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    with open_cache(out) as c:  # the killed writer's file still reads (through SWMR)
        k = c.num_done
    assert 3 <= k < 8

    again = _run([*args, "--workers", "0", "--out", str(out)], timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed after {k}" in again.stderr
    _assert_same_cache(out, tmp_path / "ref.h5")

    verify = _invoke(["inspect", str(out), "--verify", "-q"])
    assert verify.exit_code == 0, verify.output
    assert "8 of 8 done" in verify.output and "OK: every chunk and sample read, all finite" in verify.output


@pytest.mark.slow
def test_torchrun_two_ranks_merge_equals_single_process(tmp_path):
    args = ["cache", *COMMON, "--limit", "8", "--batch-size", "2"]
    _reference(args, tmp_path / "single.h5")
    out = tmp_path / "run" / "multi.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "refinedepth", *args, "--workers", "0", "--out", str(out)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "merged 2 shards" in proc.stderr
    shards = sorted((tmp_path / "run" / "multi.shards").glob("*.h5"))
    assert [s.name for s in shards] == ["multi-00001-of-00002.h5", "multi-00002-of-00002.h5"]
    with open_cache(out) as c:
        assert c.is_virtual
    _assert_same_cache(out, tmp_path / "single.h5")
    # --overwrite sets the old cache aside and deletes it once the new shards are merged
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "refinedepth", *args, "--workers", "0", "--out", str(out), "--overwrite"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["multi.h5", "multi.shards"]
    _assert_same_cache(out, tmp_path / "single.h5")
    # the merged file keeps working when its folder moves; cache-merge by hand gives the same
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    _assert_same_cache(moved / "multi.h5", tmp_path / "single.h5")
    result = CliRunner().invoke(cli, ["cache-merge", str(moved / "again.h5"), *map(str, sorted((moved / "multi.shards").glob("*.h5")))])
    assert result.exit_code == 0, result.output
    _assert_same_cache(moved / "again.h5", tmp_path / "single.h5")


# ---------------------------------------------------------------------------------- refusals


def _invoke(args):
    return CliRunner().invoke(cli, args)


def _error_line(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_refuses_a_file_made_by_another_backbone_or_size(tmp_path):
    out = tmp_path / "c.h5"
    rng = np.random.default_rng(0)
    write_cache(out, rough=rng.random((2, 1, 32, 40)), gt=rng.random((2, 48, 64)), backbone="other",
                dataset="synthetic", split="train", limit=2)
    line = _error_line(_invoke(["cache", *COMMON, "--limit", "2", "--out", str(out)]))
    assert f"Error: {out} was made by a different command (" in line
    assert "backbone: fcrn vs other" in line and "--overwrite" in line
    size = _error_line(_invoke(["cache", *COMMON, "--limit", "2", "--size", "16x16", "--out", str(out)]))
    assert "rough_size: [16, 16] vs [32, 40]" in size


def test_refuses_a_file_that_is_not_a_cache(tmp_path):
    out = tmp_path / "notes.h5"
    out.write_text("not hdf5")
    line = _error_line(_invoke(["cache", *COMMON, "--limit", "2", "--out", str(out)]))
    assert line == f"Error: {out} is not a refinedepth cache: not an HDF5 file; make one with 'refinedepth cache'"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    line = _error_line(_invoke(["inspect", str(other)]))
    assert "other.h5 is not a refinedepth cache (HDF5 without format='refinedepth-cache' attribute)" in line


def test_refuses_a_truncated_file(tmp_path):
    rng = np.random.default_rng(0)
    out = write_cache(tmp_path / "t.h5", rough=rng.random((4, 1, 32, 40)), gt=rng.random((4, 48, 64)))
    size = out.stat().st_size
    os.truncate(out, size - 1000)
    line = _error_line(_invoke(["inspect", str(out), "--verify"]))
    assert line.startswith(f"Error: {out} is truncated ({size - 1000} bytes on disk, the HDF5 header expects")
    line = _error_line(_invoke(["cache", *COMMON, "--limit", "4", "--out", str(out)]))
    assert "is truncated" in line


def test_refuses_unknown_backbone_and_missing_dataset_path(tmp_path):
    line = _error_line(_invoke(["cache", "--backbone", "fcrm", *DATA, "--out", str(tmp_path / "x.h5")]))
    assert line.startswith("Error: unknown backbone 'fcrm'; did you mean 'fcrn'?")
    missing = tmp_path / "nowhere" / "nyu_depth_v2_labeled.mat"
    line = _error_line(_invoke(["cache", *BACKBONE, "--dataset", f"nyu:{missing}", "--out", str(tmp_path / "x.h5")]))
    assert line == (
        f"Error: dataset path {missing} does not exist (from --dataset nyu:{missing}); check the path, "
        "or use --dataset synthetic to try the pipeline without data"
    )
    assert not (tmp_path / "x.h5").exists()


def test_bad_size_is_a_usage_error(tmp_path):
    result = _invoke(["cache", *COMMON, "--size", "256", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "HEIGHTxWIDTH" in result.output


# ------------------------------------------------------------------------ in-process commands


def test_cache_command_in_process_then_inspect_and_overwrite(tmp_path):
    out = tmp_path / "c.h5"
    result = _invoke(["cache", *COMMON, "--limit", "3", "--batch-size", "2", "--workers", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rerun = _invoke(["cache", *COMMON, "--limit", "3", "--batch-size", "2", "--workers", "0", "--out", str(out)])
    assert rerun.exit_code == 0 and "all 3 samples already cached; nothing to do" in rerun.output
    with open_cache(out) as c:
        assert c.complete and len(c) == 3 and c.rough_size == (32, 40) and c.gt_size == (48, 64)
        assert c.config.backbone == "fcrn" and c.config.backbone_config["encoder"] == "resnet18"
        assert c.config.output_kind == "metric" and c.config.max_depth == 10.0 and c.config.protocol == "none"
        assert c.config.dataset_options == {"size": [48, 64]}
        assert c.sample_ids() == [f"synthetic-indoor-train-{i:06d}" for i in range(3)]
    info = _invoke(["inspect", str(out), "--json"])
    assert info.exit_code == 0
    import json

    report = json.loads(info.output)
    assert report["done"] == 3 and report["config"]["rough_size"] == [32, 40]
    gt_size = _invoke(["cache", *COMMON, "--limit", "3", "--gt-size", "24x32", "--workers", "0",
                       "--out", str(out), "--overwrite"])
    assert gt_size.exit_code == 0, gt_size.output
    with open_cache(out) as c:
        assert c.gt_size == (24, 32) and c.read(0)["gt"].shape == (24, 32)


def test_export_ab_round_trips_16bit_pairs(tmp_path):
    from refinedepth.data.io import png_depth_scale, read_depth_png

    rng = np.random.default_rng(1)
    rough = rng.uniform(0.2, 9.0, (3, 1, 8, 10)).astype(np.float32)
    gt = rng.uniform(0.2, 9.0, (3, 8, 10)).astype(np.float32)
    gt[0, 0, 0] = 0
    rough[1, 0, 0, 0] = 80.0  # beyond 65.535 m at scale 1000: clipped
    cache = write_cache(tmp_path / "c.h5", rough=rough, gt=gt, split="test", max_depth=10,
                        sample_ids=["a/b", "c", "d"])
    result = _invoke(["export-ab", str(cache), str(tmp_path / "ab"), "-q"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "ab" / "test").iterdir())
    assert [f.name for f in files] == ["000000_a_b.png", "000001_c.png", "000002_d.png"]
    for i, f in enumerate(files):
        assert png_depth_scale(f) == 1000
        pair = read_depth_png(f)
        assert pair.shape == (8, 20)
        expected_a = np.clip(rough[i, 0], 0, 65.535)
        np.testing.assert_allclose(pair[:, :10], expected_a, atol=0.5e-3 + 1e-6)
        np.testing.assert_allclose(pair[:, 10:], gt[i], atol=0.5e-3 + 1e-6)
    import json

    meta = json.loads((tmp_path / "ab" / "pairs_test.json").read_text())
    assert meta["count"] == 3 and meta["scale"] == 1000 and meta["clipped_rough_pixels"] == 1
    again = _invoke(["export-ab", str(cache), str(tmp_path / "ab")])
    assert "already has files; pass --overwrite" in _error_line(again)
    at_gt = write_cache(tmp_path / "g.h5", rough=rough[:, :, :4, :5], gt=gt, max_depth=80)
    assert _invoke(["export-ab", str(at_gt), str(tmp_path / "ab2"), "--at", "gt", "-q"]).exit_code == 0
    pair = read_depth_png(next((tmp_path / "ab2" / "all").iterdir()))
    assert pair.shape == (8, 20)
    assert png_depth_scale(next((tmp_path / "ab2" / "all").iterdir())) == 256


def test_inspect_describes_incomplete_cache_and_verify_fails(tmp_path):
    from refinedepth.cache import CacheConfig, CacheWriter

    cfg = CacheConfig(num_samples=3, rough_size=(8, 8), gt_size=(8, 8), backbone="fcrn")
    with CacheWriter.create(tmp_path / "p.h5", cfg) as w:
        w.write(0, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)), sample_id="x")
    plain = _invoke(["inspect", str(tmp_path / "p.h5")])
    assert plain.exit_code == 0 and "1 of 3 done" in plain.output and "INCOMPLETE" in plain.output
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "p.h5"), "--verify", "-q"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'p.h5'} failed verification: 2 of 3 sample(s) with problems (2 not done), "
        "first: sample 1 is not done; re-run the 'refinedepth cache' command that made it (it resumes)"
    )


def _identity_refiner(path, **meta_extra):
    """A residual refiner checkpoint whose output layer starts at zero: it returns its input."""
    from refinedepth.refiner import checkpoint as ckpt
    from refinedepth.refiner.models import GeneratorConfig, build_generator

    g = build_generator(GeneratorConfig(encoder="C4-C8-C8", decoder="CD8-C4", zero_init_output=True), seed=0)
    meta = {
        "refiner": {
            "preset": "tiny", "inputs": "rough", "residual": True, "size": [32, 40],
            "generator": g.config.to_dict(), "discriminator": {},
            "normalization": {"output_kind": "metric", "max_depth": 10.0},
        },
        "state": {"epoch": 1, "step": 1},
        **meta_extra,
    }
    return ckpt.save_checkpoint(path, config=meta, generator=g)


def test_refiner_option_chains_a_refiner_and_records_it(tmp_path):
    """An identity refiner (residual, zero-initialised output layer) leaves the rough maps as they
    were; the cache records the refiner's path and sha256 and becomes metric."""

    from refinedepth.cache import sha256_path

    refiner_dir = _identity_refiner(tmp_path / "refiner")
    args = ["cache", *COMMON, "--limit", "2", "--batch-size", "2", "--workers", "0"]
    with torch_threads(1):
        plain = _invoke([*args, "--out", str(tmp_path / "plain.h5")])
        chained = _invoke([*args, "--refiner", str(refiner_dir), "--out", str(tmp_path / "chained.h5")])
    assert plain.exit_code == 0 and chained.exit_code == 0, chained.output
    with open_cache(tmp_path / "plain.h5") as a, open_cache(tmp_path / "chained.h5") as b:
        assert b.config.refiners == ({"path": str(refiner_dir), "sha256": sha256_path(refiner_dir)},)
        assert b.config.output_kind == "metric"
        for i in range(2):
            np.testing.assert_allclose(b.read(i)["rough"], a.read(i)["rough"], rtol=1e-4, atol=1e-5)
    # a different refiner list is a different command
    refused = _invoke([*args, "--out", str(tmp_path / "chained.h5")])
    assert "refiners: [] vs [" in _error_line(refused)
    # inspect on a checkpoint directory shows its description
    described = _invoke(["inspect", str(refiner_dir), "--json"])
    assert described.exit_code == 0, described.output
    import json

    assert json.loads(described.output)["kind"] == "refiner-checkpoint"


def test_samples_of_another_size_need_gt_size(tmp_path, monkeypatch):
    """A dataset without a fixed native size: the first sample sets gt_size, another size is an
    error naming the sample (also from a DataLoader worker), unless --gt-size is given."""
    from refinedepth import data
    from refinedepth.cache import build_cache
    from refinedepth.data import Sample
    from refinedepth.errors import DataError

    class VarSize:
        spec, name, split, native_size, max_depth, protocol = "varsize", "varsize", "train", None, 10.0, "none"

        def __len__(self):
            return 3

        def __getitem__(self, i):
            h = 24 if i < 2 else 30
            return Sample(rgb=np.zeros((h, 32, 3), np.uint8), depth=np.full((h, 32), 2.0, np.float32), id=f"v{i}")

    monkeypatch.setitem(data._READERS, "varsize", lambda arg, **kw: VarSize())  # removed after the test
    kw = dict(backbone="fcrn", backbone_args={"encoder": "resnet18", "input_size": [64, 80]}, dataset="varsize",
              size=(16, 16), batch_size=1, device="cpu")
    with pytest.raises(DataError) as err:
        build_cache(tmp_path / "a.h5", workers=1, **kw)
    assert str(err.value) == (
        "sample 'v2' has gt of 30x32, the first sample 24x32; pass --gt-size HxW to resize every sample to one size"
    )
    build_cache(tmp_path / "b.h5", workers=0, gt_size=(24, 32), **kw)
    with open_cache(tmp_path / "b.h5") as c:
        assert c.complete and c.read(2)["gt"].shape == (24, 32)


REDKITCHEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "7scenes-redkitchen"


@pytest.mark.skipif(not REDKITCHEN.is_dir(), reason="real RGB-D frames (shared/data/7scenes-redkitchen) absent")
def test_real_kinect_frames_cache_with_exact_ground_truth(tmp_path):
    """Real Kinect frames through the folder reader: gt stored at the native 480x640, exactly the
    reader's depth with invalid pixels (0 and 65535 in the PNGs) as 0."""
    from refinedepth.cache import build_cache
    from refinedepth.data import open_dataset

    spec = f"folder:{REDKITCHEN}"
    build_cache(tmp_path / "k.h5", backbone="fcrn", backbone_args={"encoder": "resnet18", "input_size": [64, 80]},
                dataset=spec, split="all", limit=2, size=(32, 40), workers=0, device="cpu")
    ds = open_dataset(spec, split="all", limit=2)
    with open_cache(tmp_path / "k.h5") as c:
        assert c.gt_size == (480, 640) and c.complete
        for i in range(2):
            depth = ds[i].depth
            expected = np.where(np.isfinite(depth) & (depth > 0), depth, 0)
            s = c.read(i)
            assert s["id"] == ds[i].id
            np.testing.assert_array_equal(s["gt"], expected)
            assert 0.5 < s["valid"].mean() < 1.0  # real holes
    result = _invoke(["inspect", str(tmp_path / "k.h5"), "--verify", "-q"])
    assert result.exit_code == 0 and "OK: every chunk and sample read" in result.output


def test_refiner_detail_only_in_cache_is_rough_times_scale_and_recorded(tmp_path):
    """An identity refiner used detail-only: its correction relative to ``rough x scale`` is the
    constant ``1 / scale``, which the low-pass removes, so the cache holds ``rough x scale``; the
    records say so, and another sigma is another command."""
    from refinedepth.cache import sha256_path

    baselines = {"scale": 1.25, "scale_shift": [1.0, 0.0], "pixels": 1, "fitted_on": "x.h5"}
    refiner_dir = _identity_refiner(tmp_path / "refiner", baselines=baselines)
    args = ["cache", *COMMON, "--limit", "2", "--batch-size", "2", "--workers", "0"]
    detail = [*args, "--refiner", str(refiner_dir), "--detail-sigma", "4", "--out", str(tmp_path / "detail.h5")]
    with torch_threads(1):
        plain = _invoke([*args, "--out", str(tmp_path / "plain.h5")])
        made = _invoke(detail)
    assert plain.exit_code == 0 and made.exit_code == 0, made.output
    with open_cache(tmp_path / "plain.h5") as a, open_cache(tmp_path / "detail.h5") as b:
        assert b.config.refiners == (
            {"path": str(refiner_dir), "sha256": sha256_path(refiner_dir), "detail_sigma": 4.0},
        )
        for i in range(2):
            np.testing.assert_allclose(b.read(i)["rough"], 1.25 * a.read(i)["rough"], rtol=1e-4, atol=1e-5)
    refused = _invoke([*detail[:-4], "--detail-sigma", "8", "--out", str(tmp_path / "detail.h5")])
    assert "refiners:" in _error_line(refused)

    # keeping the refiner's per-image scale: the identity's constant correction 1 / scale is its
    # per-image scale, so the cache holds the rough map itself; recorded, and refused on its own
    image = [*detail[:-2], "--detail-scale", "image", "--out", str(tmp_path / "image.h5")]
    with torch_threads(1):
        made = _invoke(image)
    assert made.exit_code == 0, made.output
    with open_cache(tmp_path / "plain.h5") as a, open_cache(tmp_path / "image.h5") as b:
        assert b.config.refiners[0]["detail_scale"] == "image" and b.config.refiners[0]["detail_sigma"] == 4.0
        for i in range(2):
            np.testing.assert_allclose(b.read(i)["rough"], a.read(i)["rough"], rtol=1e-4, atol=1e-5)
    alone = _invoke([*args, "--refiner", str(refiner_dir), "--detail-scale", "image", "--out", str(tmp_path / "x.h5")])
    assert alone.exit_code == 1 and not (tmp_path / "x.h5").exists()
    assert _error_line(alone) == (
        "Error: the refiner's per-image scale (--detail-scale image) applies to detail-only refinement: "
        "pass --detail-sigma as well"
    )


def test_files_backbone_cache_reports_honest_shares_and_no_weights(tmp_path):
    """The ``files`` backbone spends ~0 s: the writing time is a share of the total time (a share
    of the backbone's time was thousands of percent), and inspect says it has no weights."""
    import re

    root = tmp_path / "preds"
    root.mkdir()
    for i in range(3):
        np.save(root / f"synthetic-indoor-train-{i:06d}.npy", np.full((8, 10), 2.0 + i, np.float32))
    out = tmp_path / "f.h5"
    result = _invoke(["cache", "--backbone", "files", "--backbone-arg", f"root={root}", *DATA, "--limit", "3",
                      "--device", "cpu", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    share = re.search(r"HDF5 writing [\d.]+ s = ([\d.]+)% of the total time", result.output)
    assert share and 0.0 <= float(share.group(1)) <= 100.0, result.output
    text = _invoke(["inspect", str(out)])
    assert text.exit_code == 0, text.output
    weights = next(line for line in text.output.splitlines() if line.startswith("weights"))
    assert weights.split(None, 1)[1] == "none (backbone 'files' has no weights)"
    assert "initialisation" not in text.output


def test_write_share_of_the_backbone_only_where_the_backbone_took_time():
    from refinedepth.cli.cache import _write_share

    assert _write_share({"total": 10.0, "backbone": 8.0, "write": 0.5, "load": 1.0}) == (
        "HDF5 writing 0.50 s = 5.0% of the total time, 6.2% of the backbone's 8.00 s"
    )
    # the reported case: 0.27 s of writing against ~0.006 s of 'backbone' (reading files)
    assert _write_share({"total": 0.6, "backbone": 0.0058, "write": 0.27, "load": 0.3}) == (
        "HDF5 writing 0.27 s = 45.0% of the total time"
    )
    assert _write_share({"total": 0.0, "backbone": 0.0, "write": 0.0}) == "HDF5 writing 0.00 s = 0.0% of the total time"


def test_inspect_weights_line_says_where_weights_came_from(tmp_path):
    rng = np.random.default_rng(0)
    arrays = dict(rough=rng.random((1, 1, 4, 4)), gt=rng.random((1, 4, 4)))
    cases = [
        (dict(backbone="fcrn"), "(initialisation, seed 0)"),
        (dict(backbone="fcrn", seed=3), "(initialisation, seed 3)"),
        (dict(backbone="hf", backbone_config={"model": "org/depth"}), "those of the model org/depth (no --weights)"),
        (dict(backbone="files", backbone_config={"root": "/preds"}), "none (backbone 'files' has no weights)"),
        (dict(backbone="not-installed"), "(initialisation, seed 0)"),  # nothing declared: as before
    ]
    for i, (config, expected) in enumerate(cases):
        out = write_cache(tmp_path / f"{i}.h5", **arrays, **config)
        result = _invoke(["inspect", str(out)])
        assert result.exit_code == 0, result.output
        line = next(line for line in result.output.splitlines() if line.startswith("weights"))
        assert line.split(None, 1)[1] == expected, config


def test_an_interrupted_overwrite_leaves_the_old_cache_whole(tmp_path, monkeypatch):
    # --overwrite writes the new cache beside the old one and renames it only when complete; the
    # same command again resumes the replacement
    from refinedepth.cache import build as B

    out = tmp_path / "c.h5"
    kw = dict(backbone="fcrn", dataset="synthetic", split="train", limit=3, batch_size=1, size=(32, 40),
              backbone_args={"encoder": "resnet18", "encoder_args": {"channels": [8, 16, 32, 64], "stem_width": 8},
                             "input_size": [64, 80]},
              dataset_args={"size": [48, 64]}, device="cpu")
    B.build_cache(out, seed=0, **kw)
    with open_cache(out) as c:
        before = [c.read(i)["rough"] for i in range(3)]
    real = B.CacheWriter.write_batch
    calls = []

    def dies_on_the_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(B.CacheWriter, "write_batch", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        B.build_cache(out, seed=1, overwrite=True, **kw)
    monkeypatch.undo()
    with open_cache(out) as c:  # the old cache, complete and unchanged
        assert c.complete and c.config.seed == 0
        for i in range(3):
            np.testing.assert_array_equal(c.read(i)["rough"], before[i])
    assert (tmp_path / "c.h5.replacing").is_file()
    again = B.build_cache(out, seed=1, overwrite=True, **kw)
    assert again.already_done == 1 and again.written == 2  # resumed where the replacement stopped
    with open_cache(out) as c:
        assert c.complete and c.config.seed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]  # the staged file took its name
    # a replacement that fails before writing anything leaves nothing beside the old file
    monkeypatch.setattr(B.CacheWriter, "write_batch", lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        B.build_cache(out, seed=2, overwrite=True, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]
