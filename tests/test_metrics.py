"""Depth metrics against an independent plain-NumPy reference, hand-checked cases and properties."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refinedepth.errors import ConfigError, ShapeError
from refinedepth.metrics import (
    METRIC_NAMES,
    PROTOCOLS,
    MetricAccumulator,
    compute_metrics,
    per_image_metrics,
    valid_mask,
)

# ---------------------------------------------------------------------------------------------
# An independent reference: one image at a time, written from the textbook definitions.

RANGES = {"nyu": (1e-3, 10.0), "make3d": (0.0, 70.0), "kitti": (1e-3, 80.0), "none": (0.0, math.inf)}


def ref_crop(protocol, h, w):
    keep = np.ones((h, w), dtype=bool)
    if protocol == "nyu":
        keep[:] = False
        keep[int(round(45 * h / 480)) : int(round(471 * h / 480)), int(round(41 * w / 640)) : int(round(601 * w / 640))] = True
    elif protocol == "kitti":
        keep[:] = False
        keep[int(0.40810811 * h) : int(0.99189189 * h), int(0.03594771 * w) : int(0.96405229 * w)] = True
    return keep


def ref_image(pred, gt, protocol, align):
    lo, hi = RANGES[protocol]
    mask = np.isfinite(gt) & (gt > 0) & (gt > lo) & (gt < hi) & ref_crop(protocol, *gt.shape)
    if not mask.any():
        return None
    d = pred[mask].astype(np.float64)
    g = gt[mask].astype(np.float64)
    if align == "median":
        d = d * np.median(g) / np.median(d)
    elif align == "lstsq":
        a = np.stack([d, np.ones_like(d)], axis=1)
        (s, t), *_ = np.linalg.lstsq(a, g, rcond=None)
        d = s * d + t
    d = np.clip(d, max(lo, 1e-3), hi)
    return d, g


def ref_values(d, g):
    thresh = np.maximum(d / g, g / d)
    e = np.log(d) - np.log(g)
    return {
        "abs_rel": np.mean(np.abs(d - g) / g),
        "sq_rel": np.mean((d - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((d - g) ** 2)),
        "rmse_log": np.sqrt(np.mean(e**2)),
        "log10": np.mean(np.abs(np.log10(d) - np.log10(g))),
        "silog": np.sqrt(np.mean(e**2) - np.mean(e) ** 2) * 100,
        "d1": np.mean(thresh < 1.25),
        "d2": np.mean(thresh < 1.25**2),
        "d3": np.mean(thresh < 1.25**3),
    }


def reference(pred, gt, protocol="none", align="none", averaging="image"):
    pairs = [r for r in (ref_image(p, g, protocol, align) for p, g in zip(pred, gt)) if r is not None]
    if averaging == "pooled":
        d = np.concatenate([p[0] for p in pairs])
        g = np.concatenate([p[1] for p in pairs])
        out = ref_values(d, g)
    else:
        per = [ref_values(*p) for p in pairs]
        out = {k: np.mean([m[k] for m in per]) for k in METRIC_NAMES}
    out["count"] = len(pairs)
    return out


def assert_close(got, want, rtol=1e-9, atol=1e-12):
    assert got["count"] == want["count"]
    for k in METRIC_NAMES:
        assert got[k] == pytest.approx(want[k], rel=rtol, abs=atol), k


def random_batch(seed, b=3, h=48, w=64, relative=False):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.2, 90.0, (b, h, w))
    gt[rng.random(gt.shape) < 0.1] = 0.0  # invalid
    gt[rng.random(gt.shape) < 0.02] = np.nan  # invalid
    if relative:
        pred = (np.nan_to_num(gt) + 1.0) * 0.37 + rng.normal(0, 0.4, gt.shape) + 2.0
    else:
        pred = np.nan_to_num(gt, nan=5.0) * rng.uniform(0.7, 1.4, gt.shape) + rng.normal(0, 0.3, gt.shape)
        pred[rng.random(pred.shape) < 0.01] = -1.0  # out of range, clamped
    return pred, gt


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("align", ["none", "median", "lstsq"])
@pytest.mark.parametrize("averaging", ["image", "pooled"])
def test_matches_reference_on_random_batches(protocol, align, averaging):
    pred, gt = random_batch(seed=zlib.crc32(f"{protocol}{align}{averaging}".encode()), relative=align != "none")
    got = compute_metrics(pred, gt, protocol=protocol, align=align, averaging=averaging)
    assert_close(got, reference(pred, gt, protocol, align, averaging), rtol=1e-7)


def test_hand_built_case():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])
    pred = np.array([[2.0, 2.0], [2.0, 5.0]])
    m = compute_metrics(pred, gt)
    ln2 = math.log(2)
    assert m["count"] == 1
    assert m["abs_rel"] == pytest.approx(0.5)
    assert m["sq_rel"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["rmse_log"] == pytest.approx(ln2 * math.sqrt(2 / 3))
    assert m["log10"] == pytest.approx(2 * math.log10(2) / 3)
    assert m["silog"] == pytest.approx(100 * ln2 * math.sqrt(2 / 3))
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))


def test_image_versus_pooled_averaging_by_hand():
    gt = np.ones((2, 2, 2))
    pred = np.ones((2, 2, 2))
    gt[0] = [[1.0, 0.0], [0.0, 0.0]]  # image 0: one valid pixel, abs_rel 1
    pred[0, 0, 0] = 2.0
    assert compute_metrics(pred, gt, averaging="image")["abs_rel"] == pytest.approx(0.5)
    assert compute_metrics(pred, gt, averaging="pooled")["abs_rel"] == pytest.approx(1 / 5)


def test_alignment_by_hand():
    gt = np.array([[1.0, 2.0, 4.0]])
    assert compute_metrics(gt * 2, gt, align="median")["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert compute_metrics((gt - 1) / 2, gt, align="lstsq")["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert compute_metrics(gt * 2, gt, align="none")["abs_rel"] == pytest.approx(1.0)


def test_protocol_crops_and_ranges():
    mask = valid_mask(np.ones((480, 640)), "nyu")
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    mask = valid_mask(np.ones((240, 320)), "nyu")  # scaled to half resolution
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (22, 236, 20, 300)
    mask = valid_mask(np.ones((375, 1242)), "kitti")  # the usual Garg crop on KITTI
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    gt = np.array([[0.0, 5.0, 10.0, 69.0, 70.0, np.inf, np.nan, -1.0]])
    assert valid_mask(gt, "none").tolist() == [[False, True, True, True, True, False, False, False]]
    assert valid_mask(gt, "make3d").tolist() == [[False, True, True, True, False, False, False, False]]


def test_predictions_are_clamped_to_the_protocol_range():
    gt = np.full((480, 640), 5.0)
    pred = np.full((480, 640), 50.0)  # clamped to 10 under nyu
    assert compute_metrics(pred, gt, "nyu")["abs_rel"] == pytest.approx(1.0)
    pred[:] = np.nan  # NaN -> lower bound 1e-3
    assert compute_metrics(pred, gt, "nyu")["abs_rel"] == pytest.approx(abs(1e-3 - 5) / 5)
    pred[:] = np.inf  # +inf -> upper bound
    assert compute_metrics(pred, gt, "nyu")["rmse"] == pytest.approx(5.0)


def test_batchwise_accumulation_equals_one_shot_and_merge_and_state():
    pred, gt = random_batch(seed=7, b=6)
    for averaging in ("image", "pooled"):
        one_shot = compute_metrics(pred, gt, "kitti", averaging=averaging)
        acc = MetricAccumulator("kitti", averaging=averaging)
        for i in range(0, 6, 2):
            acc.update(pred[i : i + 2], gt[i : i + 2])
        assert_close(acc.compute(), one_shot, rtol=1e-12)
        a, b = MetricAccumulator("kitti", averaging=averaging), MetricAccumulator("kitti", averaging=averaging)
        a.update(pred[:1], gt[:1])
        b.update(torch.from_numpy(pred[1:]).float()[:, None], torch.from_numpy(gt[1:]).float()[:, None])
        assert_close(a.merge(b).compute(), one_shot, rtol=1e-5)  # float32 tensors: looser
        a, b = MetricAccumulator("kitti", averaging=averaging), MetricAccumulator("kitti", averaging=averaging)
        a.update(pred[:4], gt[:4])
        b.update(pred[4:], gt[4:])
        summed = a.state_tensor() + b.state_tensor()  # what an all-reduce does
        assert_close(MetricAccumulator.from_state(summed, "kitti", averaging=averaging).compute(), one_shot, rtol=1e-12)


def test_per_image_metrics_single_and_batch():
    pred, gt = random_batch(seed=3, b=2)
    batch = per_image_metrics(pred, gt, "none")
    assert batch["abs_rel"].shape == (2,)
    single = per_image_metrics(pred[1], gt[1], "none")
    assert isinstance(single["abs_rel"], float) and isinstance(single["count"], int)
    want = ref_values(*ref_image(pred[1], gt[1], "none", "none"))
    assert single["abs_rel"] == pytest.approx(want["abs_rel"], rel=1e-9)
    assert single["count"] == int(np.sum(np.isfinite(gt[1]) & (gt[1] > 0)))
    empty = per_image_metrics(np.ones((4, 4)), np.zeros((4, 4)))
    assert empty["count"] == 0 and math.isnan(empty["abs_rel"])


def test_images_without_valid_pixels_are_skipped():
    gt = np.stack([np.zeros((4, 4)), np.full((4, 4), 2.0)])
    pred = np.full((2, 4, 4), 3.0)
    m = compute_metrics(pred, gt)
    assert m["count"] == 1 and m["abs_rel"] == pytest.approx(0.5)
    nothing = MetricAccumulator().compute()
    assert nothing["count"] == 0 and all(math.isnan(nothing[k]) for k in METRIC_NAMES)


def test_errors_are_one_line_and_say_what_to_do():
    with pytest.raises(ShapeError, match=r"pred \[1, 4, 4\] and gt \[1, 8, 8\] differ in shape; resize"):
        compute_metrics(np.ones((4, 4)), np.ones((8, 8)))
    with pytest.raises(ConfigError, match="unknown evaluation protocol 'eigen'; expected one of nyu, make3d, kitti, none"):
        MetricAccumulator("eigen")
    with pytest.raises(ConfigError, match="unknown alignment 'scale'"):
        MetricAccumulator(align="scale")
    with pytest.raises(ConfigError, match="cannot merge"):
        MetricAccumulator("nyu").merge(MetricAccumulator("kitti"))
    with pytest.raises(ShapeError, match=r"expected \[H,W\], \[B,H,W\] or \[B,1,H,W\]"):
        compute_metrics(np.ones(5), np.ones(5))


# ---------------------------------------------------------------------------------------------
# Properties

depth_maps = arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
                    elements=st.floats(0.1, 50.0))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(gt=depth_maps, protocol=st.sampled_from(list(PROTOCOLS)), averaging=st.sampled_from(["image", "pooled"]))
def test_perfect_prediction_scores_perfectly(gt, protocol, averaging):
    m = compute_metrics(gt, gt, protocol=protocol, averaging=averaging)
    if m["count"] == 0:  # e.g. every pixel outside the nyu range or crop
        return
    assert m["abs_rel"] == 0.0 and m["rmse"] == 0.0 and m["log10"] == 0.0
    assert m["d1"] == 1.0 and m["d3"] == 1.0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(gt=depth_maps, data=st.data())
def test_invalid_pixels_are_ignored(gt, data):
    shape = gt.shape
    invalid = data.draw(arrays(np.bool_, shape))
    pred = data.draw(arrays(np.float64, shape, elements=st.floats(0.1, 50.0)))
    gt = np.where(invalid, 0.0, gt)
    junk = data.draw(arrays(np.float64, shape, elements=st.floats(0.1, 500.0)))
    a = compute_metrics(pred, gt)
    b = compute_metrics(np.where(invalid, junk, pred), gt)
    for k in METRIC_NAMES:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(gt=depth_maps, data=st.data(), k=st.floats(0.1, 10.0), averaging=st.sampled_from(["image", "pooled"]))
def test_scaling_pred_and_gt_together_keeps_abs_rel(gt, data, k, averaging):
    pred = data.draw(arrays(np.float64, gt.shape, elements=st.floats(0.1, 50.0)))
    a = compute_metrics(pred, gt, averaging=averaging)["abs_rel"]
    b = compute_metrics(pred * k, gt * k, averaging=averaging)["abs_rel"]
    assert b == pytest.approx(a, rel=1e-9, abs=1e-12)
