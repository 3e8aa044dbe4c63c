"""Sizes and resampling in the adapters: one size parser (``refinedepth.geometry.parse_hw``) for
the ``files``, ``hf`` and ``fcrn`` options and ``wrap_backbone``; predictions resized as the scorer
resizes them (bilinear, antialiased when shrinking) and ``nearest`` preprocessing at pixel centres
(PIL's NEAREST). Expectations come from PIL or from the filters' definitions in NumPy."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

from refinedepth import create_backbone  # noqa: E402
from refinedepth.backbones.wrap import wrap_backbone  # noqa: E402
from refinedepth.cli.main import cli  # noqa: E402
from refinedepth.errors import ConfigError  # noqa: E402
from refinedepth.registry import BackboneInfo  # noqa: E402

from ._helpers_adapters import one_thread  # noqa: E402, F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

PAIR = "HEIGHTxWIDTH such as 256x256 or a pair of whole numbers [height, width]"


def _antialiased_bilinear(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` weights of a shrinking bilinear resize with antialiasing, from its
    definition (PIL's and torch's): a triangle ``n_in / n_out`` input pixels wide on each side of
    the output pixel's centre, normalised."""
    scale = n_in / n_out
    assert scale >= 1
    centres = (np.arange(n_out) + 0.5) * scale
    pixels = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(pixels[None, :] - centres[:, None]) / scale)
    return w / w.sum(axis=1, keepdims=True)


def _shrunk(x: np.ndarray, size) -> np.ndarray:
    return _antialiased_bilinear(x.shape[0], size[0]) @ x.astype(np.float64) @ _antialiased_bilinear(
        x.shape[1], size[1]
    ).T


@pytest.fixture
def one_file(tmp_path):
    root = tmp_path / "preds"
    root.mkdir()
    np.save(root / "a.npy", np.ones((6, 8), np.float32))
    return root


# --------------------------------------------------------------------------- one size parser


@pytest.mark.parametrize("value, expected", [("240x320", (240, 320)), ([240, 320], (240, 320)),
                                             ("240,320", (240, 320)), (48, (48, 48)), ((6.0, 8.0), (6, 8))])
def test_files_sizes_parse_like_the_command_line(one_file, value, expected):
    model = create_backbone("files", root=str(one_file), output_size=value, input_size=value)
    assert model.info.output_size == expected and model.info.input_size == expected
    assert model.info.config["output_size"] == list(expected)


@pytest.mark.parametrize(
    "value, expected",
    [("48", "must be HEIGHTxWIDTH such as 256x256, got '48'"),  # size_option made it (4, 8)
     ((2.7, 3.9), f"must be {PAIR}, got (2.7, 3.9) (not a whole number: 2.7)"),  # was (2, 3)
     ([True, 5], f"must be {PAIR}, got [True, 5] (not a number: True is a boolean)"),  # was (1, 5)
     ((0, 5), "must be positive, got 0x5; use e.g. 256x256")],
)
def test_files_hf_fcrn_and_wrap_refuse_the_same_odd_sizes(one_file, value, expected):
    for what, build in [
        ("files: input_size", lambda: create_backbone("files", root=str(one_file), input_size=value)),
        ("files: output_size", lambda: create_backbone("files", root=str(one_file), output_size=value)),
        ("fcrn: input_size", lambda: create_backbone("fcrn", encoder="resnet18", input_size=value)),
        ("wrap_backbone: input_size",
         lambda: wrap_backbone(lambda x: x[:, 0], name="w", output_kind="relative", input_size=value)),
        ("wrap_backbone: output_size",
         lambda: wrap_backbone(lambda x: x[:, 0], name="w", output_kind="relative", input_size=(4, 4),
                               output_size=value)),
    ]:
        with pytest.raises(ConfigError) as err:
            build()
        assert str(err.value) == f"{what} {expected}"


def test_fcrn_takes_hxw_and_keeps_its_minimum(tmp_path):
    model = create_backbone("fcrn", encoder="resnet18", input_size="64x96")
    assert model.info.input_size == (64, 96) and model.info.config["input_size"] == [64, 96]
    with pytest.raises(ConfigError) as err:
        create_backbone("fcrn", encoder="resnet18", input_size="16x64")
    assert str(err.value) == "fcrn: input_size must be at least 32x32 (both sides >= 32), got 16x64"


def test_wrap_backbone_takes_hxw():
    backbone = wrap_backbone(lambda x: x[:, 0], name="w", output_kind="relative", input_size="4x6",
                             output_size=np.array([2, 3]))
    assert backbone.info.input_size == (4, 6) and backbone.info.output_size == (2, 3)


def test_hf_takes_hxw(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from ._helpers_adapters import save_tiny_glpn

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = save_tiny_glpn(tmp_path / "glpn", max_depth=10)
    model = create_backbone("hf", model=str(folder), input_size="64x96", output_size="32x48")
    assert model.info.input_size == (64, 96) and model.info.output_size == (32, 48)
    with pytest.raises(ConfigError) as err:
        create_backbone("hf", model=str(folder), input_size="48")
    assert str(err.value) == "hf: input_size must be HEIGHTxWIDTH such as 256x256, got '48'"


def test_backbone_arg_input_size_hxw_on_the_command_line(one_file):
    """--backbone-arg input_size=240x320 works as --size 240x320 does (it used to be refused)."""
    result = CliRunner().invoke(
        cli, ["backbones", "info", "files", "--backbone-arg", f"root={one_file}",
              "--backbone-arg", "input_size=240x320", "--backbone-arg", "output_size=48"],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["input_size"] == [240, 320] and info["output_size"] == [48, 48]


# --------------------------------------------------------------------------- resampling


def test_files_shrinks_predictions_antialiased(tmp_path):
    depth = np.random.default_rng(0).uniform(1.0, 10.0, (12, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", depth)
    out = create_backbone("files", root=str(tmp_path), output_size=[5, 6])(torch.rand(1, 3, 5, 6), ids=["x"])
    np.testing.assert_allclose(out[0, 0].numpy(), _shrunk(depth, (5, 6)), rtol=1e-5)
    pil = np.asarray(Image.fromarray(depth, mode="F").resize((6, 5), Image.BILINEAR))
    np.testing.assert_allclose(out[0, 0].numpy(), pil, rtol=1e-5)


def test_wrapped_module_output_shrunk_antialiased():
    ramp = torch.arange(8.0).view(1, 1, 1, 8)
    backbone = wrap_backbone(lambda x: ramp.expand(x.shape[0], 1, 1, 8), name="ramp",
                             output_kind="metric", input_size=(4, 4), output_size=(1, 2))
    out = backbone(torch.rand(2, 3, 4, 4))
    # by hand: output 0 is centred on 2.0 with a triangle 4 pixels wide on each side: weights
    # .625 .875 .875 .625 .375 .125 on pixels 0..5, so 6.625 / 3.5 (plain bilinear gave 1.5)
    np.testing.assert_allclose(out[0, 0, 0].numpy(), [6.625 / 3.5, 7 - 6.625 / 3.5], rtol=1e-6)
    np.testing.assert_allclose(out[1, 0].numpy(), _shrunk(np.arange(8.0)[None], (1, 2)), rtol=1e-6)


class _Fixed(torch.nn.Module):
    """A stand-in transformers model: records ``pixel_values``, returns a fixed depth map."""

    def __init__(self, depth: torch.Tensor) -> None:
        super().__init__()
        self.depth = depth
        self.seen = None

    def forward(self, pixel_values):
        self.seen = pixel_values
        return {"predicted_depth": self.depth.expand(pixel_values.shape[0], *self.depth.shape[1:])}


def _hf(preprocess, depth, output_size):
    from refinedepth.backbones.hf import HFDepthBackbone

    info = BackboneInfo("hf", "metric", (10, 10), tuple(output_size))
    return HFDepthBackbone(_Fixed(depth), preprocess, info)


def test_hf_nearest_resample_samples_pixel_centres_as_pil():
    from refinedepth.backbones.hf import HFPreprocess

    model = _hf(HFPreprocess(size=(1, 4), resample="nearest"), torch.ones(1, 1, 1, 4), (1, 4))
    row = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 3, 1, 10)
    # 10 -> 4 at pixel centres: floor((i + 0.5) * 2.5) = 1, 3, 6, 8 (F.interpolate 'nearest': 0, 2, 5, 7)
    assert model.pixel_values(row)[0, 0, 0].tolist() == [1.0, 3.0, 6.0, 8.0]
    # and as PIL's NEAREST (what the slow image processors use) on a 2-D uint8 image
    image = np.random.default_rng(2).integers(0, 256, (7, 10, 3), dtype=np.uint8)
    model = _hf(HFPreprocess(size=(3, 4), resample="nearest", input_scale=255.0), torch.ones(1, 1, 3, 4), (3, 4))
    ours = model.pixel_values(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    pil = np.asarray(Image.fromarray(image).resize((4, 3), Image.NEAREST))
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), pil, atol=1e-4)


def test_hf_output_shrunk_antialiased():
    from refinedepth.backbones.hf import HFPreprocess

    depth = np.random.default_rng(3).uniform(1.0, 10.0, (12, 16)).astype(np.float32)
    model = _hf(HFPreprocess(size=None), torch.from_numpy(depth)[None, None], (5, 6))
    out = model(torch.rand(1, 3, 10, 10))
    np.testing.assert_allclose(out[0, 0].numpy(), _shrunk(depth, (5, 6)), rtol=1e-5)
