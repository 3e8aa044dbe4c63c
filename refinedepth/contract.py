"""The backbone contract of SPEC §3.1: checking a backbone, and the hooks trainers call.

* :func:`check_backbone` builds a backbone and verifies its output and :class:`BackboneInfo`.
* :func:`save_backbone_weights` writes a backbone's weights atomically; a backbone that defines
  ``save_weights(path, metadata)`` (FCRN does) writes its own format, any other ``nn.Module``
  gets a plain safetensors state dict with metadata ``format=refinedepth.backbone``,
  ``backbone`` and ``config`` (JSON).
* :func:`init_output_bias` starts a fresh backbone's output bias at the training set's mean
  depth when the backbone defines ``init_output_bias(mean_depth)``; False when it has none.

Stage-1 training calls these instead of special-casing a backbone by name. Files written here
get the permissions a plain ``open()`` would give them (``0o666 & ~umask``): safetensors itself
creates files readable by their owner only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import PluginError
from .registry import BackboneInfo, create_backbone

PLAIN_WEIGHTS_FORMAT = "refinedepth.backbone"


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give ``tmp`` the user's default file mode (``0o666 & ~umask``) and rename it to ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def write_atomically(path: str | os.PathLike, write, *args: Any, **kwargs: Any) -> Path:
    """``write(tmp, *args, **kwargs)`` to a hidden temporary file beside ``path`` (same suffix, so
    writers that go by the extension still do), then :func:`replace_file` it to ``path``; on any
    failure the temporary is removed and ``path`` is left as it was. Returns ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp, *args, **kwargs)
        replace_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _unwrap(model: Any) -> Any:
    """The module inside a (Distributed)DataParallel wrapper, else ``model``."""
    from torch import nn

    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return model


def save_backbone_weights(
    model: Any,
    path: str | os.PathLike,
    *,
    backbone: str,
    config: Mapping[str, Any],
    metadata: Mapping[str, str],
) -> None:
    """Write ``model``'s weights to ``path`` atomically (temporary file + ``os.replace``).

    Uses ``model.save_weights(path, metadata)`` when the module defines it; otherwise a plain
    safetensors state dict whose metadata holds ``format=refinedepth.backbone``, ``backbone``,
    ``config`` (JSON) and ``metadata``'s entries. A DDP wrapper is unwrapped first.
    """
    model = _unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    extra = {str(k): str(v) for k, v in dict(metadata).items()}
    try:
        saver = getattr(model, "save_weights", None)
        if callable(saver):
            saver(tmp, extra)
        else:
            from safetensors.torch import save_file

            # clone: safetensors refuses tensors that share memory (tied weights)
            state = {
                k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
            }
            meta = {
                **extra,
                "format": PLAIN_WEIGHTS_FORMAT,
                "backbone": str(backbone),
                "config": json.dumps(dict(config), sort_keys=True),
            }
            save_file(state, str(tmp), metadata=meta)
        replace_file(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def init_output_bias(model: Any, mean_depth: float) -> bool:
    """Call ``model.init_output_bias(mean_depth)`` when the backbone defines it; returns whether
    a bias was set (False when the backbone has no such hook)."""
    model = _unwrap(model)
    hook = getattr(model, "init_output_bias", None)
    if not callable(hook):
        return False
    return bool(hook(float(mean_depth)))


def check_backbone(name: str, weights=None, batch_size: int = 2, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Build ``name``, run it on a random batch at its preferred input size, and verify:
    a :class:`BackboneInfo` is attached, the output is ``[B,1,h,w]`` of ``info.output_size``,
    and every value is finite. Returns a report; raises :class:`PluginError` on a violation. An
    output outside ``info.value_range`` is not a violation (the input is noise, the weights may be
    untrained) and is listed in the report's ``warnings``."""
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
    low, high = float(out.min()), float(out.max())
    warnings = []
    if low < info.value_range[0] or high > info.value_range[1]:
        # not a violation: the input is noise, and untrained weights (no --weights) may go anywhere
        warnings.append(
            f"output [{low:.4g}, {high:.4g}] leaves the declared value_range [{info.value_range[0]:g}, "
            f"{info.value_range[1]:g}] on a random input; untrained weights may do this, trained ones should not"
        )
    return {
        "name": name,
        "info": info.to_dict(),
        "output_shape": list(out.shape),
        "output_min": low,
        "output_max": high,
        "parameters": sum(p.numel() for p in model.parameters()),
        "warnings": warnings,
    }


__all__ = ["check_backbone", "save_backbone_weights", "init_output_bias", "replace_file", "PLAIN_WEIGHTS_FORMAT"]
