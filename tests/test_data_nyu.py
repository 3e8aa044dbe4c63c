"""The NYU reader on a small file written with the real layout of nyu_depth_v2_labeled.mat."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from refinedepth.data import open_dataset
from refinedepth.data.nyu import SPLITS_URL
from refinedepth.errors import DataError, FileFormatError

N = 5


def sample_arrays(k: int):
    """What sample k looks like in image orientation (480x640): an asymmetric pattern."""
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:40, :80, 0] = 255  # a red block in the top-left corner
    rgb[..., 1] = np.arange(640)[None, :] * 255 // 639  # green grows to the right
    rgb[..., 2] = 10 * k  # which sample
    depth = (1.0 + np.arange(480)[:, None] * 0.01 + k * 0.1 + np.zeros((1, 640))).astype(np.float32)
    depth[:10, :20] = 0.0  # a hole in the top-left corner
    return rgb, depth


@pytest.fixture(scope="module")
def nyu_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    # MATLAB v7.3 stores column-major arrays: h5py sees (N, 3, 640, 480) and (N, 640, 480)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w", userblock_size=512) as f:
        images = f.create_dataset("images", (N, 3, 640, 480), dtype=np.uint8)
        depths = f.create_dataset("depths", (N, 640, 480), dtype=np.float32)
        raw = f.create_dataset("rawDepths", (N, 640, 480), dtype=np.float32)
        for k in range(N):
            rgb, depth = sample_arrays(k)
            images[k] = rgb.transpose(2, 1, 0)
            depths[k] = depth.T
            raw[k] = (depth * 2).T
    # the official split file is MATLAB v5, with 1-based, non-contiguous column vectors
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [3], [4]]), "testNdxs": np.array([[2], [5]])})
    return root


def test_orientation_and_values(nyu_dir):
    ds = open_dataset(f"nyu:{nyu_dir / 'nyu_depth_v2_labeled.mat'}", split="all")
    assert (ds.name, ds.protocol, ds.max_depth, ds.native_size, len(ds)) == ("nyu", "nyu", 10.0, (480, 640), N)
    for k in (0, 3):
        s = ds[k]
        want_rgb, want_depth = sample_arrays(k)
        assert s.rgb.shape == (480, 640, 3) and s.depth.shape == (480, 640)
        assert np.array_equal(s.rgb, want_rgb) and np.array_equal(s.depth, want_depth)
        assert s.rgb[5, 5, 0] == 255 and s.rgb[5, 600, 0] == 0 and s.rgb[470, 5, 0] == 0  # red top-left only
        assert s.depth[0, 300] < s.depth[479, 300]  # depth grows downwards
        assert s.id == f"{k + 1:04d}"


def test_official_split_from_the_file(nyu_dir):
    train = open_dataset(f"nyu:{nyu_dir}")  # a folder holding the .mat works too
    test = open_dataset(f"nyu:{nyu_dir}", split="test")
    assert train.ids == ["0001", "0003", "0004"] and test.ids == ["0002", "0005"]
    assert train[1].rgb[0, 0, 2] == 20  # 1-based index 3 -> sample k=2
    assert test[1].depth[300, 300] == pytest.approx(sample_arrays(4)[1][300, 300])
    assert open_dataset(f"nyu:{nyu_dir}", split="test", limit=1).ids == ["0002"]


def test_raw_depths_selectable(nyu_dir):
    filled = open_dataset(f"nyu:{nyu_dir}", split="all")[1].depth
    raw_ds = open_dataset(f"nyu:{nyu_dir}", split="all", raw=True)
    assert np.array_equal(raw_ds[1].depth, filled * 2)
    assert raw_ds.description.endswith("ground truth: raw Kinect depth (rawDepths)")  # reports say which
    assert open_dataset(f"nyu:{nyu_dir}", split="test").description == (
        "NYU Depth v2 labeled, test (official split), 2 samples, ground truth: filled depth (depths)"
    )


def test_split_file_elsewhere_and_missing(nyu_dir, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "nyu_depth_v2_labeled.mat").symlink_to(nyu_dir / "nyu_depth_v2_labeled.mat")
    with pytest.raises(DataError) as err:
        open_dataset(f"nyu:{lone}", split="train")
    msg = str(err.value)
    assert msg.startswith(f"NYU split file not found: {lone / 'splits.mat'}; download splits.mat")
    assert SPLITS_URL in msg and "\n" not in msg
    assert len(open_dataset(f"nyu:{lone}", split="all")) == N  # no split file needed for 'all'
    ds = open_dataset(f"nyu:{lone}", split="test", splits=nyu_dir / "splits.mat")
    assert ds.ids == ["0002", "0005"]


def test_a_mat_that_is_not_hdf5(tmp_path):
    scipy.io.savemat(tmp_path / "nyu_depth_v2_labeled.mat", {"images": np.zeros((2, 2))})  # MATLAB v5
    with pytest.raises(FileFormatError) as err:
        open_dataset(f"nyu:{tmp_path / 'nyu_depth_v2_labeled.mat'}", split="all")
    assert str(err.value).startswith(f"{tmp_path / 'nyu_depth_v2_labeled.mat'}: not an HDF5 file (MATLAB v7.3)")
    with pytest.raises(DataError, match="NYU labeled file not found: .*absent.mat; download nyu_depth_v2_labeled.mat"):
        open_dataset(f"nyu:{tmp_path / 'absent.mat'}")


def test_split_indices_outside_the_file(nyu_dir, tmp_path):
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [99]]), "testNdxs": np.array([[2]])})
    with pytest.raises(FileFormatError, match=r"trainNdxs holds indices 1\.\.99, outside 1\.\.5"):
        open_dataset(f"nyu:{nyu_dir}", splits=tmp_path / "splits.mat")


def test_pickles_across_workers(nyu_dir):
    import pickle

    ds = open_dataset(f"nyu:{nyu_dir}", split="all")
    first = ds[0]
    clone = pickle.loads(pickle.dumps(ds))  # the open h5py handle is not carried over
    assert np.array_equal(clone[0].depth, first.depth)


@pytest.mark.parametrize("raw", [False, True])
def test_caches_and_evaluations_say_which_ground_truth(nyu_dir, tmp_path, raw):
    # SPEC §4: filled or raw NYU depth, "say which in every report"
    from click.testing import CliRunner

    from refinedepth.cache import open_cache
    from refinedepth.cli.main import cli

    preds = tmp_path / "preds"
    preds.mkdir()
    for k in ("0002", "0005"):
        np.save(preds / f"{k}.npy", np.full((480, 640), 2.0, np.float32))
    out = tmp_path / "nyu-test.h5"
    args = ["cache", "--backbone", "files", "--backbone-arg", f"root={preds}", "--dataset", f"nyu:{nyu_dir}",
            "--split", "test", "--size", "60x80", "--out", str(out), "--device", "cpu", "-q"]
    runner = CliRunner()
    result = runner.invoke(cli, args + (["--dataset-arg", "raw=true"] if raw else []))
    assert result.exit_code == 0, result.output
    gt = "raw Kinect depth (rawDepths)" if raw else "filled depth (depths)"
    with open_cache(out) as cache:
        assert cache.config.ground_truth == gt
    result = runner.invoke(cli, ["evaluate", "--cache", str(out), "--device", "cpu", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert f"nyu-test.h5: 2 samples, protocol nyu, ground truth {gt}, align" in result.output
    import json

    assert json.loads((tmp_path / "e.json").read_text())["cache_attrs"]["ground_truth"] == gt
