"""The refiner's fast paths compute the same function as the plain modules (issue 8).

References are the plain eager modules (BatchNorm in eval mode, dropout off) and, for the
BatchNorm folding, a NumPy computation; tolerances are absolute on outputs in [-1, 1] or relative
to the largest value.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from refinedepth.errors import ConfigError
from refinedepth.refiner import fast
from refinedepth.refiner.fast import (
    FastInference,
    FusedConv,
    fold_batchnorm,
    optimize_for_inference,
    prepare_for_training,
)
from refinedepth.refiner.models import build_discriminator, build_generator
from refinedepth.refiner.presets import PRESETS, get_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

ATOL = 1e-5


from ._threads import one_torch_thread  # noqa: E402,F401  (autouse fixture)


def _random_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> None:
    with torch.no_grad():
        n = bn.num_features
        bn.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def _generator(preset: str, seed: int = 0) -> nn.Module:
    p = get_preset(preset)
    g = build_generator(p.generator_config("rough"), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        g.output_conv.weight.normal_(0.0, 0.02, generator=gen)  # residual presets start at zero
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, gen)
    return g.eval()


# -- BatchNorm folding ------------------------------------------------------------------------


@pytest.mark.parametrize("transposed", [False, True])
def test_fold_batchnorm_matches_numpy(transposed):
    gen = torch.Generator().manual_seed(0)
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(3, 4, 3, stride=2, padding=1, bias=True)
    bn = nn.BatchNorm2d(4, eps=1e-3)
    _random_bn(bn, gen)
    w, b = fold_batchnorm(conv, bn)
    scale = bn.weight.detach().numpy() / np.sqrt(bn.running_var.numpy() + 1e-3)
    w_ref = conv.weight.detach().numpy().copy()
    if transposed:
        w_ref *= scale[None, :, None, None]  # [Cin, Cout, kh, kw]
    else:
        w_ref *= scale[:, None, None, None]
    b_ref = (conv.bias.detach().numpy() - bn.running_mean.numpy()) * scale + bn.bias.detach().numpy()
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-6, atol=1e-6)


def test_fold_batchnorm_needs_running_stats():
    bn = nn.BatchNorm2d(2, track_running_stats=False)
    with pytest.raises(ConfigError, match="without running statistics"):
        fold_batchnorm(nn.Conv2d(1, 2, 3), bn)


# -- FusedConv kernels ------------------------------------------------------------------------

CONV_CASES = [
    # (transposed, cin, cout, k, stride, padding, output_padding, bias)
    (False, 5, 7, 4, 2, 1, 0, False),
    (False, 3, 6, 3, 2, 1, 0, True),
    (False, 6, 1, 4, 1, 1, 0, True),  # PatchGAN output layer
    (True, 6, 5, 4, 2, 1, 0, False),
    (True, 6, 4, 3, 2, 1, 1, False),
    (True, 9, 1, 4, 2, 1, 0, True),  # U-Net output layer
    (True, 9, 1, 3, 2, 1, 1, True),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("act", [None, nn.LeakyReLU(0.2), nn.ReLU(), nn.Tanh()])
def test_fused_conv_every_kernel_matches_plain(case, act):
    transposed, cin, cout, k, s, p, op, bias = case
    gen = torch.Generator().manual_seed(1)
    if transposed:
        conv = nn.ConvTranspose2d(cin, cout, k, s, p, output_padding=op, bias=bias)
    else:
        conv = nn.Conv2d(cin, cout, k, s, p, bias=bias)
    bn = nn.BatchNorm2d(cout)
    _random_bn(bn, gen)
    plain = nn.Sequential(conv, bn, *([act] if act is not None else [])).eval()
    x = torch.randn(3, cin, 6, 10, generator=gen)
    with torch.no_grad():
        ref = plain(x)
        for impl in FusedConv(conv, bn, act).candidates():
            fused = FusedConv(conv, bn, act, impl=impl)
            for xb in (x, x[:1]):  # the prepacking hint's batch size and another one
                y = fused(xb.contiguous(memory_format=torch.channels_last))
                assert y.shape == ref[: len(xb)].shape
                torch.testing.assert_close(y, ref[: len(xb)], rtol=0, atol=ATOL, msg=f"impl {impl}")


@pytest.mark.parametrize("k,p,op", [(4, 1, 0), (3, 1, 1), (3, 0, 0), (4, 2, 1), (2, 0, 0)])
@pytest.mark.parametrize("hw", [(1, 1), (2, 5), (7, 4)])
def test_transposed_matmul_formulation(k, p, op, hw):
    gen = torch.Generator().manual_seed(2)
    conv = nn.ConvTranspose2d(4, 2, k, 2, p, output_padding=op, bias=True)
    x = torch.randn(2, 4, *hw, generator=gen)
    with torch.no_grad():
        ref = conv(x)
        y = FusedConv(conv, impl="gemm")(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y, ref, rtol=0, atol=ATOL)


def test_fused_conv_unknown_impl_and_gradients():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with pytest.raises(ConfigError, match="implementation 'gemm' is not available"):
        FusedConv(conv, impl="gemm")
    fused = FusedConv(conv)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    fused(x).sum().backward()  # inputs needing gradients take the eager kernel
    assert x.grad is not None and x.grad.shape == x.shape


# -- whole networks ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(PRESETS))
def test_optimize_for_inference_matches_each_preset(preset):
    g = _generator(preset)
    size = get_preset(preset).size
    x = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(3)) * 2 - 1
    before = {k: v.clone() for k, v in g.state_dict().items()}
    fast_g = optimize_for_inference(g, (2, 1, 256, 256))
    with torch.no_grad():
        ref = g(x)
        torch.testing.assert_close(fast_g(x), ref, rtol=0, atol=ATOL)
        torch.testing.assert_close(fast_g(x[:1]), ref[:1], rtol=0, atol=ATOL)
        if tuple(size) != (256, 256):
            xs = x[:, :, : size[0], : size[1]]
            torch.testing.assert_close(fast_g(xs), g(xs), rtol=0, atol=ATOL)
    assert ref.abs().max() > 1e-3  # a meaningful comparison, not zeros against zeros
    # the original is untouched and keeps its layout; the copy holds no BatchNorm or Dropout
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Dropout) for m in fast_g.modules())
    assert sum(isinstance(m, FusedConv) for m in fast_g.modules()) == len(
        [m for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    )


def test_optimize_discriminator_and_default_shape():
    d = build_discriminator(get_preset("small").discriminator_config("rough"), seed=0)
    for m in d.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, torch.Generator().manual_seed(4))
    d.eval()
    x = torch.randn(2, 2, 64, 64, generator=torch.Generator().manual_seed(5))
    fast_d = optimize_for_inference(d)  # default example shape (1, 2, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(fast_d(x), d(x), rtol=0, atol=ATOL * 10)


def test_inference_module_refuses_training_and_bad_options():
    g = _generator("small")
    f = optimize_for_inference(g, (1, 1, 128, 128))
    assert isinstance(f, FastInference) and not f.training
    with pytest.raises(ConfigError, match="inference-only"):
        f.train()
    f.eval()  # allowed
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        optimize_for_inference(g, precision="fp16")
    with pytest.raises(ConfigError, match=r"example_shape: expected \(B, C, H, W\)"):
        optimize_for_inference(g, (1, 128, 128))
    with pytest.raises(ConfigError, match="compile must be"):
        optimize_for_inference(g, compile="yes")


def test_bf16_and_eager_paths_on_cpu():
    g = _generator("small")
    x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        ref = g(x)
        eager = optimize_for_inference(g, (2, 1, 128, 128), impl="eager", channels_last=False)
        torch.testing.assert_close(eager(x), ref, rtol=0, atol=ATOL)
        bf16 = optimize_for_inference(g, (2, 1, 128, 128), precision="bf16")
        y = bf16(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert float((y - ref).abs().max()) < 3e-2 * max(1.0, float(ref.abs().max()))


def test_autotune_keeps_the_function():
    g = _generator("small")
    x = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(7))
    f = optimize_for_inference(g, (1, 1, 128, 128))
    chosen = fast.autotune_layers(f, x, repeats=1)
    assert chosen and set(chosen.values()) <= {"eager", "packed", "gemm"}
    with torch.no_grad():
        torch.testing.assert_close(f(x), g(x), rtol=0, atol=ATOL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_fallback_matches():
    g = _generator("small").cuda()
    x = torch.rand(2, 1, 128, 128, device="cuda")
    f = optimize_for_inference(g, (2, 1, 128, 128))
    with torch.no_grad():
        torch.testing.assert_close(f(x), g(x), rtol=1e-3, atol=1e-3)  # TF32 may be on


# -- training ---------------------------------------------------------------------------------


def test_prepare_for_training_same_parameters_and_gradients():
    from bench_refiner import TrainStep, grad_difference

    size = (64, 64)
    # Dropout masks are drawn in memory order, so channels-last draws different (equally random)
    # masks; compare the deterministic part of the function.
    steps = {
        "plain": TrainStep("small", 2, fast=False, size=size, dropout=False),
        "nhwc": TrainStep("small", 2, fast=False, size=size, dropout=False),
        "fp64": TrainStep("small", 2, fast=False, size=size, dropout=False, dtype=torch.float64),
    }
    nhwc = steps["nhwc"]
    params = [id(p) for p in nhwc.g.parameters()]
    for model in (nhwc.g, nhwc.d):
        assert prepare_for_training(model, channels_last=True) is model
    assert nhwc.g.encoder[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert [id(p) for p in nhwc.g.parameters()] == params  # optimisers stay valid
    assert list(nhwc.g.state_dict()) == list(steps["plain"].g.state_dict())
    losses = {name: step() for name, step in steps.items()}
    assert losses["nhwc"] == pytest.approx(losses["plain"], rel=1e-5)
    # fp32 kernels differ in summation order; channels-last is as close to fp64 as plain fp32 is
    plain_err = grad_difference(steps["plain"], steps["fp64"])
    nhwc_err = grad_difference(nhwc, steps["fp64"])
    assert nhwc_err < 1e-2 and nhwc_err < 10 * max(plain_err, 1e-4)
    with pytest.raises(ConfigError, match="channels_last must be"):
        prepare_for_training(nhwc.g, channels_last="yes")


def test_fast_training_step_matches_plain():
    """``prepare_for_training`` (CPU: oneDNN matrix-product kernels, NCHW) + fused Adam: same
    losses and, where rounding cannot flip an activation across its kink, the same weights."""
    from bench_refiner import TrainStep

    plain = TrainStep("small", 2, fast=False, size=(64, 64))
    quick = TrainStep("small", 2, fast=True, size=(64, 64))
    assert not quick.g.encoder[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert type(quick.g.encoder[-1][0]) is fast.GemmConv2d
    for _ in range(3):
        assert quick() == pytest.approx(plain(), rel=1e-4)
    # With ReLU/LeakyReLU in place, a 1e-7 difference can flip an activation that is ~0, which
    # changes every gradient upstream (and Adam turns small gradient changes into lr-sized weight
    # changes), so the weights are compared without the kinks. Adam moves each weight by about
    # lr * m / sqrt(v): where a gradient is ~0, rounding can change a weight by a fraction of lr
    # (2e-4); everything else agrees to 1e-6.
    plain = TrainStep("small", 2, fast=False, size=(64, 64), dropout=False, smooth=True)
    quick = TrainStep("small", 2, fast=True, size=(64, 64), dropout=False, smooth=True)
    for _ in range(3):
        assert quick() == pytest.approx(plain(), rel=1e-5)
    off, total = 0, 0
    with torch.no_grad():
        for p, q in zip([*plain.g.parameters(), *plain.d.parameters()], [*quick.g.parameters(), *quick.d.parameters()]):
            torch.testing.assert_close(q, p, rtol=0, atol=2e-4)
            off += int(((q - p).abs() > 1e-6).sum())
            total += p.numel()
    assert off <= 1e-4 * total
    opt = fast.adam(nn.Linear(2, 2).parameters(), lr=1e-3)
    assert isinstance(opt, torch.optim.Adam)
    g, d = fast.optimize_training(plain.g, plain.d, "cpu")
    assert g is plain.g and d is plain.d


@pytest.mark.parametrize("preset", ["pix2pix", "paper-nyu"])
def test_fast_training_gradients_match_float64(preset):
    """One full-size step of the benchmarked presets: the fast path's gradients are as close to a
    float64 step as the plain fp32 path's are (kinks removed, see TrainStep)."""
    from bench_refiner import TrainStep, grad_difference

    steps = {
        name: TrainStep(preset, 1, fast=quick, dropout=False, smooth=True, dtype=dtype)
        for name, quick, dtype in (("plain", False, None), ("fast", True, None), ("fp64", False, torch.float64))
    }
    kernels = {type(m) for m in steps["fast"].g.modules()} | {type(m) for m in steps["fast"].d.modules()}
    assert {fast.GemmConv2d, fast.GemmConvTranspose2d} <= kernels
    for step in steps.values():
        step()
    plain_err = grad_difference(steps["plain"], steps["fp64"])
    fast_err = grad_difference(steps["fast"], steps["fp64"])
    assert plain_err < 1e-4
    assert fast_err < max(3 * plain_err, 1e-5)


# -- training kernels: GemmConv2d / GemmConvTranspose2d ----------------------------------------

# (transposed, C_in, C_out, size, kernel, stride, padding, output_padding, batch)
GEMM_CASES = [
    (False, 64, 48, 4, 4, 2, 1, 0, 1),  # the U-Net's inner levels
    (False, 16, 8, 5, 4, 1, 1, 0, 3),
    (False, 7, 3, 9, 3, 2, 1, 0, 2),
    (False, 32, 1, 17, 4, 1, 1, 0, 2),  # the PatchGAN's 1-channel output layer
    (False, 5, 2, 8, 4, 1, 0, 0, 2),
    (True, 64, 32, 2, 4, 2, 1, 0, 1),
    (True, 6, 5, 3, 4, 2, 1, 0, 2),
    (True, 24, 1, 16, 4, 2, 1, 0, 2),  # the generator's 1-channel output layer
    (True, 33, 1, 12, 3, 2, 1, 1, 3),  # the paper presets' 3x3 stride-2 layers
    (True, 9, 2, 7, 3, 2, 1, 1, 2),
]


def _gemm_pair(transposed, cin, cout, k, stride, pad, out_pad, bias=True, seed=0):
    torch.manual_seed(seed)
    if transposed:
        ref = nn.ConvTranspose2d(cin, cout, k, stride, pad, out_pad, bias=bias).double()
    else:
        ref = nn.Conv2d(cin, cout, k, stride, pad, bias=bias).double()
    quick = copy.deepcopy(ref).float()
    assert fast.use_gemm_kernels(quick) == 1
    return ref, quick


def _force_layout(monkeypatch, layout):
    if layout == "pixel":
        monkeypatch.setattr(fast, "_TRAIN_GEMM_MAX_ROWS", 10**9)
    else:
        monkeypatch.setattr(fast, "_TRAIN_GEMM_MAX_ROWS", 0)
        monkeypatch.setattr(fast, "_TRAIN_GEMM_MAX_OUT", 10**9)


@pytest.mark.parametrize("backend", ["onednn", "torch"])
@pytest.mark.parametrize("layout", ["pixel", "channel"])
@pytest.mark.parametrize("case", GEMM_CASES)
def test_gemm_kernels_match_float64(case, layout, backend, monkeypatch):
    """Output, input, weight and bias gradients against a float64 ``nn.Conv2d`` /
    ``nn.ConvTranspose2d``, for both matrix-product layouts and both matmul backends."""
    transposed, cin, cout, size, k, stride, pad, out_pad, batch = case
    if backend == "onednn" and not fast.has_onednn_matmul():
        pytest.skip("this torch has no oneDNN matmul")
    _force_layout(monkeypatch, layout)
    ref, quick = _gemm_pair(transposed, cin, cout, k, stride, pad, out_pad)
    gen = torch.Generator().manual_seed(1)
    x64 = torch.randn(batch, cin, size, size, generator=gen, dtype=torch.float64, requires_grad=True)
    x32 = x64.detach().float().requires_grad_()
    y64 = ref(x64)
    if backend == "torch":
        monkeypatch.setattr(fast, "has_onednn_matmul", lambda: False)
        fn = fast._GemmConvTranspose2dFn if transposed else fast._GemmConv2dFn
        extra = (tuple(quick.output_padding),) if transposed else ()
        y32 = fn.apply(x32, quick.weight, quick.bias, tuple(quick.stride), tuple(quick.padding), *extra, layout == "pixel")
    else:
        y32 = quick(x32)
        assert "Gemm" in type(y32.grad_fn).__name__
    grad = torch.randn(y64.shape, generator=gen, dtype=torch.float64)
    y64.backward(grad)
    y32.backward(grad.float())
    assert y32.shape == y64.shape and y32.is_contiguous()
    pairs = [(y32, y64), (x32.grad, x64.grad), (quick.weight.grad, ref.weight.grad), (quick.bias.grad, ref.bias.grad)]
    for got, want in pairs:
        assert got.shape == want.shape
        err = float((got.detach().double() - want.detach()).abs().max() / want.detach().abs().max())
        assert err < 1e-5


@pytest.mark.parametrize("layout", ["pixel", "channel"])
@pytest.mark.parametrize("transposed", [False, True])
def test_gemm_kernels_without_bias_or_input_gradient(transposed, layout, monkeypatch):
    """The first layer (input without gradient) and bias-free layers (followed by BatchNorm)."""
    _force_layout(monkeypatch, layout)
    ref, quick = _gemm_pair(transposed, 6, 3, 4, 2, 1, 0, bias=False)
    x = torch.randn(2, 6, 6, 6, generator=torch.Generator().manual_seed(2))
    y = quick(x)
    assert "Gemm" in type(y.grad_fn).__name__
    y.square().sum().backward()
    ref(x.double()).square().sum().backward()
    torch.testing.assert_close(quick.weight.grad, ref.weight.grad.float(), rtol=1e-5, atol=1e-5)
    assert quick.bias is None


def test_gemm_kernels_chosen_only_where_they_win():
    """Few output positions -> by pixel; few output channels -> by channel; else the module's own
    kernel, as for anything but fp32 CPU tensors."""
    conv = nn.Conv2d(8, 16, 4, 2, 1)
    head = nn.ConvTranspose2d(8, 1, 4, 2, 1)
    fast.use_gemm_kernels(conv)
    fast.use_gemm_kernels(head)
    small, large = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 64, 64)  # 16 and 1024 output positions
    if fast.has_onednn_matmul():
        assert type(conv(small).grad_fn).__name__ == "_GemmConv2dFnBackward"
        assert type(head(large).grad_fn).__name__ == "_GemmConvTranspose2dFnBackward"
    assert type(conv(large).grad_fn).__name__ == "ConvolutionBackward0"
    assert type(conv.double()(small.double()).grad_fn).__name__ == "ConvolutionBackward0"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(head(large).grad_fn).__name__ != "_GemmConvTranspose2dFnBackward"


def test_use_gemm_kernels_is_reversible_and_keeps_parameters():
    class MyConv(nn.Conv2d):
        pass

    g = _generator("small")
    g.extra = nn.Sequential(MyConv(2, 2, 3, padding=1), nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(2, 2, 3, padding="same"))
    params = [id(p) for p in g.parameters()]
    keys = list(g.state_dict())
    convs = sum(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in g.modules())
    changed = fast.use_gemm_kernels(g)
    assert changed == convs - 2  # not the grouped one, nor the "same"-padded one
    assert fast.use_gemm_kernels(g) == 0  # idempotent
    assert type(g.extra[0]) is MyConv and type(g.extra[1]) is nn.Conv2d
    assert all(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in g.modules() if "Gemm" in type(m).__name__)
    assert [id(p) for p in g.parameters()] == params and list(g.state_dict()) == keys
    assert copy.deepcopy(g).encoder[0][0].__class__ is fast.GemmConv2d
    assert fast.use_gemm_kernels(g, enable=False) == changed
    assert not any("Gemm" in type(m).__name__ for m in g.modules())
    model = _generator("small")
    prepare_for_training(model, gemm=False)
    assert not any("Gemm" in type(m).__name__ for m in model.modules())
    with pytest.raises(ConfigError, match="gemm must be True, False or 'auto'"):
        prepare_for_training(model, gemm="yes")


def test_tune_allocator_is_idempotent():
    first = fast.tune_allocator()
    assert fast.tune_allocator() is first


def test_refiner_api_hook_gives_the_same_refined_depth():
    from refinedepth.refiner.api import Refiner

    meta = {
        "refiner": {
            "normalization": {"output_kind": "metric", "max_depth": 10.0},
            "inputs": "rough",
            "residual": True,
            "size": [128, 128],
            "preset": "small",
        }
    }
    plain = Refiner(_generator("small"), meta)
    quick = Refiner(_generator("small"), meta).optimize(optimize_for_inference)
    rough = (torch.rand(2, 1, 96, 160, generator=torch.Generator().manual_seed(8)) * 9 + 0.5).numpy()
    ref = plain.refine(rough)
    out = quick.refine(rough)
    assert out.shape == ref.shape == rough.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)  # metres; 1e-5 of max_depth
    assert np.abs(ref - rough).max() > 1e-3  # the refiner did something


# -- resize-convolution decoders (GeneratorConfig.upsample="resize") ---------------------------


def _resize_generator(seed: int = 0) -> nn.Module:
    import dataclasses

    cfg = dataclasses.replace(get_preset("small").generator_config("rough"), upsample="resize")
    g = build_generator(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        g.output_conv.weight.normal_(0.0, 0.02, generator=gen)  # the residual preset starts at zero
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, gen)
    return g.eval()


@pytest.mark.parametrize("impl", ["auto", "eager"])
def test_optimize_for_inference_matches_a_resize_decoder(impl):
    g = _resize_generator()
    x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(9)) * 2 - 1
    fast_g = optimize_for_inference(g, (2, 1, 128, 128), impl=impl)
    with torch.no_grad():
        ref = g(x)
        torch.testing.assert_close(fast_g(x), ref, rtol=0, atol=ATOL)
        torch.testing.assert_close(fast_g(x[:1]), ref[:1], rtol=0, atol=ATOL)
        xs = x[:, :, :64, :]  # another size (a multiple of 2^6)
        torch.testing.assert_close(fast_g(xs), g(xs), rtol=0, atol=ATOL)
    assert ref.abs().max() > 1e-3
    # every convolution fused with its BatchNorm and ReLU; the upsampling and padding pass through
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Dropout) for m in fast_g.modules())
    n_convs = len([m for m in g.modules() if isinstance(m, nn.Conv2d)])
    assert sum(isinstance(m, FusedConv) for m in fast_g.modules()) == n_convs
    assert sum(isinstance(m, nn.Upsample) for m in fast_g.modules()) == n_convs - len(g.encoder)
    assert sum(isinstance(m, nn.ReplicationPad2d) for m in fast_g.modules()) == n_convs - len(g.encoder)


def test_resize_decoder_bf16_inference_is_close():
    g = _resize_generator()
    x = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(10)) * 2 - 1
    with torch.no_grad():
        ref = g(x)
        y = optimize_for_inference(g, (1, 1, 128, 128), precision="bf16")(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert float((y - ref).abs().max()) < 3e-2 * max(1.0, float(ref.abs().max()))


def test_gemm_training_kernels_on_a_resize_decoder():
    """``prepare_for_training`` converts the resize blocks' 3x3 convolutions (explicit padding
    modules, zero conv padding) to the matrix-product kernels; loss and gradients stay."""
    plain = _resize_generator().train()
    quick = copy.deepcopy(plain)
    prepare_for_training(quick, gemm=True, channels_last=False)
    assert all(type(m) is fast.GemmConv2d for m in quick.modules() if isinstance(m, nn.Conv2d))
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(11)) * 2 - 1
    t = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(12)) * 0.2 - 0.1
    losses = []
    for model in (plain, quick):
        torch.manual_seed(13)  # same dropout masks (both NCHW)
        loss = (model(x) - t).abs().mean()
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    gp = torch.cat([p.grad.flatten() for p in plain.parameters()])
    gq = torch.cat([p.grad.flatten() for p in quick.parameters()])
    assert float((gq - gp).norm() / gp.norm()) < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_fallback_matches_a_resize_decoder():
    g = _resize_generator().cuda()
    x = torch.rand(2, 1, 128, 128, device="cuda")
    f = optimize_for_inference(g, (2, 1, 128, 128))
    with torch.no_grad():
        torch.testing.assert_close(f(x), g(x), rtol=1e-3, atol=1e-3)  # TF32 may be on
