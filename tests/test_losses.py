"""berHu loss against a plain NumPy reference (SPEC §3.3, paper Eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinedepth.errors import ShapeError
from refinedepth.losses import berhu_loss


def _np_berhu(pred, gt, valid=None):
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    mask = np.isfinite(gt) & (gt > 0)
    if valid is not None:
        mask &= np.asarray(valid, bool)
    r = np.abs(pred[mask] - gt[mask])
    if r.size == 0:
        return 0.0
    c = 0.2 * r.max()
    vals = [x if x <= c else (x * x + c * c) / (2 * c) for x in r]
    return float(np.mean(vals))


def test_hand_computed_case():
    # residuals 1, 2, 10 -> c = 2: |1| -> 1 (L1), |2| -> 2 (at c: L1), |10| -> (100 + 4) / 4 = 26
    pred = torch.tensor([[[[2.0, 3.0, 11.0]]]])
    gt = torch.tensor([[[[1.0, 1.0, 1.0]]]])
    assert berhu_loss(pred, gt).item() == pytest.approx((1 + 2 + 26) / 3)


def test_l1_l2_switch_at_c_is_continuous():
    # largest residual 5 -> c = 1; residuals just below / above c
    gt = torch.ones(1, 1, 1, 4)
    for r, expected in ((0.999, 0.999), (1.0, 1.0), (1.001, (1.001**2 + 1) / 2)):
        pred = gt + torch.tensor([r, 0.0, 0.0, 5.0]).view(1, 1, 1, 4)
        loss = berhu_loss(pred, gt).item()
        assert loss == pytest.approx((expected + 0 + 0 + (25 + 1) / 2) / 4, rel=1e-6)


def test_masked_pixels_are_excluded_from_threshold_and_mean():
    gt = torch.tensor([[1.0, 0.0, float("nan"), 2.0, float("inf"), 3.0]]).view(1, 1, 2, 3)
    pred = torch.tensor([[1.5, 100.0, 100.0, 2.2, 100.0, 3.0]]).view(1, 1, 2, 3)
    valid = torch.tensor([[True, True, True, True, True, False]]).view(1, 1, 2, 3)
    got = berhu_loss(pred, gt, valid)
    assert got.item() == pytest.approx(_np_berhu(pred.numpy(), gt.numpy(), valid.numpy()))
    # only residuals 0.5 and 0.2 are used: c = 0.1, both quadratic
    assert got.item() == pytest.approx(((0.25 + 0.01) / 0.2 + (0.04 + 0.01) / 0.2) / 2, rel=1e-5)


def test_random_batches_match_numpy_reference():
    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = rng.uniform(0.5, 10, (3, 1, 8, 9)).astype(np.float32)
        gt[rng.random(gt.shape) < 0.2] = 0
        pred = (gt + rng.normal(0, 1, gt.shape)).astype(np.float32)
        got = berhu_loss(torch.from_numpy(pred), torch.from_numpy(gt)).item()
        assert got == pytest.approx(_np_berhu(pred, gt), rel=1e-5)


def test_threshold_is_detached_and_nan_gt_gives_finite_gradient():
    gt = torch.tensor([1.0, float("nan"), 0.0, 3.0, 2.0]).view(1, 1, 1, 5)
    pred = torch.tensor([2.0, 5.0, 5.0, 3.5, 2.0]).view(1, 1, 1, 5).requires_grad_()
    berhu_loss(pred, gt).backward()
    # residuals 1, 0.5, 0 -> c = 0.2; d/dx (x^2+c^2)/(2c) = x/c; mean over 3 pixels
    expected = torch.tensor([1.0 / 0.2, 0.0, 0.0, 0.5 / 0.2, 0.0]) / 3
    torch.testing.assert_close(pred.grad.view(-1), expected)


def test_gt_without_channel_dim_and_empty_mask():
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    gt = torch.rand(2, 4, 4) + 0.5
    assert berhu_loss(pred, gt).item() == pytest.approx(berhu_loss(pred, gt.unsqueeze(1)).item())
    zero = berhu_loss(pred, torch.zeros(2, 4, 4))
    assert zero.item() == 0.0 and zero.requires_grad
    assert berhu_loss(gt.unsqueeze(1), gt).item() == 0.0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ShapeError, match=r"pred is \[1, 1, 4, 4\] but gt is \[1, 1, 8, 8\]; resize"):
        berhu_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))
