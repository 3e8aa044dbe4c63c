"""The bundled FCRN backbone (SPEC §3.3): exact architecture, timm encoders, weights IO."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refinedepth.backbones.fcrn import CaffeResNet50, create_fcrn, save_fcrn_weights
from refinedepth.contract import check_backbone
from refinedepth.errors import CheckpointError, ConfigError, ShapeError
from refinedepth.registry import backbone_info, create_backbone

SMALL = {"encoder": "resnet18", "encoder_args": {"channels": [8, 16, 32, 64], "stem_width": 8}, "input_size": [64, 96]}


@pytest.fixture(scope="module")
def exact():
    return create_backbone("fcrn")


def test_exact_parameter_count_and_output_shape(exact):
    assert sum(p.numel() for p in exact.parameters() if p.requires_grad) == 63_572_737
    with torch.no_grad():
        out = exact(torch.rand(1, 3, 228, 304))
    assert out.shape == (1, 1, 128, 160)
    info = exact.info
    assert (info.name, info.output_kind) == ("fcrn", "metric")
    assert info.input_size == (228, 304) and info.output_size == (128, 160)
    assert info.config["encoder"] == "laina-resnet50"


def test_static_info_needs_no_model():
    info = backbone_info("fcrn")
    assert info.input_size == (228, 304) and info.output_size == (128, 160)


def test_exact_scales_input_to_0_255(exact):
    """Laina's model takes raw pixel values: forward(x) == decoder(encoder(255 x))."""
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(exact(x), exact.decoder(exact.encoder(x * 255.0)))


@pytest.mark.parametrize("size", [(228, 304), (57, 75), (64, 81)])
def test_caffe_stem_pads_like_network_py(size):
    """conv1 7x7/2: network.py's conv 'SAME' = tf.pad 3 on every side + 'VALID' (not TF-native
    SAME); pool1 3x3/2: TF-native 'SAME' max pool (extra pixel after, padding never wins)."""
    torch.manual_seed(0)
    enc = CaffeResNet50().eval()
    x = torch.randn(1, 3, *size)

    def tf_same(n, k, s):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2

    ref = F.conv2d(F.pad(x, (3, 3, 3, 3)), enc.conv1.weight, enc.conv1.bias, stride=2)
    ref = F.relu(enc.bn_conv1(ref))
    assert ref.shape[-2:] == (-(-size[0] // 2), -(-size[1] // 2))
    if size == (228, 304):
        assert ref.shape[-2:] == (114, 152)  # pool1 sees 114x152: pads 0 before, 1 after
    (t, b), (lf, r) = tf_same(ref.shape[-2], 3, 2), tf_same(ref.shape[-1], 3, 2)
    ref = F.max_pool2d(F.pad(ref, (lf, r, t, b), value=float("-inf")), 3, 2)
    captured = {}
    enc.res2.register_forward_pre_hook(lambda m, args: captured.setdefault("x", args[0]))
    with torch.no_grad():
        enc(x)
    assert captured["x"].shape == ref.shape
    torch.testing.assert_close(captured["x"], ref.detach())
    assert enc.pool1.ceil_mode and enc.pool1.padding == 0


def test_exact_output_has_network_py_relu_timm_flavour_has_none():
    """ConvPred is network.py's conv with its default relu=True; the timm flavour has no ReLU."""
    exact = create_fcrn()
    assert exact.decoder.output_relu
    small = create_fcrn(**SMALL)
    assert not small.decoder.output_relu
    with torch.no_grad():
        small.decoder.pred.bias.fill_(-100.0)
        assert (small(torch.rand(1, 3, 64, 96)) < 0).all()


def test_caffe_blocks_stride_on_first_1x1(exact):
    for stage in (3, 4, 5):
        block = getattr(exact.encoder, f"res{stage}")[0]
        assert block.branch2a.stride == (2, 2) and block.branch2b.stride == (1, 1)
        assert block.branch1.stride == (2, 2)
        assert block.branch2a.bias is None


def test_timm_encoder_decoder_sized_from_feature_info():
    model = create_fcrn(**SMALL)
    assert model.encoder.out_channels == 64
    assert model.decoder_channels == [32, 16, 8, 4, 2]
    assert model.info.output_size == (32, 48)  # encoder /32, decoder x16
    model.train()
    out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 32, 48)
    model2 = create_fcrn(encoder="resnet18", input_size=[96, 128], decoder_channels=[64, 32, 32, 16, 16])
    assert model2.info.output_size == (48, 64)
    assert model2.decoder.pred.in_channels == 16


def test_config_recreates_model_and_contract_holds():
    model = create_backbone("fcrn", **SMALL)
    again = create_backbone("fcrn", **json.loads(json.dumps(model.info.config)))
    assert again.info == model.info
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    report = check_backbone("fcrn", **SMALL)
    assert report["output_shape"] == [2, 1, 32, 48]


def test_option_errors():
    with pytest.raises(ConfigError, match=r"fcrn: unknown option\(s\) \['encodr'\]; known options are"):
        create_backbone("fcrn", encodr="resnet18")
    with pytest.raises(ConfigError, match="cannot build timm encoder 'no_such_net'"):
        create_backbone("fcrn", encoder="no_such_net")
    with pytest.raises(ConfigError, match="input_size must be"):
        create_backbone("fcrn", encoder="resnet18", input_size=[10, 10])
    model = create_fcrn(**SMALL)
    with pytest.raises(ShapeError, match=r"fcrn expects RGB as \[B,3,H,W\] in \[0,1\], got \[3, 64, 96\]"):
        model(torch.rand(3, 64, 96))


def test_weights_round_trip_and_config_from_metadata(tmp_path):
    torch.manual_seed(0)
    model = create_fcrn(**SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    path = save_fcrn_weights(model, tmp_path / "run" / "backbone.safetensors", model.info.config)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref = model.eval()(x)
    # by file with no options (the metadata supplies them), and by directory
    for weights in (path, tmp_path / "run"):
        loaded = create_backbone("fcrn", weights=weights)
        assert loaded.info.config == model.info.config
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), ref)
    with pytest.raises(ConfigError, match=r"were made with encoder_args=.* but encoder_args=\{\} was requested"):
        create_backbone("fcrn", weights=path, encoder_args={})
    with pytest.raises(CheckpointError, match="no backbone.safetensors in this directory"):
        create_backbone("fcrn", weights=tmp_path)


def test_nonfinite_free_on_real_frame_if_available(exact):
    """Smoke test on one real Kinect frame (skipped when the data folder is absent)."""
    from pathlib import Path

    from PIL import Image

    root = Path("/work/shared/data/7scenes-redkitchen")
    frames = sorted((root / "rgb").glob("*.jpg"))[:1] if root.is_dir() else []
    if not frames:
        pytest.skip("7scenes-redkitchen frames not available")
    rgb = np.asarray(Image.open(frames[0]).convert("RGB").resize((304, 228)), dtype=np.float32) / 255
    with torch.no_grad():
        out = exact(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    assert out.shape == (1, 1, 128, 160) and torch.isfinite(out).all()
