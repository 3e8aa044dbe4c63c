"""The cache stores rough maps at full resolution (issue 14, SPEC §5): the backbone's native
output by default, so evaluate's rough row is the backbone's own quality; RGB at a size of its
own; old caches still read."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from refinedepth.cache import CacheDataset, build_cache, open_cache, verify_cache, write_cache
from refinedepth.errors import CacheError, ConfigError
from refinedepth.evaluate import evaluate_cache

from ._helpers_refiner import one_torch_thread  # noqa: F401

H, W = 480, 640


@pytest.fixture(scope="module")
def kinect_like(tmp_path_factory):
    """3 frames of 480x640 RGB + uint16 mm depth (0 = invalid), and a files backbone's .npy
    predictions for them at 480x640."""
    root = tmp_path_factory.mktemp("fullres")
    (root / "data" / "rgb").mkdir(parents=True)
    (root / "data" / "depth").mkdir()
    (root / "pred").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    gts, preds = [], []
    for i in range(3):
        depth = 1.0 + 3.0 * xx / W + 1.5 * (yy > 200 + 30 * i)
        mm = np.round(depth * 1000).astype(np.uint16)
        mm[rng.random((H, W)) < 0.05] = 0
        Image.fromarray(mm).save(root / "data" / "depth" / f"f{i}.png")
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "data" / "rgb" / f"f{i}.png")
        pred = (depth * (1.1 + 0.05 * i) + 0.1 * rng.standard_normal((H, W))).clip(0.2).astype(np.float32)
        np.save(root / "pred" / f"f{i}.npy", pred)
        gts.append(mm.astype(np.float64) / 1000.0)
        preds.append(pred.astype(np.float64))
    return root, np.stack(gts), np.stack(preds)


def _build(root, out, **kw):
    return build_cache(
        out, backbone="files", backbone_args={"root": str(root / "pred")}, dataset=f"folder:{root / 'data'}",
        split="all", device="cpu", batch_size=2, **kw,
    )


def test_files_backbone_rough_row_is_the_files_own_quality(kinect_like, tmp_path):
    root, gt, pred = kinect_like
    res = _build(root, tmp_path / "c.h5")
    assert res.config.rough_size == (H, W) and res.config.gt_size == (H, W)
    result = evaluate_cache(tmp_path / "c.h5", device="cpu", boundary=False)
    rough = result.metrics("rough")
    # independent reference from the definitions (SPEC §7), per-image means over gt > 0
    abs_rel, rmse, silog = [], [], []
    for g, p in zip(gt, pred):
        v = g > 0
        abs_rel.append(np.mean(np.abs(p[v] - g[v]) / g[v]))
        rmse.append(np.sqrt(np.mean((p[v] - g[v]) ** 2)))
        d = np.log(p[v]) - np.log(g[v])
        silog.append(100 * np.sqrt(np.mean(d**2) - np.mean(d) ** 2))
    assert rough["abs_rel"] == pytest.approx(np.mean(abs_rel), rel=1e-6)
    assert rough["rmse"] == pytest.approx(np.mean(rmse), rel=1e-6)
    assert rough["silog"] == pytest.approx(np.mean(silog), rel=1e-5)


def test_sizes_native_gt_and_explicit_and_the_rgb_size(kinect_like, tmp_path):
    root, _, _ = kinect_like
    r = _build(root, tmp_path / "a.h5", size="gt", gt_size=(240, 320), with_rgb=True)
    assert r.config.rough_size == (240, 320) and r.config.rgb_size == (240, 320)
    r = _build(root, tmp_path / "b.h5", size=(60, 80), gt_size=(240, 320), with_rgb=True, rgb_size="rough")
    assert r.config.rgb_size == (60, 80)
    r = _build(root, tmp_path / "c.h5", size=(60, 80), with_rgb=True)  # rgb at the gt size by default
    assert r.config.rgb_size == (H, W)
    with open_cache(tmp_path / "c.h5") as reader:
        assert reader.read(0)["rgb"].shape == (H, W, 3) and reader.read(0)["rough"].shape == (1, 60, 80)
    item = CacheDataset(tmp_path / "c.h5", with_rgb=True)[0]
    assert tuple(item["rgb"].shape) == (3, H, W) and tuple(item["rough"].shape) == (1, 60, 80)
    assert verify_cache(tmp_path / "c.h5")["ok"]
    with pytest.raises(ConfigError, match=r"--rgb-size 960x640 is larger than the gt size 480x640"):
        _build(root, tmp_path / "d.h5", with_rgb=True, rgb_size=(960, 640))
    # resuming the same command is a no-op; another rgb size is refused, naming the field
    assert _build(root, tmp_path / "c.h5", size=(60, 80), with_rgb=True).already_done == 3
    with pytest.raises(CacheError, match=r"rgb_size: \[60, 80\] vs \[480, 640\]"):
        _build(root, tmp_path / "c.h5", size=(60, 80), with_rgb=True, rgb_size="rough")


def test_a_backbone_whose_maps_differ_from_its_declared_size_is_refused(kinect_like, tmp_path):
    import torch

    from refinedepth.errors import ShapeError
    from refinedepth.registry import BackboneInfo, register_backbone

    root, _, _ = kinect_like
    info = BackboneInfo(name="liar", output_kind="metric", input_size=(32, 32), output_size=(100, 100),
                        value_range=(0.5, 10.0))

    class Liar(torch.nn.Module):  # declares 100x100, returns 50x50
        def __init__(self):
            super().__init__()
            self.info = info

        def forward(self, x):
            return torch.ones(x.shape[0], 1, 50, 50)

    register_backbone("liar", lambda weights=None, **kw: Liar(), overwrite=True)
    with pytest.raises(ShapeError, match=r"returned 50x50 maps for sample 'f0' but declares an output size of 100x100"):
        build_cache(tmp_path / "x.h5", backbone="liar", dataset=f"folder:{root / 'data'}", split="all", device="cpu")
    assert build_cache(tmp_path / "y.h5", backbone="liar", dataset=f"folder:{root / 'data'}", split="all",
                       device="cpu", size=(50, 50)).written == 3


def test_an_old_cache_without_rgb_size_still_reads_verifies_and_evaluates(tmp_path):
    rng = np.random.default_rng(1)
    gt = rng.uniform(1, 5, (2, 24, 32)).astype(np.float32)
    rgb = rng.integers(0, 255, (2, 12, 16, 3), dtype=np.uint8)
    path = write_cache(tmp_path / "old.h5", rough=gt[:, ::2, ::2] * 1.1, gt=gt, rgb=rgb, max_depth=10.0)
    with h5py.File(path, "r+") as f:  # as written before rgb_size existed
        cfg = json.loads(f.attrs["config"])
        cfg.pop("rgb_size")
        f.attrs["config"] = json.dumps(cfg, sort_keys=True)
        del f.attrs["rgb_size"]
    with open_cache(path) as reader:
        assert reader.config.rgb_size == (12, 16) and reader.read(1)["rgb"].shape == (12, 16, 3)
    assert verify_cache(path)["ok"]
    assert evaluate_cache(path, device="cpu", boundary=False).count == 2


def test_cache_refiner_guides_its_head_with_the_image_at_the_cache_size(kinect_like, tmp_path):
    """``cache --refiner`` with a guided head and ``--size gt``: the head runs at the cache's size,
    guided by the original image resized once to that size (not by the backbone's 24x32 input
    upscaled), in 8-bit levels."""
    import torch

    from refinedepth.geometry import resize_rgb
    from refinedepth.refiner import Refiner

    from ._helpers_guided import guided_refiner

    root, _, _ = kinect_like
    size = (60, 80)
    args = {"root": str(root / "pred"), "input_size": [24, 32]}
    ref = guided_refiner()
    kw = dict(backbone="files", backbone_args=args, dataset=f"folder:{root / 'data'}", split="all", device="cpu",
              batch_size=2, size="gt", gt_size=size)
    build_cache(tmp_path / "rough.h5", **kw)
    build_cache(tmp_path / "refined.h5", refiners=[ref], **kw)
    r = Refiner.from_pretrained(ref)
    with open_cache(tmp_path / "rough.h5") as plain, open_cache(tmp_path / "refined.h5") as refined:
        for i in range(3):
            rgb = np.asarray(Image.open(root / "data" / "rgb" / f"f{i}.png").convert("RGB"))
            rgb = resize_rgb(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255, size)[None]
            rgb = (rgb * 255).round() / 255  # in 8-bit levels, as evaluate reads stored RGB
            rough = torch.from_numpy(plain.read(i)["rough"])[None].float()
            expected = r.refine_tensor(rough, rgb, output_kind="metric")[0].numpy()
            np.testing.assert_allclose(refined.read(i)["rough"], expected, rtol=1e-5, atol=1e-5)


def test_a_shrunk_rough_map_is_antialiased_as_pil_resizes(kinect_like, tmp_path):
    # --size below the backbone's output: the stored map is the prediction resized as PIL's
    # bilinear filter does (support widened by the factor), not point-sampled by a plain bilinear
    root, _, pred = kinect_like
    _build(root, tmp_path / "s.h5", size=(60, 80))
    with open_cache(tmp_path / "s.h5") as reader:
        for i, p in enumerate(pred):
            expected = np.asarray(Image.fromarray(p.astype(np.float32), mode="F").resize((80, 60), Image.BILINEAR))
            np.testing.assert_allclose(reader.read(i)["rough"][0], expected, atol=2e-4)


def test_cache_refiner_gives_an_rgb_conditioned_refiner_the_image_at_the_cache_rgb_size(kinect_like, tmp_path):
    """A rough+rgb refiner in ``cache --refiner`` sees the image at the cache's RGB size, as
    evaluate gives it the stored RGB; shrinking it to the rough size first changed the maps."""
    import torch

    from refinedepth.geometry import resize_rgb
    from refinedepth.refiner import Refiner
    from refinedepth.refiner.chain import RefinerChain

    from ._helpers_evaluate import tiny_refiner

    root, _, _ = kinect_like
    kw = dict(backbone="files", backbone_args={"root": str(root / "pred")}, dataset=f"folder:{root / 'data'}",
              split="all", device="cpu", batch_size=2, size=(30, 40), gt_size=(120, 160), with_rgb=True, rgb_size="gt")
    build_cache(tmp_path / "rough.h5", **kw)
    ref = tiny_refiner(tmp_path / "ref", tmp_path / "rough.h5", inputs="rough+rgb", steps=2)
    r = Refiner.from_pretrained(ref)
    with torch.no_grad():  # a correction that depends on the RGB enough to tell its resolution
        r.generator.output_conv.weight.mul_(50.0)
    r.save_pretrained(tmp_path / "ref-loud")
    build_cache(tmp_path / "refined.h5", refiners=[tmp_path / "ref-loud"], **kw)
    r = Refiner.from_pretrained(tmp_path / "ref-loud")
    with open_cache(tmp_path / "rough.h5") as plain, open_cache(tmp_path / "refined.h5") as refined:
        for i in range(3):
            image = np.asarray(Image.open(root / "data" / "rgb" / f"f{i}.png").convert("RGB"))
            image = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255
            rough = torch.from_numpy(plain.read(i)["rough"])[None].float()
            # evaluate's path: the chain on the stored (uint8) RGB; a refiner without a head gives a
            # further stage its map at the rough map's size
            stored = torch.from_numpy(plain.read(i)["rgb"]).permute(2, 0, 1)[None].float() / 255
            chain = RefinerChain.load([tmp_path / "ref-loud"], torch.device("cpu"))
            expected = chain(rough, stored, kind="metric")[-1][0].numpy()
            np.testing.assert_allclose(refined.read(i)["rough"], expected, rtol=1e-5, atol=1e-5)
            shrunk = r.refine_tensor(rough, resize_rgb(image, (30, 40))[None], output_kind="metric")[0].numpy()
            assert np.abs(shrunk - expected).max() > 1e-3  # the resolution of the RGB shows


def test_cache_refiner_runs_a_head_at_the_ground_truths_size_then_stores_at_the_cache_size(kinect_like, tmp_path):
    """With ``--size`` below the ground truth's, ``cache --refiner`` runs a head as evaluate and
    predict run it before a further stage (at the ground truth's size) and resizes the result once
    to the cache size; it ran the head at the cache size, so a later stage trained on the cache saw
    other maps."""
    import torch

    from refinedepth.geometry import resize_smooth
    from refinedepth.refiner import Refiner

    from ._helpers_guided import guided_refiner

    root, _, _ = kinect_like
    gt_size, size = (60, 80), (30, 40)
    kw = dict(backbone="files", backbone_args={"root": str(root / "pred"), "input_size": [24, 32]},
              dataset=f"folder:{root / 'data'}", split="all", device="cpu", batch_size=2, size=size,
              gt_size=gt_size, with_rgb=True, rgb_size="gt")
    build_cache(tmp_path / "rough.h5", **kw)
    ref = guided_refiner()
    build_cache(tmp_path / "refined.h5", refiners=[ref], **kw)
    r = Refiner.from_pretrained(ref)
    with open_cache(tmp_path / "rough.h5") as plain, open_cache(tmp_path / "refined.h5") as refined:
        for i in range(3):
            s = plain.read(i)
            rough = torch.from_numpy(s["rough"])[None].float()
            rgb = torch.from_numpy(s["rgb"]).permute(2, 0, 1)[None].float() / 255  # as evaluate reads it
            at_gt = r.refine_tensor(rough, rgb, output_kind="metric", out_size=gt_size)
            expected = resize_smooth(at_gt, size)[0].numpy()
            np.testing.assert_allclose(refined.read(i)["rough"], expected, rtol=1e-5, atol=1e-5)
