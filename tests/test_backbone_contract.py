"""Every registered backbone honours the contract of SPEC §3.1.

Parametrised over ``list_backbones()``: the bundled ones and any installed plugin. Backbones that
cannot be built without options get them from ``_options``; a name this file does not know (a
third-party plugin) is built with its defaults.
"""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refinedepth import create_backbone, list_backbones  # noqa: E402
from refinedepth.contract import (  # noqa: E402
    check_backbone,
    init_output_bias,
    save_backbone_weights,
)
from refinedepth.registry import OUTPUT_KINDS, BackboneInfo  # noqa: E402

from ._helpers_adapters import one_thread  # noqa: E402, F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from ._helpers_adapters import save_tiny_dpt

    return save_tiny_dpt(tmp_path_factory.mktemp("contract-hf") / "dpt")


@pytest.fixture(scope="module")
def files_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract-files")
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(root / f"sample-{i}.npy", rng.uniform(0.5, 9.5, (12, 16)).astype(np.float32))
    return root


def _options(name: str, request, monkeypatch) -> dict:
    if name == "fcrn":  # the exact model is covered by its own tests; a small encoder is enough
        return {
            "encoder": "resnet18",
            "decoder_channels": [64, 32, 16, 8, 4],
            "input_size": [96, 128],
        }
    if name == "hf":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        return {"model": str(request.getfixturevalue("hf_model_dir"))}
    if name == "files":
        return {"root": str(request.getfixturevalue("files_root"))}
    return {}


def _assert_info_complete(name: str, info: BackboneInfo) -> None:
    assert isinstance(info, BackboneInfo)
    assert info.name == name
    assert info.output_kind in OUTPUT_KINDS
    assert all(isinstance(s, int) and s > 0 for s in (*info.input_size, *info.output_size))
    low, high = info.value_range
    assert math.isfinite(low) and low < high
    assert info.description.strip()
    json.dumps(dict(info.config))  # recorded as JSON in caches


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name, request, monkeypatch):
    options = _options(name, request, monkeypatch)
    torch.manual_seed(0)
    model = create_backbone(name, **options)
    _assert_info_complete(name, model.info)
    report = check_backbone(name, **options)
    info = model.info
    assert report["output_shape"] == [2, 1, *info.output_size]
    assert math.isfinite(report["output_min"]) and math.isfinite(report["output_max"])
    low, high = info.value_range
    inside = low <= report["output_min"] and report["output_max"] <= high
    assert (report["warnings"] == []) == inside

    # info.config recreates the backbone: what a cache records is enough to rebuild it
    again = create_backbone(name, **json.loads(json.dumps(dict(info.config))))
    assert again.info == info


# --------------------------------------------------------------------------- trainer hooks

SMALL_FCRN = {
    "encoder": "resnet18",
    "encoder_args": {"channels": [8, 16, 32, 64], "stem_width": 8},
    "input_size": [64, 96],
}


def test_backbone_check_warns_when_output_leaves_its_declared_range():
    # an untrained FCRN on noise: a zero output bias gives values on both sides of 0 m
    torch.manual_seed(0)
    report = check_backbone("fcrn", **SMALL_FCRN)
    assert report["output_min"] < 0.0
    assert report["warnings"] == [
        f"output [{report['output_min']:.4g}, {report['output_max']:.4g}] leaves the declared value_range "
        "[0, 10] on a random input; untrained weights may do this, trained ones should not"
    ]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _perturbed_fcrn():
    torch.manual_seed(0)
    model = create_backbone("fcrn", **SMALL_FCRN)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    return model


def test_save_backbone_weights_round_trip_through_the_backbone_hook(tmp_path, umask_022):
    from safetensors import safe_open

    model = _perturbed_fcrn()
    path = tmp_path / "run" / "backbone.safetensors"
    save_backbone_weights(
        torch.nn.DataParallel(model),  # wrappers are unwrapped: the file is the backbone's format
        path,
        backbone="fcrn",
        config=model.info.config,
        metadata={"epoch": "3"},
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["backbone.safetensors"]  # no temp left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "refinedepth.fcrn" and meta["epoch"] == "3"
    loaded = create_backbone("fcrn", weights=path)  # no options: the metadata carries them
    assert loaded.info == model.info
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_save_backbone_weights_generic_module_is_plain_safetensors(tmp_path):
    from safetensors.torch import load_file

    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    old = os.umask(0o027)
    try:
        save_backbone_weights(
            net, tmp_path / "w.safetensors", backbone="my-net", config={"width": 4},
            metadata={"epoch": "1"},
        )
    finally:
        os.umask(old)
    path = tmp_path / "w.safetensors"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta == {
        "format": "refinedepth.backbone",
        "backbone": "my-net",
        "config": '{"width": 4}',
        "epoch": "1",
    }
    state = load_file(str(path))
    assert state.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert torch.equal(state[key], value)


def test_save_backbone_weights_failure_keeps_the_old_file(tmp_path):
    class Broken(torch.nn.Module):
        def save_weights(self, path, metadata):
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise OSError("disk full")

    path = tmp_path / "backbone.safetensors"
    path.write_bytes(b"previous epoch")
    with pytest.raises(OSError, match="disk full"):
        save_backbone_weights(Broken(), path, backbone="x", config={}, metadata={})
    assert path.read_bytes() == b"previous epoch"
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.safetensors"]


def test_save_fcrn_weights_keeps_working_with_umask_permissions(tmp_path, umask_022):
    from refinedepth.backbones.fcrn import save_fcrn_weights

    model = _perturbed_fcrn()
    path = save_fcrn_weights(model, tmp_path / "fcrn.safetensors", model.info.config, note="x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert create_backbone("fcrn", weights=path).info == model.info


def test_init_output_bias_hook():
    model = create_backbone("fcrn", **SMALL_FCRN)
    assert init_output_bias(model, 2.5) is True
    assert torch.equal(model.decoder.pred.bias, torch.full((1,), 2.5))
    with torch.no_grad():  # zero weights in ConvPred: the prediction is the bias everywhere
        model.decoder.pred.weight.zero_()
        out = model(torch.rand(1, 3, 64, 96))
    torch.testing.assert_close(out, torch.full_like(out, 2.5))
    assert init_output_bias(torch.nn.Conv2d(3, 1, 1), 2.5) is False  # no hook: nothing touched
