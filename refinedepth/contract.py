"""Check that a backbone honours the contract of SPEC §3.1."""

from __future__ import annotations

from typing import Any

from .errors import PluginError
from .registry import BackboneInfo, create_backbone


def check_backbone(name: str, weights=None, batch_size: int = 2, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Build ``name``, run it on a random batch at its preferred input size, and verify:
    a :class:`BackboneInfo` is attached, the output is ``[B,1,h,w]`` of ``info.output_size``,
    and every value is finite. Returns a report; raises :class:`PluginError` on a violation."""
    import torch

    model = create_backbone(name, weights=weights, **options)
    info: BackboneInfo = model.info
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    h, w = info.input_size
    rgb = torch.rand(batch_size, 3, h, w, generator=gen)
    kwargs: dict[str, Any] = {}
    if getattr(model, "accepts_ids", False):
        # backbones that match inputs to samples (e.g. `files`) are called with sample ids
        available = getattr(model, "available_ids", None)
        ids = list(available())[:batch_size] if callable(available) else []
        if len(ids) < batch_size:
            raise PluginError(
                f"backbone {name!r} takes sample ids but offers {len(ids)} via available_ids() "
                f"for a batch of {batch_size}"
            )
        kwargs["ids"] = ids
    with torch.no_grad():
        out = model(rgb, **kwargs)
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != batch_size or out.shape[1] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"backbone {name!r}: expected output [B,1,h,w] with B={batch_size}, got {shape}")
    if tuple(out.shape[-2:]) != info.output_size:
        raise PluginError(
            f"backbone {name!r}: output size {tuple(out.shape[-2:])} differs from info.output_size {info.output_size}"
        )
    if not torch.isfinite(out).all():
        raise PluginError(f"backbone {name!r}: output has non-finite values on a random input")
    return {
        "name": name,
        "info": info.to_dict(),
        "output_shape": list(out.shape),
        "output_min": float(out.min()),
        "output_max": float(out.max()),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
