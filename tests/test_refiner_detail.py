"""Detail-only refinement (``--detail-sigma``): the refiner's correction finer than a Gaussian,
the large scales from ``rough x scale``. References: scipy's Gaussian filter and hand cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from refinedepth.errors import ConfigError
from refinedepth.refiner.detail import gaussian_lowpass, keep_detail

from ._helpers_evaluate import degraded_cache, shared_refiner, tiny_refiner

scipy_ndimage = pytest.importorskip("scipy.ndimage")


def _scipy_lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    return scipy_ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)


@pytest.mark.parametrize("sigma", [0.7, 3.0, 40.0])  # the last one is wider than the image
def test_lowpass_is_scipys_gaussian_filter_with_nearest_padding(sigma):
    x = np.random.default_rng(1).standard_normal((2, 1, 24, 30))
    got = gaussian_lowpass(torch.from_numpy(x), sigma).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b, 0], _scipy_lowpass(x[b, 0], sigma), rtol=0, atol=1e-12)


def test_a_global_correction_is_dropped_and_fine_detail_kept():
    base = torch.from_numpy(np.random.default_rng(2).uniform(1.0, 4.0, (1, 1, 40, 128)))
    # a refiner that only rescales: its detail-only output is the base itself
    np.testing.assert_allclose(keep_detail(base * 1.7, base, 5.0).numpy(), base.numpy(), rtol=1e-12)
    # a correction with a 4-pixel period is far finer than sigma = 8 (its gain exp(-2 pi^2 sigma^2
    # / 16) is ~1e-34): kept where the kernel (radius 32) does not reach the replicated border, up
    # to the cut of the kernel at 4 sigma, whose last tap is exp(-8) / (sqrt(2 pi) 8) ~ 2e-5 of
    # the sum (times the ripple's 0.1)
    x = torch.arange(128, dtype=torch.float64)
    ripple = (0.1 * torch.sin(2 * math.pi * x / 4.0)).expand(1, 1, 40, 128)
    out = keep_detail(base * torch.exp(ripple) * 1.3, base, 8.0)
    inner = slice(32, 96)
    np.testing.assert_allclose(out[..., inner].numpy(), (base * torch.exp(ripple))[..., inner].numpy(), rtol=1e-5)

    # with the per-image scale: the global rescale is the image's mean log correction, kept whole
    np.testing.assert_allclose(keep_detail(base * 1.7, base, 5.0, image_scale=True).numpy(), (base * 1.7).numpy(),
                               rtol=1e-12)
    # 32 whole periods of the ripple average to 0, so its mean log correction is log 1.3
    out = keep_detail(base * torch.exp(ripple) * 1.3, base, 8.0, image_scale=True)
    np.testing.assert_allclose(out[..., inner].numpy(), (1.3 * base * torch.exp(ripple))[..., inner].numpy(),
                               rtol=1e-5)
    # one number per image: a batch of two with different scales keeps each its own
    two = torch.cat([base * 1.7, base * 0.8])
    np.testing.assert_allclose(keep_detail(two, torch.cat([base, base]), 5.0, image_scale=True).numpy(),
                               two.numpy(), rtol=1e-12)


def test_refiner_detail_output_against_scipy(tmp_path):
    from refinedepth.refiner.api import Refiner

    ref = shared_refiner()
    scale = json.loads((Path(ref) / "best" / "config.json").read_text())["baselines"]["scale"]
    rng = np.random.default_rng(3)
    rough = rng.uniform(1.0, 6.0, (2, 64, 64)).astype(np.float32)
    full = Refiner.from_pretrained(ref).refine(rough)
    detail = Refiner.from_pretrained(ref, detail_sigma=6.0).refine(rough)
    for b in range(2):
        base = scale * rough[b].astype(np.float64)
        e = np.log(full[b].astype(np.float64)) - np.log(base)
        np.testing.assert_allclose(detail[b], base * np.exp(e - _scipy_lowpass(e, 6.0)), rtol=2e-5)
    assert not np.allclose(detail, full, rtol=1e-3)

    # the refiner's per-image scale kept: times the geometric mean of refined / (rough x scale)
    image = Refiner.from_pretrained(ref, detail_sigma=6.0, detail_scale="image").refine(rough)
    for b in range(2):
        e = np.log(full[b].astype(np.float64)) - np.log(scale * rough[b].astype(np.float64))
        np.testing.assert_allclose(image[b], detail[b] * np.exp(e.mean()), rtol=2e-5)

    # like the whole map, clamped to [1e-3, 1] x max_depth: a rough map far beyond it stays inside
    r = Refiner.from_pretrained(ref, detail_sigma=6.0)
    far = r.refine(rough * 50.0)
    assert far.max() <= r.max_depth and far.min() >= 1e-3 * r.max_depth and (far == r.max_depth).any()


def test_bad_sigma_and_refiners_without_a_scale_or_rough_input(tmp_path):
    from refinedepth.refiner.api import Refiner

    refiner = Refiner.from_pretrained(shared_refiner())
    for bad in (0, -2.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="detail sigma must be a positive number of pixels"):
            refiner.set_detail(bad)
    assert refiner.set_detail(None).detail_sigma is None
    assert "detail_sigma=3, detail_scale='global'" in repr(refiner.set_detail(3))
    assert refiner.set_detail(3, scale="image").detail_scale == "image"
    assert refiner.set_detail(None).detail_scale == "global"
    with pytest.raises(ConfigError, match="detail scale must be one of global, image, got 'local'"):
        refiner.set_detail(3, scale="local")
    with pytest.raises(ConfigError, match=r"per-image scale \(--detail-scale image\) applies to detail-only"):
        refiner.set_detail(None, scale="image")
    refiner.meta = {k: v for k, v in refiner.meta.items() if k != "baselines"}
    with pytest.raises(ConfigError, match="stores no global scale .* retrain it"):
        refiner.set_detail(3)
    rgb_only = tiny_refiner(tmp_path / "rgb", degraded_cache(tmp_path / "t.h5", n=2), inputs="rgb")
    with pytest.raises(ConfigError, match="reads RGB only"):
        Refiner.from_pretrained(rgb_only, detail_sigma=3)


def test_evaluate_detail_row_is_the_scipy_reference(tmp_path):
    """The CLI's refined row with --detail-sigma: per image, the scipy detail-only map, resized to
    the ground truth as every prediction is, scored with a NumPy abs_rel."""
    import torch.nn.functional as F

    from refinedepth.cache import CacheDataset
    from refinedepth.cli.main import cli
    from refinedepth.refiner.api import Refiner

    ref = shared_refiner()
    cache = degraded_cache(tmp_path / "test.h5", n=3, seed=5)
    out = tmp_path / "eval.json"
    args = ["evaluate", "--cache", str(cache), "--refiner", str(ref), "--no-boundary", "-q"]
    result = CliRunner().invoke(cli, [*args, "--detail-sigma", "6", "--json", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    rows = {s["name"]: s["metrics"] for s in saved["stages"]}
    assert saved["detail_sigma"] == 6.0
    name = f"+ {Path(ref).name} (detail < 6 px)"
    assert name in rows and name in result.output

    scale = json.loads((Path(ref) / "best" / "config.json").read_text())["baselines"]["scale"]
    full = Refiner.from_pretrained(ref)
    rels = []
    for item in CacheDataset(cache):
        rough = item["rough"][0].double().numpy()
        refined = full.refine(item["rough"][0].numpy()).astype(np.float64)
        e = np.log(refined) - np.log(scale * rough)
        detail = scale * rough * np.exp(e - _scipy_lowpass(e, 6.0))
        gt = item["gt"][0].double().numpy()
        d = F.interpolate(torch.from_numpy(detail)[None, None].float(), size=gt.shape, mode="bilinear",
                          align_corners=False, antialias=True)[0, 0].double().numpy()
        v = gt > 0
        rels.append(np.mean(np.abs(d[v] - gt[v]) / gt[v]))
    assert rows[name]["abs_rel"] == pytest.approx(np.mean(rels), rel=1e-4)

    # --detail-scale image: the row and JSON say so, and each map is the scipy one times the
    # geometric mean of the refiner's correction over the image (at the resolution refined)
    image = CliRunner().invoke(cli, [*args, "--detail-sigma", "6", "--detail-scale", "image", "--json", str(out)])
    assert image.exit_code == 0, image.output
    saved = json.loads(out.read_text())
    assert saved["detail_sigma"] == 6.0 and saved["detail_scale"] == "image"
    name_image = f"+ {Path(ref).name} (detail < 6 px, per-image scale)"
    assert name_image in {s["name"] for s in saved["stages"]} and name_image in image.output
    rels = []
    for item in CacheDataset(cache):
        rough = item["rough"][0].double().numpy()
        refined = full.refine(item["rough"][0].numpy()).astype(np.float64)
        e = np.log(refined) - np.log(scale * rough)
        detail = scale * rough * np.exp(e - _scipy_lowpass(e, 6.0) + e.mean())
        gt = item["gt"][0].double().numpy()
        d = F.interpolate(torch.from_numpy(detail)[None, None].float(), size=gt.shape, mode="bilinear",
                          align_corners=False, antialias=True)[0, 0].double().numpy()
        v = gt > 0
        rels.append(np.mean(np.abs(d[v] - gt[v]) / gt[v]))
    got = {s["name"]: s["metrics"] for s in saved["stages"]}[name_image]["abs_rel"]
    assert got == pytest.approx(np.mean(rels), rel=1e-4)
    assert got != pytest.approx(rows[name]["abs_rel"], rel=1e-3)

    refused = CliRunner().invoke(cli, ["evaluate", "--cache", str(cache), "--detail-sigma", "6", "-q"])
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        "Error: detail-only refinement (--detail-sigma) applies to refiners: pass --refiner as well"
    )
    alone = CliRunner().invoke(cli, [*args, "--detail-scale", "image"])
    assert alone.exit_code == 1
    assert alone.output.strip().splitlines()[-1] == (
        "Error: the refiner's per-image scale (--detail-scale image) applies to detail-only refinement: "
        "pass --detail-sigma as well"
    )
