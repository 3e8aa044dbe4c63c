"""The refiner's fast paths compute the same function as the plain modules (issue 8).

References are the plain eager modules (BatchNorm in eval mode, dropout off) and, for the
BatchNorm folding, a NumPy computation; tolerances are absolute on outputs in [-1, 1] or relative
to the largest value.
"""

from __future__ import annotations

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
        g.head[0].weight.normal_(0.0, 0.02, generator=gen)  # residual presets start at zero
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
    """``prepare_for_training`` (auto: NCHW on CPU) + fused Adam: same losses and weights."""
    from bench_refiner import TrainStep

    plain = TrainStep("small", 2, fast=False, size=(64, 64))
    quick = TrainStep("small", 2, fast=True, size=(64, 64))
    assert not quick.g.encoder[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        assert quick() == pytest.approx(plain(), rel=1e-5)
    # Adam moves each weight by about lr * m / sqrt(v): where a gradient is ~0, rounding in the
    # fused update can change a weight by a fraction of lr (2e-4); everything else agrees to 1e-6.
    off, total = 0, 0
    for p, q in zip([*plain.g.parameters(), *plain.d.parameters()], [*quick.g.parameters(), *quick.d.parameters()]):
        torch.testing.assert_close(q, p, rtol=0, atol=2e-4)
        off += int(((q - p).abs() > 1e-6).sum())
        total += p.numel()
    assert off <= 1e-4 * total
    opt = fast.adam(nn.Linear(2, 2).parameters(), lr=1e-3)
    assert isinstance(opt, torch.optim.Adam)
    g, d = fast.optimize_training(plain.g, plain.d, "cpu")
    assert g is plain.g and d is plain.d


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
