"""Boundary metrics (refinedepth.boundary) against hand-made cases computed here, independently.

Step edges are drawn with one intermediate pixel (``near | mid | far``) so the step is centred on a
pixel and Canny marks exactly that column: then every distance is an integer known by hand. A pure
two-value step is centred between two columns; there the iBims-1 code's own edges (float32
normalisation) are the reference (checked below as well).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")

from refinedepth import boundary  # noqa: E402
from refinedepth.boundary import (  # noqa: E402
    BoundaryAccumulator,
    boundary_f1,
    boundary_metrics,
    depth_boundary_errors,
)
from refinedepth.errors import ConfigError, ShapeError  # noqa: E402

H = W = 64
NEAR, FAR = 2.0, 4.0


def step(col: int, near: float = NEAR, far: float = FAR, mid: bool = True) -> np.ndarray:
    """Near plane left of ``col``, far plane right of it; ``col`` itself halfway (if ``mid``)."""
    d = np.full((H, W), far)
    d[:, :col] = near
    if mid:
        d[:, col] = (near + far) / 2
    return d


def test_prediction_equal_to_gt_is_perfect():
    gt = step(30)
    m = boundary_metrics(gt.copy(), gt)
    assert m["dbe_acc"] == 0.0 and m["dbe_comp"] == 0.0
    assert m["boundary_f1"] == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9])
def test_shifted_edge_errors_equal_the_shift(k):
    # every predicted edge pixel (row r, column 30 + k) is k pixels from the gt edge (r, 30)
    m = boundary_metrics(step(30 + k), step(30))
    assert m["dbe_acc"] == pytest.approx(k)
    assert m["dbe_comp"] == pytest.approx(k)


@pytest.mark.parametrize("k", [10, 15, 25])
def test_shifted_edge_errors_are_truncated_at_theta(k):
    m = boundary_metrics(step(30 + k), step(30))
    assert m["dbe_acc"] == pytest.approx(10.0)
    assert m["dbe_comp"] == pytest.approx(10.0)


@pytest.mark.parametrize("k", [1, 4])
def test_two_value_step_gives_the_ibims1_codes_edges_and_errors(k):
    # A pure two-value step is centred between two columns; their Canny strengths tie, and the
    # iBims-1 code, which normalises in float32 (`astype('f')`) and runs Canny without a mask,
    # keeps one pixel per row as float32 rounds. Its edges and brute-force truncated distances:
    from skimage import feature

    def ibims_edges(d):
        n = ((d - d.min()) / (d.max() - d.min())).astype("f")
        return feature.canny(n, sigma=np.sqrt(2), low_threshold=0.15, high_threshold=0.3)

    gt, pred = step(30, mid=False), step(30 + k, mid=False)
    eg, ep = np.argwhere(ibims_edges(gt)), np.argwhere(ibims_edges(pred))
    assert len(eg) == len(ep) == H - 2  # one pixel per row but the border rows

    def chamfer(a, b):
        return np.minimum(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(1), 10.0).mean()

    acc, comp = depth_boundary_errors(pred, gt)
    assert acc == pytest.approx(chamfer(ep, eg)) and comp == pytest.approx(chamfer(eg, ep))
    assert k - 1 < acc <= k  # (float64 normalisation kept both columns: k - 1/2 with k = 4)


def test_spurious_far_edge_counts_theta_in_accuracy():
    # prediction has the gt step at column 20 plus a second step at column 45 (25 px away):
    # half of its edge pixels are at 0, half truncated at 10 -> acc 5; every gt edge is found.
    gt = step(20, near=2.0, far=4.0)
    pred = gt.copy()
    pred[:, 45] = 5.0
    pred[:, 46:] = 6.0
    acc, comp = depth_boundary_errors(pred, gt)
    assert acc == pytest.approx(5.0)
    assert comp == pytest.approx(0.0)


def test_flat_prediction_has_no_edges():
    m = boundary_metrics(np.full((H, W), 3.0), step(30))
    assert m["dbe_acc"] == 10.0 and m["dbe_comp"] == 10.0
    assert m["boundary_f1"] == 0.0


def test_flat_gt_gives_nan():
    m = boundary_metrics(step(30), np.full((H, W), 3.0))
    assert all(np.isnan(m[name]) for name in ("dbe_acc", "dbe_comp", "boundary_f1"))


def test_blurred_prediction_is_worse_but_finite():
    from scipy.ndimage import gaussian_filter

    gt = np.full((H, W), FAR)
    gt[20:44, 20:44] = NEAR  # a near square: blur rounds its corners
    m = boundary_metrics(gaussian_filter(gt, 3.0), gt)
    assert 0.0 < m["dbe_acc"] < 10.0
    assert 0.0 < m["dbe_comp"] < 10.0
    assert 0.0 < m["boundary_f1"] < 1.0


def test_boundary_f1_of_a_one_pixel_shift_by_hand():
    # gt contours per row: pairs (29,30) ratio 3/2 and (30,31) ratio 4/3, both "right farther";
    # shifted by 1 the prediction has (30,31) and (31,32): one of two pairs coincides at every
    # threshold (1.05..1.25 < 4/3), so P = R = 1/2 and F1 = 1/2.
    assert boundary_f1(step(31), step(30)) == pytest.approx(0.5)
    # same pairs, opposite orientation (near and far swapped): no contour of the right kind
    assert boundary_f1(step(30, near=FAR, far=NEAR), step(30)) == 0.0


def test_boundary_f1_thresholds_by_hand():
    # a step of ratio 1.1 is a contour for the thresholds below 1.1 only (1.05, 1.0722, 1.0944);
    # a prediction with a 1.3 step there agrees below 1.1 and is a false positive above: its
    # score is the Depth Pro weight (ratio / sum of ratios) of those three thresholds.
    gt = step(30, near=2.0, far=2.2, mid=False)
    pred = step(30, near=2.0, far=2.6, mid=False)
    ratios = np.linspace(1.05, 1.25, 10)
    expected = ratios[ratios < 1.1].sum() / ratios.sum()
    assert boundary_f1(pred, gt) == pytest.approx(expected)
    # the prediction that equals gt agrees everywhere, where there is no contour as well
    assert boundary_f1(gt, gt) == pytest.approx(1.0)


def test_invalid_holes_create_no_edges():
    gt = step(30)
    gt[10:20, 5:15] = 0.0  # missing Kinect depth (0 is invalid)
    gt[40:52, 45:58] = np.nan
    pred = step(30)
    pred[10:20, 5:15] = 100.0  # anything inside a hole is ignored
    pred[40:52, 45:58] = 0.01
    m = boundary_metrics(pred, gt)
    assert m["dbe_acc"] == 0.0 and m["dbe_comp"] == 0.0
    assert m["boundary_f1"] == pytest.approx(1.0)
    # a flat gt with holes has no edge at all
    flat = np.full((H, W), 3.0)
    flat[10:20, 5:15] = 0.0
    assert np.isnan(boundary_metrics(pred, flat)["dbe_acc"])


def test_valid_mask_excludes_pixels():
    gt = step(30)
    pred = step(30)
    pred[40:56, 40:56] = 1.0  # a spurious near object...
    valid = np.ones((H, W), dtype=bool)
    valid[36:60, 36:60] = False  # ...inside the invalid region
    m = boundary_metrics(pred, gt, valid)
    assert m["dbe_acc"] == 0.0 and m["dbe_comp"] == 0.0
    assert m["boundary_f1"] == pytest.approx(1.0)
    assert boundary_metrics(pred, gt)["dbe_acc"] > 0.0  # seen without the mask


def test_chamfer_distances_against_brute_force():
    # edges from scikit-image, distances by brute force over all edge pixel pairs
    from skimage.feature import canny

    rng = np.random.default_rng(0)
    gt = np.full((32, 32), 5.0)
    gt[6:20, 4:15] = 2.0
    gt[18:28, 17:29] = 3.0
    pred = gt * np.exp(0.02 * rng.standard_normal(gt.shape))
    pred[4:18, 6:17] = 2.2

    def edges(d):  # normalised in float32, as the iBims-1 code does
        return canny(((d - d.min()) / (d.max() - d.min())).astype("f"), sigma=np.sqrt(2), low_threshold=0.15,
                     high_threshold=0.3, mask=np.ones(d.shape, dtype=bool))

    eg, ep = np.argwhere(edges(gt)), np.argwhere(edges(pred))
    dist = np.sqrt(((ep[:, None, :] - eg[None, :, :]) ** 2).sum(-1))
    acc = np.minimum(dist.min(axis=1), 10).mean()
    comp = np.minimum(dist.min(axis=0), 10).mean()
    got = depth_boundary_errors(pred, gt)
    assert got == pytest.approx((acc, comp))
    assert got[0] > 0 and got[1] > 0


def test_torch_and_numpy_inputs_agree():
    torch = pytest.importorskip("torch")
    gt = np.stack([step(30), step(20)])
    pred = np.stack([step(33), step(20) * 1.1])
    valid = np.ones_like(gt, dtype=bool)
    valid[:, :5] = False
    a, b = BoundaryAccumulator(), BoundaryAccumulator()
    per_np = a.update(pred, gt, valid)
    per_t = b.update(
        torch.from_numpy(pred).float()[:, None], torch.from_numpy(gt).float()[:, None],
        torch.from_numpy(valid)[:, None],
    )
    for name in per_np:
        np.testing.assert_allclose(per_t[name], per_np[name])
    assert a.compute() == pytest.approx(b.compute())
    assert boundary_metrics(torch.from_numpy(pred[0]), torch.from_numpy(gt[0])) == pytest.approx(
        boundary_metrics(pred[0], gt[0])
    )


def test_accumulator_averages_per_image_values():
    flat = np.full((H, W), 3.0)
    acc = BoundaryAccumulator()
    acc.update(step(30), step(30))  # acc 0, comp 0, F1 1
    acc.update(np.stack([step(32), step(30)]), np.stack([step(30), flat]))  # 2, 2, 0 | NaN x3
    out = acc.compute()
    assert out["count"] == 3
    assert out["dbe_acc"] == pytest.approx(1.0)  # (0 + 2) / 2: the flat-gt image is skipped
    assert out["dbe_comp"] == pytest.approx(1.0)
    assert out["boundary_f1"] == pytest.approx(0.5)

    one, two = BoundaryAccumulator(), BoundaryAccumulator()
    one.update(step(30), step(30))
    two.update(np.stack([step(32), step(30)]), np.stack([step(30), flat]))
    assert one.merge(two).compute() == pytest.approx(out)
    summed = BoundaryAccumulator().state_array() + acc.state_array()
    assert BoundaryAccumulator.from_state(summed).compute() == pytest.approx(out)
    empty = BoundaryAccumulator().compute()
    assert empty["count"] == 0 and np.isnan(empty["dbe_acc"])


def test_shape_errors():
    with pytest.raises(ShapeError, match=r"pred \[64, 64\] and gt \[32, 32\] differ"):
        boundary_metrics(step(30), np.ones((32, 32)))
    with pytest.raises(ShapeError, match="differ in shape"):
        BoundaryAccumulator().update(step(30), step(30), np.ones((32, 32), dtype=bool))
    with pytest.raises(ShapeError, match=r"expected \[H,W\], \[B,H,W\] or \[B,1,H,W\]"):
        BoundaryAccumulator().update(np.ones((2, 3, 8, 8)), np.ones((2, 3, 8, 8)))
    with pytest.raises(ShapeError, match="expected 7 values, got 3"):
        BoundaryAccumulator.from_state(np.zeros(3))


def test_missing_scikit_image_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.feature", None)
    with pytest.raises(ConfigError) as info:
        boundary_metrics(step(30), step(30))
    message = str(info.value)
    assert "\n" not in message
    assert "pip install 'refinedepth[boundary]'" in message
    assert "skimage" in message


def test_import_does_not_import_scikit_image():
    code = (
        "import sys, refinedepth.boundary; "
        "assert 'skimage' not in sys.modules and 'scipy.ndimage' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert boundary.DBE_THETA == 10.0
