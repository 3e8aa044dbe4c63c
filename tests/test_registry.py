"""The backbone registry: registration, lookup, did-you-mean, BackboneInfo validation."""

from __future__ import annotations

import pytest

from refinedepth import registry
from refinedepth.errors import BackboneNotFoundError, PluginError
from refinedepth.registry import BackboneInfo


def _info(name="toy", kind="metric"):
    return BackboneInfo(name=name, output_kind=kind, input_size=(8, 8), output_size=(4, 4))


@pytest.fixture
def toy():
    import torch

    class Toy(torch.nn.Module):
        def __init__(self, scale=1.0):
            super().__init__()
            self.scale = scale
            self.info = _info()

        def forward(self, rgb):
            return self.scale * rgb.mean(1, keepdim=True)[..., ::2, ::2] + 1.0

    def factory(weights=None, scale=1.0):
        return Toy(scale)

    registry.register_backbone("toy-test", factory)
    yield factory
    registry.unregister_backbone("toy-test")


def test_bundled_backbones_listed():
    names = registry.list_backbones()
    assert {"fcrn", "hf", "files"} <= set(names)
    assert registry.backbone_source("fcrn") == ("refinedepth", "refinedepth.backbones.fcrn:create_fcrn")
    assert registry.list_backbones("f*") == sorted(n for n in names if n.startswith("f"))
    assert registry.list_backbones("nothing-matches-*") == []


def test_register_and_create(toy):
    import torch

    assert "toy-test" in registry.list_backbones()
    model = registry.create_backbone("toy-test", scale=2.0)
    assert model.scale == 2.0
    out = model(torch.zeros(1, 3, 8, 8))
    assert out.shape == (1, 1, 4, 4) and torch.all(out == 1.0)
    assert registry.backbone_info("toy-test") == _info()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_backbone("toy-test", toy)


def test_register_as_decorator_with_static_info():
    @registry.register_backbone("toy-static", info=_info("toy-static", "disparity"))
    def factory(weights=None):  # never called by backbone_info
        raise AssertionError("backbone_info must use the static info")

    try:
        assert registry.backbone_info("toy-static").output_kind == "disparity"
    finally:
        registry.unregister_backbone("toy-static")


def test_unknown_name_did_you_mean(toy):
    with pytest.raises(BackboneNotFoundError, match=r"unknown backbone 'fcnr'; did you mean 'fcrn'\?"):
        registry.create_backbone("fcnr")
    with pytest.raises(BackboneNotFoundError, match=r"did you mean one of: .*fcrn"):
        registry.backbone_info("nosuch")
    # LookupError subclass so generic handlers work
    with pytest.raises(LookupError):
        registry.get_factory("toy-tset")


def test_factory_without_info_is_a_plugin_error():
    import torch

    registry.register_backbone("no-info", lambda weights=None: torch.nn.Identity())
    try:
        with pytest.raises(PluginError, match="without a BackboneInfo"):
            registry.create_backbone("no-info")
    finally:
        registry.unregister_backbone("no-info")


def test_unexpected_option_is_reported(toy):
    with pytest.raises(PluginError, match="does not accept these options"):
        registry.create_backbone("toy-test", nonsense=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"output_kind": "metres"}, "output_kind must be one of"),
        ({"input_size": (0, 4)}, "input_size must be"),
        ({"output_size": (4,)}, "output_size must be"),
    ],
)
def test_backbone_info_validation(kwargs, message):
    base = dict(name="x", output_kind="metric", input_size=(4, 4), output_size=(4, 4))
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        BackboneInfo(**base)


def test_backbone_info_round_trip():
    info = BackboneInfo("x", "relative", (228, 304), (128, 160), (0, 10), {"encoder": "resnet18"}, "d")
    again = BackboneInfo.from_dict(info.to_dict())
    assert again == info
    assert again.input_size == (228, 304)
