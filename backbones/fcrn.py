"""FCRN: Laina et al., "Deeper Depth Prediction with Fully Convolutional Residual Networks"
(3DV 2016), the first stage of Sun et al.'s two-stage regressor (SPEC §3.3).

Two flavours share one decoder:

* ``create_fcrn()`` with no options is the exact NYU architecture of Laina's released TensorFlow
  model (``tensorflow/models/fcrn.py`` + ``network.py`` in github.com/iro-cp/FCRN-DepthPrediction):
  a Caffe-style ResNet-50 encoder (stride on the first 1x1 conv of a downsampling block),
  ``layer1`` (1x1 conv 2048->1024 + BN), four fast up-projection blocks (1024->512->256->128->64)
  and ``ConvPred`` (3x3 -> 1, followed by a ReLU). 228x304 RGB in, 128x160 metric depth out,
  63,572,737 trainable parameters, BatchNorm eps 1e-4. It takes RGB in [0,1] and scales it to
  0-255 internally (Laina feeds raw pixel values, no mean subtraction).
  ``NYU_ResNet-UpProj.npy`` loads into it through :mod:`refinedepth.backbones.fcrn_laina`.
* ``create_fcrn(encoder="resnet18", input_size=(114, 152))`` swaps in any timm encoder
  (``features_only=True``, ``pretrained=False``; ImageNet mean/std normalisation) and sizes the
  decoder from the encoder's deepest ``feature_info`` channels: ``layer1`` halves them, each
  up-projection halves again (override with ``decoder_channels``). No ReLU after ``ConvPred``.

Padding follows ``network.py`` exactly. ``Network.conv`` does *not* hand 'SAME' to TensorFlow: it
pads ``(k-1)//2`` zeros on every side with ``tf.pad`` and then convolves 'VALID'. So ``conv1``
(7x7/2) is padded 3 on all four sides (TF-native 'SAME' would pad 2 before and 3 after at even
sizes: a one-pixel shift), every 3x3 conv 1, every 1x1 conv 0. ``Network.max_pool`` is the one op
that passes 'SAME' to TensorFlow natively: ``pool1`` (3x3/2) puts the extra padding pixel after
(``MaxPool2d(3, 2, ceil_mode=True)``; an odd size gets one ``-inf`` pixel before as well). And
``ConvPred`` is ``conv(3, 3, 1, 1, 1, name='ConvPred')`` with ``Network.conv``'s default
``relu=True``, so the exact model's output passes through a ReLU.

The fast up-projection (``Network.unpool_as_conv``, SPEC §3.3 item 6) computes unpooling + 5x5
convolution as four small convolutions whose outputs are interleaved; the paddings are those of the
NYU model (top/left), so the block is *not* equal to zero-unpooling + a single 5x5 convolution.
Keep them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from refinedepth.contract import replace_file
from refinedepth.errors import CheckpointError, ConfigError, FileFormatError, ShapeError
from refinedepth.geometry import parse_hw
from refinedepth.registry import BackboneInfo

EXACT_ENCODER = "laina-resnet50"
BN_EPS = 1e-4  # Laina's TF model: tf.nn.batch_normalization(variance_epsilon=1e-4)
EXACT_INPUT_SIZE = (228, 304)
EXACT_PARAMETERS = 63_572_737
WEIGHTS_FORMAT = "refinedepth.fcrn"
WEIGHTS_FORMAT_VERSION = "1"
# Options that change the architecture (and so the tensors a weights file holds).
ARCH_KEYS = ("encoder", "encoder_args", "decoder_channels")
DEFAULTS: dict[str, Any] = {
    "encoder": EXACT_ENCODER,
    "encoder_args": {},
    "decoder_channels": None,
    "input_size": EXACT_INPUT_SIZE,
    "max_depth": 10.0,
}


# --------------------------------------------------------------------------- helpers


def _interleave(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``Y[2h,2w]=a, Y[2h+1,2w]=b, Y[2h,2w+1]=c, Y[2h+1,2w+1]=d`` (Laina's interleave order)."""
    n, ch, h, w = a.shape
    # [n, ch, h, row-phase, w, col-phase] -> [n, ch, 2h, 2w]
    y = torch.stack((torch.stack((a, c), dim=-1), torch.stack((b, d), dim=-1)), dim=3)
    return y.reshape(n, ch, 2 * h, 2 * w)


# --------------------------------------------------------------------------- encoder (exact)


class CaffeBottleneck(nn.Module):
    """ResNet-50 bottleneck as in Caffe/Laina: the stride sits on ``branch2a`` (1x1), no biases."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int, project: bool) -> None:
        super().__init__()
        self.branch2a = nn.Conv2d(in_ch, mid_ch, 1, stride, bias=False)
        self.bn_branch2a = nn.BatchNorm2d(mid_ch, eps=BN_EPS)
        self.branch2b = nn.Conv2d(mid_ch, mid_ch, 3, 1, padding=1, bias=False)
        self.bn_branch2b = nn.BatchNorm2d(mid_ch, eps=BN_EPS)
        self.branch2c = nn.Conv2d(mid_ch, out_ch, 1, 1, bias=False)
        self.bn_branch2c = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        if project:
            self.branch1 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
            self.bn_branch1 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        else:
            self.branch1 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn_branch2a(self.branch2a(x)))
        y = F.relu(self.bn_branch2b(self.branch2b(y)))
        y = self.bn_branch2c(self.branch2c(y))
        shortcut = x if self.branch1 is None else self.bn_branch1(self.branch1(x))
        return F.relu(y + shortcut)


class CaffeResNet50(nn.Module):
    """The encoder of Laina's NYU model; module names follow the Caffe layer names."""

    out_channels = 2048
    blocks = (3, 4, 6, 3)

    def __init__(self) -> None:
        super().__init__()
        # network.py's conv 'SAME' = tf.pad((k-1)//2 on every side) + 'VALID': symmetric 3.
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=True)
        self.bn_conv1 = nn.BatchNorm2d(64, eps=BN_EPS)
        # network.py's max_pool is TF-native 'SAME' (extra pixel after); at even sizes exactly
        # MaxPool2d(3, 2, ceil_mode=True) (SPEC §3.3 fact 3).
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        in_ch = 64
        for stage, (n, mid) in enumerate(zip(self.blocks, (64, 128, 256, 512)), start=2):
            layers = []
            for i in range(n):
                stride = 2 if (i == 0 and stage > 2) else 1
                layers.append(CaffeBottleneck(in_ch, mid, mid * 4, stride, project=i == 0))
                in_ch = mid * 4
            setattr(self, f"res{stage}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_conv1(self.conv1(x)))
        # ceil_mode supplies TF's extra bottom/right pixel; odd sizes also need one before.
        odd_h, odd_w = x.shape[-2] % 2, x.shape[-1] % 2
        if odd_h or odd_w:
            x = F.pad(x, (odd_w, 0, odd_h, 0), value=float("-inf"))
        x = self.pool1(x)
        return self.res5(self.res4(self.res3(self.res2(x))))


class TimmEncoder(nn.Module):
    """Any timm model as a single-output feature extractor (its deepest feature map)."""

    def __init__(self, name: str, encoder_args: Mapping[str, Any]) -> None:
        super().__init__()
        import timm

        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True, **dict(encoder_args))
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            msg = " ".join(str(exc).split())
            raise ConfigError(
                f"fcrn: cannot build timm encoder {name!r} with encoder_args={dict(encoder_args)}: {msg}; "
                "use a timm model that supports features_only (e.g. resnet18, resnet50)"
            ) from exc
        self.out_channels = int(self.body.feature_info.channels()[-1])
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)[-1]


# --------------------------------------------------------------------------- decoder


class FastUpConv(nn.Module):
    """Unpooling + 5x5 convolution as four convolutions A (3x3), B (2x3), C (3x2), D (2x2) whose
    outputs are interleaved (Laina et al. §3.2, 'fast up-convolution'); pads of the NYU model."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_ch, out_ch, (3, 3))
        self.conv_b = nn.Conv2d(in_ch, out_ch, (2, 3))
        self.conv_c = nn.Conv2d(in_ch, out_ch, (3, 2))
        self.conv_d = nn.Conv2d(in_ch, out_ch, (2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv_a(F.pad(x, (1, 1, 1, 1)))
        b = self.conv_b(F.pad(x, (1, 1, 1, 0)))  # (left, right, top, bottom)
        c = self.conv_c(F.pad(x, (1, 0, 1, 1)))
        d = self.conv_d(F.pad(x, (1, 0, 1, 0)))
        return _interleave(a, b, c, d)


class UpProjection(nn.Module):
    """Up-projection: branch 1 = up-conv, BN, ReLU, 3x3 conv, BN; branch 2 = up-conv, BN; sum, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.br1 = FastUpConv(in_ch, out_ch)
        self.br1_bn = nn.BatchNorm2d(out_ch, eps=bn_eps)
        self.conv = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps)
        self.br2 = FastUpConv(in_ch, out_ch)
        self.br2_bn = nn.BatchNorm2d(out_ch, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.bn(self.conv(F.relu(self.br1_bn(self.br1(x)))))
        y2 = self.br2_bn(self.br2(x))
        return F.relu(y1 + y2)


class FCRNDecoder(nn.Module):
    """``layer1`` (1x1 conv + BN, no ReLU), four up-projections, ``ConvPred`` (3x3 -> 1).

    ``output_relu``: a ReLU after ``ConvPred``, as in Laina's network.py (the exact model only).
    """

    def __init__(
        self, in_ch: int, channels: Sequence[int], bn_eps: float = BN_EPS, output_relu: bool = False
    ) -> None:
        super().__init__()
        self.output_relu = bool(output_relu)
        if len(channels) != 5:
            raise ConfigError(f"fcrn: decoder_channels needs 5 ints (layer1 + 4 up-projections), got {list(channels)}")
        self.layer1 = nn.Conv2d(in_ch, channels[0], 1)
        self.layer1_bn = nn.BatchNorm2d(channels[0], eps=bn_eps)
        self.up = nn.ModuleList(UpProjection(channels[i], channels[i + 1], bn_eps) for i in range(4))
        self.pred = nn.Conv2d(channels[4], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1_bn(self.layer1(x))
        for block in self.up:
            x = block(x)
        x = self.pred(x)
        return F.relu(x) if self.output_relu else x


# --------------------------------------------------------------------------- the model


class FCRN(nn.Module):
    """FCRN depth regressor: RGB ``[B,3,H,W]`` in [0,1] -> metric depth ``[B,1,h,w]``."""

    def __init__(
        self,
        encoder: str = EXACT_ENCODER,
        encoder_args: Mapping[str, Any] | None = None,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.exact = encoder == EXACT_ENCODER
        if self.exact:
            if encoder_args:
                raise ConfigError(f"fcrn: encoder {EXACT_ENCODER!r} takes no encoder_args, got {dict(encoder_args)}")
            self.encoder: nn.Module = CaffeResNet50()
            bn_eps = BN_EPS
        else:
            self.encoder = TimmEncoder(encoder, encoder_args or {})
            bn_eps = 1e-5
        c = int(self.encoder.out_channels)
        # the architecture options, as create_fcrn records them in info.config
        self._arch: dict[str, Any] = {"encoder": encoder, "encoder_args": dict(encoder_args or {})}
        if not (self.exact and decoder_channels is None):
            self._arch["decoder_channels"] = None  # filled in below
        if decoder_channels is None:
            decoder_channels = [max(c // 2**k, 1) for k in range(1, 6)]
        self.decoder_channels = [int(ch) for ch in decoder_channels]
        if "decoder_channels" in self._arch:
            self._arch["decoder_channels"] = list(self.decoder_channels)
        self.decoder = FCRNDecoder(c, self.decoder_channels, bn_eps, output_relu=self.exact)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ShapeError(f"fcrn expects RGB as [B,3,H,W] in [0,1], got {list(rgb.shape)}")
        x = rgb * 255.0 if self.exact else rgb  # Laina's model takes raw 0-255 values
        return self.decoder(self.encoder(x))

    # ---------------------------------------------------------------- backbone contract hooks

    def save_weights(self, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
        """Write the weights as an FCRN safetensors file (``format=refinedepth.fcrn``) that
        ``create_backbone("fcrn", weights=path)`` loads with no options; ``metadata`` adds string
        entries. The config recorded is ``info.config`` (else the architecture options)."""
        info = getattr(self, "info", None)
        config = dict(info.config) if info is not None else dict(self._arch)
        return save_fcrn_weights(self, path, config, **dict(metadata or {}))

    def init_output_bias(self, mean_depth: float) -> bool:
        """Start ``ConvPred``'s bias at ``mean_depth`` (a constant prediction of the right scale)."""
        with torch.no_grad():
            self.decoder.pred.bias.fill_(float(mean_depth))
        return True

    def output_size_for(self, input_size: Sequence[int]) -> tuple[int, int]:
        """Output ``(height, width)`` for an input size (shape arithmetic, no forward pass)."""
        h, w = int(input_size[0]), int(input_size[1])
        if self.exact:
            for _ in range(2):  # conv1 /2 (SAME), pool1 /2 (SAME)
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            for _ in range(3):  # res3a, res4a, res5a: 1x1 stride 2, no padding
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            return h * 16, w * 16
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self.encoder(torch.zeros(1, 3, h, w))
        finally:
            self.train(was_training)
        return int(out.shape[-2]) * 16, int(out.shape[-1]) * 16


# --------------------------------------------------------------------------- weights IO


def _resolve_weights_path(weights: str | os.PathLike) -> Path:
    path = Path(weights)
    if path.is_dir():
        for name in ("backbone.safetensors", "fcrn.safetensors", "model.safetensors"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(
            f"{path}: no backbone.safetensors in this directory; pass the .safetensors file itself "
            "or a directory written by 'refinedepth train-backbone'"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found; expected a .safetensors file or a training directory")
    return path


def read_weights_metadata(weights: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata of an FCRN weights file (raises on a corrupt file)."""
    from safetensors import safe_open

    path = _resolve_weights_path(weights)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise FileFormatError(
            f"{path}: not a readable safetensors file ({' '.join(str(exc).split())}); "
            "the file is truncated or corrupt: re-create it with 'refinedepth convert fcrn-tf' or train-backbone"
        ) from exc
    if meta.get("format") != WEIGHTS_FORMAT:
        raise FileFormatError(
            f"{path}: expected FCRN weights (safetensors metadata format={WEIGHTS_FORMAT!r}), "
            f"got format={meta.get('format')!r}; convert Laina's .npy with 'refinedepth convert fcrn-tf'"
        )
    return meta


def weights_config(weights: str | os.PathLike) -> dict[str, Any]:
    """The architecture options recorded in a weights file's metadata."""
    meta = read_weights_metadata(weights)
    try:
        return dict(json.loads(meta.get("config", "{}")))
    except ValueError as exc:
        raise FileFormatError(f"{weights}: metadata 'config' is not valid JSON") from exc


def load_fcrn_weights(model: FCRN, weights: str | os.PathLike) -> None:
    """Load a safetensors file into ``model``, checking every name and shape."""
    from safetensors.torch import load_file

    path = _resolve_weights_path(weights)
    read_weights_metadata(path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise FileFormatError(
            f"{path}: cannot read tensors ({' '.join(str(exc).split())}); the file is truncated or corrupt"
        ) from exc
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    extra = sorted(k for k in set(state) - set(expected) if not k.endswith("num_batches_tracked"))
    if missing or extra:
        raise CheckpointError(
            f"{path}: tensors do not match the fcrn architecture ({len(missing)} missing, e.g. "
            f"{missing[:3]}; {len(extra)} unexpected, e.g. {extra[:3]}); check --backbone-arg encoder=..."
        )
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {list(state[key].shape)}, the model expects "
                f"{list(ref.shape)}; the file was made for a different fcrn configuration"
            )
    model.load_state_dict({k: state[k] for k in expected}, strict=False)


def weights_metadata(config: Mapping[str, Any], **extra: str) -> dict[str, str]:
    """Metadata every FCRN weights file carries (strings only, as safetensors requires)."""
    arch = {k: config[k] for k in ARCH_KEYS if k in config}
    meta = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "config": json.dumps(_jsonable(arch), sort_keys=True),
        "full_config": json.dumps(_jsonable(dict(config)), sort_keys=True),
    }
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def save_fcrn_weights(model: FCRN, path: str | os.PathLike, config: Mapping[str, Any], **extra: str) -> Path:
    """Write ``model``'s tensors (no ``num_batches_tracked``) to safetensors, atomically, with the
    user's umask permissions. ``FCRN.save_weights`` (the contract hook) calls this."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=weights_metadata(config, **extra))
    replace_file(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- factory


def _normalise_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"fcrn: unknown option(s) {unknown}; known options are {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **{k: v for k, v in options.items()}}
    cfg["encoder"] = str(cfg["encoder"] or EXACT_ENCODER)
    cfg["encoder_args"] = dict(cfg["encoder_args"] or {})
    h, w = parse_hw(cfg["input_size"], "fcrn: input_size")
    if h < 32 or w < 32:
        raise ConfigError(f"fcrn: input_size must be at least 32x32 (both sides >= 32), got {h}x{w}")
    cfg["input_size"] = [h, w]
    if cfg["decoder_channels"] is not None:
        cfg["decoder_channels"] = [int(c) for c in cfg["decoder_channels"]]
    cfg["max_depth"] = float(cfg["max_depth"])
    return cfg


def create_fcrn(weights: str | os.PathLike | None = None, **options: Any) -> FCRN:
    """FCRN (Laina et al. 2016), metric depth; exact NYU architecture unless ``encoder=`` is given.

    Options: ``encoder`` (``"laina-resnet50"`` or any timm model name), ``encoder_args`` (dict
    passed to timm, e.g. ``{"channels": [32, 64, 128, 256]}``), ``decoder_channels`` (5 ints),
    ``input_size`` ((height, width), default 228x304), ``max_depth`` (metres, for
    ``info.value_range``). ``weights`` is a ``.safetensors`` file (or a ``train-backbone`` output
    directory); architecture options not given are taken from its metadata, given ones must agree.
    """
    options = dict(options)
    if weights is not None:
        recorded = weights_config(weights)
        for key in ARCH_KEYS:
            if key not in recorded:
                continue
            if key in options:
                given = _normalise_options({key: options[key]})[key]
                want = _normalise_options({key: recorded[key]})[key]
                if given != want:
                    raise ConfigError(
                        f"fcrn: weights {weights} were made with {key}={want!r} but {key}={given!r} "
                        f"was requested; drop the option or pass {key}={json.dumps(want)}"
                    )
            options[key] = recorded[key]
        full = {}
        try:
            full = json.loads(read_weights_metadata(weights).get("full_config", "{}"))
        except ValueError:
            pass
        for key in ("input_size", "max_depth"):  # training resolution and range, unless overridden
            if key not in options and key in full:
                options[key] = full[key]
    cfg = _normalise_options(options)
    model = FCRN(cfg["encoder"], cfg["encoder_args"], cfg["decoder_channels"])
    if weights is not None:
        load_fcrn_weights(model, weights)
    model.eval()
    exact = model.exact and cfg["decoder_channels"] is None
    config = {k: v for k, v in cfg.items() if not (k == "decoder_channels" and v is None)}
    if not exact:
        config["decoder_channels"] = model.decoder_channels
    model.info = BackboneInfo(
        name="fcrn",
        output_kind="metric",
        input_size=tuple(cfg["input_size"]),
        output_size=model.output_size_for(cfg["input_size"]),
        value_range=(0.0, cfg["max_depth"]),
        config=config,
        description=(
            "FCRN (Laina et al. 2016), exact NYU architecture (Caffe ResNet-50 + up-projections)"
            if exact
            else f"FCRN up-projection decoder on timm encoder {cfg['encoder']!r}"
        ),
    )
    return model


create_fcrn.info = BackboneInfo(  # static info: `backbones info fcrn` need not build 63M params
    name="fcrn",
    output_kind="metric",
    input_size=EXACT_INPUT_SIZE,
    output_size=(128, 160),
    value_range=(0.0, 10.0),
    config={k: (list(v) if isinstance(v, tuple) else v) for k, v in DEFAULTS.items() if v is not None},
    description="FCRN (Laina et al. 2016), exact NYU architecture (Caffe ResNet-50 + up-projections)",
)


__all__ = [
    "FCRN",
    "CaffeResNet50",
    "TimmEncoder",
    "FastUpConv",
    "UpProjection",
    "FCRNDecoder",
    "create_fcrn",
    "load_fcrn_weights",
    "save_fcrn_weights",
    "read_weights_metadata",
    "weights_config",
    "weights_metadata",
    "EXACT_ENCODER",
    "EXACT_PARAMETERS",
    "BN_EPS",
]
