"""The refiner chain: ``rough -> refiner 1 -> refiner 2 -> ...`` (SPEC §6, the paper's three-stage
ablation, Tables 3 and 4).

One object used by ``evaluate`` (one table row per stage), ``predict`` (the last stage is written)
and ``cache --refiner`` (the last stage is cached). The first refiner reads the backbone's output
in its kind (``metric``, ``relative`` or ``disparity``); later ones read the metric depth of the
refiner before them, so everything after the rough stage is metric.

    chain = RefinerChain.load(["runs/r1", "runs/r2"], device="cpu")
    chain.stage_names            # ["rough", "+ r1", "+ r1 + r2"]
    stages = chain(rough, rgb, kind="disparity")   # [rough, refined_1, refined_2]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RUN_CHECKPOINTS, UNKNOWN_BACKBONE
from ..errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:  # importing this module does not import torch
    import torch


#: where the per-image scale of a detail-only map comes from: ``rough x scale`` or the refiner
DETAIL_SCALES = ("global", "image")


def check_detail(refiners: Sequence[object], detail_sigma: float | None, detail_scale: str = "global") -> None:
    """Refuse an unknown detail scale, ``--detail-scale image`` without ``--detail-sigma``, and
    either without refiners."""
    if detail_scale not in DETAIL_SCALES:
        raise ConfigError(f"detail scale must be one of {', '.join(DETAIL_SCALES)}, got {detail_scale!r}")
    if detail_scale != "global" and detail_sigma is None:
        raise ConfigError(
            "the refiner's per-image scale (--detail-scale image) applies to detail-only "
            "refinement: pass --detail-sigma as well"
        )
    if detail_sigma is not None and not refiners:
        raise ConfigError("detail-only refinement (--detail-sigma) applies to refiners: pass --refiner as well")


def stage_names(
    refiners: Sequence[str | os.PathLike], detail_sigmas: Sequence[float | None] = (),
    detail_scales: Sequence[str] = (),
) -> list[str]:
    """Row names: ``rough``, ``+ NAME``, ``+ NAME + NAME2`` (NAME = the refiner folder's name,
    followed by ``(detail < S px)`` for a refiner used detail-only with ``detail_sigmas[i] = S``,
    ``(detail < S px, per-image scale)`` where ``detail_scales[i]`` is ``"image"``)."""
    names = ["rough"]
    label = ""
    for i, ref in enumerate(refiners):
        label += f" + {_label(ref)}"
        sigma = detail_sigmas[i] if i < len(detail_sigmas) else None
        if sigma is not None:
            image = i < len(detail_scales) and detail_scales[i] == "image"
            label += f" (detail < {sigma:g} px{', per-image scale' if image else ''})"
        names.append(label.strip())
    return names


def _label(path: str | os.PathLike) -> str:
    p = Path(path)
    # a checkpoint inside a run directory (runs/x/best) is named after the run
    if p.name in RUN_CHECKPOINTS and p.parent.name:
        return p.parent.name
    return p.name or str(path)


def refiner_records(paths: Sequence[str | os.PathLike]) -> list[dict[str, str]]:
    """``[{"path", "sha256"}]`` of refiner directories or Hub ids (what a cache built with them
    records; the sha256 covers the directory's files), without loading them. A missing path or a
    file is a :class:`CheckpointError`."""
    from ..cache import sha256_path

    return [{"path": str(p), "sha256": sha256_path(_local(p))} for p in paths]


def _local(path: str | os.PathLike) -> Path:
    """The local directory of a refiner: ``path`` itself (checked), or a Hub id's snapshot."""
    from ..training.checkpoint import complete_twin
    from .hub import is_hub_id, resolve

    if is_hub_id(path):
        return resolve(path)
    twin = complete_twin(path)  # a save killed between its two renames (as resolve_checkpoint reads it)
    if twin is not None:
        return twin
    _check_directory(path)
    return Path(path)


def _check_directory(path: str | os.PathLike) -> None:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"refiner checkpoint {str(path)!r} does not exist: expected a directory written by "
            "'refinedepth train-refiner --out DIR'"
        )
    if not p.is_dir():
        raise CheckpointError(
            f"refiner checkpoint {str(path)!r} is a file: expected a directory written by "
            "'refinedepth train-refiner --out DIR'"
        )


def trained_backbones(meta: dict[str, Any]) -> list[str]:
    """The backbones whose rough maps a refiner was trained on, from its checkpoint metadata
    (``source.backbones``; older checkpoints record one ``source.backbone``; empty if unknown)."""
    source = meta.get("source") or {}
    names = source.get("backbones") or ([source["backbone"]] if source.get("backbone") else [])
    return [str(n) for n in names if n and n != UNKNOWN_BACKBONE]


class RefinerChain:
    """Refiners applied one after the other; ``RefinerChain([])`` is the rough stage alone.

    Args:
        refiners: :class:`~refinedepth.refiner.api.Refiner` objects, in order.
        paths: where each was loaded from (names the stages and the records); default: each
            refiner's own ``path``.
    """

    def __init__(self, refiners: Sequence[Any] = (), paths: Sequence[str | os.PathLike] | None = None) -> None:
        self.refiners = list(refiners)
        if paths is None:
            paths = [getattr(r, "path", None) or f"refiner{i + 1}" for i, r in enumerate(self.refiners)]
        if len(paths) != len(self.refiners):
            raise ValueError(f"{len(paths)} paths for {len(self.refiners)} refiners")
        self.paths = [str(p) for p in paths]
        self._local: list[Path] | None = None

    @classmethod
    def load(
        cls, paths: Sequence[str | os.PathLike], device: str | torch.device = "cpu", precision: str = "fp32",
        detail_sigma: float | None = None, detail_scale: str = "global",
    ) -> RefinerChain:
        """Load each refiner checkpoint or run directory (or Hugging Face Hub id) with
        ``Refiner.from_pretrained`` (``precision`` ``fp32`` or ``bf16``); every path is checked
        before any is loaded. ``detail_sigma`` (pixels) makes every refiner of the chain
        detail-only (:meth:`~refinedepth.refiner.api.Refiner.set_detail`), keeping each one's
        per-image scale with ``detail_scale="image"``."""
        paths = list(paths)
        check_detail(paths, detail_sigma, detail_scale)
        if not paths:
            return cls([])
        from . import checkpoint as ckpt
        from .api import Refiner

        local = [_local(p) for p in paths]
        for d in local:
            ckpt.resolve_checkpoint(d)
        chain = cls(
            [Refiner.from_pretrained(d, device=str(device), precision=precision, detail_sigma=detail_sigma,
                                    detail_scale=detail_scale)
             for d in local],
            paths,
        )
        chain._local = local
        return chain

    def __len__(self) -> int:
        return len(self.refiners)

    @property
    def stage_names(self) -> list[str]:
        """``["rough", "+ a", "+ a + b"]``: one name per stage, rough first."""
        return stage_names(
            self.paths,
            [getattr(r, "detail_sigma", None) for r in self.refiners],
            [getattr(r, "detail_scale", "global") for r in self.refiners],
        )

    @property
    def records(self) -> list[dict[str, str]]:
        """``[{"path", "sha256"}]`` per refiner, for a cache's ``refiners`` attribute."""
        if self._local is None:
            return refiner_records(self.paths)
        from ..cache import sha256_path

        return [{"path": p, "sha256": sha256_path(d)} for p, d in zip(self.paths, self._local)]

    def check_backbone(self, backbone: str | None, where: str, *, any_backbone: bool = False) -> None:
        """Refuse rough maps of a backbone the first refiner was not trained on: its corrections
        and its stored baselines were fitted to its training backbone's maps, and on another's
        they measure nothing. ``where`` says where the maps come from, completed by the name:
        ``"cache 'x.h5' holds rough maps of backbone"``, ``"--backbone is"``. ``any_backbone``
        applies it anyway; refiners that record no backbone pass."""
        if any_backbone or not self.refiners or not backbone or backbone == UNKNOWN_BACKBONE:
            return
        trained = trained_backbones(getattr(self.refiners[0], "meta", None) or {})
        if trained and backbone not in trained:
            names = " and ".join(repr(b) for b in trained)
            raise DataError(
                f"{where} {backbone!r} but refiner {self.paths[0]!r} was trained on rough maps of {names}: "
                f"its correction and baselines do not carry over; use that backbone's maps "
                f"(--backbone {trained[0]}), or pass --any-backbone to apply it anyway"
            )

    def output_kind(self, input_kind: str) -> str:
        """Kind of the last stage's maps for rough maps of ``input_kind``."""
        return "metric" if self.refiners else input_kind

    def __call__(
        self, rough: torch.Tensor, rgb: torch.Tensor | None = None, kind: str = "metric",
        out_size: tuple[int, int] | None = None, *, then_more: bool = False,
    ) -> list[torch.Tensor]:
        """``[rough, refined_1, refined_2, ...]`` for a batch ``rough`` ``[B,1,h,w]`` of ``kind``
        (``rgb`` ``[B,3,h',w']`` in [0,1] for refiners conditioned or guided by it); each refined
        map is metric depth ``[B,1,h,w]`` float32 on ``rough``'s device (computed without
        gradients). Refiners with a full-resolution head, and the last refiner, output at
        ``out_size`` (e.g. the ground truth's resolution) when it is given, as
        ``Refiner.refine(out_size=)`` does: their correction is resized from the model size to it
        directly (through the rough map's grid, a 128x128 correction lost its detail to a 32x48
        map); the others at their input's size, which the next refiner takes. ``then_more``: the
        maps as a further stage would take them (the last refiner too at its input's size unless it
        has a head), which ``cache --refiner`` stores for training that stage."""
        stages = [rough]
        current = rough
        last = -1 if then_more else len(self.refiners) - 1
        for k, refiner in enumerate(self.refiners):
            size = out_size if (getattr(refiner, "head", None) is not None or k == last) else None
            current = refiner.refine_tensor(current, rgb=rgb, output_kind=kind, out_size=size)  # no_grad inside
            kind = "metric"
            stages.append(current)
        return stages

    def __repr__(self) -> str:
        return f"RefinerChain({self.paths!r})"


__all__ = ["DETAIL_SCALES", "RefinerChain", "check_detail", "refiner_records", "stage_names", "trained_backbones"]
