"""``predict_images`` and ``refinedepth predict``: files written, round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from refinedepth.cli.main import cli
from refinedepth.data.io import png_depth_scale, read_depth_png
from refinedepth.predict import find_images, predict_images

from ._helpers_evaluate import register_toy_backbone, shared_refiner


@pytest.fixture(scope="module")
def toy():
    return register_toy_backbone()


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    sizes = {"a.png": (30, 40), "b.jpg": (45, 60), "sub/c.png": (20, 20)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder, sizes


def _expected_toy(path, size):
    """The toy backbone's depth, computed independently: resize, 2x2 mean of grey, back up."""
    import torch
    import torch.nn.functional as F

    rgb = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(rgb, size=(32, 48), mode="bilinear", align_corners=False, antialias=True)
    d = 1.0 + 4.0 * F.avg_pool2d(x.mean(1, keepdim=True), 2)
    return F.interpolate(d, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def test_png_round_trip_equals_npy_to_a_millimetre(toy, images, tmp_path):
    folder, sizes = images
    out = tmp_path / "out"
    result = predict_images([folder], toy, out, batch_size=2, device="cpu")
    assert len(result.outputs) == 3 and result.output_kind == "metric"
    for name, size in sizes.items():
        stem = name.rsplit(".", 1)[0]
        depth = np.load(out / f"{stem}_depth.npy")
        assert depth.shape == size and depth.dtype == np.float32
        np.testing.assert_allclose(depth, _expected_toy(folder / name, size), atol=1e-5)
        png = out / f"{stem}_depth.png"
        assert png_depth_scale(png) == 1000
        assert np.asarray(Image.open(png)).dtype == np.uint16
        back = read_depth_png(png)
        assert np.abs(back - depth).max() <= 0.0005 + 1e-6  # rounding to the nearest millimetre
        color = np.asarray(Image.open(out / f"{stem}_depth_color.png"))
        assert color.shape == (*size, 3) and color.dtype == np.uint8


def test_png_scale_option_and_clipping(toy, images, tmp_path):
    folder, _ = images
    result = predict_images([folder / "a.png"], toy, tmp_path / "o", png_scale=20000.0, device="cpu")
    png = tmp_path / "o" / "a_depth.png"
    assert png_depth_scale(png) == 20000
    depth = np.load(tmp_path / "o" / "a_depth.npy")
    back = read_depth_png(png)
    limit = 65534 / 20000.0
    assert result.clipped_pixels == int((depth > limit).sum()) > 0
    np.testing.assert_allclose(back, np.minimum(depth, limit), atol=0.5 / 20000 + 1e-6)


def test_refiners_chain_in_predict(toy, images, tmp_path):
    import torch

    from refinedepth.refiner.api import Refiner

    ref = shared_refiner()
    folder, _ = images
    predict_images([folder / "b.jpg"], toy, tmp_path / "o", refiners=[ref, ref], device="cpu")
    got = np.load(tmp_path / "o" / "b_depth.npy")
    # independently: the toy's output at its native size, refined twice, resized to the image
    import torch.nn.functional as F

    rgb = torch.from_numpy(np.array(Image.open(folder / "b.jpg").convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(rgb, size=(32, 48), mode="bilinear", align_corners=False, antialias=True)
    rough = 1.0 + 4.0 * F.avg_pool2d(x.mean(1, keepdim=True), 2)
    r = Refiner.from_pretrained(ref)
    twice = r.refine_tensor(r.refine_tensor(rough, output_kind="metric"), output_kind="metric")
    expected = F.interpolate(twice, size=(45, 60), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_find_images_errors(tmp_path, images):
    folder, _ = images
    names = [name for _, name in find_images([folder])]
    assert names == ["a", "b", "sub/c"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match=r"holds no images"):
        find_images([tmp_path / "empty"])
    with pytest.raises(Exception, match=r"does not exist"):
        find_images([tmp_path / "missing.jpg"])
    with pytest.raises(Exception, match=r"would write the same outputs 'a'"):
        (tmp_path / "x").mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x" / "a.jpg")
        find_images([folder / "a.png", tmp_path / "x" / "a.jpg"])


def test_cli_predict_and_unreadable_image(toy, images, tmp_path):
    folder, _ = images
    runner = CliRunner()
    ok = runner.invoke(cli, ["predict", str(folder / "a.png"), "--backbone", toy, "--out", str(tmp_path / "o"), "-q", "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o" / "a_depth.png").is_file() and "wrote 1 depth map(s) (metric)" in ok.output

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    res = runner.invoke(cli, ["predict", str(bad), "--backbone", toy, "--out", str(tmp_path / "o2"), "-q"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot read image {str(bad)!r}")
    assert lines[0].endswith("expected a readable JPEG/PNG/BMP/TIFF file")

    depth16 = tmp_path / "depth.png"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(depth16)
    res = runner.invoke(cli, ["predict", str(depth16), "--backbone", toy, "--out", str(tmp_path / "o3"), "-q"])
    assert res.exit_code == 1 and "single-channel" in res.output and "expected an 8-bit colour photo" in res.output
