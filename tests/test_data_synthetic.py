"""The procedural synthetic dataset and the dataset spec parser."""

from __future__ import annotations

import numpy as np
import pytest

from refinedepth.data import Sample, open_dataset, parse_spec
from refinedepth.data.synthetic import SyntheticDataset, make_scene, render_sample, render_scene
from refinedepth.errors import ConfigError, ShapeError

SMALL = (60, 80)


@pytest.fixture(scope="module")
def indoor():
    ds = open_dataset("synthetic:indoor", split="train", limit=6, size=SMALL)
    return [ds[i] for i in range(len(ds))]


@pytest.fixture(scope="module")
def outdoor():
    ds = open_dataset("synthetic:outdoor", split="train", limit=6, size=SMALL)
    return [ds[i] for i in range(len(ds))]


def test_attributes_and_defaults():
    ds = open_dataset("synthetic")
    assert isinstance(ds, SyntheticDataset)
    assert (ds.name, ds.family, ds.split, ds.spec) == ("synthetic", "indoor", "train", "synthetic")
    assert ds.native_size == (240, 320) and ds.max_depth == 10.0 and ds.protocol == "none"
    assert len(ds) == 1000 and len(open_dataset("synthetic", split="test")) == 200
    assert len(open_dataset("synthetic", split="all")) == 1200
    out = open_dataset("synthetic:outdoor", split="test", limit=5)
    assert (out.family, out.max_depth, len(out)) == ("outdoor", 80.0, 5)
    s = open_dataset("synthetic", limit=1, size=(48, 64))[0]
    assert isinstance(s, Sample) and s.rgb.shape == (48, 64, 3) and s.depth.shape == (48, 64)
    assert s.rgb.dtype == np.uint8 and s.depth.dtype == np.float32
    assert s.id == "synthetic-indoor-train-000000"
    assert out.description == "synthetic outdoor scenes, test, 5 samples at 240x320, seed 0"
    wide = open_dataset("synthetic", limit=1, size=(48, 64), fov=90)[0]
    assert not np.array_equal(wide.depth, s.depth)  # the field of view is an option


def test_indoor_depth_is_valid_and_in_range(indoor):
    for s in indoor:
        assert np.isfinite(s.depth).all() and (s.depth > 0.05).all()  # a closed room: every pixel hits
        assert s.depth.max() < 10.0
        assert s.depth.max() / s.depth.min() > 1.5  # not a flat wall filling the view
        assert s.rgb.std() > 5  # lit and textured, not a blank picture


def test_outdoor_has_far_sky_at_max_depth(outdoor):
    for s in outdoor:
        assert np.isfinite(s.depth).all() and (s.depth > 0).all() and s.depth.max() <= 80.0
        sky = s.depth == 80.0
        assert 0.02 < sky.mean() < 0.9
        assert sky[0].mean() > sky[-1].mean()  # sky at the top, ground at the bottom
        assert s.depth[-1].mean() < 20.0  # the ground near the camera
    invalid_sky = open_dataset("synthetic:outdoor", limit=1, size=SMALL, sky="invalid")[0]
    assert ((invalid_sky.depth == 0) == (outdoor[0].depth == 80.0)).all()


def test_scenes_vary(indoor, outdoor):
    for samples in (indoor, outdoor):
        means = [s.depth.mean() for s in samples]
        assert np.std(means) > 0.05 * np.mean(means)
        for a, b in zip(samples, samples[1:]):
            assert not np.array_equal(a.rgb, b.rgb)


def test_deterministic_and_independent_of_length_and_limit():
    a = open_dataset("synthetic", split="train", limit=3, size=SMALL)[2]
    b = open_dataset("synthetic", split="train", size=SMALL, train_count=50)[2]
    c = render_sample("indoor", 2, "train", seed=0, size=SMALL)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth) and np.array_equal(a.rgb, c.rgb)
    all_split = open_dataset("synthetic", split="all", size=SMALL, train_count=4, test_count=2)
    assert all_split.ids == [f"synthetic-indoor-train-{i:06d}" for i in range(4)] + [
        f"synthetic-indoor-test-{i:06d}" for i in range(2)
    ]
    assert np.array_equal(all_split[4].depth, open_dataset("synthetic", split="test", size=SMALL)[0].depth)


def test_seeds_and_splits_give_different_scenes():
    base = render_sample("indoor", 0, "train", seed=0, size=SMALL)
    assert np.array_equal(base.depth, render_sample("indoor", 0, "train", seed=0, size=SMALL).depth)
    assert not np.array_equal(base.depth, render_sample("indoor", 0, "train", seed=1, size=SMALL).depth)
    assert not np.array_equal(base.depth, render_sample("indoor", 0, "test", seed=0, size=SMALL).depth)
    ds = open_dataset("synthetic", seed=1, limit=1, size=SMALL)
    assert np.array_equal(ds[0].rgb, render_sample("indoor", 0, "train", seed=1, size=SMALL).rgb)


def test_depth_is_exact_z_depth_of_the_ground_plane():
    # An outdoor scene emptied of objects, seen by a camera pitched down by 0.1 rad at 2 m: below
    # the horizon every pixel sees the ground y = 0, whose z-depth has a closed form per row.
    h, w = 60, 80
    scene = make_scene("outdoor", np.random.default_rng(0), (h, w), fov=60.0)
    scene.boxes, scene.spheres = [], []
    pitch, height = -0.1, 2.0
    c, s = np.cos(pitch), np.sin(pitch)
    scene.rotation = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])  # camera -> world
    scene.origin = np.array([0.0, height, 0.0])
    _, depth = render_scene(scene, (h, w))
    focal = 0.5 * w / np.tan(np.radians(30.0))
    y_cam = -(np.arange(h) + 0.5 - h / 2) / focal  # camera-frame ray (x, y_cam, 1), y up
    down = -(c * y_cam + s)  # minus the world-y component of the ray
    want = np.where(down > 0, height / np.where(down > 0, down, 1.0), np.inf)
    want = np.minimum(want, 80.0)
    assert np.allclose(depth, want[:, None].astype(np.float32), rtol=1e-5)
    assert depth[-1, 0] < 5.0 and depth[0, 0] == 80.0  # ground near the bottom, sky at the top


def test_dataset_indexing():
    ds = open_dataset("synthetic", limit=3, size=SMALL)
    assert ds[-1].id == ds[2].id
    with pytest.raises(IndexError, match="index 3 out of range for 3 samples"):
        ds[3]
    assert [s.id for s in ds] == ds.ids


def test_bad_specs_and_options():
    with pytest.raises(ConfigError, match="unknown dataset 'synthtic'.*did you mean 'synthetic'"):
        open_dataset("synthtic")
    with pytest.raises(ConfigError, match="dataset spec 'nyu' needs a path: write it as 'nyu:PATH'"):
        open_dataset("nyu")
    with pytest.raises(ConfigError, match="unknown synthetic family 'forest'"):
        open_dataset("synthetic:forest")
    with pytest.raises(ConfigError, match="unknown split 'val'; expected one of train, test, all"):
        open_dataset("synthetic", split="val")
    with pytest.raises(ConfigError, match="limit must be a positive number"):
        open_dataset("synthetic", limit=0)
    with pytest.raises(ConfigError, match=r"fov is the horizontal field of view in degrees \(10-150\), got 5"):
        open_dataset("synthetic", fov=5)
    with pytest.raises(ConfigError, match="sky must be 'max' or 'invalid'"):
        open_dataset("synthetic:outdoor", sky="blue")
    assert parse_spec("folder:/a:b") == ("folder", "/a:b")
    assert parse_spec("synthetic") == ("synthetic", None)


def test_sample_checks_its_arrays():
    with pytest.raises(ShapeError, match=r"sample 'x': expected depth float32 \[H,W\], got float64 \[2, 2\]"):
        Sample(rgb=np.zeros((2, 2, 3), np.uint8), depth=np.zeros((2, 2)), id="x")
    with pytest.raises(ShapeError, match=r"expected rgb uint8 \[H,W,3\]"):
        Sample(rgb=np.zeros((2, 2), np.uint8), depth=np.zeros((2, 2), np.float32), id="x")
