"""The HDF5 cache library: writing, reading, resuming, refusing, merging shards, verifying."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from refinedepth.cache import (
    CacheConfig,
    CacheDataset,
    CacheWriter,
    describe_cache,
    merge_shards,
    open_cache,
    recover_interrupted,
    shard_path,
    shard_range,
    verify_cache,
    write_cache,
)
from refinedepth.cache.repair import lookup3
from refinedepth.errors import CacheError, ConfigError, DataError, ShapeError


def _arrays(n=5, rough=(16, 20), gt=(12, 16), seed=0):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.5, 9.0, (n, 1, *rough)).astype(np.float32)
    g = rng.uniform(0.5, 9.0, (n, *gt)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, *rough, 3), dtype=np.uint8)
    return r, g, rgb


def test_round_trip_every_dataset_and_attribute(tmp_path):
    r, g, rgb = _arrays()
    g[0, 0, 0] = np.nan  # invalid gt is stored as 0
    g[1, 2, 3] = -1.0
    path = write_cache(
        tmp_path / "c.h5", rough=r, gt=g, rgb=rgb, sample_ids=[f"s{i}" for i in range(5)],
        max_depth=10.0, protocol="nyu", backbone="fcrn", backbone_config={"encoder": "resnet18"},
        dataset="synthetic", split="test", output_kind="metric",
    )
    with open_cache(path) as c:
        assert len(c) == 5 and c.num_done == 5 and c.complete
        assert c.config.backbone_config == {"encoder": "resnet18"}
        assert c.attrs["format"] == "refinedepth-cache" and c.attrs["schema_version"] == 1
        assert c.attrs["backbone"] == "fcrn" and c.attrs["protocol"] == "nyu"
        assert c.attrs["max_depth"] == 10.0 and c.attrs["output_kind"] == "metric"
        assert list(c.attrs["rough_size"]) == [16, 20] and list(c.attrs["gt_size"]) == [12, 16]
        assert c.sample_ids() == [f"s{i}" for i in range(5)]
        for i in range(5):
            s = c.read(i)
            np.testing.assert_array_equal(s["rough"], r[i])
            np.testing.assert_array_equal(s["rgb"], rgb[i])
            expected = np.where(np.isfinite(g[i]) & (g[i] > 0), g[i], 0)
            np.testing.assert_array_equal(s["gt"], expected)
            np.testing.assert_array_equal(s["valid"], expected > 0)
        info = c.datasets()
        assert info["rough"]["chunks"] == [1, 1, 16, 20]
        assert info["gt"]["chunks"] == [1, 12, 16]
        assert info["rough"]["compression"] == "lzf" and info["rough"]["shuffle"]


def test_float16_rough_and_gzip(tmp_path):
    r, g, _ = _arrays()
    path = write_cache(tmp_path / "c.h5", rough=r, gt=g, rough_dtype="float16", compression="gzip")
    with open_cache(path) as c:
        assert c.datasets()["rough"]["dtype"] == "float16"
        assert c.datasets()["gt"]["compression"] == "gzip" and c.datasets()["gt"]["shuffle"]
        assert c.attrs["compression"] == "gzip"
        s = c.read(2)
        assert s["rough"].dtype == np.float32
        np.testing.assert_array_equal(s["rough"], r[2].astype(np.float16).astype(np.float32))


def test_writer_checks_shapes(tmp_path):
    cfg = CacheConfig(num_samples=2, rough_size=(8, 8), gt_size=(6, 6), with_rgb=True)
    with CacheWriter.create(tmp_path / "c.h5", cfg) as w:
        with pytest.raises(ShapeError, match=r"gt must have shape \[1, 6, 6\], got \[1, 8, 8\]"):
            w.write(0, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)), rgb=np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ShapeError, match="stores rgb"):
            w.write(0, rough=np.ones((1, 8, 8)), gt=np.ones((6, 6)))
        assert w.num_done == 0
    cfg16 = CacheConfig(num_samples=1, rough_size=(8, 8), gt_size=(6, 6), rough_dtype="float16")
    with CacheWriter.create(tmp_path / "h.h5", cfg16) as w:
        with pytest.raises(DataError, match=r"rough values up to 7e\+04 do not fit float16 \(max 65504\)"):
            w.write(0, rough=np.full((1, 8, 8), 70000.0), gt=np.ones((6, 6)))


def test_config_validation():
    with pytest.raises(ConfigError, match="rough_dtype"):
        CacheConfig(num_samples=1, rough_dtype="int8")
    with pytest.raises(ConfigError, match="gt_size"):
        CacheConfig(num_samples=1, gt_size=(0, 4))


def test_resume_refuses_a_different_config(tmp_path):
    cfg = CacheConfig(num_samples=3, rough_size=(8, 8), gt_size=(8, 8), backbone="fcrn")
    CacheWriter.create(tmp_path / "c.h5", cfg).close()
    other = CacheConfig(num_samples=3, rough_size=(16, 16), gt_size=(8, 8), backbone="hf")
    with pytest.raises(CacheError) as err:
        CacheWriter.open(tmp_path / "c.h5", other)
    msg = str(err.value)
    assert "\n" not in msg
    assert "was made by a different command" in msg
    assert "rough_size: [16, 16] vs [8, 8]" in msg and "backbone: hf vs fcrn" in msg
    assert "rgb_size" not in msg  # neither stores RGB: its size is not a difference to report
    assert "--overwrite" in msg
    CacheWriter.open(tmp_path / "c.h5", other, overwrite=True).close()
    with open_cache(tmp_path / "c.h5") as c:
        assert c.config == other


def test_resume_continues_pending(tmp_path):
    r, g, _ = _arrays(n=4)
    cfg = CacheConfig(num_samples=4, rough_size=(16, 20), gt_size=(12, 16))
    with CacheWriter.create(tmp_path / "c.h5", cfg) as w:
        w.write(0, rough=r[0], gt=g[0], sample_id="a")
        w.write(2, rough=r[2], gt=g[2], sample_id="c")
    with CacheWriter.open(tmp_path / "c.h5", cfg) as w:
        assert w.pending() == [1, 3]
        w.write_batch([1, 3], rough=r[[1, 3]], gt=g[[1, 3]], sample_ids=["b", "d"])
    with open_cache(tmp_path / "c.h5") as c:
        assert c.complete and c.sample_ids() == ["a", "b", "c", "d"]
        np.testing.assert_array_equal(c.read(3)["rough"], r[3])


def test_not_hdf5_not_a_cache_missing_truncated(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("hello")
    with pytest.raises(CacheError, match=r"notes.h5 is not a refinedepth cache: not an HDF5 file"):
        open_cache(bad)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(CacheError, match=r"other.h5 is not a refinedepth cache \(HDF5 without format="):
        open_cache(other)
    with pytest.raises(CacheError, match=r"missing.h5 does not exist"):
        open_cache(tmp_path / "missing.h5")
    r, g, _ = _arrays()
    path = write_cache(tmp_path / "c.h5", rough=r, gt=g)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(CacheError) as err:
        open_cache(path)
    assert f"c.h5 is truncated ({size // 2} bytes on disk" in str(err.value)
    assert "\n" not in str(err.value)


def test_lookup3_matches_hdf5_superblock_checksum(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w", libver="latest") as f:
        f["x"] = np.arange(3)
    raw = (tmp_path / "x.h5").read_bytes()[:48]
    assert raw[8] == 3 and raw[9] == 8
    assert lookup3(raw[:44]) == int.from_bytes(raw[44:48], "little")


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from refinedepth.cache import CacheConfig, CacheWriter
    path, n_before = sys.argv[1], int(sys.argv[2])
    cfg = CacheConfig(num_samples=6, rough_size=(16, 20), gt_size=(12, 16))
    w = CacheWriter.create(path, cfg)
    for i in range(n_before):
        w.write(i, rough=np.full((1, 16, 20), i, np.float32), gt=np.full((12, 16), i + 1, np.float32))
    # half-written sample: data but no done mark, then die without closing
    w._rough[n_before] = np.full((1, 16, 20), 99, np.float32)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_killed_writer_leaves_a_resumable_file(tmp_path):
    path = tmp_path / "k.h5"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path), "3"], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    with open_cache(path) as c:  # readable through SWMR even though the flags say "open"
        assert c.num_done == 3
    cfg = CacheConfig(num_samples=6, rough_size=(16, 20), gt_size=(12, 16))
    with CacheWriter.open(path, cfg) as w:
        assert w.pending() == [3, 4, 5]
        for i in w.pending():
            w.write(i, rough=np.full((1, 16, 20), i, np.float32), gt=np.full((12, 16), i + 1, np.float32))
    assert verify_cache(path)["ok"]
    with open_cache(path) as c:
        for i in range(6):
            assert c.read(i)["rough"].max() == i
    assert recover_interrupted(path) is False  # closed cleanly: nothing to clear


_LIVE_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from refinedepth.cache import CacheConfig, CacheWriter
    cfg = CacheConfig(num_samples=3, rough_size=(8, 8), gt_size=(8, 8))
    w = CacheWriter.create(sys.argv[1], cfg)
    w.write(0, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)))
    print("ready", flush=True)
    sys.stdin.read()  # stay alive until the test closes stdin
    w.write(1, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)))
    w.close()
    """
)


def test_a_live_writer_is_never_taken_over(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with open_cache(path) as c:  # readers are welcome
            assert c.num_done == 1
        cfg = CacheConfig(num_samples=3, rough_size=(8, 8), gt_size=(8, 8))
        with pytest.raises(CacheError, match="open for writing in another process"):
            CacheWriter.open(path, cfg)
        with pytest.raises(CacheError, match="open for writing in another process"):
            recover_interrupted(path)
        with pytest.raises(CacheError, match="open for writing in another process"):
            CacheWriter.create(path, cfg, overwrite=True)
    finally:
        proc.communicate("", timeout=60)
    assert proc.returncode == 0
    with open_cache(path) as c:
        assert c.num_done == 2 and verify_cache(path)["not_done"] == 1


def test_cache_dataset_items_and_workers(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    r, g, rgb = _arrays(n=6)
    path = write_cache(tmp_path / "c.h5", rough=r, gt=g, rgb=rgb, rough_dtype="float16")
    ds = CacheDataset(path, target_size=(16, 20), with_rgb=True)
    item = ds[4]
    assert item["rough"].shape == (1, 16, 20) and item["rough"].dtype == torch.float32
    assert item["gt"].shape == (1, 16, 20) and item["valid"].dtype == torch.bool
    assert item["rgb"].shape == (3, 16, 20) and float(item["rgb"].max()) <= 1.0
    assert item["id"] == "000004" and item["index"] == 4
    plain = CacheDataset(path)
    np.testing.assert_array_equal(plain[1]["gt"][0].numpy(), g[1])
    loader = DataLoader(plain, batch_size=3, num_workers=2, shuffle=False)
    ids = [i for batch in loader for i in batch["id"]]
    assert ids == [f"{i:06d}" for i in range(6)]


def test_cache_dataset_incomplete_and_no_rgb(tmp_path):
    cfg = CacheConfig(num_samples=3, rough_size=(8, 8), gt_size=(8, 8))
    with CacheWriter.create(tmp_path / "c.h5", cfg) as w:
        w.write(1, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)), sample_id="b")
    with pytest.raises(CacheError, match=r"is incomplete: 1 of 3 samples done; re-run"):
        CacheDataset(tmp_path / "c.h5")
    ds = CacheDataset(tmp_path / "c.h5", require_complete=False)
    assert len(ds) == 1 and ds[0]["id"] == "b"
    with pytest.raises(CacheError, match="has no rgb dataset"):
        CacheDataset(tmp_path / "c.h5", with_rgb=True, require_complete=False)


def test_cache_dataset_paper_augment_is_reproducible_per_sample(tmp_path):
    import torch

    r = np.full((4, 1, 16, 20), 4.0, np.float32)
    g = np.full((4, 12, 16), 4.0, np.float32)
    path = write_cache(tmp_path / "c.h5", rough=r, gt=g)
    ds = CacheDataset(path, target_size=(16, 20), augment="paper")
    a, b = ds[2], ds[2]
    for key in ("rough", "gt", "valid"):
        torch.testing.assert_close(a[key], b[key])
    assert a["gt"].shape == (1, 16, 20)
    # a constant scene stays constant; zooming by s divides depth by s, 1 <= s <= 1.5
    values = torch.stack([ds[i]["rough"].mean() for i in range(4)])
    assert bool(((values <= 4.0 + 1e-5) & (values >= 4.0 / 1.5 - 1e-5)).all())
    calls = []
    custom = CacheDataset(path, augment=lambda item: calls.append(item["index"]) or item)
    custom[3]
    assert calls == [3]
    with pytest.raises(ConfigError, match="augment must be None, 'paper' or a callable"):
        CacheDataset(path, augment="strong")


def test_shard_range_tiles():
    for n in (0, 1, 7, 10):
        for count in (1, 2, 3):
            ranges = [shard_range(n, i, count) for i in range(count)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert shard_range(7, 0, 2) == (0, 4) and shard_range(7, 1, 2) == (4, 7)


def test_merge_shards_virtual_dataset_survives_moving(tmp_path):
    r, g, rgb = _arrays(n=7)
    cfg = CacheConfig(num_samples=7, rough_size=(16, 20), gt_size=(12, 16), with_rgb=True)
    out = tmp_path / "run" / "train.h5"
    for k in range(2):
        with CacheWriter.create(shard_path(out, k, 2), cfg, shard=(k, 2)) as w:
            idx = list(range(w.start, w.stop))
            w.write_batch(idx, rough=r[idx], gt=g[idx], rgb=rgb[idx], sample_ids=[f"s{i}" for i in idx])
    assert shard_path(out, 1, 2) == tmp_path / "run" / "train.shards" / "train-00002-of-00002.h5"
    merge_shards(out)
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "run", moved)
    cwd = os.getcwd()
    os.chdir("/")
    try:
        with open_cache(moved / "train.h5") as c:
            assert c.is_virtual and c.complete and len(c) == 7
            assert c.sample_ids() == [f"s{i}" for i in range(7)]
            for i in range(7):
                s = c.read(i)
                np.testing.assert_array_equal(s["rough"], r[i])
                np.testing.assert_array_equal(s["rgb"], rgb[i])
            assert "shard_start" not in c.attrs
        assert verify_cache(moved / "train.h5")["ok"]
    finally:
        os.chdir(cwd)


def _merged(tmp_path):
    """``m.h5`` merged from two shards of four samples; returns it and the rough maps written."""
    r, g, _ = _arrays(n=4)
    cfg = CacheConfig(num_samples=4, rough_size=(16, 20), gt_size=(12, 16))
    out = tmp_path / "m.h5"
    for k in range(2):
        with CacheWriter.create(shard_path(out, k, 2), cfg, shard=(k, 2)) as w:
            idx = list(range(w.start, w.stop))
            w.write_batch(idx, rough=r[idx], gt=g[idx])
    merge_shards(out)
    return out, r


def _merged_without_a_shard(tmp_path, missing: int):
    """``m.h5`` merged from two shards of four samples, shard ``missing`` (0 or 1) then deleted."""
    out, _ = _merged(tmp_path)
    shard_path(out, missing, 2).unlink()
    return out


def test_verify_reports_a_missing_shard(tmp_path):
    out = _merged_without_a_shard(tmp_path, missing=1)
    report = verify_cache(out)
    assert not report["ok"]
    assert "shard m.shards/m-00002-of-00002.h5 (relative to" in report["problems"][0]
    assert report["empty_gt"] == 2  # HDF5 fills a missing source with zeros
    # every reader refuses it: HDF5 would give the missing shard's samples as zeros (wrong metrics)
    from refinedepth.cache import CacheDataset
    from refinedepth.evaluate import evaluate_cache

    expected = (f"{out}: shard m.shards/m-00002-of-00002.h5 (relative to {tmp_path}) is missing, and its samples "
                "would read as zeros; put the shard files back beside the merged file (the same relative paths) "
                "or re-create the cache with 'refinedepth cache ... --overwrite'")
    for read in (open_cache, CacheDataset, lambda path: evaluate_cache(path, device="cpu")):
        with pytest.raises(CacheError) as err:
            read(out)
        assert str(err.value) == expected


def test_reader_opens_a_file_while_it_is_being_written(tmp_path):
    cfg = CacheConfig(num_samples=3, rough_size=(8, 8), gt_size=(8, 8))
    with CacheWriter.create(tmp_path / "live.h5", cfg) as w:
        w.write(0, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)))
        with open_cache(tmp_path / "live.h5") as c:
            assert c.num_done == 1 and c.read(0)["gt"].sum() == 64
        w.write(1, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)))
    with open_cache(tmp_path / "live.h5") as c:
        assert c.num_done == 2


def test_merge_refuses_incomplete_or_missing_shard(tmp_path):
    cfg = CacheConfig(num_samples=4, rough_size=(8, 8), gt_size=(8, 8))
    out = tmp_path / "m.h5"
    with CacheWriter.create(shard_path(out, 0, 2), cfg, shard=(0, 2)) as w:
        w.write(0, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)))
    with pytest.raises(CacheError, match=r"has 1 of 2 samples done; re-run the same command"):
        merge_shards(out)
    with CacheWriter.open(shard_path(out, 0, 2), cfg, shard=(0, 2)) as w:
        w.write(1, rough=np.ones((1, 8, 8)), gt=np.ones((8, 8)))
    with pytest.raises(CacheError, match=r"shards cover samples 0..1 of 4; a shard is missing"):
        merge_shards(out)


def test_verify_reports_problems(tmp_path):
    r, g, _ = _arrays(n=4)
    r[1, 0, 0, 0] = np.inf
    cfg = CacheConfig(num_samples=5, rough_size=(16, 20), gt_size=(12, 16))
    with CacheWriter.create(tmp_path / "v.h5", cfg) as w:
        w.write_batch([0, 1, 2, 3], rough=r, gt=g, sample_ids=list("abcd"))
    with h5py.File(tmp_path / "v.h5", "r+") as f:  # the writer refuses empty gt: edit behind it
        f["gt"][2] = 0
    report = verify_cache(tmp_path / "v.h5")
    assert not report["ok"]
    assert report["not_done"] == 1 and report["nonfinite_rough"] == 1 and report["empty_gt"] == 1
    assert "sample 4 is not done" in report["problems"]
    assert "sample 1 (b): rough has non-finite values" in report["problems"]
    assert "sample 2 (c): gt has no valid pixel" in report["problems"]
    d = describe_cache(tmp_path / "v.h5")
    assert d["done"] == 4 and d["samples"] == 5 and not d["complete"]


@pytest.mark.parametrize("limit", [0, -1])
def test_export_ab_refuses_a_limit_that_is_not_a_positive_count(tmp_path, limit):
    from refinedepth.cache import write_cache
    from refinedepth.cache.export import export_ab
    from refinedepth.errors import ConfigError

    gt = np.full((3, 8, 8), 2.0, np.float32)
    cache = write_cache(tmp_path / "c.h5", rough=gt, gt=gt, max_depth=10.0)
    with pytest.raises(ConfigError, match=f"--limit must be a positive number of samples, got {limit}"):
        export_ab(cache, tmp_path / "ab", limit=limit)
    assert not (tmp_path / "ab").exists()


def test_inspect_names_a_missing_shard(tmp_path):
    from click.testing import CliRunner

    from refinedepth.cli.main import cli

    out = _merged_without_a_shard(tmp_path, missing=0)
    res = CliRunner().invoke(cli, ["inspect", str(out)])
    assert "(MISSING SHARDS: m.shards/m-00001-of-00002.h5; readers refuse it)" in res.output


@pytest.mark.parametrize("kind", ["relative", "disparity"])
def test_export_ab_gives_a_relative_or_disparity_map_as_depth_like_values(tmp_path, kind):
    """A is min-max normalised to [0, max_depth]; a disparity map is also flipped, so that in A as in
    B (and in the refiner's input) near is low. Reference: the formula on the cached arrays."""
    from refinedepth.cache import write_cache
    from refinedepth.cache.export import export_ab
    from refinedepth.data.io import read_depth_png

    yy, xx = np.mgrid[0:8, 0:12]
    gt = (1.0 + 0.25 * xx + 0.1 * yy).astype(np.float32)[None]
    rough = (1.0 / gt) if kind == "disparity" else 0.5 * gt + 0.2  # perfect maps of their kind
    cache = write_cache(tmp_path / "c.h5", rough=rough, gt=gt, max_depth=10.0, output_kind=kind)
    export_ab(cache, tmp_path / "ab")
    pair = read_depth_png(next((tmp_path / "ab" / "all").glob("*.png")))
    a, b = pair[:, :12], pair[:, 12:]
    r = rough[0].astype(np.float64)
    want = (r - r.min()) / (r.max() - r.min()) * 10.0
    if kind == "disparity":
        want = 10.0 - want
    np.testing.assert_allclose(a, want, atol=0.51e-3)  # millimetre PNG
    np.testing.assert_allclose(b, gt[0], atol=0.51e-3)
    order = np.argsort(b.ravel(), kind="stable")
    assert np.all(np.diff(a.ravel()[order]) > -1e-3)  # farther in B is never nearer in A
    summary = json.loads((tmp_path / "ab" / "pairs_all.json").read_text())
    assert summary["rough_flipped"] is (kind == "disparity")


def test_a_torchrun_overwrite_sets_the_merged_cache_aside_until_the_new_one_is_merged(tmp_path):
    """``cache --overwrite`` under torchrun moves the merged file and its shard folder aside (the new
    shards take the folder's name); renamed back, the old cache reads as it was. A second start of an
    interrupted overwrite keeps what the first set aside, and the merge deletes it."""
    from refinedepth.cache.shards import drop_replaced, replaced_paths, set_aside

    out, r = _merged(tmp_path)
    file_aside, folder_aside = replaced_paths(out)
    assert (file_aside.name, folder_aside.name) == ("m.h5.replaced", "m.shards.replaced")

    set_aside(out)
    assert not out.exists() and not (tmp_path / "m.shards").exists()
    assert file_aside.is_file() and sorted(p.name for p in folder_aside.iterdir()) == [
        "m-00001-of-00002.h5", "m-00002-of-00002.h5"]
    # the interrupted replacement left a partial shard; starting again keeps the set-aside cache
    (tmp_path / "m.shards").mkdir()
    (tmp_path / "m.shards" / "m-00001-of-00002.h5").write_bytes(b"partial")
    set_aside(out)
    assert not (tmp_path / "m.shards").exists() and file_aside.is_file() and folder_aside.is_dir()
    # renamed back, the old cache is whole
    os.replace(file_aside, out)
    os.replace(folder_aside, tmp_path / "m.shards")
    with open_cache(out) as c:
        assert c.complete
        for i in range(4):
            np.testing.assert_array_equal(c.read(i)["rough"], r[i])
    set_aside(out)
    drop_replaced(out)  # after the new merge
    assert sorted(p.name for p in tmp_path.iterdir()) == []
