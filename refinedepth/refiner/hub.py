"""Refiners on the Hugging Face Hub: resolve ``org/name`` ids, write model cards, upload.

A refiner on the Hub is a repository holding one checkpoint directory's files (``config.json``,
``generator.safetensors``) and a generated ``README.md`` model card. :func:`resolve` turns
``org/name`` (optionally ``org/name@revision``) into a local snapshot through
``huggingface_hub.snapshot_download``, which honours ``HF_HUB_OFFLINE`` and the Hub cache
(``HF_HOME`` / ``HF_HUB_CACHE`` or ``cache_dir``); local paths are returned as they are, so every
place that takes a refiner directory also takes a Hub id. Only safetensors and JSON are
downloaded: no pickle is ever fetched or loaded.

``runs/guidd`` has the shape of a Hub id too. When its first part (``runs``) is a local directory
the id is still tried on the Hub, but if that fails the error is about the local path: it names
the missing directory (and a close match beside it), then says the Hub had no such repository.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError

# org/name, each part as the Hub allows (letters, digits, '-', '_', '.'), optional @revision
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
ALLOW_PATTERNS = ["*.json", "*.safetensors", "README.md"]


def is_hub_id(value: str | os.PathLike) -> bool:
    """True for ``org/name`` (or ``org/name@rev``) that is not an existing local path."""
    from ..training.checkpoint import complete_twin

    text = str(value)
    if not _HUB_ID.match(text) or text.startswith((".", "/")) or Path(text).exists():
        return False
    return complete_twin(text) is None  # a local checkpoint whose save was killed mid-swap is local


def _local_parent(text: str) -> Path | None:
    """For ``org/name`` whose ``org`` is an existing local directory (so ``org/name`` was most
    likely meant as a local path): that directory; else ``None``."""
    parent = Path(text).parent
    return parent if str(parent) not in ("", ".") and parent.is_dir() else None


def _missing_local(text: str, parent: Path) -> str:
    """``refiner directory 'runs/guidd' does not exist (the local directory 'runs' has no
    'guidd'; did you mean 'runs/guided'?)``: how an error about a mistyped local path starts."""
    name = Path(text).name
    try:
        entries = sorted(p.name for p in parent.iterdir() if p.is_dir())
    except OSError:
        entries = []
    close = difflib.get_close_matches(name, entries, n=1)
    hint = f"; did you mean {str(parent / close[0])!r}?" if close else ""
    from ..training.checkpoint import old_path

    twin = old_path(parent / name)
    if twin.is_dir():  # a save killed mid-swap whose twin lacks its config (a complete one loads)
        hint = (f"; {str(twin)!r} is an incomplete checkpoint left by an interrupted save: "
                f"use the run's other checkpoint ({str(parent)!r} loads best/) or train again")
    return (
        f"refiner directory {text!r} does not exist (the local directory {str(parent)!r} has no "
        f"{name!r}{hint})"
    )


def resolve(
    path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """A local directory for ``path``: the path itself, or the snapshot of a Hub repository."""
    if not is_hub_id(path):
        return Path(path)
    repo_id, _, rev = str(path).partition("@")
    revision = revision or rev or None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        parent = _local_parent(str(path))
        if parent is not None:  # a mistyped local path, not a wish for the Hub
            raise CheckpointError(
                f"{_missing_local(str(path), parent)}; pass the directory written by "
                "'refinedepth train-refiner --out DIR'"
            ) from None
        raise ConfigError(
            f"{path!r} looks like a Hugging Face Hub id, which needs huggingface_hub: pip install huggingface_hub"
        ) from None
    kwargs: dict[str, Any] = {"revision": revision, "allow_patterns": ALLOW_PATTERNS}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except Exception as exc:  # huggingface_hub raises many types (offline, 404, auth)
        offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        parent = _local_parent(str(path))
        if parent is not None:  # most likely a mistyped local path: say that first
            hub = (
                f"is not in the local Hugging Face Hub cache either (offline mode; {type(exc).__name__})"
                if offline
                else f"could not be fetched from the Hugging Face Hub either ({type(exc).__name__})"
            )
            raise CheckpointError(
                f"{_missing_local(str(path), parent)}, and {repo_id!r} {hub}; pass the directory "
                "written by 'refinedepth train-refiner --out DIR'"
            ) from None
        hint = (
            "it is not in the local Hub cache (offline mode): download it once online or pass a local directory"
            if offline
            else "check the id and revision, your network and HF_TOKEN, or pass a local directory"
        )
        raise CheckpointError(
            f"cannot get refiner {str(path)!r} from the Hugging Face Hub ({type(exc).__name__}); {hint}"
        ) from None


def model_card(
    meta: dict[str, Any], repo_id: str | None = None, license: str = "mit", location: str | None = None
) -> str:
    """A README.md for a refiner checkpoint's ``config.json`` contents (YAML header + summary).
    Its usage line loads ``repo_id``, else ``location`` (the local directory), so it runs as shown."""
    refiner = meta.get("refiner", {})
    source = meta.get("source", {})
    training = meta.get("training", {})
    state = meta.get("state", {})
    params = meta.get("parameters", {})
    name = repo_id or refiner.get("preset", "refiner")
    load_from = repo_id or location or name
    lines = [
        "---",
        f"license: {license}",
        "library_name: refinedepth",
        "tags:",
        "- depth-estimation",
        "- depth-refinement",
        "- refinedepth",
        "---",
        "",
        f"# {name}",
        "",
        "A [refinedepth](https://pypi.org/project/refinedepth/) depth refiner: a pix2pix-style cGAN "
        "that refines the rough depth map of a first-stage model (Sun et al., *Two-stage deep "
        "regression enhanced depth estimation from a single RGB image*).",
        "",
        "| | |",
        "|---|---|",
        f"| preset | `{refiner.get('preset')}` |",
        f"| conditioned on | `{refiner.get('inputs')}` |",
        f"| residual | {refiner.get('residual')} |",
        f"| model size | {'x'.join(str(s) for s in refiner.get('size', []))} |",
        f"| rough maps | {source.get('output_kind', refiner.get('normalization', {}).get('output_kind'))} "
        f"(max depth {refiner.get('normalization', {}).get('max_depth')} m) |",
        f"| first stage | `{source.get('backbone')}` |",
        f"| training cache | {_cache_names(source.get('train') or training.get('train'))} "
        f"({source.get('train_samples', '?')} pairs, dataset `{source.get('dataset')}`) |",
        f"| epochs / steps | {state.get('epoch')} / {state.get('step')} |",
        f"| generator parameters | {params.get('generator', '?')} |",
        "",
    ]
    val = meta.get("val") or {}
    rows = [(stage, m) for stage, m in val.items() if isinstance(m, dict)]
    if rows:
        names = ["abs_rel", "rmse", "silog", "d1"]
        lines += ["## Validation", "", "| stage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for stage, m in rows:
            lines.append(f"| {stage} | " + " | ".join(_fmt(m.get(n)) for n in names) + " |")
        lines.append("")
    elif state.get("best_value") is not None:
        lines += [f"Best validation {training.get('select_metric', 'abs_rel')}: {_fmt(state['best_value'])}", ""]
    baselines = meta.get("baselines")
    if baselines:
        a, b = baselines["scale_shift"]
        lines += [
            "## Baselines",
            "",
            "Two-number calibrations of the rough maps fitted on the same training pairs "
            f"({baselines.get('pixels', '?')} pixels); `refinedepth evaluate` prints their rows beside "
            "the refined one, with the share of images on which the refiner is better.",
            "",
            "| baseline | depth = |",
            "|---|---|",
            f"| rough x scale | {_fmt(float(baselines['scale']))} x rough |",
            f"| rough x (scale, shift) | {_fmt(float(a))} x rough + {_fmt(float(b))} m |",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "from refinedepth import Refiner",
        f'refiner = Refiner.from_pretrained("{load_from}")',
        "refined = refiner.refine(rough)   # HxW metres in, HxW metres out",
        "```",
        "",
    ]
    return "\n".join(lines)


def _cache_names(train: Any) -> str:
    """The training cache's file name, or the names of several (older runs store one string)."""
    paths = [train] if isinstance(train, (str, os.PathLike)) or train is None else list(train)
    return ", ".join(f"`{Path(str(p or '')).name}`" for p in paths)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_model_card(
    directory: str | os.PathLike, meta: dict[str, Any], repo_id: str | None = None, location: str | None = None
) -> Path:
    """``directory/README.md``: :func:`model_card`, loading from ``repo_id`` or ``location``."""
    path = Path(directory) / "README.md"
    path.write_text(model_card(meta, repo_id, location=location))
    return path


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload refinedepth refiner") -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, repo_type="model")
    return str(getattr(info, "commit_url", info))


__all__ = ["is_hub_id", "resolve", "model_card", "write_model_card", "push_folder"]
