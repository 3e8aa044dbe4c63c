"""``wrap_backbone``: any module or callable becomes a backbone."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import refinedepth  # noqa: E402
from refinedepth import create_backbone, register_backbone  # noqa: E402
from refinedepth.backbones.wrap import WrappedBackbone, wrap_backbone  # noqa: E402
from refinedepth.contract import check_backbone  # noqa: E402
from refinedepth.errors import ConfigError, ShapeError  # noqa: E402
from refinedepth.registry import unregister_backbone  # noqa: E402


def test_lazy_reexport():
    assert refinedepth.wrap_backbone is wrap_backbone


def test_plain_function_with_range_and_normalisation():
    seen = {}

    def grey_depth(x):  # a "model" that returns [B,h,w]
        seen["x"] = x
        return x.mean(dim=1)

    backbone = wrap_backbone(
        grey_depth,
        name="grey",
        output_kind="relative",
        input_size=(2, 3),
        input_range="0-255",
        mean=(10.0, 20.0, 30.0),
        std=2.0,
    )
    assert isinstance(backbone, torch.nn.Module)
    info = backbone.info
    assert (info.name, info.output_kind, info.input_size, info.output_size) == (
        "grey",
        "relative",
        (2, 3),
        (2, 3),
    )
    assert info.value_range == (0.0, math.inf)
    rgb = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 3).contiguous()
    out = backbone(rgb)
    # hand-computed: R (0*255-10)/2 = -5, G (127.5-20)/2 = 53.75, B (255-30)/2 = 112.5
    torch.testing.assert_close(seen["x"][0, :, 0, 0], torch.tensor([-5.0, 53.75, 112.5]))
    assert out.shape == (1, 1, 2, 3)
    torch.testing.assert_close(out, torch.full((1, 1, 2, 3), (-5.0 + 53.75 + 112.5) / 3))


def test_module_output_resized_bilinear_to_output_size():
    class TwoColumns(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, x):
            b = x.shape[0]
            return self.scale * torch.tensor([[[[2.0, 6.0]]]]).expand(b, 1, 1, 2)

    net = TwoColumns()
    backbone = wrap_backbone(
        net, name="cols", output_kind="metric", input_size=(4, 4), output_size=(1, 4)
    )
    assert list(backbone.parameters()) == [net.scale]  # .to()/.eval()/optimisers reach the model
    out = backbone(torch.rand(3, 3, 4, 4))
    # bilinear 1x2 -> 1x4 (half-pixel centres): a, 0.75a + 0.25b, 0.25a + 0.75b, b
    expected = torch.tensor([2.0, 3.0, 5.0, 6.0]).view(1, 1, 1, 4).expand(3, 1, 1, 4)
    torch.testing.assert_close(out, expected)


def test_bound_method_keeps_its_module_registered():
    net = torch.nn.Conv2d(3, 1, 1)
    backbone = wrap_backbone(net.forward, name="m", output_kind="relative", input_size=(4, 4))
    assert list(backbone.parameters()) == list(net.parameters())
    assert backbone(torch.rand(1, 3, 4, 4)).shape == (1, 1, 4, 4)


def test_hf_style_output_object_is_accepted():
    class Output:
        def __init__(self, depth):
            self.predicted_depth = depth

    backbone = wrap_backbone(
        lambda x: Output(x[:, 0]), name="obj", output_kind="disparity", input_size=(5, 7)
    )
    assert backbone(torch.rand(2, 3, 5, 7)).shape == (2, 1, 5, 7)


def test_ids_are_passed_through_when_asked():
    calls = []

    def by_id(x, ids):
        calls.append(list(ids))
        return torch.ones(x.shape[0], 1, 4, 4)

    backbone = wrap_backbone(
        by_id, name="ids", output_kind="metric", input_size=(4, 4), accepts_ids=True
    )
    assert backbone.accepts_ids
    backbone(torch.rand(2, 3, 4, 4), ids=["a", "b/c"])
    assert calls == [["a", "b/c"]]


def test_registered_wrapped_backbone_passes_the_contract():
    def factory(weights=None, width=4):
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.Conv2d(width, 1, 1)
        )
        return wrap_backbone(
            net,
            name="test-wrapped",
            output_kind="metric",
            input_size=(16, 24),
            output_size=(8, 12),
            config={"width": width},
        )

    register_backbone("test-wrapped", factory)
    try:
        model = create_backbone("test-wrapped", width=2)
        assert isinstance(model, WrappedBackbone) and model.info.config == {"width": 2}
        report = check_backbone("test-wrapped")
        assert report["output_shape"] == [2, 1, 8, 12]
    finally:
        unregister_backbone("test-wrapped")


def test_bad_output_kind():
    with pytest.raises(ConfigError) as err:
        wrap_backbone(lambda x: x, name="x", output_kind="metres", input_size=(4, 4))
    assert str(err.value) == (
        "wrap_backbone: output_kind must be one of metric, relative, disparity, received 'metres'"
    )


def test_bad_input_range_and_stats():
    with pytest.raises(ConfigError) as err:
        wrap_backbone(
            lambda x: x, name="x", output_kind="metric", input_size=(4, 4), input_range="0-65535"
        )
    assert (
        str(err.value) == "wrap_backbone: input_range must be '0-1' or '0-255', received '0-65535'"
    )
    with pytest.raises(ConfigError) as err:
        wrap_backbone(
            lambda x: x, name="x", output_kind="metric", input_size=(4, 4), mean=(0.5, 0.5)
        )
    assert str(err.value) == "wrap_backbone: mean must have 3 values (R, G, B), received [0.5, 0.5]"
    with pytest.raises(ConfigError) as err:
        wrap_backbone(object(), name="x", output_kind="metric", input_size=(4, 4))
    assert str(err.value) == "wrap_backbone: expected an nn.Module or a callable, received object"


def test_wrong_output_shape_is_reported():
    backbone = wrap_backbone(lambda x: x, name="rgb-echo", output_kind="metric", input_size=(4, 4))
    with pytest.raises(ShapeError) as err:
        backbone(torch.rand(2, 3, 4, 4))
    assert str(err.value) == (
        "backbone 'rgb-echo': expected depth [B,1,h,w] or [B,h,w] with B=2, "
        "received shape [2, 3, 4, 4]"
    )


def test_wrong_input_shape_is_reported():
    backbone = wrap_backbone(lambda x: x[:, 0], name="chk", output_kind="metric", input_size=(4, 4))
    with pytest.raises(ShapeError) as err:
        backbone(torch.rand(4, 4, 3))
    assert str(err.value) == (
        "backbone 'chk': expected RGB [B,3,H,W] in [0,1], received shape [4, 4, 3]; "
        "add a batch dimension or move channels first (rgb.permute(0,3,1,2))"
    )
