"""Refiner networks and presets: parameter counts, layer lists read back, shapes, configs."""

from __future__ import annotations

import pytest
import torch

from refinedepth.errors import ConfigError
from refinedepth.refiner.models import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    count_parameters,
    describe_layers,
    parse_layers,
)
from refinedepth.refiner.presets import PRESETS, get_preset


def _meta_counts(preset: str, inputs: str) -> tuple[int, int]:
    p = get_preset(preset)
    with torch.device("meta"):
        g = build_generator(p.generator_config(inputs))
        d = build_discriminator(p.discriminator_config(inputs))
    return count_parameters(g), count_parameters(d)


def test_pix2pix_parameter_counts_match_isola_unet256_and_basic_d():
    assert _meta_counts("pix2pix", "rough") == (54_407_809, 2_764_609)
    assert _meta_counts("pix2pix", "rough+rgb") == (54_410_881, 2_767_681)


def test_pix2pix_discriminator_is_70x70():
    assert get_preset("pix2pix").discriminator_config().receptive_field == 70
    assert get_preset("paper-nyu").discriminator_config().receptive_field == 70


@pytest.mark.parametrize(
    "preset, encoder, decoder, disc",
    [
        (
            "paper-nyu",
            "C256-C256-C512-C512-C512-C256-C256-C256",
            "CD512-CD384-C576-C513-C513-C257-C257",
            "C32-C64-C128-C256",
        ),
        (
            "paper-make3d",
            "C256-C512-C512-C512-C512-C256-C256-C256",
            "CD384-CD320-C578-C513-C513-C513-C257",
            "C1-C1-C1-C1-C1",
        ),
    ],
)
def test_paper_presets_build_the_spec_layer_lists(preset, encoder, decoder, disc):
    p = get_preset(preset)
    with torch.device("meta"):
        g = build_generator(p.generator_config())
        d = build_discriminator(p.discriminator_config())
    assert describe_layers(g) == {"encoder": encoder.split("-"), "decoder": decoder.split("-")}
    assert describe_layers(d) == {"layers": disc.split("-")}
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert {m.kernel_size for m in convs} == {(3, 3)} and {m.stride for m in convs} == {(2, 2)}
    # first encoder layer without norm, leaky encoder ReLUs, tanh output
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.encoder[0])
    assert all(isinstance(b[-1], torch.nn.LeakyReLU) and b[-1].negative_slope == 0.2 for b in g.encoder)
    assert all(isinstance(b[-1], torch.nn.ReLU) for b in g.decoder)
    assert isinstance(g.head[-1], torch.nn.Tanh)
    drops = [any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in b) for b in g.decoder]
    assert drops == [True, True, False, False, False, False, False]


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("inputs", ["rough", "rough+rgb", "rgb"])
def test_every_preset_and_input_mode_builds_with_consistent_channels(name, inputs):
    p = get_preset(name)
    with torch.device("meta"):
        g = build_generator(p.generator_config(inputs))
        d = build_discriminator(p.discriminator_config(inputs))
        h, w = p.size
        x = torch.zeros(1, g.config.in_channels, h, w)
        y = g(x)
        logits = d(torch.cat([x, y], dim=1))
    assert y.shape == (1, 1, h, w)
    assert logits.shape[:2] == (1, 1) and logits.shape[-1] > 1


def test_small_preset_forward_and_zero_init_residual_head():
    p = get_preset("small")
    g = build_generator(p.generator_config(), seed=0)
    g.eval()
    x = torch.rand(2, 1, *p.size) * 2 - 1
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, 1, *p.size)
    assert torch.count_nonzero(y) == 0  # residual refiners start as the identity


def test_builders_are_deterministic_per_seed():
    cfg = get_preset("small").generator_config()
    a, b = build_generator(cfg, seed=3), build_generator(cfg, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_kernel3_and_kernel4_generators_preserve_size():
    for k in (3, 4):
        g = build_generator(GeneratorConfig(encoder="C4-C8-C8", decoder="CD8-C4", kernel_size=k, in_channels=2))
        assert g(torch.zeros(1, 2, 32, 48)).shape == (1, 1, 32, 48)


def test_config_round_trip_and_errors():
    g = GeneratorConfig(encoder="C4-C8-C8", decoder=["CD8", "C4"])
    assert GeneratorConfig.from_dict(g.to_dict()) == g
    d = DiscriminatorConfig(layers="C4-C8", strides=(2, 1))
    assert DiscriminatorConfig.from_dict(d.to_dict()) == d
    assert parse_layers("c64-cd128") == ("C64", "CD128")
    with pytest.raises(ConfigError, match=r"bad layer spec 'X12': expected 'Ck' or 'CDk'"):
        parse_layers(["X12"])
    with pytest.raises(ConfigError, match=r"expected len\(decoder\) == len\(encoder\) - 1, got 3 encoder and 1"):
        GeneratorConfig(encoder="C4-C8-C8", decoder="C8")
    with pytest.raises(ConfigError, match=r"unknown refiner preset 'smal': .* did you mean 'small'\?"):
        get_preset("smal")
