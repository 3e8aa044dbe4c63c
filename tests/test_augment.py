"""The one augmentation module (SPEC §4): flips, the paper's scale augmentation, brightness, and
the first-stage gain of refiner training.

References are small hand-worked cases: a zoom by s of a window starting at fraction ``left``
samples output pixel ``i`` at ``left + (i + 0.5) / (W s)`` (a fraction of the width).
"""

from __future__ import annotations

import pytest
import torch

from refinedepth.augment import (
    AUGMENTATIONS,
    GAIN_MAX,
    PAPER_AUGMENTATIONS,
    AugmentParams,
    PairedAugment,
    apply_params,
    augment_batch,
    draw_params,
)
from refinedepth.errors import ConfigError, ShapeError


def params(b=1, flip=False, scale=1.0, top=0.5, left=0.5, brightness=1.0) -> AugmentParams:
    def full(v, dtype=torch.float64):
        return torch.full((b,), v, dtype=dtype)

    return AugmentParams(flip=full(flip, torch.bool), scale=full(scale), top=full(top), left=full(left),
                         brightness=full(brightness))


def ramp(h, w, a=1.0, bx=2.0, by=3.0):
    """``a + bx u + by v`` at pixel centres (u, v normalised to [0, 1]) as ``[1,1,h,w]`` float64."""
    v = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    return (a + bx * u[None, :] + by * v[:, None])[None, None]


def test_flip_mirrors_every_map_of_the_flipped_samples_only():
    row = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    batch = {"gt": torch.stack([row, row])[:, None], "valid": torch.tensor([[[[True, False, False, False]]]] * 2),
             "rgb": torch.zeros(2, 3, 1, 4), "id": ["a", "b"]}
    p = AugmentParams(flip=torch.tensor([True, False]), scale=torch.ones(2, dtype=torch.float64),
                      top=torch.zeros(2), left=torch.zeros(2), brightness=torch.ones(2))
    out = apply_params(batch, p)
    assert out["gt"][0, 0].tolist() == [[3.0, 2.0, 1.0, 0.0]]
    assert out["gt"][1, 0].tolist() == [[0.0, 1.0, 2.0, 3.0]]
    assert out["valid"][0, 0].tolist() == [[False, False, False, True]] and out["valid"].dtype == torch.bool
    assert out["id"] == ["a", "b"]


def test_zoom_of_a_depth_map_takes_the_hand_computed_pixels_divided_by_s():
    gt = ramp(4, 8).float()
    out = apply_params({"gt": gt}, params(scale=2.0, top=0.0, left=0.5))["gt"]
    # columns: window [0.25, 0.75], centres 0.28125, 0.34375, ... times 8 -> 2,2,3,3,4,4,5,5
    # rows: window [0, 0.5], centres 0.125, 0.375, 0.625, 0.875 of it -> 0,0,1,1
    want = gt[..., [0, 0, 1, 1], :][..., [2, 2, 3, 3, 4, 4, 5, 5]] / 2.0
    assert torch.equal(out, want)


def test_zoom_of_a_constant_gradient_map_is_the_gradient_over_the_window_divided_by_s():
    # bilinear interpolation reproduces a linear map exactly away from the border
    rough = ramp(8, 8)
    for kind, factor in (("metric", 1 / 2.0), ("relative", 1 / 2.0), ("disparity", 2.0)):
        out = apply_params({"rough": rough}, params(scale=2.0), kind=kind)["rough"]
        u = 0.25 + (torch.arange(8, dtype=torch.float64) + 0.5) / 16  # the window [0.25, 0.75]
        want = (1.0 + 2.0 * u[None, :] + 3.0 * u[:, None]) * factor
        torch.testing.assert_close(out[0, 0], want, rtol=0, atol=1e-6)


def test_constant_maps_scale_by_kind_and_brightness_touches_only_rgb():
    batch = {"rough": torch.full((1, 1, 8, 8), 4.0), "gt": torch.full((1, 1, 16, 16), 6.0),
             "rgb": torch.full((1, 3, 8, 8), 0.5)}
    p = params(scale=1.25, top=0.3, left=0.7, brightness=1.5)
    out = apply_params(batch, p)
    torch.testing.assert_close(out["rough"], torch.full((1, 1, 8, 8), 4.0 / 1.25))
    assert torch.equal(out["gt"], torch.full((1, 1, 16, 16), 6.0) / 1.25)
    torch.testing.assert_close(out["rgb"], torch.full((1, 3, 8, 8), 0.75))
    disparity = apply_params(batch, p, kind="disparity")["rough"]
    torch.testing.assert_close(disparity, torch.full((1, 1, 8, 8), 4.0 * 1.25))
    assert apply_params({"rgb": torch.full((1, 3, 2, 2), 0.9)}, p)["rgb"].max() == 1.0  # clamped


def test_an_invalid_hole_stays_invalid_and_no_depth_is_invented():
    gt = ramp(12, 16).float()
    gt[..., 4:8, 6:10] = 0.0  # a hole
    valid = gt > 0
    values = set((gt[gt > 0] / 1.3).tolist())
    out = apply_params({"gt": gt, "valid": valid}, params(scale=1.3, top=0.4, left=0.6))
    assert torch.equal(out["valid"], out["gt"] > 0)  # mask and depth sampled at the same pixels
    assert (out["gt"] == 0).any()
    assert set(out["gt"][out["gt"] > 0].tolist()) <= values  # every value is a source pixel / s


def test_maps_of_different_resolutions_get_the_same_window():
    p = params(scale=2.0, top=0.5, left=0.5)
    out = apply_params({"gt": torch.arange(4.0).view(1, 1, 1, 4),
                        "valid": torch.arange(8).view(1, 1, 1, 8) % 3 == 0}, p)
    # window [0.25, 0.75]: gt pixels 1,1,2,2 (of 4), valid pixels 2,2,3,3,4,4,5,5 (of 8)
    assert out["gt"][0, 0, 0].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert out["valid"][0, 0, 0].tolist() == [False, False, True, True, False, False, False, False]
    # bilinear at 8x8 (rough) and 32x32 (rgb): the same linear function of the output position
    res = apply_params({"rough": ramp(8, 8), "rgb": ramp(32, 32, a=0.1, bx=0.2, by=0.3)}, p)
    for key, n, coeffs, s in (("rough", 8, (1.0, 2.0, 3.0), 2.0), ("rgb", 32, (0.1, 0.2, 0.3), 1.0)):
        u = 0.25 + (torch.arange(n, dtype=torch.float64) + 0.5) / (2 * n)
        want = (coeffs[0] + coeffs[1] * u[None, :] + coeffs[2] * u[:, None]) / s
        torch.testing.assert_close(res[key][0, 0].double(), want, rtol=0, atol=1e-6)


def test_draws_are_per_sample_reproducible_and_respect_the_ops():
    batch = {"rough": torch.rand(3, 1, 8, 8), "gt": torch.rand(3, 1, 16, 16), "rgb": torch.rand(3, 3, 8, 8)}
    a = augment_batch(batch, AUGMENTATIONS, torch.Generator().manual_seed(5))
    b = augment_batch(batch, AUGMENTATIONS, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in batch)
    p = draw_params(3, AUGMENTATIONS, torch.Generator().manual_seed(5))
    for i in range(3):  # sample i gets draw i
        one = apply_params({k: v[i : i + 1] for k, v in batch.items()},
                           AugmentParams(*(t[i : i + 1] for t in (p.flip, p.scale, p.top, p.left, p.brightness, p.gain))))
        assert all(torch.equal(one[k][0], a[k][i]) for k in batch)
    p = draw_params(64, ("hflip",), torch.Generator().manual_seed(0))
    assert 10 < int(p.flip.sum()) < 54 and bool((p.scale == 1).all()) and bool((p.brightness == 1).all())
    p = draw_params(64, ("scale", "brightness"), torch.Generator().manual_seed(0))
    assert not p.flip.any() and 1.0 <= float(p.scale.min()) and float(p.scale.max()) <= 1.5
    assert 0.8 <= float(p.brightness.min()) and float(p.brightness.max()) <= 1.2
    assert augment_batch(batch, (), None)["rough"] is batch["rough"]


def test_gain_scales_the_rough_map_alone_by_kind():
    batch = {"rough": torch.full((2, 1, 4, 4), 2.0), "refined": torch.full((2, 1, 4, 4), 2.0),
             "gt": torch.full((2, 1, 8, 8), 2.0), "valid": torch.ones(2, 1, 8, 8, dtype=torch.bool),
             "rgb": torch.full((2, 3, 4, 4), 0.5)}
    p = AugmentParams(flip=torch.zeros(2, dtype=torch.bool), scale=torch.ones(2, dtype=torch.float64),
                      top=torch.zeros(2), left=torch.zeros(2), brightness=torch.ones(2),
                      gain=torch.tensor([1.2, 0.8], dtype=torch.float64))
    out = apply_params(batch, p)
    assert out["rough"][:, 0, 0, 0].tolist() == pytest.approx([2.4, 1.6])
    for key in ("refined", "gt", "valid", "rgb"):  # the ground truth, a refiner's output and the image: untouched
        assert torch.equal(out[key], batch[key])
    disparity = apply_params(batch, p, kind="disparity")["rough"][:, 0, 0, 0]
    assert disparity.tolist() == pytest.approx([2.0 / 1.2, 2.0 / 0.8])


def test_gain_draws_are_log_uniform_and_leave_the_paper_draws_as_they_were():
    p = draw_params(4000, ("gain",), torch.Generator().manual_seed(0))
    log_g = torch.log(p.gain)
    bound = torch.log(torch.tensor(GAIN_MAX, dtype=torch.float64))
    assert float(log_g.abs().max()) <= float(bound) and float(log_g.abs().max()) > 0.99 * float(bound)
    assert abs(float(log_g.mean())) < 0.01 and float(log_g.var()) == pytest.approx(float(bound) ** 2 / 3, rel=0.05)
    assert bool((p.flip == 0).all()) and bool((p.scale == 1).all()) and bool((p.brightness == 1).all())
    # without gain: five uniforms per sample and nothing more, as before gain existed (an
    # independent reference: the raw draws of the same generator)
    gen, ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    p = draw_params(3, PAPER_AUGMENTATIONS, gen)
    u = torch.rand(3, 5, generator=ref, dtype=torch.float64)
    assert torch.equal(p.scale, 1.0 + 0.5 * u[:, 1]) and torch.equal(p.brightness, 0.8 + 0.4 * u[:, 4])
    assert bool((p.gain == 1).all())
    assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=ref))  # no hidden sixth draw
    # with gain, the paper's five come first and are the same numbers
    q = draw_params(3, AUGMENTATIONS, torch.Generator().manual_seed(7))
    assert torch.equal(q.scale, p.scale) and torch.equal(q.brightness, p.brightness) and torch.equal(q.flip, p.flip)


def test_paired_augment_depends_on_seed_epoch_and_index_not_on_call_order():
    aug = PairedAugment(seed=3)
    items = [{"rough": torch.rand(1, 8, 8), "gt": torch.rand(1, 16, 16), "index": i, "id": str(i)} for i in range(4)]
    forward = [aug(it)["rough"] for it in items]
    backward = [aug(it)["rough"] for it in reversed(items)][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    assert torch.equal(PairedAugment(seed=3)(items[2])["rough"], forward[2])
    assert aug(items[1])["id"] == "1" and aug(items[1])["gt"].shape == (1, 16, 16)
    aug.set_epoch(1)
    assert any(not torch.equal(aug(it)["rough"], f) for it, f in zip(items, forward))


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"unknown augmentation 'blur': expected any of hflip, scale, brightness, gain or none"):
        augment_batch({"gt": torch.rand(1, 1, 4, 4)}, ("blur",))
    with pytest.raises(ConfigError, match=r"unknown output kind 'depth'"):
        apply_params({"gt": torch.rand(1, 1, 4, 4)}, params(), kind="depth")
    with pytest.raises(ShapeError, match=r"expected gt as \[B,C,H,W\] with B=1, got \(4, 4\)"):
        apply_params({"gt": torch.rand(4, 4)}, params())
