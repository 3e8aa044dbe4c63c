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
    shrink = size[0] < d.shape[-2] or size[1] < d.shape[-1]  # bilinear, antialiased when shrinking
    return F.interpolate(d, size=size, mode="bilinear", align_corners=False, antialias=shrink)[0, 0].numpy()


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
    # independently: the toy's output at its native size, refined twice, the last refiner's
    # correction resized to the image's size (Refiner.refine(out_size=) semantics)
    import torch.nn.functional as F

    rgb = torch.from_numpy(np.array(Image.open(folder / "b.jpg").convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(rgb, size=(32, 48), mode="bilinear", align_corners=False, antialias=True)
    rough = 1.0 + 4.0 * F.avg_pool2d(x.mean(1, keepdim=True), 2)
    r = Refiner.from_pretrained(ref)
    twice = r.refine_tensor(r.refine_tensor(rough, output_kind="metric"), output_kind="metric", out_size=(45, 60))
    expected = twice[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # detail-only: the same chain with each refiner's large scales from its rough x scale
    predict_images([folder / "b.jpg"], toy, tmp_path / "d", refiners=[ref, ref], device="cpu", detail_sigma=3.0)
    r.set_detail(3.0)
    twice = r.refine_tensor(r.refine_tensor(rough, output_kind="metric"), output_kind="metric", out_size=(45, 60))
    expected = twice[0, 0].numpy()
    detail = np.load(tmp_path / "d" / "b_depth.npy")
    np.testing.assert_allclose(detail, expected, atol=1e-5)
    assert not np.allclose(detail, got, atol=1e-3)
    # and keeping each refiner's per-image scale
    predict_images([folder / "b.jpg"], toy, tmp_path / "i", refiners=[ref, ref], device="cpu", detail_sigma=3.0,
                   detail_scale="image")
    r.set_detail(3.0, scale="image")
    twice = r.refine_tensor(r.refine_tensor(rough, output_kind="metric"), output_kind="metric", out_size=(45, 60))
    expected = twice[0, 0].numpy()
    image = np.load(tmp_path / "i" / "b_depth.npy")
    np.testing.assert_allclose(image, expected, atol=1e-5)
    assert not np.allclose(image, detail, atol=1e-3)


def _toy_rough(rgb):
    """The toy backbone's output for ``rgb`` [1,3,h,w] in [0,1], at its native 16x24."""
    import torch.nn.functional as F

    shrink = rgb.shape[-2] > 32 or rgb.shape[-1] > 48
    x = F.interpolate(rgb, size=(32, 48), mode="bilinear", align_corners=False, antialias=shrink)
    return 1.0 + 4.0 * F.avg_pool2d(x.mean(1, keepdim=True), 2)


def _rgb01(path):
    import torch

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def test_a_guided_refiner_runs_its_head_at_the_image_resolution_with_the_full_image(toy, images, tmp_path):
    """A refiner with a full-resolution RGB-guided head: predict's map is the head's output at the
    image's own size, guided by the image as loaded (what evaluate does at the ground truth's size),
    not a map refined at the rough map's 16x24 and upsampled. One batch holds three image sizes."""
    import torch.nn.functional as F

    from refinedepth.refiner import Refiner

    from ._helpers_guided import guided_refiner

    ref = guided_refiner()
    r = Refiner.from_pretrained(ref)
    folder, sizes = images
    predict_images([folder], toy, tmp_path / "o", refiners=[ref], batch_size=3, device="cpu")
    for name, size in sizes.items():
        got = np.load(tmp_path / "o" / f"{name.rsplit('.', 1)[0]}_depth.npy")
        rgb = _rgb01(folder / name)
        rough = _toy_rough(rgb)
        expected = r.refine_tensor(rough, rgb, output_kind="metric", out_size=size)[0, 0].numpy()
        assert got.shape == size
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        # the old way (head at the rough map's size, then upsampled) is measurably different
        small = F.interpolate(rgb, size=(16, 24), mode="bilinear", align_corners=False, antialias=True)
        low = r.refine_tensor(rough, small, output_kind="metric")
        old = F.interpolate(low, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
        assert np.abs(old - expected).max() > 1e-3

    # chained after a refiner without a head: that one refines at its input's size (the image's)
    plain = shared_refiner()
    predict_images([folder / "b.jpg"], toy, tmp_path / "c", refiners=[ref, plain], device="cpu")
    rgb = _rgb01(folder / "b.jpg")
    first = r.refine_tensor(_toy_rough(rgb), rgb, output_kind="metric", out_size=(45, 60))
    expected = Refiner.from_pretrained(plain).refine_tensor(first, output_kind="metric")[0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "c" / "b_depth.npy"), expected, rtol=1e-5, atol=1e-5)


def test_progress_starts_at_zero(toy, images, tmp_path):
    """The bar's clock starts before the first batch (else its first rate is absurd)."""
    folder, _ = images
    calls = []
    predict_images([folder], toy, tmp_path / "o", batch_size=2, device="cpu",
                   progress=lambda done, total, desc: calls.append((done, total, desc)))
    assert calls == [(0, 3, "predict"), (2, 3, "predict"), (3, 3, "predict")]


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


# -- issue 13 rows 4 and 5: output names, never replacing a file -------------------------------------
def _photo(path, seed):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def _run(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args), "-q", "--device", "cpu"])


def test_row4_dotted_names_keep_their_whole_stem(toy, tmp_path):
    dots = tmp_path / "dots"
    _photo(dots / "scan.001.jpg", 1)
    _photo(dots / "scan.002.jpg", 2)
    res = _run(dots, "--backbone", toy, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "scan.001_depth.npy", "scan.001_depth.png", "scan.001_depth_color.png",
        "scan.002_depth.npy", "scan.002_depth.png", "scan.002_depth_color.png",
    ]
    a, b = np.load(tmp_path / "out" / "scan.001_depth.npy"), np.load(tmp_path / "out" / "scan.002_depth.npy")
    assert a.shape == b.shape == (30, 40) and not np.allclose(a, b)
    np.testing.assert_allclose(a, _expected_toy(dots / "scan.001.jpg", (30, 40)), atol=1e-5)


def test_row5_a_users_file_is_never_replaced(toy, tmp_path):
    work = tmp_path / "work"
    photo = _photo(work / "photo.png", 1)
    _photo(work / "photo.v2.jpg", 2)
    before = photo.read_bytes()
    res = _run(work / "photo.v2.jpg", "--backbone", toy, "--out", work)
    assert res.exit_code == 0, res.output
    assert photo.read_bytes() == before
    assert (work / "photo.v2_depth.png").is_file() and (work / "photo.v2_depth.npy").is_file()

    # the same command again: refused before anything is written, unless --overwrite
    npy = work / "photo.v2_depth.npy"
    npy.write_bytes(b"mine")
    (work / "photo.v2_depth.png").unlink()
    again = _run(work / "photo.v2.jpg", "--backbone", toy, "--out", work)
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"Error: output {str(npy)!r} already exists; pass --overwrite to replace it or choose another --out"
    ]
    assert npy.read_bytes() == b"mine" and not (work / "photo.v2_depth.png").exists()
    forced = _run(work / "photo.v2.jpg", "--backbone", toy, "--out", work, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert np.load(npy).shape == (30, 40) and photo.read_bytes() == before


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(toy, tmp_path):
    work = tmp_path / "w"
    _photo(work / "x.png", 1)
    colour = _photo(work / "x_depth_color.png", 2)  # an RGB picture, so also an input
    res = _run(work, "--backbone", toy, "--out", work, "--overwrite")
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: output {str(colour)!r} would replace the input image {str(colour)!r}; choose another --out"
    ]
    assert sorted(p.name for p in work.iterdir()) == ["x.png", "x_depth_color.png"]


def test_same_file_twice_is_used_once(toy, images, tmp_path):
    folder, _ = images
    result = predict_images([folder / "a.png", folder, folder / "a.png"], toy, tmp_path / "o", device="cpu")
    assert [o["image"] for o in result.outputs].count(str(folder / "a.png")) == 1 and len(result.outputs) == 3


def test_untrained_backbone_warns_once(toy, tmp_path):
    import torch

    from refinedepth.registry import BackboneInfo, register_backbone

    info = BackboneInfo(name="toy-random", output_kind="metric", input_size=(16, 16), output_size=(16, 16))

    class Random(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def forward(self, rgb):
            return 1.0 + self.conv(rgb).abs()

    def factory(weights=None, **options):
        model = Random()
        model.info = info
        return model

    register_backbone("toy-random", factory, info=info, overwrite=True)
    folder = tmp_path / "imgs"
    _photo(folder / "a.png", 1)
    _photo(folder / "b.png", 2)
    res = _run(folder, "--backbone", "toy-random", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: backbone 'toy-random' has no weights: its random initialisation gives different depth "
        "on every run; pass --weights for meaningful, repeatable results"
    ]
    quiet = _run(folder, "--backbone", toy, "--out", tmp_path / "o2")  # no parameters: nothing to warn about
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_an_interrupted_overwrite_leaves_every_output_whole(toy, images, tmp_path, monkeypatch):
    # a failure while a file is written (as a kill would) leaves the previous file under its name
    # and no half-written file beside it
    from refinedepth import predict as P

    folder, _ = images
    out = tmp_path / "out"
    predict_images([folder / "a.png"], toy, out, device="cpu")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["a_depth.npy", "a_depth.png", "a_depth_color.png"]

    def torn(path, img):  # writes half a file, then dies
        open(path, "wb").write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "_save_rgb", torn)  # inside write_atomically, as a kill mid-file
    with pytest.raises(KeyboardInterrupt):
        predict_images([folder / "a.png"], toy, out, device="cpu", overwrite=True)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)  # no temporary left behind
    assert after["a_depth_color.png"] == before["a_depth_color.png"]
    Image.open(out / "a_depth_color.png").load()  # still a whole PNG


# -- photos as users have them -----------------------------------------------------------------------
def test_a_photo_is_turned_upright_by_its_exif_orientation(toy, tmp_path):
    """A phone photo stored 60 wide x 40 high with EXIF Orientation 6 is shown 40 wide x 60 high;
    its depth has the shape viewers show, and equals the depth of the photo turned by PIL's
    ``exif_transpose`` (the reference) and saved without the tag."""
    from PIL import ImageOps

    rng = np.random.default_rng(5)
    stored = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    stored.save(tmp_path / "phone.png", exif=exif.tobytes())
    upright = ImageOps.exif_transpose(Image.open(tmp_path / "phone.png"))
    assert upright.size == (40, 60)  # width x height as shown
    upright.save(tmp_path / "plain.png")
    predict_images([tmp_path / "phone.png", tmp_path / "plain.png"], toy, tmp_path / "o", device="cpu")
    phone, plain = np.load(tmp_path / "o" / "phone_depth.npy"), np.load(tmp_path / "o" / "plain_depth.npy")
    assert phone.shape == (60, 40)
    np.testing.assert_array_equal(phone, plain)


def test_hidden_files_are_skipped_and_a_broken_image_stops_the_run_before_any_output(toy, tmp_path):
    folder = tmp_path / "photos"
    for k in range(5):
        _photo(folder / f"img{k}.png", k)
    (folder / "._img0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata, not an image
    (folder / ".thumbs").mkdir()
    _photo(folder / ".thumbs" / "t.png", 9)
    assert [name for _, name in find_images([folder])] == [f"img{k}" for k in range(5)]
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    res = _run(folder, "--backbone", toy, "--out", tmp_path / "o", "--batch-size", "2")
    assert res.exit_code == 1 and f"cannot read image {str(folder / 'zz_broken.png')!r}" in res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*"))  # nothing half done


def test_a_disparity_map_is_written_as_such_and_shown_near_dark(tmp_path):
    """Without a refiner a disparity backbone's values are written as they are: the PNG records
    ``output_kind``, and the colour picture shows near (high disparity) dark, as for depth."""
    import torch

    from refinedepth.data.io import PNG_KIND_KEY
    from refinedepth.registry import BackboneInfo, register_backbone

    info = BackboneInfo(name="toy-disp", output_kind="disparity", input_size=(30, 40), output_size=(30, 40))

    class Disp(torch.nn.Module):
        def forward(self, rgb):  # near on the left: high disparity
            x = torch.linspace(2.0, 0.5, rgb.shape[-1]).view(1, 1, 1, -1)
            return x.expand(rgb.shape[0], 1, rgb.shape[-2], rgb.shape[-1]).clone()

    def factory(weights=None, **options):
        model = Disp()
        model.info = info
        return model

    register_backbone("toy-disp", factory, info=info, overwrite=True)
    _photo(tmp_path / "p.png", 1)
    result = predict_images([tmp_path / "p.png"], "toy-disp", tmp_path / "o", device="cpu")
    assert result.output_kind == "disparity"
    assert Image.open(tmp_path / "o" / "p_depth.png").text[PNG_KIND_KEY] == "disparity"
    color = np.asarray(Image.open(tmp_path / "o" / "p_depth_color.png")).astype(int).sum(-1)
    assert color[:, 0].mean() < color[:, -1].mean()  # near (left) dark, far (right) bright


def test_the_png_scale_is_recorded_exactly(tmp_path):
    from refinedepth.data.io import write_depth_png

    write_depth_png(tmp_path / "d.png", np.full((2, 2), 2.0, np.float32), scale=1234.5678)
    assert png_depth_scale(tmp_path / "d.png") == 1234.5678
