"""The ``hf`` adapter, offline, with tiny randomly initialised models saved with save_pretrained."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from refinedepth import create_backbone  # noqa: E402
from refinedepth.backbones.hf import HFPreprocess, output_kind_for  # noqa: E402
from refinedepth.errors import CheckpointError, ConfigError, PluginError  # noqa: E402

from ._helpers_adapters import (  # noqa: E402
    _VIT,
    one_thread,  # noqa: F401  (fixture)
    save_tiny_depth_anything,
    save_tiny_dpt,
    save_tiny_glpn,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-models")
    return {
        "dpt": save_tiny_dpt(root / "dpt"),
        "da-relative": save_tiny_depth_anything(root / "da-relative", "relative"),
        "da-metric": save_tiny_depth_anything(root / "da-metric", "metric", max_depth=20),
        "glpn": save_tiny_glpn(root / "glpn", max_depth=10),
    }


@pytest.mark.parametrize(
    "key, kind, max_depth",
    [
        ("dpt", "disparity", math.inf),
        ("da-relative", "disparity", math.inf),
        ("da-metric", "metric", 20.0),
        ("glpn", "metric", 10.0),
    ],
)
def test_output_kind_per_family_and_forward(model_dirs, key, kind, max_depth):
    model = create_backbone("hf", model=str(model_dirs[key]))
    info = model.info
    assert info.name == "hf"
    assert info.output_kind == kind
    assert info.value_range == (0.0, max_depth)
    assert info.output_size == info.input_size
    rgb = torch.rand(2, 3, *info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(rgb)
    assert out.shape == (2, 1, *info.output_size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if kind == "metric":  # sigmoid heads: inside (0, max_depth)
        assert float(out.min()) >= 0.0 and float(out.max()) <= max_depth


def test_output_kind_from_config_without_building():
    from transformers import BertConfig, DepthProConfig, ZoeDepthConfig

    assert output_kind_for(ZoeDepthConfig()) == "metric"
    assert output_kind_for(DepthProConfig(use_fov_model=True)) == "metric"
    assert output_kind_for(DepthProConfig(use_fov_model=False)) == "disparity"
    assert output_kind_for(BertConfig()) is None


@pytest.mark.parametrize("key", ["dpt", "da-relative", "glpn"])
def test_default_input_size_is_480x640_for_every_family(model_dirs, key):
    # NYU/Kinect frames; the processor's own target size stays inside the adapter
    model = create_backbone("hf", model=str(model_dirs[key]))
    assert model.info.input_size == (480, 640) and model.info.output_size == (480, 640)
    assert model.info.config["input_size"] == [480, 640]
    expected = {"dpt": (32, 32), "da-relative": (28, 42), "glpn": None}[key]
    assert model.preprocess.size == expected


def _lifted(path):
    """Re-save a tiny model with perturbed weights and a lifted last conv, so its prediction has
    structure (the freshly initialised heads output near-constant maps)."""
    from transformers import AutoModelForDepthEstimation

    net = AutoModelForDepthEstimation.from_pretrained(path)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.15)
        last = [m for m in net.head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias.add_(1.0)
    net.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lifted_dirs(tmp_path_factory):
    from transformers import DPTImageProcessor

    root = tmp_path_factory.mktemp("hf-lifted")
    square = _lifted(save_tiny_depth_anything(root / "da-square", "relative"))
    # as Depth Anything checkpoints ship it (518x518 there): a square target, keep aspect ratio
    DPTImageProcessor(
        size={"height": 28, "width": 28},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(square)
    return {"da-square": square, "dpt": _lifted(save_tiny_dpt(root / "dpt"))}


def _uint8_image(shape, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return image, torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def _range_relative(ours, reference):
    span = float(reference.max() - reference.min())
    diff = (ours - reference).abs()
    return float(diff.mean()) / span, float(diff.max()) / span


@pytest.mark.parametrize("key, model_sees", [("da-square", (28, 42)), ("dpt", (32, 32))])
def test_default_size_gives_the_model_the_processors_input(lifted_dirs, key, model_sees):
    """A 480x640 image at the default input_size, resized first as the cache builder and predict
    do: the model gets what transformers' processor makes of the image (aspect ratio kept, its
    bicubic resampling), and the prediction matches the depth-estimation pipeline's."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    from refinedepth.geometry import resize_rgb

    model = create_backbone("hf", model=str(lifted_dirs[key]))
    image, rgb = _uint8_image((480, 640))
    rgb = resize_rgb(rgb, model.info.input_size)
    processor = AutoImageProcessor.from_pretrained(lifted_dirs[key])
    expected = processor(images=image, return_tensors="pt").pixel_values
    ours = model.pixel_values(rgb)
    assert tuple(ours.shape[-2:]) == tuple(expected.shape[-2:]) == model_sees
    # within one 8-bit level (the processor resizes the uint8 image)
    levels = (ours - expected).abs() * model.std * 255
    assert float(levels.max()) <= 1.0

    net = AutoModelForDepthEstimation.from_pretrained(lifted_dirs[key]).eval()
    pipe = pipeline("depth-estimation", model=net, image_processor=processor, device="cpu")
    with torch.no_grad():
        reference = pipe(Image.fromarray(image))["predicted_depth"].float()
        depth = model(rgb)[0, 0]
    assert depth.shape == reference.shape == (480, 640)
    mean, _ = _range_relative(depth, reference)
    assert mean < 0.02  # bilinear against the pipeline's bicubic upsampling


def test_model_size_rules_hand_checked():
    # Depth Anything: 518x518 target, keep aspect ratio, multiple of 14. For 480x640 the height
    # factor (1.079) is closer to 1 than the width's (0.809): both sides scale by 518/480, and
    # 640 * 1.0792 = 690.7 rounds to 49 * 14 = 686.
    da = HFPreprocess(size=(518, 518), keep_aspect_ratio=True, multiple=14)
    assert da.model_size(480, 640) == (518, 686)
    assert HFPreprocess(size=(384, 384)).model_size(480, 640) == (384, 384)
    glpn = HFPreprocess(size=None, size_divisor=32)
    assert glpn.model_size(70, 100) == (64, 96)
    assert glpn.model_size(480, 640) == (480, 640)
    # ZoeDepth's class default ensure_multiple_of is 1/32: a 480x640 image padded to 572x746 fits
    # the width (512 / 746 = 0.686 is closer to 1 than 384 / 572), 572 * 0.686 = 392.59 is rounded
    # to 1/32 (392.59375) and truncated to 392
    zoe = HFPreprocess(size=(384, 512), keep_aspect_ratio=True, multiple=1 / 32)
    assert zoe.model_size(572, 746) == (392, 512)


def test_preprocessor_config_is_read_from_the_directory(model_dirs):
    pre = create_backbone("hf", model=str(model_dirs["da-relative"])).preprocess
    assert pre.size == (28, 42)
    assert pre.keep_aspect_ratio and pre.multiple == 14
    assert pre.resample == "bicubic"
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert pre.std == pytest.approx((0.229, 0.224, 0.225))
    glpn = create_backbone("hf", model=str(model_dirs["glpn"])).preprocess
    assert glpn.size is None and glpn.size_divisor == 32 and glpn.mean is None


@pytest.mark.parametrize("key, shape", [("da-relative", (60, 80)), ("glpn", (70, 100))])
def test_pixel_values_match_the_image_processor(model_dirs, key, shape):
    """Our tensor preprocessing agrees with transformers' own processor on a uint8 image."""
    from transformers import AutoImageProcessor

    model = create_backbone("hf", model=str(model_dirs[key]), input_size=list(shape))
    processor = AutoImageProcessor.from_pretrained(model_dirs[key])
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = processor(images=image, return_tensors="pt").pixel_values
    rgb = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ours = model.pixel_values(rgb)
    assert ours.shape == expected.shape
    diff = (ours - expected).abs()
    # the processor resizes 8-bit images (rounding, bicubic overshoot clipped per step)
    assert float(diff.mean()) < 0.01
    assert float(diff.max()) < 0.1


def test_output_resized_to_declared_size_for_any_input(model_dirs):
    model = create_backbone(
        "hf", model=str(model_dirs["da-relative"]), input_size=[40, 56], output_size=[30, 20]
    )
    assert model.info.input_size == (40, 56) and model.info.output_size == (30, 20)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 40, 56)).shape == (1, 1, 30, 20)
        assert model(torch.rand(3, 3, 57, 31)).shape == (3, 1, 30, 20)


def test_config_recreates_the_backbone(model_dirs):
    model = create_backbone("hf", model=str(model_dirs["glpn"]), input_size=[64, 64])
    config = json.loads(json.dumps(model.info.config))  # what a cache records
    again = create_backbone("hf", **config)
    assert again.info == model.info
    rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(again(rgb), model(rgb))


def test_model_given_as_weights(model_dirs):
    model = create_backbone("hf", weights=str(model_dirs["dpt"]))
    assert model.info.output_kind == "disparity"
    assert model.info.config["model"] == str(model_dirs["dpt"].resolve())


def test_output_kind_override(model_dirs):
    model = create_backbone("hf", model=str(model_dirs["dpt"]), output_kind="relative")
    assert model.info.output_kind == "relative"
    with pytest.raises(ConfigError) as err:
        create_backbone("hf", model=str(model_dirs["dpt"]), output_kind="metres")
    assert str(err.value) == (
        "hf: output_kind must be one of metric, relative, disparity, received 'metres'"
    )


def test_finetuned_safetensors_weights_are_loaded(model_dirs, tmp_path):
    from safetensors.torch import save_file

    base = create_backbone("hf", model=str(model_dirs["glpn"]), input_size=[32, 32])
    state = {k: torch.zeros_like(v) for k, v in base.model.state_dict().items()}
    save_file(state, tmp_path / "zeros.safetensors")
    tuned = create_backbone(
        "hf",
        model=str(model_dirs["glpn"]),
        weights=str(tmp_path / "zeros.safetensors"),
        input_size=[32, 32],
    )
    with torch.no_grad():
        out = tuned(torch.rand(1, 3, 32, 32))
    # all-zero weights: the head's sigmoid gives exactly half the max depth everywhere
    torch.testing.assert_close(out, torch.full_like(out, 5.0))


def test_missing_transformers_names_the_extra(model_dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(PluginError) as err:
        create_backbone("hf", model=str(model_dirs["dpt"]))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("the 'hf' backbone needs the transformers package (")
    assert message.endswith("install it with pip install 'refinedepth[hf]'")


def test_uncached_hub_id_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as err:
        create_backbone("hf", model="refinedepth-tests/no-such-model")
    assert str(err.value) == (
        "hf: model 'refinedepth-tests/no-such-model' is not in the local Hugging Face cache and "
        "cannot be downloaded (HF_HUB_OFFLINE is set); fetch it once with network access "
        "(`hf download refinedepth-tests/no-such-model` or `huggingface-cli download "
        "refinedepth-tests/no-such-model`), or pass model=DIR with a directory written by "
        "save_pretrained"
    )


def test_no_model_given():
    with pytest.raises(ConfigError) as err:
        create_backbone("hf")
    assert str(err.value) == (
        "hf: no model given; pass model=DIR (a save_pretrained directory) or model=HUB_ID, "
        "e.g. --backbone-arg model=depth-anything/Depth-Anything-V2-Small-hf"
    )


def test_missing_directory(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError) as err:
        create_backbone("hf", model=missing)
    assert str(err.value) == (
        f"hf: model directory {missing!r} does not exist; pass model=DIR (a save_pretrained "
        "directory) or a hub id such as 'Intel/dpt-large'"
    )


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dpt"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError) as err:
        create_backbone("hf", model=str(tmp_path))
    assert str(err.value) == (
        f"hf: {tmp_path} has only pytorch_model.bin (pickle); refinedepth loads safetensors only: "
        "re-save it with model.save_pretrained(DIR, safe_serialization=True)"
    )


def test_cli_check_and_errors(model_dirs):
    from click.testing import CliRunner

    from refinedepth.cli.main import cli

    runner = CliRunner()
    args = ["backbones", "check", "hf", "--backbone-arg", f"model={model_dirs['da-metric']}"]
    result = runner.invoke(cli, [*args, "--backbone-arg", "input_size=[28,56]"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["info"]["output_kind"] == "metric"
    assert report["output_shape"] == [2, 1, 28, 56]

    result = runner.invoke(cli, ["backbones", "info", "hf"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: hf: no model given; pass model=DIR (a save_pretrained directory) or "
        "model=HUB_ID, e.g. --backbone-arg model=depth-anything/Depth-Anything-V2-Small-hf"
    )


class _Output:
    def __init__(self, predicted_depth, field_of_view=None):
        self.predicted_depth = predicted_depth
        self.field_of_view = field_of_view


class _EchoRed(torch.nn.Module):
    """Stands in for a transformers model: 'depth' = the red channel it was given."""

    def forward(self, pixel_values):
        return _Output(pixel_values[:, 0])


def _info(size):
    from refinedepth.registry import BackboneInfo

    return BackboneInfo("hf", "metric", size, size)


def test_zoedepth_reflection_padding_is_cropped_away():
    from refinedepth.backbones.hf import HFDepthBackbone

    # 8x8 input: ZoeDepth pads int(sqrt(8 / 2) * 3) = 6 px per side -> the model sees 20x20
    pre = HFPreprocess(size=(20, 20), reflect_pad=True)
    model = HFDepthBackbone(_EchoRed(), pre, _info((8, 8)))
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert model.pixel_values(rgb).shape == (2, 3, 20, 20)
    torch.testing.assert_close(model(rgb), rgb[:, :1])


def test_depth_pro_field_of_view_gives_metres():
    from refinedepth.backbones.hf import HFDepthBackbone

    class FovModel(torch.nn.Module):
        def forward(self, pixel_values):
            b = pixel_values.shape[0]
            inverse = torch.full((b, 4, 4), 0.5)  # canonical inverse depth
            return _Output(inverse, field_of_view=torch.tensor([90.0, 60.0])[:b])

    model = HFDepthBackbone(
        FovModel(), HFPreprocess(size=(4, 4)), _info((4, 4)), fov_to_metric=True
    )
    out = model(torch.rand(2, 3, 4, 4))
    # depth = 1 / (inverse * 2 tan(fov / 2)): 90 deg -> 1 / (0.5 * 2) = 1 m; 60 deg -> 1.7321 m
    torch.testing.assert_close(out[0], torch.full((1, 4, 4), 1.0))
    torch.testing.assert_close(
        out[1], torch.full((1, 4, 4), 1.0 / (0.5 * 2 * math.tan(math.pi / 6)))
    )


def test_cached_hub_id_loads_offline(model_dirs, tmp_path, monkeypatch):
    """A hub id already in the Hugging Face cache (the layout `hf download` writes) loads
    without network, with its processor config."""
    import shutil

    import huggingface_hub

    snapshot = tmp_path / "models--refinedepth-tests--tiny-da" / "snapshots" / "0123abcd"
    shutil.copytree(model_dirs["da-relative"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    model = create_backbone("hf", model="refinedepth-tests/tiny-da")
    assert model.info.config["model"] == "refinedepth-tests/tiny-da"
    assert model.preprocess.size == (28, 42)  # from the cached preprocessor_config.json
    assert model.info.output_kind == "disparity"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 28, 42)).shape == (1, 1, 480, 640)


# --------------------------------------------------------------------------- ZoeDepth, Depth Pro,
# Prompt Depth Anything: tiny models built here, compared with their own processors

def _save_tiny_zoedepth(path):
    from transformers import (
        BeitConfig,
        ZoeDepthConfig,
        ZoeDepthForDepthEstimation,
        ZoeDepthImageProcessor,
    )

    torch.manual_seed(0)
    backbone = BeitConfig(
        **_VIT,
        image_size=64,
        patch_size=16,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
        use_relative_position_bias=True,
    )
    config = ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
        bottleneck_features=16,
        num_attractors=[4, 4, 4, 4],
        bin_embedding_dim=16,
        num_relative_features=8,
    )
    net = ZoeDepthForDepthEstimation(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a prediction with structure
        for param in net.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    net.save_pretrained(path)
    # as Intel/zoedepth-nyu-kitti ships it, smaller: keep aspect ratio, multiple of 32, padding
    ZoeDepthImageProcessor(
        size={"height": 64, "width": 96}, keep_aspect_ratio=True, ensure_multiple_of=32
    ).save_pretrained(path)
    return path


def test_zoedepth_matches_its_processor_and_post_processing(tmp_path):
    """ZoeDepth's processor pads, then resizes the float image with align_corners=True and no
    antialiasing; its post-processing removes the padding again."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    path = _save_tiny_zoedepth(tmp_path / "zoedepth")
    model = create_backbone("hf", model=str(path), input_size=[60, 80])
    assert model.info.output_kind == "metric"
    image, rgb = _uint8_image((60, 80))
    processor = AutoImageProcessor.from_pretrained(path)
    expected = processor(images=image, return_tensors="pt").pixel_values
    ours = model.pixel_values(rgb)
    assert ours.shape == expected.shape == (1, 3, 64, 96)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)

    net = AutoModelForDepthEstimation.from_pretrained(path).eval()
    with torch.no_grad():
        outputs = net(pixel_values=expected)
        reference = processor.post_process_depth_estimation(outputs, source_sizes=[(60, 80)])
        depth = model(rgb)[0, 0]
    mean, largest = _range_relative(depth, reference[0]["predicted_depth"])
    assert mean < 0.01 and largest < 0.05  # bilinear against bicubic upsampling


def test_zoedepth_class_default_processor_sizes_as_transformers():
    """A ZoeDepth processor saved with the class defaults says ensure_multiple_of=1/32."""
    from transformers import ZoeDepthImageProcessor

    from refinedepth.backbones.hf import HFDepthBackbone

    processor = ZoeDepthImageProcessor()
    settings = json.loads(processor.to_json_string())
    assert settings["ensure_multiple_of"] == 1 / 32
    pre = HFPreprocess.for_family("zoedepth", settings)
    model = HFDepthBackbone(_EchoRed(), pre, _info((480, 640)))
    image, rgb = _uint8_image((480, 640))
    expected = processor(images=image, return_tensors="pt").pixel_values
    ours = model.pixel_values(rgb)
    assert ours.shape == expected.shape == (1, 3, 392, 512)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_depth_pro_pixel_values_match_its_processor(tmp_path):
    """Depth Pro's processor normalises, then resizes without antialiasing (here 120x160 ->
    128x128: the width shrinks, where antialiasing would blur)."""
    from transformers import (
        AutoImageProcessor,
        DepthProConfig,
        DepthProForDepthEstimation,
        DepthProImageProcessor,
        Dinov2Config,
    )

    def encoder():
        return Dinov2Config(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=16,
            image_size=32,
            patch_size=8,
        )

    torch.manual_seed(0)
    config = DepthProConfig(
        patch_size=32,
        fusion_hidden_size=16,
        intermediate_hook_ids=[1, 0],
        intermediate_feature_dims=[8, 8],
        scaled_images_feature_dims=[16, 16, 8],
        use_fov_model=True,
        image_model_config=encoder(),
        patch_model_config=encoder(),
        fov_model_config=encoder(),
    )
    DepthProForDepthEstimation(config).save_pretrained(tmp_path)
    DepthProImageProcessor(size={"height": 128, "width": 128}).save_pretrained(tmp_path)

    model = create_backbone("hf", model=str(tmp_path), input_size=[120, 160])
    assert model.info.output_kind == "metric"
    image, rgb = _uint8_image((120, 160))
    expected = AutoImageProcessor.from_pretrained(tmp_path)(images=image, return_tensors="pt")
    ours = model.pixel_values(rgb)
    torch.testing.assert_close(ours, expected.pixel_values, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert model(rgb).shape == (1, 1, 120, 160)


@pytest.mark.parametrize("head, value_max", [("relative", math.inf), ("metric", 1.0)])
def test_prompt_depth_anything_without_prompt_is_relative(tmp_path, head, value_max):
    """Prompt Depth Anything maps its head's output to metres only with a prompt depth map
    (output * (max - min) + min of the prompt); unprompted, as the adapter runs it, the output is
    depth up to scale and shift, and the "metric" head's sigmoid stays in (0, 1) whatever
    max_depth says."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    save_tiny_depth_anything(tmp_path, head, max_depth=20, prompt=True)
    _lifted(tmp_path)

    model = create_backbone("hf", model=str(tmp_path), input_size=[56, 84])
    assert model.info.output_kind == "relative"
    assert model.info.value_range == (0.0, value_max)
    image, rgb = _uint8_image((56, 84))
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    net = AutoModelForDepthEstimation.from_pretrained(tmp_path).eval()
    pixel_values = processor(images=image, return_tensors="pt").pixel_values
    with torch.no_grad():
        raw = net(pixel_values=pixel_values)
        reference = processor.post_process_depth_estimation(raw, target_sizes=[(56, 84)])
        depth = model(rgb)[0, 0]
        # what a prompt does: the head's output is mapped to the prompt's 2-7 m
        prompt = torch.linspace(2.0, 7.0, 4 * 6).view(1, 1, 4, 6)
        prompted = net(pixel_values=pixel_values, prompt_depth=prompt).predicted_depth
    mean, _ = _range_relative(depth, reference[0]["predicted_depth"])
    assert mean < 0.02
    assert float(raw.predicted_depth.min()) >= 0.0 and float(raw.predicted_depth.max()) <= value_max
    assert float(prompted.min()) >= 2.0 and float(prompted.max()) <= 2.0 + 5.0 * value_max
