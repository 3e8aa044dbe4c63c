"""Refiner networks and presets: parameter counts, layer lists read back, shapes, configs."""

from __future__ import annotations

import dataclasses

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


class _IsolaBlock(torch.nn.Module):
    """Isola et al.'s ``UnetSkipConnectionBlock`` (pytorch-CycleGAN-and-pix2pix, networks.py),
    written from its structure: pre-activation, in-place activations, ``cat([x, model(x)])``."""

    def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False, dropout=False):
        super().__init__()
        nn = torch.nn
        self.outermost = outermost
        downconv = nn.Conv2d(input_nc or outer, inner, 4, 2, 1, bias=False)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            model = [downconv, sub, uprelu, nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            model = [downrelu, downconv, uprelu, nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False),
                     nn.BatchNorm2d(outer)]
        else:
            model = [downrelu, downconv, nn.BatchNorm2d(inner), sub, uprelu,
                     nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            model += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def _isola_unet(ngf: int, num_downs: int) -> torch.nn.Module:
    """Isola's ``UnetGenerator(1, 1, num_downs, ngf, use_dropout=True)``."""
    block = _IsolaBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        block = _IsolaBlock(ngf * 8, ngf * 8, sub=block, dropout=True)
    block = _IsolaBlock(ngf * 4, ngf * 8, sub=block)
    block = _IsolaBlock(ngf * 2, ngf * 4, sub=block)
    block = _IsolaBlock(ngf, ngf * 2, sub=block)
    return _IsolaBlock(1, ngf, input_nc=1, sub=block, outermost=True)


def test_pix2pix_generator_computes_isolas_unet():
    # the pix2pix preset's flags on Isola's layout at a small width (ngf 4, 6 levels): Isola's
    # weights copied in (its concatenations put the skip first), the same output in eval mode
    import dataclasses

    from refinedepth.refiner.models import parse_layer

    ngf, levels = 4, 6
    torch.manual_seed(0)
    ref = _isola_unet(ngf, levels).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # running statistics that matter
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
    preset = get_preset("pix2pix").generator_config()
    widths = [ngf, ngf * 2, ngf * 4] + [ngf * 8] * (levels - 3)

    encoder = tuple(f"C{w}" for w in widths)
    # Isola's decoder: the innermost layer without dropout, then its dropout layers, then 256-128-64
    decoder = tuple(("CD" if parse_layer(s)[1] else "C") + str(w)
                    for s, w in zip(preset.decoder[:1] + preset.decoder[-(levels - 2):], widths[-2::-1]))
    assert preset.skip_relu
    ours = build_generator(dataclasses.replace(preset, encoder=encoder, decoder=decoder)).eval()

    blocks, b = [], ref
    while True:
        blocks.append(b)
        subs = [m for m in b.model if isinstance(m, _IsolaBlock)]
        if not subs:
            break
        b = subs[0]
    convs = lambda blk, kind: [m for m in blk.model if type(m) is kind]  # noqa: E731
    bns = lambda blk: [m for m in blk.model if isinstance(m, torch.nn.BatchNorm2d)]  # noqa: E731
    with torch.no_grad():
        for i, blk in enumerate(blocks):  # encoder level i: Isola's block i, outermost first
            ours.encoder[i][0].weight.copy_(convs(blk, torch.nn.Conv2d)[0].weight)
            if 0 < i < levels - 1:
                ours.encoder[i][1].load_state_dict(bns(blk)[0].state_dict())
        for j, blk in enumerate(blocks[::-1][:-1]):  # decoder layer j: the up path of block n-1-j
            up = convs(blk, torch.nn.ConvTranspose2d)[0].weight
            if j > 0:  # Isola's input is cat(skip, decoder); ours cat(decoder, skip)
                half = up.shape[0] // 2
                up = torch.cat([up[half:], up[:half]])
            ours.decoder[j][0].weight.copy_(up)
            ours.decoder[j][1].load_state_dict(bns(blk)[-1].state_dict())
        head = convs(blocks[0], torch.nn.ConvTranspose2d)[0]
        half = head.weight.shape[0] // 2
        ours.output_conv.weight.copy_(torch.cat([head.weight[half:], head.weight[:half]]))
        ours.output_conv.bias.copy_(head.bias)
        x = torch.randn(2, 1, 64, 64)
        want = ref(x.clone())
        got = ours(x)
        assert (want - got).abs().max() < 1e-5
        ours.config = dataclasses.replace(ours.config, skip_relu=False)  # the notation's reading differs
        assert (want - ours(x)).abs().max() > 1e-2


def test_pix2pix_parameter_counts_match_isola_unet256_and_basic_d():
    assert _meta_counts("pix2pix", "rough") == (54_407_809, 2_764_609)
    assert _meta_counts("pix2pix", "rough+rgb") == (54_410_881, 2_767_681)


@pytest.mark.parametrize("preset", ["pix2pix", "paper-nyu", "paper-make3d"])
def test_discriminators_see_the_papers_70x70_patches(preset):
    # measured, not computed from the strides: the input pixels that reach one output logit
    config = get_preset(preset).discriminator_config()
    assert config.receptive_field == 70
    torch.manual_seed(0)
    d = build_discriminator(config).eval()
    x = torch.randn(1, config.in_channels, 160, 160, requires_grad=True)
    logits = d(x)
    i, j = logits.shape[-2] // 2, logits.shape[-1] // 2
    logits[0, 0, i, j].backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(dim=1).nonzero().flatten(), seen.any(dim=0).nonzero().flatten()
    assert (int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1) == (70, 70)


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


# -- upsample="resize": resize-convolution decoder (issue 14) ----------------------------------


def _unet_parameters(preset: str, upsample: str, in_channels: int = 1) -> int:
    """Hand count (Isola's notation, independent of the builder): encoder convolutions without
    bias, BatchNorm (2 per channel) on all encoder layers but the first and the innermost and on
    every decoder layer; decoder layer j sees its input concatenated with encoder layer n-2-j's
    output; the output layer has a bias. Transposed: k x k kernels; resize: 3 x 3."""
    p = get_preset(preset)
    enc = [int(s.lstrip("CD")) for s in p.encoder]
    dec = [int(s.lstrip("CD")) for s in p.decoder]
    k, n = p.kernel_size, len(enc)
    ku = k if upsample == "transposed" else 3
    total, cin = 0, in_channels
    for i, c in enumerate(enc):
        total += cin * c * k * k + (2 * c if 0 < i < n - 1 else 0)
        cin = c
    for j, c in enumerate(dec):
        total += cin * c * ku * ku + 2 * c
        cin = c + enc[n - 2 - j]
    return total + cin * 1 * ku * ku + 1


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "guided"])
def test_default_upsample_is_transposed_and_counts_unchanged(name):
    p = get_preset(name)
    cfg = p.generator_config()
    assert cfg.upsample == "transposed"
    with torch.device("meta"):
        g = build_generator(cfg)
    assert count_parameters(g) == _unet_parameters(name, "transposed")
    kinds = [type(m) for m in g.modules()]
    assert kinds.count(torch.nn.ConvTranspose2d) == len(p.decoder) + 1
    assert torch.nn.Upsample not in kinds and torch.nn.ReplicationPad2d not in kinds


def test_known_parameter_counts_for_both_upsamplings():
    # pix2pix's published count, and the small preset: 2,297,025 with 4x4 transposed convolutions;
    # its up-layers' cin*cout sum is 128*128 + 256*128 + 256*96 + 192*64 + 128*32 + 64*1 = 90,176,
    # so 3x3 resize convolutions have 7 * 90,176 fewer weights.
    assert _unet_parameters("pix2pix", "transposed") == 54_407_809
    assert _unet_parameters("small", "transposed") == 2_297_025
    assert _unet_parameters("small", "resize") == 2_297_025 - 7 * 90_176


@pytest.mark.parametrize("name", list(PRESETS))
def test_resize_generator_layers_counts_and_shapes(name):
    p = get_preset(name)
    cfg = dataclasses.replace(p.generator_config(), upsample="resize")
    with torch.device("meta"):
        g = build_generator(cfg)
        y = g(torch.zeros(1, 1, *p.size))
    assert y.shape == (1, 1, *p.size)
    assert count_parameters(g) == _unet_parameters(name, "resize")
    assert describe_layers(g) == {"encoder": list(p.encoder), "decoder": list(p.decoder)}
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    for block in [*g.decoder, g.head]:
        up, pad, conv = block[0], block[1], block[2]
        assert isinstance(up, torch.nn.Upsample) and up.scale_factor == 2.0
        assert up.mode == "bilinear" and not up.align_corners
        assert isinstance(pad, torch.nn.ReplicationPad2d) and tuple(pad.padding) == (1, 1, 1, 1)
        assert type(conv) is torch.nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        assert conv.padding == (0, 0) and conv.padding_mode == "zeros"
    assert g.output_conv is g.head[2] and g.output_conv.bias is not None
    assert isinstance(g.head[-1], torch.nn.Tanh)
    assert [any(isinstance(m, torch.nn.Dropout) for m in b) for b in g.decoder] == [
        s.startswith("CD") for s in p.decoder
    ]


@pytest.mark.parametrize("k", [3, 4])
def test_resize_generator_preserves_size_and_zero_init(k):
    cfg = GeneratorConfig(encoder="C4-C8-C8", decoder="CD8-C4", kernel_size=k, in_channels=2,
                          upsample="resize", zero_init_output=True)
    g = build_generator(cfg, seed=0).eval()
    y = g(torch.rand(1, 2, 32, 48))
    assert y.shape == (1, 1, 32, 48)
    assert torch.count_nonzero(y) == 0  # a residual refiner starts as the identity


def test_resize_block_is_bilinear_then_replicated_3x3():
    """Reference from the definition (Odena et al. 2016): bilinear x2 with half-pixel centres,
    edge-replicated one-pixel border, 3x3 correlation; evaluated in NumPy."""
    np = pytest.importorskip("numpy")
    g = build_generator(GeneratorConfig(encoder="C3-C2", decoder="C2", upsample="resize"), seed=1).eval()
    block = g.decoder[0]
    x = torch.rand(1, 2, 3, 4, generator=torch.Generator().manual_seed(0))
    xs = x[0].numpy().astype(np.float64)

    def up1(a, axis):  # output i samples input position (i + 0.5) / 2 - 0.5, clamped at edges
        n = a.shape[axis]
        pos = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        t = pos - lo
        shape = [1] * a.ndim
        shape[axis] = -1
        return np.take(a, lo, axis) * (1 - t.reshape(shape)) + np.take(a, hi, axis) * t.reshape(shape)

    u = np.pad(up1(up1(xs, 1), 2), ((0, 0), (1, 1), (1, 1)), mode="edge")
    w = block[2].weight.detach().numpy().astype(np.float64)
    conv = np.zeros((2, 6, 8))
    for o in range(2):
        for yy in range(6):
            for xx in range(8):
                conv[o, yy, xx] = (w[o] * u[:, yy : yy + 3, xx : xx + 3]).sum()
    bn = block[3]
    scale = bn.weight.detach().numpy() / np.sqrt(bn.running_var.numpy() + bn.eps)
    ref = np.maximum(conv * scale[:, None, None] + (bn.bias.detach().numpy() - bn.running_mean.numpy() * scale)[:, None, None], 0)
    with torch.no_grad():
        np.testing.assert_allclose(block(x)[0].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_upsample_config_round_trip_old_dicts_and_errors():
    cfg = GeneratorConfig(encoder="C4-C8-C8", decoder="CD8-C4", upsample="resize")
    assert cfg.to_dict()["upsample"] == "resize"
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    # a checkpoint written before the option existed has no "upsample" key: transposed
    old = get_preset("paper-nyu").generator_config().to_dict()
    del old["upsample"]
    loaded = GeneratorConfig.from_dict(old)
    assert loaded.upsample == "transposed" and loaded == get_preset("paper-nyu").generator_config()
    with pytest.raises(ConfigError, match=r"generator: unknown upsample 'nearest': expected one of transposed, resize"):
        GeneratorConfig(encoder="C4-C8", decoder="C4", upsample="nearest")


def _stride_energy_share(y: torch.Tensor, periods=(2, 4, 8)) -> float:
    """Mean share of the non-DC 2D spectral energy at bins (u, v) that are multiples of
    (H/P, W/P) for some period P (NumPy FFT)."""
    np = pytest.importorskip("numpy")
    a = y[:, 0].double().numpy()
    h, w = a.shape[-2:]
    e = np.abs(np.fft.fft2(a)) ** 2
    u, v = np.arange(h)[:, None], np.arange(w)[None, :]
    mask = np.zeros((h, w), bool)
    for p in periods:
        mask |= (u % (h // p) == 0) & (v % (w // p) == 0)
    mask[0, 0] = False
    total = e.sum((-2, -1)) - e[:, 0, 0]
    return float((e[:, mask].sum(-1) / total).mean())


def test_untrained_resize_decoder_has_no_checkerboard():
    """An untrained transposed-convolution U-Net puts a large share of its output's energy at the
    stride frequencies (the checkerboard); the resize decoder, on the same weights' statistics and
    a smooth input with no energy there, almost none."""
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    spec = np.fft.fft2(rng.standard_normal((2, 128, 128)))
    f = np.abs(np.fft.fftfreq(128) * 128)
    spec[:, (f[:, None] > 10) | (f[None, :] > 10)] = 0  # low-pass: nothing at periods <= 8 px
    x = torch.from_numpy(np.fft.ifft2(spec).real).float()[:, None]
    x = x / x.abs().max()
    assert _stride_energy_share(x) < 1e-12
    shares = {}
    for up in ("transposed", "resize"):
        cfg = dataclasses.replace(get_preset("small").generator_config(), upsample=up, zero_init_output=False)
        g = build_generator(cfg, seed=0).eval()
        with torch.no_grad():
            y = g(x)
        assert float(y.std()) > 1e-4
        shares[up] = _stride_energy_share(y)
    assert shares["transposed"] > 0.1
    assert shares["resize"] < 0.02 and shares["resize"] < shares["transposed"] / 20


def test_the_guided_preset_upsamples_by_resize_convolution():
    p = get_preset("guided")
    cfg = p.generator_config()
    assert cfg.upsample == "resize" and p.head == "guided" and p.residual
    with torch.device("meta"):
        g = build_generator(cfg)
    assert count_parameters(g) == _unet_parameters("guided", "resize")
    assert torch.nn.ConvTranspose2d not in [type(m) for m in g.modules()]


def test_paper_presets_augment_as_the_paper_says():
    # §4.2 expands the Make3D pairs by scale, flips and brightness; for NYU it names none
    from refinedepth.config import TrainConfig

    def resolved(preset):
        return TrainConfig(train="t.h5", out="run", preset=preset).effective_augment

    assert resolved("paper-make3d") == ("hflip", "scale", "brightness")
    assert resolved("paper-nyu") == () and resolved("pix2pix") == ()
