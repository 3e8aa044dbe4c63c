"""The ``folder`` reader on fabricated folders and on the real 7-Scenes Kinect frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refinedepth.data import open_dataset
from refinedepth.data.folder import natural_key
from refinedepth.data.io import write_depth_png
from refinedepth.errors import DataError, FileFormatError

SEVEN_SCENES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "7scenes-redkitchen"


def make_folder(root: Path, stems, size=(6, 8), depth_ext="png", scale=1000):
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    h, w = size
    for k, stem in enumerate(stems):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[0, 0] = (255, 0, 0)  # an asymmetric marker: top-left red
        rgb[..., 1] = k  # which sample
        Image.fromarray(rgb).save(root / "rgb" / f"{stem}.png")
        depth = (1.0 + np.arange(h)[:, None] * 0.5 + np.arange(w)[None, :] * 0.01 + k).astype(np.float32)
        if depth_ext == "png":
            write_depth_png(root / "depth" / f"{stem}.png", depth, scale=scale)
        else:
            np.save(root / "depth" / f"{stem}.npy", depth)
    return root


def test_pairs_orientation_and_natural_time_order(tmp_path):
    stems = ["frame-10", "frame-2", "frame-1", "frame-3"]
    root = make_folder(tmp_path / "scan", stems)
    ds = open_dataset(f"folder:{root}", split="all")
    assert ds.ids == ["frame-1", "frame-2", "frame-3", "frame-10"]
    assert (ds.name, ds.protocol, ds.max_depth, ds.native_size) == ("folder", "none", 10.0, (6, 8))
    s = ds[3]
    assert s.id == "frame-10" and s.rgb[0, 0].tolist() == [255, 0, 0] and s.rgb[0, 0, 1] == 0
    assert s.rgb[1, 1, 1] == stems.index("frame-10")
    expected = 1.0 + np.arange(6)[:, None] * 0.5 + np.arange(8)[None, :] * 0.01 + stems.index("frame-10")
    assert np.allclose(s.depth, expected, atol=5e-4)
    assert sorted(["a10", "a9", "b1", "a1"], key=natural_key) == ["a1", "a9", "a10", "b1"]


def test_time_ordered_split(tmp_path):
    root = make_folder(tmp_path / "video", [f"{i:03d}" for i in range(10)])
    train = open_dataset(f"folder:{root}")  # default split train, fraction 0.8
    test = open_dataset(f"folder:{root}", split="test")
    assert train.ids == [f"{i:03d}" for i in range(8)] and test.ids == ["008", "009"]
    assert open_dataset(f"folder:{root}", split="test", split_index=3).ids[0] == "003"
    assert len(open_dataset(f"folder:{root}", split="train", split_fraction=0.5)) == 5
    with pytest.raises(DataError, match="split 'test' is empty"):
        open_dataset(f"folder:{root}", split="test", split_fraction=1.0)


def test_npy_depth_and_options(tmp_path):
    root = make_folder(tmp_path / "npy", ["a", "b"], depth_ext="npy")
    ds = open_dataset(f"folder:{root}", split="all", max_depth=80, protocol="kitti")
    assert (ds.max_depth, ds.protocol) == (80.0, "kitti")
    assert ds[0].depth[0, 0] == pytest.approx(1.0)


def test_scale_recorded_in_png_wins_over_default(tmp_path):
    root = make_folder(tmp_path / "kitti", ["a"], scale=256)
    depth = open_dataset(f"folder:{root}", split="all")[0].depth
    assert depth[0, 0] == pytest.approx(1.0, abs=1 / 256)
    doubled = open_dataset(f"folder:{root}", split="all", scale=128)[0].depth  # explicit wins
    assert doubled[0, 0] == pytest.approx(2.0, abs=1 / 128)


def test_kitti_devkit_pngs_without_a_recorded_scale_read_in_metres_with_protocol_kitti(tmp_path):
    # the KITTI devkit writes uint16 = metres x 256, 0 invalid, and records no scale in the file
    root = make_folder(tmp_path / "kitti", ["a"])
    raw = np.tile(np.array([0, 5120, 256, 20480], np.uint16), (6, 2))  # -, 20 m, 1 m, 80 m
    Image.fromarray(raw).save(root / "depth" / "a.png")
    ds = open_dataset(f"folder:{root}", split="all", protocol="kitti")
    np.testing.assert_allclose(ds[0].depth, raw / 256.0)
    assert (ds.protocol, ds.max_depth) == ("kitti", 80.0)  # the Garg protocol's cap
    # without the protocol, a PNG without a recorded scale is millimetres (Kinect, NYU-style)
    plain = open_dataset(f"folder:{root}", split="all")
    np.testing.assert_allclose(plain[0].depth, raw / 1000.0)
    assert plain.max_depth == 10.0
    assert open_dataset(f"folder:{root}", split="all", protocol="make3d").max_depth == 80.0  # as make3d:PATH
    # an explicit option still wins over the protocol's default
    assert open_dataset(f"folder:{root}", split="all", protocol="kitti", scale=1000, max_depth=50).max_depth == 50.0
    np.testing.assert_allclose(open_dataset(f"folder:{root}", split="all", protocol="kitti", scale=1000)[0].depth,
                               raw / 1000.0)


def test_sentinel_and_zero_are_invalid(tmp_path):
    root = make_folder(tmp_path / "kinect", ["a"])
    Image.fromarray(np.tile(np.array([0, 1234, 65535, 2000], np.uint16), (6, 2))).save(root / "depth" / "a.png")
    raw = np.asarray(Image.open(root / "depth" / "a.png"))
    assert (raw == 65535).sum() == 12
    depth = open_dataset(f"folder:{root}", split="all")[0].depth
    assert (depth[raw == 65535] == 0).all() and (depth[raw == 0] == 0).all()
    assert depth[raw == 1234] == pytest.approx(1.234)
    kept = open_dataset(f"folder:{root}", split="all", invalid=[])[0].depth
    assert kept[raw == 65535] == pytest.approx(65.535)


def test_errors_name_the_file(tmp_path):
    (tmp_path / "empty" / "rgb").mkdir(parents=True)
    (tmp_path / "empty" / "depth").mkdir()
    with pytest.raises(DataError, match=r"empty: empty dataset: rgb/ has 0 image\(s\) and depth/ 0 depth file\(s\)"):
        open_dataset(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "half" / "rgb").mkdir(parents=True)
    with pytest.raises(DataError, match=r"half: expected sub-folders rgb/ and depth/ .*missing depth/"):
        open_dataset(f"folder:{tmp_path / 'half'}")
    with pytest.raises(DataError, match="nowhere: folder not found"):
        open_dataset(f"folder:{tmp_path / 'nowhere'}")

    root = make_folder(tmp_path / "mismatch", ["a", "b"])
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "rgb" / "b.png")
    with pytest.raises(DataError) as err:
        open_dataset(f"folder:{root}", split="all")[1]
    assert str(err.value) == (
        f"sample 'b': rgb b.png is 3x4 but depth b.png is 6x8 (height x width); resize one of them in {root}"
    )
    assert open_dataset(f"folder:{root}", split="all").native_size == (6, 8)

    root = make_folder(tmp_path / "eightbit", ["a"])
    Image.fromarray(np.full((6, 8), 9, np.uint8)).save(root / "depth" / "a.png")
    with pytest.raises(FileFormatError, match=r"eightbit/depth/a\.png: expected a 16-bit single-channel depth PNG, got 8-bit"):
        open_dataset(f"folder:{root}", split="all")[0]

    root = make_folder(tmp_path / "unmatched", ["a", "b"])
    (root / "depth" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 rgb image\(s\) have no depth file with the same stem, e\.g\. rgb/b\.png"):
        open_dataset(f"folder:{root}", split="all")
    assert open_dataset(f"folder:{root}", split="all", strict=False).ids == ["a"]


@pytest.mark.skipif(not SEVEN_SCENES.is_dir(), reason="shared 7-Scenes frames not present")
def test_real_seven_scenes_kinect_frames():
    spec = f"folder:{SEVEN_SCENES}"
    ds = open_dataset(spec, split="all")
    assert len(ds) == 600 and ds.ids[0] == "frame-000000" and ds.ids[-1] == "frame-000599"
    assert len(open_dataset(spec, split="train")) == 480  # first 80 % in time
    assert open_dataset(spec, split="test").ids[0] == "frame-000480"
    s = ds[33]  # a frame with saturated (65535) pixels
    raw = np.asarray(Image.open(SEVEN_SCENES / "depth" / "frame-000033.png"))
    assert (raw == 65535).sum() > 0
    assert (s.depth[raw == 65535] == 0).all() and (s.depth[raw == 0] == 0).all()
    valid = s.depth > 0
    assert s.rgb.shape == (480, 640, 3) and s.depth.shape == (480, 640)
    assert np.allclose(s.depth[valid], raw[valid] / 1000.0)
    assert 0.3 < np.median(s.depth[valid]) < 5.0 and s.depth.max() < 10.0  # a kitchen, in metres
