"""Transforms: fitting samples to a backbone's input and paired, reproducible augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refinedepth.data import Sample
from refinedepth.errors import ConfigError, ShapeError
from refinedepth.transforms import (
    AugmentParams,
    PairedAugment,
    apply_params,
    augment_sample,
    center_crop,
    draw_params,
    fit_sample,
    hflip,
    paired_augment,
    resize_nearest,
    sample_to_tensors,
)


def kinect_like_sample(h=480, w=640) -> Sample:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = (1.0 + np.arange(h)[:, None] / h + 2 * np.arange(w)[None, :] / w).astype(np.float32)
    depth[200:210, 300:310] = 0.0  # a hole
    return Sample(rgb=rgb, depth=depth, id="k")


def test_fit_sample_half_resolution_centre_crop_like_fcrn():
    s = kinect_like_sample()
    f = fit_sample(s, (228, 304), scale=0.5)
    assert f.rgb.shape == (228, 304, 3) and f.depth.shape == (228, 304) and f.id == "k"
    half = np.asarray(Image.fromarray(s.rgb).resize((320, 240), Image.BILINEAR))
    assert np.array_equal(f.rgb, half[6:234, 8:312])
    want = s.depth[1::2, 1::2][6:234, 8:312]  # nearest at half resolution samples odd pixels
    assert np.array_equal(f.depth, want)
    assert (f.depth == 0).sum() == 25  # the hole, halved in each direction, not smeared


def test_fit_sample_cover_and_depth_size():
    s = kinect_like_sample()
    f = fit_sample(s, (228, 304))  # smallest scale that covers: 0.475, no crop needed
    assert f.rgb.shape == (228, 304, 3)
    g = fit_sample(s, (100, 100), depth_size=(50, 50))  # square crop from a 4:3 image
    assert g.rgb.shape == (100, 100, 3) and g.depth.shape == (50, 50)
    # the crop keeps the middle: left and right thirds of the columns are gone, rows are all kept
    assert g.depth[:, 0].mean() == pytest.approx(s.depth[:, 80].mean(), abs=0.05)
    assert g.depth[0, 25] == pytest.approx(s.depth[0, 320], abs=0.05)


def test_numpy_helpers():
    a = np.arange(12).reshape(3, 4)
    assert center_crop(a, (1, 2)).tolist() == [[5, 6]]
    assert hflip(a)[0].tolist() == [3, 2, 1, 0]
    assert hflip(torch.from_numpy(a))[0].tolist() == [3, 2, 1, 0]
    assert resize_nearest(a, (6, 8))[::2, ::2].tolist() == a.tolist()
    with pytest.raises(ShapeError, match="cannot centre-crop 3x4 to 4x4"):
        center_crop(a, (4, 4))


def ramp(h, w):
    """A linear function of normalised pixel-centre coordinates, as a [1,h,w] tensor."""
    v = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    return (1.0 + 2.0 * u[None, :] + 3.0 * v[:, None])[None]


def test_identity_and_flip():
    item = {"rough": torch.rand(1, 8, 8), "gt": torch.rand(1, 16, 16), "valid": torch.rand(1, 16, 16) > 0.5,
            "rgb": torch.rand(3, 8, 8), "id": "s", "index": 4}
    same = paired_augment(item, seed=0, flip_p=0.0, scale_range=(1.0, 1.0), brightness_range=(1.0, 1.0))
    for k in ("rough", "gt", "valid", "rgb"):
        assert torch.equal(same[k], item[k])
    assert same["id"] == "s" and same["index"] == 4
    flipped = paired_augment(item, seed=0, flip_p=1.0, scale_range=(1.0, 1.0), brightness_range=(1.0, 1.0))
    for k in ("rough", "gt", "valid", "rgb"):
        assert torch.equal(flipped[k], item[k].flip(-1))


def test_zoom_divides_depth_and_keeps_maps_of_different_sizes_aligned():
    blocks = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4) + 1.0
    gt = blocks.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 8x8, 2x2 pixels per block
    params = AugmentParams(flip=False, scale=2.0, fy=0.0, fx=0.0, brightness=1.0)
    out = apply_params({"gt": gt, "valid": gt > 6}, params)
    # top-left window of half the size: the top-left 2x2 blocks, 4x4 pixels each, depth halved
    want = blocks[:, :2, :2].repeat_interleave(4, 1).repeat_interleave(4, 2) / 2.0
    assert torch.equal(out["gt"], want)
    assert torch.equal(out["valid"], want * 2 > 6) and out["valid"].dtype == torch.bool

    rng = torch.Generator().manual_seed(3)
    for _ in range(5):
        p = draw_params(rng, flip_p=0.5, scale_range=(1.0, 1.6))
        res = apply_params({"rough": ramp(32, 32), "refined": ramp(64, 64)}, p)
        coarse = res["rough"][0, 2:-2, 2:-2]
        fine = torch.nn.functional.avg_pool2d(res["refined"], 2)[0, 2:-2, 2:-2]
        assert torch.allclose(coarse, fine, atol=1e-9)  # the same window at both resolutions
        # the mean of a linear field over the window is its value at the window's centre, over s
        span = 1.0 - 1.0 / p.scale
        cx, cy = 0.5 + (p.fx - 0.5) * span, 0.5 + (p.fy - 0.5) * span
        centre = 1.0 + 2.0 * ((1.0 - cx) if p.flip else cx) + 3.0 * cy
        assert float(res["refined"].mean()) == pytest.approx(centre / p.scale, rel=0.01)


def test_scale_augmentation_divides_depth_by_s_and_brightness_only_touches_rgb():
    item = {"rough": torch.full((1, 8, 8), 4.0), "gt": torch.full((1, 16, 16), 6.0), "rgb": torch.full((3, 8, 8), 0.5)}
    p = AugmentParams(flip=False, scale=1.25, fy=0.3, fx=0.7, brightness=1.5)
    out = apply_params(item, p)
    assert torch.allclose(out["rough"], torch.full((1, 8, 8), 4.0 / 1.25))
    assert torch.allclose(out["gt"], torch.full((1, 16, 16), 6.0 / 1.25))
    assert torch.allclose(out["rgb"], torch.full((3, 8, 8), 0.75))
    assert apply_params({"rgb": torch.full((3, 2, 2), 0.9)}, p)["rgb"].max() == 1.0  # clamped


def test_reproducible_with_seed_and_generator():
    item = {"rough": torch.rand(1, 16, 16), "gt": torch.rand(1, 32, 32), "rgb": torch.rand(3, 16, 16)}
    a = paired_augment(item, seed=11)
    b = paired_augment(item, generator=torch.Generator().manual_seed(11))
    assert all(torch.equal(a[k], b[k]) for k in item)
    outs = [paired_augment(item, seed=s)["rough"] for s in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_batched_items_get_one_draw_per_sample_in_order():
    batch = {"rough": torch.rand(3, 1, 8, 8), "gt": torch.rand(3, 1, 16, 16), "id": ["a", "b", "c"]}
    out = paired_augment(batch, seed=5)
    gen = torch.Generator().manual_seed(5)
    for i in range(3):
        one = apply_params({"rough": batch["rough"][i], "gt": batch["gt"][i]}, draw_params(gen))
        assert torch.equal(out["rough"][i], one["rough"]) and torch.equal(out["gt"][i], one["gt"])
    assert out["id"] == ["a", "b", "c"]


def test_paired_augment_object_depends_on_index_and_epoch_not_on_call_order():
    aug = PairedAugment(seed=3, scale_range=(1.0, 1.5))
    items = [{"rough": torch.rand(1, 8, 8), "gt": torch.rand(1, 8, 8), "index": i} for i in range(4)]
    forward = [aug(it)["rough"] for it in items]
    backward = [aug(it)["rough"] for it in reversed(items)][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    assert torch.equal(PairedAugment(seed=3, scale_range=(1.0, 1.5))(items[2])["rough"], forward[2])
    aug.set_epoch(1)
    assert any(not torch.equal(aug(it)["rough"], f) for it, f in zip(items, forward))


def test_bad_scale_range():
    with pytest.raises(ConfigError, match=r"scale_range must satisfy 1 <= low <= high, got \(0.5, 1.0\)"):
        paired_augment({"rough": torch.rand(1, 4, 4)}, seed=0, scale_range=(0.5, 1.0))


def test_samples_round_trip_through_tensors():
    s = kinect_like_sample(48, 64)
    t = sample_to_tensors(s)
    assert t["rgb"].shape == (3, 48, 64) and t["gt"].shape == (1, 48, 64) and t["valid"].dtype == torch.bool
    same = augment_sample(s, seed=0, flip_p=0.0, scale_range=(1.0, 1.0), brightness_range=(1.0, 1.0))
    assert np.array_equal(same.rgb, s.rgb) and np.array_equal(same.depth, s.depth)
    flipped = augment_sample(s, seed=0, flip_p=1.0, scale_range=(1.0, 1.0), brightness_range=(1.0, 1.0))
    assert np.array_equal(flipped.depth, s.depth[:, ::-1]) and np.array_equal(flipped.rgb, s.rgb[:, ::-1])
    zoomed = augment_sample(s, seed=1, scale_range=(1.4, 1.4))
    assert zoomed.depth.shape == (48, 64) and zoomed.depth.max() <= s.depth.max() / 1.4 + 1e-5
