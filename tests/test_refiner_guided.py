"""The full-resolution guided head and the ``guided`` preset (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from refinedepth.cache import CacheDataset, write_cache
from refinedepth.cli.main import cli
from refinedepth.errors import ConfigError
from refinedepth.refiner import Refiner
from refinedepth.refiner import checkpoint as ckpt
from refinedepth.refiner.crops import CropDataset, flip_boxes, upsample_crop
from refinedepth.refiner.head import HeadConfig, apply_head, build_head
from refinedepth.refiner.train import TrainConfig, train_refiner

from ._helpers_refiner import one_torch_thread  # noqa: F401


def _scene(n, size, seed):
    """Steps (edges) in depth; the rough map is the gt averaged over 8x8 blocks, x1.15."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    gt = np.stack([
        1.5 + 2.0 * (xx > rng.integers(w // 5, 4 * w // 5)) + 1.0 * (yy > rng.integers(h // 5, 4 * h // 5)) + 0.01 * xx
        for _ in range(n)
    ]).astype(np.float32)
    g = torch.from_numpy(gt)[:, None]
    rough = F.interpolate(F.avg_pool2d(g, 8), size=size, mode="bilinear", align_corners=False) * 1.15
    rgb = (np.clip(gt[..., None] / 5, 0, 1) * 255 * np.ones(3)).astype(np.uint8)
    return gt, rough.numpy(), rgb


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    d = tmp_path_factory.mktemp("guided")
    out = {}
    for name, n, seed in (("train", 8, 0), ("val", 3, 1)):
        gt, rough, rgb = _scene(n, (64, 96), seed)
        out[name] = write_cache(d / f"{name}.h5", rough=rough, gt=gt, rgb=rgb, max_depth=10.0)
    return out


def _cfg(caches, out, **kw):
    base = dict(train=str(caches["train"]), out=str(out), preset="guided", size=(64, 64), crop=(32, 48),
                batch_size=2, lr=1e-3, gan_mode="none", device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_an_untrained_head_is_the_identity_or_the_scale_it_starts_at():
    head = build_head(HeadConfig(), seed=0)
    base = 1.0 + 4.0 * torch.rand(2, 1, 40, 50)
    args = (torch.randn(2, 1, 40, 50), torch.rand(2, 3, 40, 50))
    assert torch.equal(apply_head(head, base, *args, max_depth=10.0), base)
    head.start_at_scale(0.87)
    torch.testing.assert_close(apply_head(head, base, *args, max_depth=10.0), base * 0.87, rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="positive number"):
        head.start_at_scale(float("nan"))


def test_the_hidden_layers_keep_the_signal_size():
    # He initialisation: a unit-variance input keeps about unit-variance features after six layers
    # (PyTorch's default initialisation shrinks them ~60x, and the head then barely trains)
    head = build_head(HeadConfig(guide="none"), seed=0)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        std = float(head.body(x).std())
    assert 0.3 < std < 3.0


def test_tiles_give_the_untiled_result():
    head = build_head(HeadConfig(guide="gray", dilations=(1, 4, 2)), seed=1)
    with torch.no_grad():
        head.out.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    base, corr, guide = 1 + 5 * torch.rand(1, 1, 70, 90, generator=g), torch.randn(1, 1, 70, 90, generator=g), torch.rand(1, 1, 70, 90, generator=g)
    whole = apply_head(head, base, corr, guide, max_depth=10.0, tile=None)
    tiled = apply_head(head, base, corr, guide, max_depth=10.0, tile=16)
    assert not torch.equal(whole, base)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)  # float rounding only


@pytest.mark.parametrize("full", [(96, 128), (30, 40)])
def test_the_window_of_the_upsampled_correction_is_that_of_the_full_upsampling(full):
    x = torch.randn(2, 1, 48, 64, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[5, 7, *full], [0, 11, *full]])
    got = upsample_crop(x, boxes, (20, 24))
    # reference: the whole map resized as refinedepth.geometry does (bilinear, half-pixel centres,
    # antialiased when shrinking), then cut
    ref_full = F.interpolate(x, size=full, mode="bilinear", align_corners=False, antialias=full[0] < 48)
    ref = torch.stack([ref_full[0, :, 5:25, 7:31], ref_full[1, :, 0:20, 11:35]])
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    flipped = flip_boxes(boxes, torch.tensor([True, False]), 24)
    assert flipped[0, 1] == full[1] - 7 - 24 and flipped[1, 1] == 11


def test_crops_are_reproducible_and_their_size_does_not_depend_on_the_image(tmp_path):
    shapes = []
    for size in ((64, 96), (192, 256)):
        gt, rough, rgb = _scene(2, size, 0)
        path = write_cache(tmp_path / f"c{size[0]}.h5", rough=rough[:, :, ::2, ::2], gt=gt, rgb=rgb, max_depth=10.0)
        ds = CropDataset(CacheDataset(path, with_rgb=True), (64, 64), (32, 48), seed=0)
        a, b, c = ds[(1, 0)], ds[(1, 0)], ds[(1, 1)]
        assert torch.equal(a["crop_gt"], b["crop_gt"]) and not torch.equal(a["crop_box"], c["crop_box"])
        # the crop is the window of the full-resolution maps
        t, left = int(a["crop_box"][0]), int(a["crop_box"][1])
        assert torch.equal(a["crop_gt"][0], torch.from_numpy(gt[1, t : t + 32, left : left + 48]))
        shapes.append({k: tuple(v.shape) for k, v in a.items() if isinstance(v, torch.Tensor)})
    # everything that reaches the training step has the same shape for both image sizes
    assert shapes[0] == shapes[1]


def test_zoom_is_applied_to_the_whole_sample_before_the_views(tmp_path):
    """The scale augmentation with a head: one zoom of every map (depths / s), then the crop is
    a window of the zoomed full-resolution maps and the model view their resize."""
    from refinedepth.augment import apply_params, draw_params, sample_generator
    from refinedepth.geometry import resize_smooth

    gt, rough, rgb = _scene(3, (64, 96), 2)
    path = write_cache(tmp_path / "z.h5", rough=rough[:, :, ::2, ::2], gt=gt, rgb=rgb, max_depth=10.0)
    plain = CropDataset(CacheDataset(path, with_rgb=True), (32, 32), (24, 40), seed=3)
    zoomed = CropDataset(CacheDataset(path, with_rgb=True), (32, 32), (24, 40), seed=3, zoom=True)
    for key in ((0, 0), (2, 5)):
        item = plain.dataset[key[0]]
        params = draw_params(1, ("scale",), sample_generator(3 + 8_888, key[1], key[0]))
        s = float(params.scale[0])
        assert 1.0 < s <= 1.5
        full = apply_params({k: item[k][None] for k in ("rough", "gt", "valid", "rgb")}, params)
        a = zoomed[key]
        assert torch.equal(a["crop_box"], plain[key]["crop_box"])  # the same window, of the zoomed scene
        t, left = int(a["crop_box"][0]), int(a["crop_box"][1])
        assert torch.equal(a["crop_gt"], full["gt"][0][:, t : t + 24, left : left + 40])
        assert torch.equal(a["crop_valid"], full["valid"][0][:, t : t + 24, left : left + 40])
        assert torch.allclose(a["rough"], resize_smooth(full["rough"], (32, 32))[0])
        # nearer by s: the zoomed ground truth is the original's pixels divided by s
        values = set(np.round(gt[key[0]].ravel() / s, 4))
        assert set(np.round(a["crop_gt"].numpy().ravel(), 4)) <= values
        assert torch.equal(zoomed[key]["crop_gt"], a["crop_gt"])  # reproducible


def test_the_head_trains_on_the_gain_of_the_model_view(caches):
    """The gain augmentation multiplies the full-resolution crops' rough map by the factor the model
    view got: with an untrained head (the identity), no U-Net correction and a crop whose ground truth
    is its own rough map, the head's loss is the mean of (log g)^2 over the batch."""
    from torch.utils.data import default_collate

    from refinedepth.augment import AugmentParams
    from refinedepth.refiner.normalize import Normalization
    from refinedepth.refiner.train import _head_loss

    crops = CropDataset(CacheDataset(caches["train"], with_rgb=True), (64, 64), (32, 48), seed=0)
    batch = default_collate([crops[0], crops[1]])
    batch["crop_gt"] = batch["crop_rough"].clone()
    batch["crop_valid"] = torch.ones_like(batch["crop_valid"])
    gain = torch.tensor([1.2, 0.9], dtype=torch.float64)
    p = AugmentParams(flip=torch.zeros(2, dtype=torch.bool), scale=torch.ones(2, dtype=torch.float64),
                      top=torch.zeros(2), left=torch.zeros(2), brightness=torch.ones(2), gain=gain)
    head = build_head(HeadConfig(), seed=0)
    loss = _head_loss(batch, torch.zeros(2, 1, 64, 64), None, head, p,
                      norm=Normalization(max_depth=10.0), kind="metric", device=torch.device("cpu"))
    want = float((torch.log(gain) ** 2).mean())
    assert float(loss.detach()) == pytest.approx(want, rel=1e-4)
    unchanged = AugmentParams(**{**p.__dict__, "gain": torch.ones(2, dtype=torch.float64)})
    assert float(_head_loss(batch, torch.zeros(2, 1, 64, 64), None, head, unchanged,
                            norm=Normalization(max_depth=10.0), kind="metric", device=torch.device("cpu")).detach()) < 1e-10


def test_guided_training_sharpens_a_blurred_map_saves_and_refines_any_size(caches, tmp_path):
    run = tmp_path / "run"
    res = train_refiner(_cfg(caches, run, val=str(caches["val"]), epochs=40, augment=()))
    meta = ckpt.read_config(run / "best")
    assert meta["refiner"]["head"]["guide"] == "rgb" and (run / "best" / ckpt.HEAD_FILE).is_file()
    assert res.history[-1]["loss_head"] < 0.7 * res.history[0]["loss_head"]
    r = Refiner.from_pretrained(run)
    assert r.head is not None and r.needs_rgb
    gt, rough, rgb = _scene(2, (64, 96), 1)
    refined = r.refine(rough[:, 0], rgb=rgb)
    assert refined.shape == (2, 64, 96)
    # sharper: the error next to the depth edges (where the blur is) drops
    edges = np.zeros_like(gt, dtype=bool)
    edges[:, :, 1:] |= np.abs(np.diff(gt, axis=2)) > 0.5
    edges[:, 1:, :] |= np.abs(np.diff(gt, axis=1)) > 0.5
    near = torch.nn.functional.max_pool2d(torch.from_numpy(edges)[:, None].float(), 9, 1, 4)[:, 0].numpy() > 0
    # ... against the rough map and against the global scale (x 1 / 1.15) the head starts from
    scaled = rough[:, 0] * meta["baselines"]["scale"]
    assert abs(meta["baselines"]["scale"] - 1 / 1.15) < 0.02
    assert np.abs(refined - gt)[near].mean() < 0.7 * np.abs(scaled - gt)[near].mean()
    other = r.refine(F.interpolate(torch.from_numpy(rough), size=(100, 150), mode="bilinear").numpy()[:, 0],
                     rgb=np.stack([np.asarray(Image.fromarray(x).resize((150, 100))) for x in rgb]))
    assert other.shape == (2, 100, 150) and np.isfinite(other).all()
    # a rough map at a quarter of the image's size, refined at the image's: the head's detail at
    # full resolution, what refine_tensor gives for the image's size (not the small map upsampled)
    small = F.interpolate(torch.from_numpy(rough), size=(16, 24), mode="bilinear").numpy()
    full = r.refine(small[:, 0], rgb=rgb, out_size="64x96")
    assert full.shape == (2, 64, 96)
    rgb_t = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    expected = r.refine_tensor(torch.from_numpy(small), rgb_t, out_size=(64, 96))[:, 0].numpy()
    np.testing.assert_allclose(full, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(refined - gt)[near].mean() < np.abs(
        F.interpolate(torch.from_numpy(r.refine(small[:, 0], rgb=rgb)[:, None]), size=(64, 96),
                      mode="bilinear").numpy()[:, 0] - gt)[near].mean()
    with pytest.raises(Exception, match="needs rgb"):
        r.refine(rough[:, 0])


@pytest.mark.parametrize("augment", [("hflip", "brightness"), ("hflip", "scale", "brightness"),
                                     ("hflip", "brightness", "gain")])
def test_guided_resume_is_exact(caches, tmp_path, augment):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_refiner(_cfg(caches, straight, epochs=2, augment=augment))
    train_refiner(_cfg(caches, split, epochs=2, max_steps=5, augment=augment))
    train_refiner(_cfg(caches, split, epochs=2, resume=True, augment=augment))
    for name in (ckpt.GENERATOR_FILE, ckpt.HEAD_FILE):
        a = ckpt.load_tensors(straight / "last", name)
        b = ckpt.load_tensors(split / "last", name)
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)


def test_head_options_and_errors(caches, tmp_path):
    # the head as an option on another preset, guided by nothing
    run = tmp_path / "small-head"
    res = CliRunner().invoke(cli, ["train-refiner", "--train", str(caches["train"]), "--out", str(run), "--preset", "small",
                                   "--size", "64x64", "--head", "guided", "--guide", "none", "--augment", "hflip",
                                   "--crop", "32x32", "--max-steps", "2", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    r = Refiner.from_pretrained(run)
    assert r.head is not None and not r.needs_rgb and r.preset == "small"


def test_bf16_validation_runs_the_generator_alone_in_bf16_as_evaluate_does(caches):
    # --bf16 validation (CUDA in training; amp=True here on CPU) must score what
    # `evaluate --precision bf16` scores: autocast around the generator only, head in float32
    from refinedepth.evaluate import evaluate_cache
    from refinedepth.refiner.train import validate

    from ._helpers_guided import guided_refiner

    path = guided_refiner()
    refiner = Refiner.from_pretrained(path, optimize=None)
    val = caches["val"]
    validated = validate(
        refiner.generator, CacheDataset(val, with_rgb=True), norm=refiner.normalization, inputs=refiner.inputs,
        residual=refiner.residual, size=refiner.size, protocol="none", device=torch.device("cpu"),
        batch_size=1, amp=True, head=refiner.head,
    )
    evaluated = evaluate_cache(val, [path], precision="bf16", device="cpu", boundary=False, any_backbone=True)
    fp32 = evaluate_cache(val, [path], device="cpu", boundary=False, any_backbone=True)
    for key in ("abs_rel", "rmse", "silog"):
        got, want = validated["refined"][key], evaluated.metrics(-1)[key]
        assert got == pytest.approx(want, rel=1e-4), key
    assert validated["refined"]["abs_rel"] != fp32.metrics(-1)["abs_rel"]  # bf16 did run
