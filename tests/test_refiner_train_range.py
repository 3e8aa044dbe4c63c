"""A rough map reaches the generator in training as it does at inference.

Inference (``refine_full``) maps a rough map to the generator's units at its stored size, clipping
it to ``[0, max_depth]`` (metric) or to its 2nd..98th percentiles (relative/disparity), then resizes
it to the model size. Training used to resize first: a metric map's values beyond max_depth (the
sky) bled into their neighbours, and a relative map's percentiles were those of the shrunk map,
which are narrower (averaging pulls the tails in): the refiner trained on one mapping and ran on
another. The references: NumPy percentiles of the stored map, and the generator input that
inference builds for the same sample.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinedepth.augment import AugmentParams
from refinedepth.cache import CacheDataset, write_cache
from refinedepth.refiner.crops import CropDataset
from refinedepth.refiner.normalize import Normalization, refine_full
from refinedepth.refiner.train import TrainConfig, _model_rough, ground_truth_range, train_refiner

from ._helpers_refiner import one_torch_thread  # noqa: F401

STORED = (128, 192)
MODEL = (64, 64)


def _relative_map(seed: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ramp with pixel noise: its tails are what a shrinking resize averages away."""
    rng = np.random.default_rng(seed)
    h, w = STORED
    gt = (1.0 + 3.0 * np.mgrid[0:h, 0:w][1] / w + 0.3 * rng.standard_normal((h, w))).clip(0.5, 8.0)
    gt = gt.astype(np.float32)
    rough = (1.0 / gt if kind == "disparity" else 0.2 * gt + 0.1).astype(np.float32)
    rgb = (np.clip(gt[..., None] / 8, 0, 1) * 255 * np.ones(3)).astype(np.uint8)
    return gt, rough, rgb


def test_the_range_is_the_stored_maps_percentiles_augmented_as_the_model_view():
    _, rough, _ = _relative_map(0, "relative")
    full = torch.from_numpy(np.stack([rough, rough[:, ::-1].copy() * 3]))[:, None]
    norm = Normalization(output_kind="relative", max_depth=10.0)
    model, got = _model_rough({}, full, None, norm=norm, kind="relative", size=MODEL)
    want = np.stack([np.percentile(m, [2, 98]) for m in full[:, 0].numpy()])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert tuple(model.shape[-2:]) == MODEL
    assert float(model[0].min()) >= want[0, 0] - 1e-5 and float(model[0].max()) <= want[0, 1] + 1e-5  # clipped

    # flipped and gained as the model view is: a flip keeps the percentiles, a gain scales them
    # (a disparity map is divided by it)
    gain = torch.tensor([1.2, 0.8], dtype=torch.float64)
    p = AugmentParams(flip=torch.tensor([True, False]), scale=torch.ones(2, dtype=torch.float64),
                      top=torch.zeros(2), left=torch.zeros(2), brightness=torch.ones(2), gain=gain)
    _, got = _model_rough({}, full, p, norm=norm, kind="relative", size=MODEL)
    np.testing.assert_allclose(got.numpy(), want * gain.numpy()[:, None], rtol=1e-5)
    # from the loader (a crop dataset's batch): only the flip and the gain are left to apply
    loader = {"rough_limits": torch.from_numpy(want).float()}
    small = torch.rand(2, 1, *MODEL)
    flipped, got = _model_rough(loader, small, p, norm=norm, kind="disparity", size=MODEL)
    np.testing.assert_allclose(got.numpy(), want / gain.numpy()[:, None], rtol=1e-5)
    torch.testing.assert_close(flipped[0], small[0].flip(-1) / 1.2)
    # metric maps: no range to pass on (max_depth maps them), but clipped to [0, max_depth]
    metric = Normalization(output_kind="metric", max_depth=2.0)
    model, got = _model_rough({}, full, None, norm=metric, kind="metric", size=MODEL)
    assert got is None and float(model.max()) <= 2.0 + 1e-5


def test_the_crop_dataset_brings_the_stored_maps_range(tmp_path):
    gt, rough, rgb = _relative_map(0, "relative")
    path = write_cache(tmp_path / "rel.h5", rough=rough[None], gt=gt[None], rgb=rgb[None], max_depth=10.0,
                       output_kind="relative")
    item = CropDataset(CacheDataset(path, with_rgb=True), MODEL, (32, 48), seed=0)[0]
    assert tuple(item["rough"].shape[-2:]) == MODEL  # the model view arrives shrunk ...
    q = np.percentile(rough, [2, 98])
    np.testing.assert_allclose(item["rough_limits"].numpy(), q, rtol=1e-6)  # ... with the stored map's range
    assert float(item["crop_rough"].min()) >= q[0] - 1e-6 and float(item["crop_rough"].max()) <= q[1] + 1e-6
    # a metric map is clipped to the refiner's max_depth (given, or the cache's) before the resizes
    metric = write_cache(tmp_path / "m.h5", rough=gt[None], gt=gt[None], max_depth=10.0)
    item = CropDataset(CacheDataset(metric), MODEL, (32, 48), seed=0, max_depth=4.0)[0]
    np.testing.assert_array_equal(item["rough_limits"].numpy(), [0.0, 4.0])
    assert float(item["crop_rough"].max()) <= 4.0 + 1e-5 and float(item["rough"].max()) <= 4.0 + 1e-5


class _Stop(Exception):
    pass


@pytest.mark.parametrize("kind", ["metric", "relative", "disparity"])
@pytest.mark.parametrize("preset", ["small", "guided"])
def test_training_feeds_the_generator_what_inference_does(tmp_path, monkeypatch, preset, kind):
    import refinedepth.refiner.train as train_module

    gt, rough, rgb = _relative_map(1, kind)
    max_depth = 4.0 if kind == "metric" else 10.0  # a metric map beyond it in places, like the sky
    if kind == "metric":
        rough = gt * 1.1
        assert (rough > max_depth).mean() > 0.05
    path = write_cache(tmp_path / "c.h5", rough=rough[None], gt=gt[None], rgb=rgb[None], max_depth=max_depth,
                       output_kind=kind)
    seen = {}

    def first_step(generator, discriminator, opt_g, opt_d, x, *args, **kwargs):
        seen["x"] = x.detach().clone()
        raise _Stop

    monkeypatch.setattr(train_module, "gan_step", first_step)
    cfg = TrainConfig(train=str(path), out=str(tmp_path / "run"), preset=preset, size=MODEL, crop=(32, 48),
                      batch_size=1, gan_mode="none", device="cpu", seed=0, augment=())
    with pytest.raises(_Stop):
        train_refiner(cfg)
    trained = seen["x"][:, :1]

    # where the range is placed, in metres, as training measured it (on the stored ground truth)
    if kind == "metric":
        norm = Normalization(output_kind=kind, max_depth=max_depth)
    else:
        low, high = ground_truth_range(CacheDataset(path), max_depth)
        norm = Normalization(output_kind=kind, max_depth=max_depth, target_low=low, target_high=high)

    def record(x):
        seen["inference"] = x.detach().clone()
        return torch.zeros_like(x[:, :1])

    rough_t = torch.from_numpy(rough)[None, None]
    rgb_t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    refine_full(record, rough_t, rgb_t, norm=norm, inputs="rough+rgb" if preset == "guided" else "rough",
                residual=True, size=MODEL, kind=kind)
    torch.testing.assert_close(trained, seen["inference"][:, :1], atol=2e-6, rtol=0)


@pytest.mark.parametrize("preset, augment", [("small", ()), ("guided", ()), ("guided", ("scale",))])
def test_the_target_range_is_the_stored_ground_truths_on_every_path(tmp_path, preset, augment):
    """Where a relative map's range is placed (``target_low``/``target_high``, stored in the
    checkpoint): the mean 2nd/98th percentiles of the stored ground truth (NumPy here), the same on
    the plain and the crop path, zoomed or not (zoomed crops divide depth by s: 13-16% low)."""
    from refinedepth.refiner import checkpoint as ckpt

    gts, roughs, rgbs = zip(*(_relative_map(seed, "relative") for seed in range(3)))
    path = write_cache(tmp_path / "c.h5", rough=np.stack(roughs), gt=np.stack(gts), rgb=np.stack(rgbs),
                       max_depth=10.0, output_kind="relative")
    cfg = TrainConfig(train=str(path), out=str(tmp_path / "run"), preset=preset, size=MODEL, crop=(32, 48),
                      batch_size=1, gan_mode="none", device="cpu", seed=0, augment=augment, max_steps=1)
    train_refiner(cfg)
    norm = ckpt.read_config(tmp_path / "run" / "last")["refiner"]["normalization"]
    want = np.mean([np.percentile(g[g > 0], [2, 98]) for g in gts], axis=0)
    assert (norm["target_low"], norm["target_high"]) == pytest.approx(tuple(want), rel=1e-5)
