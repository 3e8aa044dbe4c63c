"""The Make3D reader on fabricated files with the real layout and an asymmetric laser grid."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from refinedepth.data import open_dataset
from refinedepth.data.make3d import read_make3d_depth
from refinedepth.errors import ConfigError, DataError, FileFormatError

IMAGE_SIZE = (284, 213)  # height x width: Make3D's portrait 2272x1704, shrunk 8x for speed
MARKER = 99.0


def grid(k: float) -> np.ndarray:
    """Position3DGrid as the readme describes it: 55x305x4, channel 4 (index 3) the depth.

    Depth grows from the top row to the bottom one and a little from left to right; a marker
    block sits in the top-left corner (rows 0-4, columns 0-29).
    """
    g = np.zeros((55, 305, 4))
    g[:, :, 0] = np.linspace(5, -5, 55)[:, None]  # vertical position (Y), top row up
    g[:, :, 1] = np.linspace(-8, 8, 305)[None, :]  # horizontal position (X)
    depth = 5.0 + np.arange(55)[:, None] * 0.5 + np.arange(305)[None, :] * 0.01 + k
    depth[:5, :30] = MARKER
    g[:, :, 3] = depth
    g[:, :, 2] = depth * 0.9
    return g


def image(k: int) -> np.ndarray:
    rgb = np.full((*IMAGE_SIZE, 3), 40, np.uint8)
    rgb[:60, :50] = (250, 20, 20)  # red top-left
    rgb[..., 2] = 30 * k
    return rgb


@pytest.fixture(scope="module")
def make3d_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("make3d")
    layout = {
        "train": ("Train400Img", "Train400Depth", ["a-p-1", "b-p-2"]),
        "test": ("Test134", "Test134Depth/Gridlaserdata", ["c-p-3"]),
    }
    k = 0
    for images, depths, names in layout.values():
        (root / images).mkdir(parents=True)
        (root / depths).mkdir(parents=True)
        for name in names:
            Image.fromarray(image(k)).save(root / images / f"img-{name}.jpg", quality=95)
            scipy.io.savemat(root / depths / f"depth_sph_corr-{name}.mat", {"Position3DGrid": grid(k)})
            k += 1
    return root


def test_grid_keeps_the_image_orientation(make3d_root):
    depth = read_make3d_depth(make3d_root / "Train400Depth" / "depth_sph_corr-a-p-1.mat")
    assert depth.shape == (55, 305) and depth.dtype == np.float32
    assert depth[0, 0] == MARKER and depth[54, 304] == pytest.approx(5.0 + 27 + 3.04)
    raw = open_dataset(f"make3d:{make3d_root}", split="train", size=None)[0]
    assert raw.depth.shape == (55, 305) and raw.rgb.shape == (*IMAGE_SIZE, 3)
    assert raw.depth[0, 0] == MARKER


def test_resized_sample_matches_the_image(make3d_root):
    ds = open_dataset(f"make3d:{make3d_root}", split="train")
    assert (ds.name, ds.protocol, ds.max_depth, ds.native_size) == ("make3d", "make3d", 80.0, (460, 345))
    assert ds.ids == ["a-p-1", "b-p-2"]
    s = ds[1]
    assert s.rgb.shape == (460, 345, 3) and s.depth.shape == (460, 345)
    # the marker (top 5/55 of the rows, left 30/305 of the columns) stays top-left, with that extent
    marker = s.depth == MARKER
    rows, cols = np.nonzero(marker)
    assert rows.min() == 0 and cols.min() == 0
    assert rows.max() + 1 == pytest.approx(460 * 5 / 55, abs=1.5)
    assert cols.max() + 1 == pytest.approx(345 * 30 / 305, abs=1.5)
    assert s.depth[300, 5] < s.depth[459, 5] and s.depth[300, 5] < s.depth[300, 340]  # grows down and right
    assert s.rgb[10, 10, 0] > 200 and s.rgb[10, 330, 0] < 80 and s.rgb[450, 10, 0] < 80  # red top-left
    assert s.rgb[200, 200, 2] == pytest.approx(30, abs=6)  # sample k=1


def test_test_split_and_all(make3d_root):
    test = open_dataset(f"make3d:{make3d_root}", split="test")
    assert test.ids == ["c-p-3"] and test[0].depth[400, 300] > 30
    assert open_dataset(f"make3d:{make3d_root}", split="all").ids == ["a-p-1", "b-p-2", "c-p-3"]


def test_errors(make3d_root, tmp_path):
    with pytest.raises(DataError, match="Make3D folder not found"):
        open_dataset(f"make3d:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no Make3D train pairs found"):
        open_dataset(f"make3d:{tmp_path / 'empty'}")
    lonely = tmp_path / "lonely" / "Train400Img"
    lonely.mkdir(parents=True)
    Image.fromarray(image(0)).save(lonely / "img-x.jpg")
    with pytest.raises(DataError, match=r"1 train image\(s\) have no depth_sph_corr-<name>\.mat, e\.g\. img-x\.jpg"):
        open_dataset(f"make3d:{tmp_path / 'lonely'}")
    scipy.io.savemat(tmp_path / "wrong.mat", {"depths": np.zeros((3, 3))})
    with pytest.raises(FileFormatError, match=r"wrong\.mat: variable Position3DGrid missing"):
        read_make3d_depth(tmp_path / "wrong.mat")


def test_rgb_resized_as_geometry_resizes_every_image(tmp_path):
    """Bilinear with antialiasing when shrinking: PIL's BILINEAR without ``reducing_gap`` (which
    first box-reduces by 2 and was up to 10 grey levels off here), within the rounding the other
    resize tests allow; the depth grid with nearest at pixel centres."""
    (tmp_path / "Train400Img").mkdir()
    (tmp_path / "Train400Depth").mkdir()
    texture = np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)
    Image.fromarray(texture).save(tmp_path / "Train400Img" / "img-t.png")  # lossless
    scipy.io.savemat(tmp_path / "Train400Depth" / "depth_sph_corr-t.mat", {"Position3DGrid": grid(0)})
    raw = open_dataset(f"make3d:{tmp_path}", split="train", size=None)[0]
    assert np.array_equal(raw.rgb, texture)
    for size in [(60, 45), (100, 75), (460, 345)]:  # shrinking 4.7x and 2.8x, and growing
        s = open_dataset(f"make3d:{tmp_path}", split="train", size=size)[0]
        pil = np.asarray(Image.fromarray(texture).resize(size[::-1], Image.BILINEAR))
        assert s.rgb.shape == (*size, 3) and s.rgb.dtype == np.uint8
        assert np.abs(s.rgb.astype(int) - pil.astype(int)).max() <= 2
        rows = np.minimum(((np.arange(size[0]) + 0.5) * 55 / size[0]).astype(int), 54)
        cols = np.minimum(((np.arange(size[1]) + 0.5) * 305 / size[1]).astype(int), 304)
        np.testing.assert_array_equal(s.depth, raw.depth[np.ix_(rows, cols)])


@pytest.mark.parametrize("size", ["48", (2.7, 3.9), [True, 5], (0, 5)])
def test_size_is_parsed_by_the_one_parser(make3d_root, size):
    from refinedepth.data.make3d import Make3DDataset

    # open_dataset checks dataset options first; the reader itself parses the same way
    with pytest.raises(ConfigError, match=r"^dataset option size of 'make3d:.*' must be"):
        open_dataset(f"make3d:{make3d_root}", split="train", size=size)
    with pytest.raises(ConfigError, match=r"^make3d:.*: size must be"):  # was (4, 8), (2, 3), (1, 5)
        Make3DDataset(make3d_root, split="train", size=size)
    assert Make3DDataset(make3d_root, split="train", size="100x75").native_size == (100, 75)


def test_a_bare_gridlaserdata_folder_beside_the_test_images_pairs_by_name(make3d_root, tmp_path):
    """``Test134Depth.tar.gz`` unpacks to ``Gridlaserdata/`` with no Test* folder above it: its depth
    files pair with the test images of their names (they were skipped, and the test split refused)."""
    import shutil

    root = tmp_path / "m"
    shutil.copytree(make3d_root, root)
    shutil.move(str(root / "Test134Depth" / "Gridlaserdata"), str(root / "Gridlaserdata"))
    shutil.rmtree(root / "Test134Depth")
    moved = open_dataset(f"make3d:{root}", split="test")
    assert [moved[i].id for i in range(len(moved))] == ["c-p-3"]
    np.testing.assert_array_equal(moved[0].depth, open_dataset(f"make3d:{make3d_root}", split="test")[0].depth)
