"""Library API: load a trained refiner and refine depth maps from any model (SPEC §1 use (c)).

    from refinedepth import Refiner

    refiner = Refiner.from_pretrained("runs/refiner")        # a run dir or a checkpoint dir
    refined = refiner.refine(rough)                           # numpy [H,W] in, metres [H,W] out

``refine`` takes numpy arrays or torch tensors, one map (``[H,W]``) or a batch (``[B,H,W]`` or
``[B,1,H,W]``), at any size: maps are resized to the model's size and the result back to the
input's size. It returns metric depth in metres, the same type and shape as the input.
``refine_tensor`` is the batched torch path that pipelines (``cache --refiner``, ``evaluate``,
``predict``) chain.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError, ShapeError
from . import checkpoint as ckpt
from .chain import check_detail
from .models import GeneratorConfig, build_generator
from .normalize import Normalization, refine_full


class Refiner:
    """A trained generator with its normalisation; see :meth:`from_pretrained`.

    Attributes:
        generator: the ``UNetGenerator`` (eval mode).
        normalization: how inputs were normalised in training (kind, ``max_depth``).
        inputs: ``rough``, ``rough+rgb`` or ``rgb``. residual: whether it predicts a correction.
        size: the model's input ``(height, width)``. meta: the checkpoint's ``config.json``.
        detail_sigma: ``None`` (the whole refined map), or keep only the refiner's correction
            finer than a Gaussian of this many pixels of the refined map and take the larger
            scales from ``rough x scale`` (the checkpoint's global scale):
            :mod:`refinedepth.refiner.detail`. Set it with :meth:`set_detail` or
            ``from_pretrained(..., detail_sigma=...)``.
        detail_scale: with ``detail_sigma``, ``"global"`` (the large scales, the per-image scale
            included, from ``rough x scale``) or ``"image"`` (the refiner's per-image scale kept).
    """

    def __init__(
        self, generator: torch.nn.Module, meta: dict[str, Any], device="cpu", path: str | None = None,
        head: torch.nn.Module | None = None,
    ) -> None:
        refiner = meta["refiner"]
        self.generator = generator.eval()
        #: the full-resolution guided head (:mod:`refinedepth.refiner.head`), or None
        self.head = head.eval() if head is not None else None
        self._module = self.generator
        self.meta = meta
        self.path = path
        self.normalization = Normalization(**refiner["normalization"])
        self.inputs: str = refiner["inputs"]
        self.residual: bool = bool(refiner["residual"])
        self.size: tuple[int, int] = (int(refiner["size"][0]), int(refiner["size"][1]))
        self.preset: str = refiner.get("preset", "")
        self.device = torch.device(device)
        self.detail_sigma: float | None = None
        self.detail_scale: str = "global"

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        which: str = "best",
        optimize: Callable[[torch.nn.Module], torch.nn.Module] | str | None = "auto",
        *,
        precision: str = "fp32",
        detail_sigma: float | None = None,
        detail_scale: str = "global",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
    ) -> Refiner:
        """Load a refiner from a checkpoint directory, a training run directory, or a Hugging
        Face Hub repository id (``org/name``, or ``org/name@revision``).

        Hub ids are resolved through ``huggingface_hub`` (:mod:`refinedepth.refiner.hub`):
        ``revision``, ``cache_dir`` and ``local_files_only`` are passed on, and
        ``HF_HUB_OFFLINE=1`` uses the local Hub cache only.

        A run directory resolves to its ``best/`` checkpoint (``which="last"`` for the other).
        Files are size- and hash-checked; a truncated or altered file raises
        :class:`~refinedepth.errors.CheckpointError` naming it. ``optimize`` is applied to the
        loaded generator: ``"auto"`` (default) uses the exact fast CPU inference path of
        :func:`refinedepth.refiner.fast.optimize_for_inference` (BatchNorm folded, prepacked
        oneDNN convolutions; equal to the plain module to ~1e-6) and the plain module elsewhere;
        ``None`` keeps the plain module; a callable is applied as is. The fast path checks itself
        on one batch at load and falls back to the plain module with one warning if its private
        oneDNN operators are missing or its output differs. ``precision="bf16"`` runs inference
        in bfloat16 autocast (about 1e-2 relative difference; fast on CPUs with AVX-512 BF16 or
        AMX and on GPUs, slower than fp32 on CPUs without them). ``detail_sigma`` and
        ``detail_scale``: see :meth:`set_detail`.
        """
        from ..device import resolve_device
        from ..training.seeding import preserve_global_rng
        from .hub import resolve

        dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        local = resolve(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        directory = ckpt.resolve_checkpoint(local, which=which)
        meta = ckpt.read_config(directory)
        gcfg = GeneratorConfig.from_dict(meta["refiner"]["generator"])
        with preserve_global_rng():  # building modules draws initial weights, overwritten below
            generator = build_generator(gcfg, init=False)
        tensors = ckpt.load_tensors(directory, ckpt.GENERATOR_FILE, meta)
        ckpt.load_state(generator, tensors, f"{directory}/{ckpt.GENERATOR_FILE}")
        head = None
        if meta["refiner"].get("head"):
            from .head import HeadConfig, build_head

            head = build_head(HeadConfig.from_dict(meta["refiner"]["head"]))
            ckpt.load_state(head, ckpt.load_tensors(directory, ckpt.HEAD_FILE, meta), f"{directory}/{ckpt.HEAD_FILE}")
            head = head.to(dev)
        refiner = cls(generator.to(dev), meta, device=dev, path=str(directory), head=head)
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"unknown precision {precision!r}: expected fp32 or bf16")
        if optimize == "auto" and dev.type == "cpu":
            in_channels = int(gcfg.in_channels)

            def optimize(g: torch.nn.Module) -> torch.nn.Module:
                return _auto_inference_path(g, (1, in_channels, *refiner.size), precision)
        elif optimize == "auto":
            optimize = _Autocast if precision == "bf16" else None
        if optimize is not None:
            refiner.optimize(optimize)
        if detail_sigma is not None or detail_scale != "global":
            refiner.set_detail(detail_sigma, scale=detail_scale)
        return refiner

    def set_detail(self, sigma: float | None, *, scale: str = "global") -> Refiner:
        """Keep only the refined detail finer than ``sigma`` pixels (``None``: the whole map).

        The output becomes ``rough x scale`` (the global scale fitted on the refiner's training
        pairs, stored in its checkpoint) times the part of ``refined / (rough x scale)`` finer
        than a Gaussian of ``sigma`` pixels of the refined map (:mod:`refinedepth.refiner.detail`).
        Use it when the refiner's large-scale correction does not carry to your images (it
        learned the first stage's errors on its training views) but its detail does.

        ``scale="image"`` keeps the refiner's per-image scale as well: the output is multiplied
        by the geometric mean of ``refined / (rough x scale)`` over the whole image, so only the
        layout between the detail and the whole image comes from ``rough x scale``.
        """
        check_detail([self], sigma, scale)
        if sigma is None:
            self.detail_sigma = None
            self.detail_scale = "global"
            return self
        from .detail import gaussian_kernel

        gaussian_kernel(sigma)  # checks sigma
        if self.inputs == "rgb":
            raise ConfigError(
                f"refiner {self.path!r} reads RGB only, so there is no rough map to keep the large scale "
                "of: detail-only refinement needs a refiner with rough inputs"
            )
        if not self.meta.get("baselines"):
            raise ConfigError(
                f"refiner {self.path!r} stores no global scale (trained before baselines existed): "
                "retrain it with 'refinedepth train-refiner' to use detail-only refinement"
            )
        self.detail_sigma = float(sigma)
        self.detail_scale = scale
        return self

    def save_pretrained(self, directory: str | os.PathLike, *, repo_id: str | None = None) -> Path:
        """Write this refiner as a checkpoint directory (``config.json``, ``generator.safetensors``,
        atomically) plus a generated ``README.md`` model card; loadable with :meth:`from_pretrained`."""
        from .hub import write_model_card

        keep = {k: v for k, v in self.meta.items() if k not in ("format", "format_version", "created", "files")}
        path = ckpt.save_checkpoint(directory, config=keep, generator=self.generator, head=self.head)
        write_model_card(path, ckpt.read_config(path), repo_id=repo_id, location=str(directory))
        return Path(path)

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
        """Upload this refiner (checkpoint + model card) to the Hub repository ``repo_id``
        (created if needed); returns the commit URL. Needs network access and a token."""
        import tempfile

        from .hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "refiner", repo_id=repo_id)
            return push_folder(folder, repo_id, private=private, token=token)

    def optimize(self, fn: Callable[[torch.nn.Module], torch.nn.Module]) -> Refiner:
        """Run inference through ``fn(generator)`` from now on (the weights stay in ``generator``)."""
        self._module = fn(self.generator)
        return self

    def to(self, device: str | torch.device) -> Refiner:
        self.device = torch.device(device)
        self.generator.to(self.device)
        if self.head is not None:
            self.head.to(self.device)
        if self._module is not self.generator:
            self._module.to(self.device)
        return self

    @property
    def output_kind(self) -> str:
        """Kind of rough maps the refiner expects (its training cache's ``output_kind``)."""
        return self.normalization.output_kind

    @property
    def max_depth(self) -> float:
        return self.normalization.max_depth

    @property
    def needs_rgb(self) -> bool:
        """Whether :meth:`refine` needs the RGB image (conditioning or the head's guide)."""
        return self.inputs != "rough" or (self.head is not None and self.head.config.guide != "none")

    @property
    def rgb_use(self) -> str:
        """What the refiner uses the image for, for messages: ``is conditioned on 'rough+rgb'``,
        ``has an RGB-guided head``."""
        if self.inputs != "rough":
            return f"is conditioned on {self.inputs!r}"
        guide = self.head.config.guide if self.head is not None else "none"
        return "has an RGB-guided head" if guide == "rgb" else f"has a {guide}-guided head"

    def __repr__(self) -> str:
        return (
            f"Refiner(preset={self.preset!r}, inputs={self.inputs!r}, residual={self.residual}, "
            f"size={self.size}, output_kind={self.output_kind!r}, max_depth={self.max_depth:g}, path={self.path!r}"
            + (f", detail_sigma={self.detail_sigma:g}, detail_scale={self.detail_scale!r})"
               if self.detail_sigma is not None else ")")
        )

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def refine_tensor(
        self, rough: torch.Tensor | None, rgb: torch.Tensor | None = None, output_kind: str | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Batched torch path: ``rough`` ``[B,1,h,w]`` (and/or ``rgb`` ``[B,3,h',w']`` float in
        [0,1]) -> refined metric depth ``[B,1,h,w]`` float32 on ``rough``'s device, at
        ``out_size`` (default: ``rough``'s size). A refiner with a full-resolution head works at
        ``out_size``: pass the resolution you want the detail at (e.g. the image's).

        ``output_kind`` says what ``rough`` holds (default: what the refiner was trained on);
        chained refiners pass ``"metric"`` for a previous refiner's output.
        """
        if self.inputs != "rgb":
            if rough is None:
                raise ShapeError(f"this refiner is conditioned on {self.inputs!r}: expected rough [B,1,H,W], got None")
            if rough.ndim != 4 or rough.shape[1] != 1 or min(rough.shape) == 0:
                raise ShapeError(f"rough: expected a non-empty [B,1,H,W] tensor, got shape {tuple(rough.shape)}")
            _check_finite(rough, "rough")
        if self.needs_rgb:
            if rgb is None:
                raise ShapeError(f"this refiner {self.rgb_use} and needs rgb [B,3,H,W]; got rgb=None")
            if rgb.ndim != 4 or rgb.shape[1] != 3 or min(rgb.shape) == 0:
                raise ShapeError(f"rgb: expected a non-empty [B,3,H,W] tensor in [0,1], got shape {tuple(rgb.shape)}")
            if rough is not None and rgb.shape[0] != rough.shape[0]:
                raise ShapeError(f"rough and rgb batch sizes differ: {rough.shape[0]} vs {rgb.shape[0]}")
            if not rgb.is_floating_point():
                rgb = rgb.float() / 255.0
        out_device = rough.device if rough is not None else rgb.device
        use_rough = rough if self.inputs != "rgb" else None
        refined = refine_full(
            self._module,
            use_rough.to(self.device) if use_rough is not None else None,
            rgb.to(self.device) if (rgb is not None and self.needs_rgb) else None,
            norm=self.normalization,
            inputs=self.inputs,
            residual=self.residual,
            size=self.size,
            kind=output_kind,
            out_size=tuple(out_size) if out_size is not None else tuple((rough if rough is not None else rgb).shape[-2:]),
            head=self.head,
        )
        if self.detail_sigma is not None:
            refined = self._keep_detail(refined, use_rough.to(self.device), output_kind or self.output_kind)
        return refined.to(out_device)

    def _keep_detail(self, refined: torch.Tensor, rough: torch.Tensor, kind: str) -> torch.Tensor:
        """``refined`` with its large scales replaced by ``rough x scale`` (:meth:`set_detail`)."""
        from ..baselines import Baselines, baseline_depth
        from .detail import keep_detail
        from .normalize import MIN_DEPTH_FRACTION

        scale = Baselines.from_dict(self.meta["baselines"]).scale
        base = scale * baseline_depth(rough, kind, tuple(refined.shape[-2:]))
        kept = keep_detail(refined, base, self.detail_sigma, image_scale=self.detail_scale == "image")
        # the refiner's output range, as the whole map's (docs/refiner.md)
        return kept.clamp(MIN_DEPTH_FRACTION * self.max_depth, self.max_depth)

    def refine(
        self,
        rough: np.ndarray | torch.Tensor | None,
        rgb: np.ndarray | torch.Tensor | None = None,
        *,
        output_kind: str | None = None,
        batch_size: int = 8,
        out_size: Any = None,
    ) -> np.ndarray | torch.Tensor:
        """Refine one map or a batch; returns metric depth with the input's type and shape, at the
        input's size or ``out_size``.

        ``rough``: ``[H,W]``, ``[B,H,W]`` or ``[B,1,H,W]`` (numpy or torch, any float dtype).
        ``rgb`` (for refiners conditioned on RGB): numpy ``[H,W,3]``/``[B,H,W,3]`` (uint8 0-255 or
        float 0-1) or torch ``[3,H,W]``/``[B,3,H,W]``; it may have a different size than ``rough``.
        ``out_size`` ``(H, W)`` or ``"HxW"``: the output's size (default: ``rough``'s); a refiner
        with a full-resolution head works at it, so pass the image's size to get the detail at
        the image's resolution (:meth:`refine_tensor`).
        """
        from ..geometry import parse_hw

        size = None if out_size is None else parse_hw(out_size, "out_size")
        ref = rough if rough is not None else rgb
        if ref is None:
            raise ShapeError("refine: expected a rough map (and/or rgb), got None")
        as_numpy = isinstance(ref, np.ndarray)
        rough_t, shape = (None, None) if rough is None else _rough_to_batch(rough)
        rgb_t = None if rgb is None else _rgb_to_batch(rgb)
        if rough_t is None and rgb_t is not None:
            shape = tuple(rgb_t.shape[-2:]) if (rgb_t.shape[0] == 1 and _rgb_single(rgb)) else (rgb_t.shape[0], *rgb_t.shape[-2:])
        n = (rough_t if rough_t is not None else rgb_t).shape[0]
        outs = []
        for start in range(0, n, max(1, batch_size)):
            r = rough_t[start : start + batch_size] if rough_t is not None else None
            c = rgb_t[start : start + batch_size] if rgb_t is not None else None
            outs.append(self.refine_tensor(r, c, output_kind=output_kind, out_size=size))
        out = torch.cat(outs, dim=0)
        out = out.reshape(shape if size is None else (*shape[:-2], *out.shape[-2:]))
        if as_numpy:
            return out.cpu().numpy().astype(np.float32, copy=False)
        return out

    __call__ = refine


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise DataError(
            f"{name} has {bad} non-finite values (NaN/inf) out of {x.numel()}: expected finite depth; "
            "fill or mask them before refining"
        )


def _to_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ShapeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ShapeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _rough_to_batch(rough: Any) -> tuple[torch.Tensor, tuple[int, ...]]:
    t = _to_tensor(rough, "rough")
    shape = tuple(t.shape)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif not (t.ndim == 4 and t.shape[1] == 1):
        raise ShapeError(f"rough: expected [H,W], [B,H,W] or [B,1,H,W], got shape {shape}")
    if t.numel() == 0:
        raise ShapeError(f"rough: expected a non-empty map, got shape {shape}")
    return t.float(), shape


def _rgb_single(rgb: Any) -> bool:
    return (isinstance(rgb, np.ndarray) and rgb.ndim == 3) or (isinstance(rgb, torch.Tensor) and rgb.ndim == 3)


def _rgb_to_batch(rgb: Any) -> torch.Tensor:
    is_np = isinstance(rgb, np.ndarray)
    t = _to_tensor(rgb, "rgb")
    shape = tuple(t.shape)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ShapeError(f"rgb: expected {'[H,W,3] or [B,H,W,3]' if is_np else '[3,H,W] or [B,3,H,W]'}, got shape {shape}")
    if is_np:
        t = t.permute(0, 3, 1, 2)
    if t.shape[1] != 3:
        raise ShapeError(
            f"rgb: expected 3 channels ({'channels last' if is_np else 'channels first'}), got shape {shape}"
        )
    if not t.is_floating_point():
        t = t.float() / 255.0
    return t.float()


__all__ = ["Refiner"]


def _auto_inference_path(
    generator: torch.nn.Module, example_shape: tuple[int, ...], precision: str = "fp32"
) -> torch.nn.Module:
    """The fast CPU inference path, without process-wide allocator changes (library use), after a
    one-batch self-check against the plain module; the plain module (with one warning) if the
    fast path is unavailable, raises, or disagrees."""
    import warnings

    from .fast import optimize_for_inference

    tolerance = 5e-2 if precision == "bf16" else 1e-3
    try:
        fast = optimize_for_inference(generator, example_shape, precision=precision, allocator=False)
        x = torch.rand(example_shape, generator=torch.Generator().manual_seed(0)).to(_device_of(generator)) * 2 - 1
        with torch.no_grad():
            expected = generator.eval()(x).float()
            got = fast(x).float()
        err = float((got - expected).norm() / expected.norm().clamp_min(1e-12))
        if not err <= tolerance:  # also catches NaN
            raise RuntimeError(f"its output differs from the plain module's by {err:.2g} (relative)")
        return fast
    except Exception as exc:  # private operators missing or broken on this build/CPU
        warnings.warn(
            f"refinedepth: the fast CPU inference path is not usable here ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); using the plain PyTorch module",
            RuntimeWarning,
            stacklevel=3,
        )
        return _Autocast(generator) if precision == "bf16" else generator


def _device_of(module: torch.nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class _Autocast(torch.nn.Module):
    """Runs a module under bfloat16 autocast on its device (the plain bf16 path)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.module(x).float()
