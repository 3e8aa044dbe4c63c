"""Fast execution paths for the refiner's networks: same function, less time (SPEC §10).

Everything here is a *transformation of a built module*; ``models.py`` stays the reference.

Inference (:func:`optimize_for_inference`) works on a copy of an eval-mode generator:

- each ``Conv -> BatchNorm -> [Dropout] -> activation`` run inside an ``nn.Sequential`` becomes
  one :class:`FusedConv`: the BatchNorm's running statistics are folded into the convolution's
  weight and bias (exact algebra), eval-mode dropout is the identity, and the activation
  (ReLU, LeakyReLU, Tanh) is applied by the convolution itself; other layers in the run (the
  resize decoder's ``nn.Upsample`` and ``nn.ReplicationPad2d``, ``models.GeneratorConfig.upsample``)
  pass through unchanged, and the convolution after them fuses as any other;
- on CPU in fp32 the convolutions run through oneDNN with weights reordered ("prepacked") once,
  instead of on every call: at small spatial sizes (the U-Net's 1x1 .. 8x8 levels, where the
  weights are 16-32 MB and the arithmetic is tiny) the per-call reorder was most of the time;
- a stride-2 transposed convolution with very few output channels (the 1-channel output layer)
  or a 2x2 .. 8x8 input (the U-Net's inner levels) runs as one prepacked oneDNN matrix product
  ``[B*H*W, Cin] @ [Cin, Cout*k*k]`` plus a sum of shifted phase slices, which beats oneDNN's
  deconvolution kernel there (chosen per call from the input size);
- activations are kept in channels-last (NHWC) memory, which oneDNN (and cuDNN) prefer;
- glibc is told to keep freed memory for reuse (:func:`tune_allocator`): tensors over 32 MB are
  otherwise returned to the OS on every free and page-faulted back in on the next allocation,
  which cost more than the arithmetic of several large layers at batch 8.

Off CPU (CUDA) the same module falls back to ``F.conv2d`` on the folded weights in channels-last,
optionally under bf16 autocast (``precision="bf16"``). ``compile=True`` additionally wraps the
result in ``torch.compile`` and keeps it only if it matches and is faster (``"auto"``).

Training (:func:`prepare_for_training`, :func:`optimize_training`, :func:`adam`), all in place so
optimisers and checkpoints keep working on the same ``Parameter`` objects: on CPU, oneDNN
matrix-product kernels for the convolutions with few output positions or few output channels
(:class:`GemmConv2d`, :class:`GemmConvTranspose2d`, :func:`use_gemm_kernels`); channels-last
parameters on CUDA; the fused Adam update; the allocator.

Figures and how they were measured: ``docs/performance.md`` (``make bench``).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = [
    "FastInference",
    "FusedConv",
    "GemmConv2d",
    "GemmConvTranspose2d",
    "adam",
    "fold_batchnorm",
    "fuse_sequential",
    "has_onednn_matmul",
    "has_prepacked_kernels",
    "optimize_for_inference",
    "optimize_training",
    "prepare_for_training",
    "tune_allocator",
    "use_gemm_kernels",
]

PRECISIONS = ("fp32", "bf16")
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh)
# impl="auto" runs a stride-2 transposed convolution as a matmul (oneDNN) plus phase sums when it
# has at most _GEMM_MAX_OUT output channels (oneDNN's deconvolution kernels are poor for tiny
# Cout) or an input of 2x2 .. 8x8 pixels (the U-Net's inner levels, where the prepacked
# deconvolution ran at a quarter to a half of the matmul's rate on a Zen 5 core; from 16x16 up the
# deconvolution kernel is faster). Measured per layer with benchmarks/bench_refiner.py's shapes.
_GEMM_MAX_OUT = 8
_GEMM_MIN_PIXELS, _GEMM_MAX_PIXELS = 4, 64

# --------------------------------------------------------------------------------------------
# process-level knobs


_ALLOCATOR_TUNED = False


def tune_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Ask glibc to recycle freed blocks below ``threshold_bytes`` instead of unmapping them.

    glibc serves blocks over 32 MB (its largest dynamic mmap threshold) straight from ``mmap``
    and returns them on ``free``; a batch-8 U-Net allocates several such activations per
    forward, and re-faulting their pages cost more than their convolutions. Raising the mmap and
    trim thresholds keeps them in the heap. Returns whether the setting took effect (False off
    glibc, e.g. macOS or musl); idempotent. Process-wide: peak RSS is unchanged, but memory is
    handed back to the OS less eagerly.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    ok = bool(mallopt(m_mmap_threshold, int(threshold_bytes))) and bool(
        mallopt(m_trim_threshold, int(threshold_bytes))
    )
    _ALLOCATOR_TUNED = ok
    return ok


@functools.lru_cache(maxsize=1)
def has_prepacked_kernels() -> bool:
    """Whether this torch build has oneDNN's prepacked convolution ops (x86/ARM CPU builds)."""
    ops = getattr(torch.ops, "mkldnn", None)
    if ops is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        for name in (
            "_convolution_pointwise",
            "_convolution_transpose_pointwise",
            "_reorder_convolution_weight",
            "_reorder_convolution_transpose_weight",
        ):
            getattr(ops, name)
    except (AttributeError, RuntimeError):
        return False
    return True


# --------------------------------------------------------------------------------------------
# BatchNorm folding


def fold_batchnorm(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval mode: running statistics).

    ``y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` scales each output channel by
    ``s = gamma / sqrt(var + eps)`` and shifts it by ``beta - s * mean`` (+ ``s * bias``).
    Conv2d weights are ``[Cout, Cin/g, kh, kw]``; ConvTranspose2d weights ``[Cin, Cout/g, kh, kw]``.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    w = conv.weight.detach().float()
    mean, var = bn.running_mean.detach().float(), bn.running_var.detach().float()
    gamma = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + bn.eps)
    bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros_like(mean)
    if isinstance(conv, nn.ConvTranspose2d):
        g = conv.groups
        cin, cout_g = w.shape[0], w.shape[1]
        w = w.reshape(g, cin // g, cout_g, *w.shape[2:]) * scale.reshape(g, 1, cout_g, 1, 1)
        w = w.reshape(cin, cout_g, *conv.weight.shape[2:])
    else:
        w = w * scale.reshape(-1, 1, 1, 1)
    return w, beta + (bias - mean) * scale


# --------------------------------------------------------------------------------------------
# the fused convolution


def _activation_spec(act: nn.Module | None) -> tuple[str, list[float]]:
    if act is None:
        return "none", []
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [float(act.negative_slope)]
    if isinstance(act, nn.ReLU):
        return "relu", []
    if isinstance(act, nn.Tanh):
        return "tanh", []
    raise ConfigError(f"cannot fuse activation {type(act).__name__}: expected ReLU, LeakyReLU or Tanh")


def _apply_activation(y: torch.Tensor, kind: str, scalars: Sequence[float]) -> torch.Tensor:
    if kind == "relu":
        return F.relu(y)
    if kind == "leaky_relu":
        return F.leaky_relu(y, scalars[0])
    if kind == "tanh":
        return torch.tanh(y)
    return y


def _conv_out(h: int, w: int, kernel, stride, padding) -> tuple[int, int]:
    """Output height and width of a convolution (dilation 1)."""
    return (h + 2 * padding[0] - kernel[0]) // stride[0] + 1, (w + 2 * padding[1] - kernel[1]) // stride[1] + 1


def _transposed_out(h: int, w: int, kernel, stride, padding, output_padding) -> tuple[int, int]:
    """Output height and width of a transposed convolution (dilation 1)."""
    return (
        (h - 1) * stride[0] - 2 * padding[0] + kernel[0] + output_padding[0],
        (w - 1) * stride[1] - 2 * padding[1] + kernel[1] + output_padding[1],
    )


class FusedConv(nn.Module):
    """An inference-only ``Conv2d``/``ConvTranspose2d`` (+ folded BatchNorm) (+ activation).

    ``impl`` picks the CPU kernel: ``packed`` (oneDNN with the weight reordered once),
    ``gemm`` (stride-2 transposed convolution as a matmul plus phase sums; tiny ``Cout``) or
    ``eager`` (``F.conv2d``/``F.conv_transpose2d``). Inputs that are not fp32 CPU tensors, or that
    need gradients, always take the eager path, which is also the reference for the others.
    """

    def __init__(
        self,
        conv: nn.Conv2d | nn.ConvTranspose2d,
        bn: nn.BatchNorm2d | None = None,
        act: nn.Module | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ConfigError(f"FusedConv supports explicit zero padding only, got {conv.padding!r}/{conv.padding_mode!r}")
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        if bn is not None:
            weight, bias = fold_batchnorm(conv, bn)
        else:
            weight = conv.weight.detach().float().clone()
            bias = conv.bias.detach().float().clone() if conv.bias is not None else None
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.stride, self.padding = tuple(conv.stride), tuple(conv.padding)
        self.dilation, self.groups = tuple(conv.dilation), conv.groups
        self.output_padding = tuple(conv.output_padding) if self.transposed else (0, 0)
        self.act, self.act_scalars = _activation_spec(act)
        self.auto = impl == "auto"
        self.impl = self._choose(impl)
        self._packed: torch.Tensor | None = None
        self._packed_key: tuple | None = None
        self._gemm_weight: torch.Tensor | None = None

    # -- implementation choice ---------------------------------------------------------------
    def gemm_applicable(self) -> bool:
        return (
            self.transposed
            and self.stride == (2, 2)
            and self.dilation == (1, 1)
            and self.groups == 1
        )

    def candidates(self) -> list[str]:
        out = ["eager"]
        if has_prepacked_kernels():
            out.append("packed")
        if self.gemm_applicable():
            out.append("gemm")
        return out

    def _choose(self, impl: str, height: int | None = None, width: int | None = None) -> str:
        if impl == "auto":
            if self.gemm_applicable() and (
                self.out_channels <= _GEMM_MAX_OUT
                or (height is not None and width is not None and _GEMM_MIN_PIXELS <= height * width <= _GEMM_MAX_PIXELS)
            ):
                return "gemm"
            return "packed" if has_prepacked_kernels() else "eager"
        if impl not in self.candidates():
            raise ConfigError(f"FusedConv: implementation {impl!r} is not available here; expected one of {self.candidates()}")
        return impl

    def extra_repr(self) -> str:
        kind = "ConvTranspose2d" if self.transposed else "Conv2d"
        return (
            f"{kind}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}), act={self.act}, impl={'auto' if self.auto else self.impl}"
        )

    def _apply(self, fn, recurse=True):  # noqa: D401 - nn.Module hook
        # Moving or casting the module invalidates the prepacked weights.
        self._packed = None
        self._packed_key = None
        self._gemm_weight = None
        return super()._apply(fn, recurse)

    # -- forward paths -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = x.device.type == "cpu" and x.dtype == torch.float32 and not (torch.is_grad_enabled() and x.requires_grad)
        if fast and self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
            impl = self._choose("auto", x.shape[-2], x.shape[-1]) if self.auto else self.impl
            if impl == "packed":
                return self._forward_packed(x)
            if impl == "gemm":
                return self._forward_gemm(x)
        return self.forward_eager(x)

    def forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """The reference: plain PyTorch convolution on the folded weights, then the activation."""
        if self.transposed:
            y = F.conv_transpose2d(
                x, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
            )
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return _apply_activation(y, self.act, self.act_scalars)

    def _forward_packed(self, x: torch.Tensor) -> torch.Tensor:
        ops = torch.ops.mkldnn
        x = x.contiguous(memory_format=torch.channels_last)
        key = (tuple(x.shape[1:]),)
        if self._packed is None or self._packed_key != key:
            # The shape is a hint for oneDNN's weight layout; other batch sizes still work.
            if self.transposed:
                self._packed = ops._reorder_convolution_transpose_weight(
                    self.weight, list(self.padding), list(self.output_padding), list(self.stride),
                    list(self.dilation), self.groups, list(x.shape),
                )
            else:
                self._packed = ops._reorder_convolution_weight(
                    self.weight.contiguous(memory_format=torch.channels_last), list(self.padding),
                    list(self.stride), list(self.dilation), self.groups, list(x.shape),
                )
            self._packed_key = key
        if self.transposed:
            return ops._convolution_transpose_pointwise(
                x, self._packed, self.bias, list(self.padding), list(self.output_padding), list(self.stride),
                list(self.dilation), self.groups, self.act, self.act_scalars, "",
            )
        return ops._convolution_pointwise(
            x, self._packed, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups,
            self.act, self.act_scalars, "",
        )

    def _forward_gemm(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_activation(self._transposed_gemm(x), self.act, self.act_scalars)

    def _matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ weight.reshape(Cin, -1)``: oneDNN with the weight prepacked when available
        (MKL's sgemm, behind ``torch.mm``, runs its AVX2 kernels on AMD CPUs at half the rate)."""
        if self._gemm_weight is None:
            matrix = self.weight.reshape(self.in_channels, -1)
            self._gemm_weight = matrix.contiguous()
            if has_prepacked_kernels() and rows.device.type == "cpu":
                try:
                    packed = torch.ops.mkldnn._reorder_linear_weight(matrix.t().contiguous(), rows.shape[0])
                    torch.ops.mkldnn._linear_pointwise(rows[:1], packed, None, "none", [], "")
                    self._gemm_weight = packed
                except (AttributeError, RuntimeError):
                    pass
        if self._gemm_weight.is_mkldnn:
            return torch.ops.mkldnn._linear_pointwise(rows, self._gemm_weight, None, "none", [], "")
        return rows @ self._gemm_weight

    def _transposed_gemm(self, x: torch.Tensor) -> torch.Tensor:
        """Stride-2 transposed convolution as ``cols = x @ W`` then a sum of shifted slices.

        (Not ``F.fold``, as the training kernel :class:`_GemmConvTranspose2dFn` does: the phase
        sums write the channels-last output the next prepacked layer reads; fold's NCHW output
        and the conversion made pix2pix's batch-8 inference 5% slower.)

        Output pixel ``o = 2 i - p + k`` (per axis) receives input ``i`` through tap ``k``. Split the
        output by parity ``a = o mod 2``: phase ``a`` at row ``m`` (``o = 2 m + a``) reads input row
        ``m + d`` through tap ``k = a + p - 2 d``, for every ``d`` that gives ``0 <= k < K``.
        """
        b, cin, h, w = x.shape
        kh, kw = self.kernel_size
        ph, pw = self.padding
        cout = self.out_channels
        ho, wo = _transposed_out(h, w, self.kernel_size, self.stride, self.padding, self.output_padding)
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, cin)  # a view when x is channels-last
        cols = self._matmul(rows).view(b, h, w, cout, kh, kw)
        out = x.new_zeros(b, ho, wo, cout) if self.bias is None else self.bias.expand(b, ho, wo, cout).clone()
        for a in (0, 1):
            rows_a = (ho - a + 1) // 2
            for c in (0, 1):
                cols_c = (wo - c + 1) // 2
                phase = out[:, a::2, c::2, :]
                for dy, ky in _phase_taps(a, ph, kh):
                    m0, m1 = max(0, -dy), min(rows_a, h - dy)
                    for dx, kx in _phase_taps(c, pw, kw):
                        n0, n1 = max(0, -dx), min(cols_c, w - dx)
                        if m0 < m1 and n0 < n1:
                            phase[:, m0:m1, n0:n1].add_(cols[:, m0 + dy : m1 + dy, n0 + dx : n1 + dx, :, ky, kx])
        return out.permute(0, 3, 1, 2)


def _phase_taps(a: int, p: int, k: int) -> list[tuple[int, int]]:
    """``(d, tap)`` pairs feeding output phase ``a``: tap ``a + p - 2 d`` in ``[0, k)``."""
    out = []
    for tap in range(k):
        if (a + p - tap) % 2 == 0:
            out.append(((a + p - tap) // 2, tap))
    return out


# --------------------------------------------------------------------------------------------
# module transformation


def fuse_sequential(module: nn.Module, impl: str = "auto") -> nn.Module:
    """Replace conv (+BatchNorm) (+Dropout) (+activation) runs with :class:`FusedConv`, in place.

    Works on every ``nn.Sequential`` inside ``module`` (the refiner's blocks), and turns any other
    Conv2d/ConvTranspose2d child into a FusedConv of its own. Eval semantics: BatchNorm uses its
    running statistics and Dropout is dropped. Other modules (InstanceNorm, ...) are kept.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential):
            setattr(module, name, _fuse_run(list(child), impl))
        elif isinstance(child, nn.Conv2d | nn.ConvTranspose2d):
            setattr(module, name, FusedConv(child, impl=impl))
        else:
            fuse_sequential(child, impl)
    return module


def _fuse_run(layers: list[nn.Module], impl: str) -> nn.Sequential:
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) and _fusable(layer):
            j = i + 1
            bn = None
            if j < len(layers) and isinstance(layers[j], nn.BatchNorm2d) and layers[j].running_mean is not None:
                bn, j = layers[j], j + 1
            while j < len(layers) and isinstance(layers[j], nn.Dropout):
                j += 1  # identity at inference
            act = None
            if j < len(layers) and isinstance(layers[j], _ACTIVATIONS):
                act, j = layers[j], j + 1
            out.append(FusedConv(layer, bn, act, impl=impl))
            i = j
            continue
        if isinstance(layer, nn.Dropout):
            i += 1
            continue
        out.append(fuse_sequential(layer, impl) if len(list(layer.children())) else layer)
        i += 1
    return nn.Sequential(*out)


def _fusable(conv: nn.Module) -> bool:
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


class FastInference(nn.Module):
    """The optimised copy of a module, for inference only.

    Converts inputs to channels-last, runs the fused network (under bf16 autocast when
    ``precision="bf16"``) and returns fp32 contiguous outputs. ``train(True)`` is refused: the
    BatchNorm statistics and dropout are baked in; optimise again after more training.
    """

    def __init__(self, module: nn.Module, precision: str = "fp32", channels_last: bool = True) -> None:
        super().__init__()
        self.module = module
        self.precision = precision
        self.channels_last = channels_last
        self.compiled: Callable[..., torch.Tensor] | None = None
        super().train(False)

    def train(self, mode: bool = True) -> FastInference:
        if mode:
            raise ConfigError(
                "an optimize_for_inference() module is inference-only (BatchNorm folded, dropout removed); "
                "train the original module and optimise it again"
            )
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                y = self._run(x)
            y = y.float()
        else:
            y = self._run(x)
        return y.contiguous()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception:  # noqa: BLE001 - e.g. a recompilation failing for a new shape
                self.compiled = None  # the eager fast path computes the same function
        return self.module(x)


def optimize_for_inference(
    module: nn.Module,
    example_shape: Sequence[int] | None = None,
    *,
    precision: str = "fp32",
    impl: str = "auto",
    autotune: bool = False,
    compile: bool | str = False,
    channels_last: bool = True,
    allocator: bool = True,
) -> FastInference:
    """A fast inference copy of ``module`` (the refiner generator or discriminator).

    Args:
        module: left untouched; its copy is put in eval mode and transformed (see module doc).
        example_shape: ``(B, C, H, W)`` of typical inputs (default ``(1, C_in, 256, 256)``), used
            to prepack weights, for ``autotune`` and for ``compile``. Other shapes still work.
        precision: ``fp32`` (default, matches the plain module to ~1e-6) or ``bf16`` (autocast;
            about 1e-2 relative error; uses the eager kernels).
        impl: ``auto`` (per-layer rule: matmul formulation for tiny transposed convolutions,
            prepacked oneDNN elsewhere on CPU), ``packed``, ``gemm`` or ``eager`` for every layer.
        autotune: time each layer's candidate kernels on ``example_shape`` and keep the fastest
            (after checking it matches the eager kernel); off by default, as timings on a busy
            machine are noisy and the rule above is what autotuning picks on a quiet one.
        compile: also ``torch.compile`` the result (``True``), or try it and keep it only when it
            matches and is faster on ``example_shape`` (``"auto"``). Compilation takes tens of
            seconds and needs a C++ compiler; any failure falls back to the eager fast path.
        channels_last: keep activations NHWC.
        allocator: call :func:`tune_allocator` (process-wide, glibc only).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if compile not in (False, True, "auto"):
        raise ConfigError(f"compile must be False, True or 'auto', got {compile!r}")
    if allocator:
        tune_allocator()
    device = _module_device(module)
    if example_shape is None:
        example_shape = (1, _input_channels(module), 256, 256)
    example_shape = tuple(int(s) for s in example_shape)
    if len(example_shape) != 4 or min(example_shape) < 1:
        raise ConfigError(f"example_shape: expected (B, C, H, W) with positive sizes, got {example_shape}")
    work = copy.deepcopy(module).eval()
    if precision == "bf16":
        impl = "eager"  # autocast drives the eager kernels
    work = fuse_sequential(work, impl=impl)
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
    fast = FastInference(work, precision=precision, channels_last=channels_last)
    example = torch.randn(example_shape, generator=torch.Generator().manual_seed(0)).to(device)
    if autotune:
        autotune_layers(fast, example)
    with torch.no_grad():
        fast(example)  # prepack the weights now, not on the first real call
        if compile:
            _maybe_compile(fast, module, example, always=compile is True)
    return fast


def autotune_layers(fast: nn.Module, example: torch.Tensor, repeats: int = 3, atol: float = 1e-5) -> dict[str, str]:
    """Time every FusedConv's candidate kernels on the input it sees for ``example``; keep the
    fastest of those that match the eager kernel within ``atol`` (relative to the output's scale).
    Returns ``{module name: chosen impl}``."""
    inputs: dict[FusedConv, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: inputs.setdefault(mod, args[0].detach()))
        for m in fast.modules()
        if isinstance(m, FusedConv)
    ]
    try:
        with torch.no_grad():
            fast(example)
    finally:
        for h in hooks:
            h.remove()
    chosen: dict[str, str] = {}
    with torch.no_grad():
        for name, m in fast.named_modules():
            if not isinstance(m, FusedConv) or m not in inputs:
                continue
            x = inputs[m]
            ref = m.forward_eager(x)
            scale = max(1.0, float(ref.abs().max()))
            best, best_t = "eager", float("inf")
            m.auto = False
            for impl in m.candidates():
                m.impl = impl
                y = m(x)
                if not torch.allclose(y, ref, rtol=0.0, atol=atol * scale):
                    continue
                t = _best_time(lambda: m(x), repeats)  # noqa: B023 - called right here
                if t < best_t:
                    best, best_t = impl, t
            m.impl, m.auto = best, False
            chosen[name] = best
    return chosen


def _maybe_compile(fast: FastInference, reference: nn.Module, example: torch.Tensor, always: bool) -> None:
    try:
        compiled = torch.compile(fast.module, dynamic=False)
        y = compiled(example.contiguous(memory_format=torch.channels_last))
        ref = fast.module(example.contiguous(memory_format=torch.channels_last))
        if not torch.allclose(y.float(), ref.float(), rtol=0.0, atol=1e-5 * max(1.0, float(ref.abs().max()))):
            return
        if not always:
            xe = example.contiguous(memory_format=torch.channels_last)
            if _best_time(lambda: compiled(xe), 3) >= _best_time(lambda: fast.module(xe), 3):
                return
        fast.compiled = compiled
    except Exception:  # noqa: BLE001 - compilation is optional; the eager fast path stays
        fast.compiled = None


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _input_channels(module: nn.Module) -> int:
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "in_channels"):
        return int(config.in_channels)
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return int(m.in_channels)
    raise ConfigError("optimize_for_inference: cannot infer the input channels; pass example_shape=(B, C, H, W)")


# --------------------------------------------------------------------------------------------
# training


# Training kernels for the convolutions whose oneDNN kernels are slow on CPU. Two shapes are:
#
# - few output positions (the U-Net's 1x1 .. 8x8 levels at small batch), where a 16-32 MB weight
#   meets a few dozen pixels: "by pixel", one matrix product per pass over [pixels, channels] rows
#   (forward, input gradient, weight gradient) around an unfold/fold;
# - few output channels (the generator's 1-channel output layer, the discriminator's last layer):
#   "by channel", one matrix product per sample over the NCHW planes, ``[C_out*k*k, C_in] @
#   [C_in, H*W]``, and the k*k tap planes summed (convolution) or folded (transposed convolution)
#   into place.
#
# The products run on oneDNN's matmul, on the weight as it is (MKL's sgemm, behind torch.mm, runs
# 2-3x slower on these skinny shapes on AMD CPUs). oneDNN's convolution kernels stay in charge
# everywhere else. Thresholds measured per layer shape at batch 1 and 8 (docs/performance.md).
_TRAIN_GEMM_MAX_ROWS = 128
_TRAIN_GEMM_MAX_OUT = 8


@functools.lru_cache(maxsize=1)
def has_onednn_matmul() -> bool:
    """Whether ``torch.ops.mkldnn._linear_pointwise`` runs fp32 products on dense, strided weights."""
    if not has_prepacked_kernels():
        return False
    try:
        a, w = torch.arange(6.0).view(2, 3), torch.arange(12.0).view(3, 4)
        y = torch.ops.mkldnn._linear_pointwise(a, w.t(), None, "none", [], "")
        return bool(torch.equal(y, a @ w))
    except (AttributeError, RuntimeError):
        return False


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T (+ bias)`` for 2-D ``x`` [M, K] and ``weight`` [N, K] (any strides)."""
    if has_onednn_matmul():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _per_sample(fn: Callable[[int], torch.Tensor], batch: int) -> torch.Tensor:
    """``torch.stack([fn(i) for i in range(batch)])`` without the copy when ``batch`` is 1."""
    return fn(0).unsqueeze(0) if batch == 1 else torch.stack([fn(i) for i in range(batch)])


def _tap_slice(tap: int, pad: int, stride: int, out: int) -> slice:
    """Positions of a padded input plane that tap ``tap`` reads for outputs ``0 .. out-1``."""
    return slice(tap, tap + stride * (out - 1) + 1, stride)


class _GemmConv2dFn(torch.autograd.Function):
    """``F.conv2d`` (groups 1, dilation 1, zero padding) as matrix products, by pixel or by channel."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, by_pixel):  # noqa: D102
        b, cin, h, w = x.shape
        cout, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
        ho, wo = _conv_out(h, w, (kh, kw), stride, padding)
        ctx.geometry = (x.shape, (ho, wo), stride, padding, by_pixel)
        ctx.has_bias = bias is not None
        if by_pixel:
            cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # [B, Cin*kh*kw, L]
            rows = cols.transpose(1, 2).reshape(b * ho * wo, -1)
            y = _linear(rows, weight.reshape(cout, -1), bias)  # [B*L, Cout]
            ctx.save_for_backward(rows, weight)
            return y.view(b, ho, wo, cout).permute(0, 3, 1, 2).contiguous()
        # by channel: taps[b] = W_taps [Cout*kh*kw, Cin] @ x[b] [Cin, H*W], then sum shifted taps
        planes = x.contiguous().view(b, cin, h * w)
        w_taps = weight.permute(0, 2, 3, 1).reshape(cout * kh * kw, cin)
        taps = _per_sample(lambda i: _linear(w_taps, planes[i].t()), b)
        taps = F.pad(taps.view(b, cout * kh * kw, h, w), (padding[1], padding[1], padding[0], padding[0]))
        taps = taps.view(b, cout, kh, kw, *taps.shape[-2:])
        y = x.new_zeros(b, cout, ho, wo) if bias is None else bias.view(1, -1, 1, 1).expand(b, cout, ho, wo).clone()
        for ky in range(kh):
            rs = _tap_slice(ky, padding[0], stride[0], ho)
            for kx in range(kw):
                y.add_(taps[:, :, ky, kx, rs, _tap_slice(kx, padding[1], stride[1], wo)])
        ctx.save_for_backward(planes, weight)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        saved, weight = ctx.saved_tensors
        (b, cin, h, w), (ho, wo), stride, padding, by_pixel = ctx.geometry
        cout, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
        gx = gw = gb = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        if by_pixel:
            g = grad.permute(0, 2, 3, 1).reshape(b * ho * wo, cout)
            if ctx.needs_input_grad[0]:
                gcols = _linear(g, weight.reshape(cout, -1).t())  # [B*L, Cin*kh*kw]
                gx = F.fold(gcols.view(b, ho * wo, -1).transpose(1, 2), (h, w), (kh, kw), padding=padding, stride=stride)
            if ctx.needs_input_grad[1]:
                gw = _linear(g.t(), saved.t()).view(weight.shape)
            return gx, gw, gb, None, None, None
        # by channel: scatter the output gradient back onto the tap planes
        ph, pw = padding
        gtaps = grad.new_zeros(b, cout, kh, kw, h + 2 * ph, w + 2 * pw)
        for ky in range(kh):
            rs = _tap_slice(ky, ph, stride[0], ho)
            for kx in range(kw):
                gtaps[:, :, ky, kx, rs, _tap_slice(kx, pw, stride[1], wo)] = grad
        gtaps = gtaps[..., ph : ph + h, pw : pw + w].reshape(b, cout * kh * kw, h * w)
        w_taps = weight.permute(0, 2, 3, 1).reshape(cout * kh * kw, cin)
        if ctx.needs_input_grad[0]:
            gx = _per_sample(lambda i: _linear(w_taps.t(), gtaps[i].t()), b).view(b, cin, h, w)
        if ctx.needs_input_grad[1]:
            g_taps = sum(_linear(gtaps[i], saved[i]) for i in range(b))  # [Cout*kh*kw, Cin]
            gw = g_taps.view(cout, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
        return gx, gw, gb, None, None, None


class _GemmConvTranspose2dFn(torch.autograd.Function):
    """``F.conv_transpose2d`` (groups 1, dilation 1) as matrix products + fold, by pixel or by channel."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, by_pixel):  # noqa: D102
        b, cin, h, w = x.shape
        kh, kw = weight.shape[2], weight.shape[3]
        ho, wo = _transposed_out(h, w, (kh, kw), stride, padding, output_padding)
        w2 = weight.reshape(cin, -1)  # [Cin, Cout*kh*kw]
        if by_pixel:
            saved = x.permute(0, 2, 3, 1).reshape(b * h * w, cin)
            cols = _linear(saved, w2.t()).view(b, h * w, -1).transpose(1, 2)  # [B, Cout*kh*kw, H*W]
        else:
            saved = x.contiguous().view(b, cin, h * w)
            cols = _per_sample(lambda i: _linear(w2.t(), saved[i].t()), b)
        y = F.fold(cols, (ho, wo), (kh, kw), padding=padding, stride=stride)
        if bias is not None:
            y = y.add_(bias.view(1, -1, 1, 1))
        ctx.save_for_backward(saved, weight)
        ctx.geometry = (x.shape, stride, padding, by_pixel)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        saved, weight = ctx.saved_tensors
        (b, cin, h, w), stride, padding, by_pixel = ctx.geometry
        kh, kw = weight.shape[2], weight.shape[3]
        w2 = weight.reshape(cin, -1)
        gcols = F.unfold(grad, (kh, kw), padding=padding, stride=stride)  # [B, Cout*kh*kw, H*W]
        gx = gw = gb = None
        if by_pixel:
            gcols = gcols.transpose(1, 2).reshape(b * h * w, -1)
            if ctx.needs_input_grad[0]:
                gx = _linear(gcols, w2).view(b, h, w, cin).permute(0, 3, 1, 2)
            if ctx.needs_input_grad[1]:
                gw = _linear(saved.t(), gcols.t()).view(weight.shape)
        else:
            if ctx.needs_input_grad[0]:
                gx = _per_sample(lambda i: _linear(w2, gcols[i].t()), b).view(b, cin, h, w)
            if ctx.needs_input_grad[1]:
                gw = sum(_linear(saved[i], gcols[i]) for i in range(b)).view(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None


def _gemm_eligible(conv: nn.Module) -> bool:
    return (
        conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def _gemm_layout(conv: nn.Module, x: torch.Tensor, pixels: int) -> str | None:
    """``"pixel"``, ``"channel"`` or None (the module's own kernel) for this call (4-D ``x``)."""
    if not (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and has_onednn_matmul()
    ):
        return None
    if pixels <= _TRAIN_GEMM_MAX_ROWS:
        return "pixel"
    if conv.out_channels <= _TRAIN_GEMM_MAX_OUT:
        return "channel"
    return None


class GemmConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that runs as oneDNN matrix products where its convolution kernels are
    slow (on CPU in fp32: at most ``_TRAIN_GEMM_MAX_ROWS`` output positions, batch x height x
    width, or at most ``_TRAIN_GEMM_MAX_OUT`` output channels), and as ``nn.Conv2d`` otherwise.
    Same parameters, state dict and function (to fp32 rounding). Made by
    :func:`use_gemm_kernels`, which converts modules in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            ho, wo = _conv_out(x.shape[2], x.shape[3], self.kernel_size, self.stride, self.padding)
            layout = _gemm_layout(self, x, x.shape[0] * ho * wo)
            if layout is not None:
                return _GemmConv2dFn.apply(x, self.weight, self.bias, self.stride, self.padding, layout == "pixel")
        return super().forward(x)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """The :class:`GemmConv2d` counterpart for ``nn.ConvTranspose2d`` (positions counted on the input)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and x.dim() == 4:
            layout = _gemm_layout(self, x, x.shape[0] * x.shape[2] * x.shape[3])
            if layout is not None:
                return _GemmConvTranspose2dFn.apply(
                    x, self.weight, self.bias, self.stride, self.padding, self.output_padding, layout == "pixel"
                )
        return super().forward(x, output_size)


_GEMM_CLASSES = {nn.Conv2d: GemmConv2d, nn.ConvTranspose2d: GemmConvTranspose2d}


def use_gemm_kernels(model: nn.Module, enable: bool = True) -> int:
    """Switch every plain ``nn.Conv2d``/``nn.ConvTranspose2d`` in ``model`` to its
    :class:`GemmConv2d`/:class:`GemmConvTranspose2d` form (``enable=False``: back), in place;
    returns how many modules changed. Only the class changes: parameters, buffers, hooks and
    state-dict keys stay, so optimisers and checkpoints are unaffected. Subclasses of the conv
    modules and grouped, dilated or non-zero-padded convolutions are left alone."""
    changed = 0
    for m in model.modules():
        if enable and type(m) in _GEMM_CLASSES and _gemm_eligible(m):
            m.__class__ = _GEMM_CLASSES[type(m)]
            changed += 1
        elif not enable and type(m) in (GemmConv2d, GemmConvTranspose2d):
            m.__class__ = m.__class__.__mro__[1]
            changed += 1
    return changed


def prepare_for_training(
    model: nn.Module, *, channels_last: bool | str = "auto", gemm: bool | str = "auto", allocator: bool = True
) -> nn.Module:
    """Make ``model`` train faster without changing its function; returns the same object.

    ``channels_last``: convert 4-D parameters and buffers to NHWC in place (the ``Parameter``
    objects stay the same, so optimisers, checkpoints and ``state_dict`` keep working). ``auto``
    does so on CUDA, where cuDNN's NHWC kernels win, and not on CPU, where oneDNN's backward
    convolutions were no faster in NHWC (pix2pix and paper-nyu training steps 0-8% slower on a
    Zen 5 core).

    ``gemm``: :func:`use_gemm_kernels` (class swap in place), so that convolutions with few output
    positions or few output channels run as oneDNN matrix products on fp32 CPU tensors; ``auto``
    does so for CPU models when this torch has oneDNN's matmul. The step is 1.1-1.3x faster for
    the paper presets and pix2pix at batch 1 (``docs/performance.md``).

    Also tunes the allocator (:func:`tune_allocator`). Pair it with :func:`adam` for the
    optimiser. Note that dropout masks are drawn in memory order, so a channels-last run draws
    different (equally random) masks than a contiguous one from the same seed.
    """
    if channels_last not in (True, False, "auto"):
        raise ConfigError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    if gemm not in (True, False, "auto"):
        raise ConfigError(f"gemm must be True, False or 'auto', got {gemm!r}")
    if allocator:
        tune_allocator()
    if channels_last == "auto":
        channels_last = _module_device(model).type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if gemm == "auto":
        gemm = _module_device(model).type == "cpu" and has_onednn_matmul()
    if gemm:
        use_gemm_kernels(model)
    return model


def adam(params, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused (single-kernel) update when this torch supports it for
    the parameters' device, else the default. Same algorithm and state (checkpoints interchange);
    on CPU the generator's update went from 93 to 27 ms per step for pix2pix (54M parameters)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas, **kwargs)


def optimize_training(
    generator: nn.Module, discriminator: nn.Module, device: Any = None
) -> tuple[nn.Module, nn.Module]:
    """The ``optimize=`` hook of :func:`refinedepth.refiner.train.train_refiner`."""
    return prepare_for_training(generator), prepare_for_training(discriminator)
