"""Datasets of RGB-D samples (SPEC §4).

Every reader is a map-style dataset of :class:`Sample` with a length, a deterministic order and
splits. Datasets are named by a spec string, as on the command line::

    open_dataset("nyu:/data/nyu_depth_v2_labeled.mat", split="test")
    open_dataset("make3d:/data/make3d", split="train")
    open_dataset("folder:/data/scans", split="all", scale=1000)
    open_dataset("synthetic:outdoor", split="test", limit=64, size=(240, 320))

Reader options are keyword arguments of :func:`open_dataset` (``size=``, ``scale=``, ``raw=``...).
Three options work with every reader and choose frames from the split, in its order:
``offset`` (skip the first N), ``stop`` (end before sample N of the split) and ``every`` (keep one
sample in N), as the Python slice ``[offset:stop:every]``; ``limit`` then keeps the first N of
those. ``--dataset-arg every=5`` takes every fifth frame of a video-like folder, for instance.
They are checked against the reader's signature before it is opened: an unknown name gets a
"did you mean", a value of the wrong type (``size=abc``) says what was expected
(:func:`check_options`). New readers can be added with :func:`register_reader`.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

from ..errors import ConfigError
from .base import SPLITS, DepthDataset, Sample

# reader name -> "module:class" (imported on first use) or a factory callable.
_READERS: dict[str, str | Callable[..., DepthDataset]] = {
    "nyu": "refinedepth.data.nyu:NYUDataset",
    "make3d": "refinedepth.data.make3d:Make3DDataset",
    "folder": "refinedepth.data.folder:FolderDataset",
    "synthetic": "refinedepth.data.synthetic:SyntheticDataset",
}
# readers whose spec needs a path after the colon
_NEEDS_ARGUMENT = {"nyu", "make3d", "folder"}


def register_reader(name: str, factory: Callable[..., DepthDataset], needs_argument: bool = True) -> None:
    """Make ``name:ARG`` specs open ``factory(ARG, split=..., limit=..., spec=..., **options)``."""
    _READERS[name] = factory
    if needs_argument:
        _NEEDS_ARGUMENT.add(name)
    else:
        _NEEDS_ARGUMENT.discard(name)


def list_readers() -> list[str]:
    return sorted(_READERS)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"nyu:/a/b.mat"`` -> ``("nyu", "/a/b.mat")``; ``"synthetic"`` -> ``("synthetic", None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected a dataset spec such as 'nyu:PATH' or 'synthetic', got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _READERS:
        hint = difflib.get_close_matches(name, list(_READERS), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"unknown dataset {name!r} in spec {spec!r}{did_you_mean}; "
            f"expected one of: {', '.join(f'{r}:PATH' if r in _NEEDS_ARGUMENT else r for r in list_readers())}"
        )
    if name in _NEEDS_ARGUMENT and not arg:
        raise ConfigError(f"dataset spec {spec!r} needs a path: write it as '{name}:PATH'")
    return name, (arg if sep and arg else None)


def _reader(name: str) -> Callable[..., DepthDataset]:
    factory = _READERS[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(import_module(module), attr)
        _READERS[name] = factory
    return factory


# parameters every reader takes from open_dataset itself, not from the caller's options
_OWN_PARAMETERS = ("split", "limit", "spec")
# frame selection, applied by open_dataset to any reader: split[offset:stop:every]
FRAME_OPTIONS = ("offset", "stop", "every")
_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "os.PathLike": "a path",
    "None": "none",
}


# value type -> the annotations (or their beginnings) that accept it; bool before int, object last
_ACCEPTED_BY: tuple[tuple[type, tuple[str, ...]], ...] = (
    (bool, ("bool",)),
    (int, ("int", "float")),
    (float, ("float",)),
    (str, ("str", "os.PathLike")),
    ((list, tuple), ("tuple[", "list[")),
    (os.PathLike, ("os.PathLike",)),
    (object, ()),
)


def reader_options(name: str) -> dict[str, inspect.Parameter] | None:
    """The options reader ``name`` accepts (name -> parameter); ``None`` when it takes any
    (a factory with ``**kwargs``)."""
    try:
        signature = inspect.signature(_reader(name))
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return None
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    # the first parameter is the spec's argument (the path after the colon)
    return {p.name: p for p in params[1:] if p.kind in keyword and p.name not in _OWN_PARAMETERS}


def _annotation_parts(p: inspect.Parameter) -> list[str]:
    text = p.annotation if isinstance(p.annotation, str) else ""
    return [t.strip() for t in text.split("|") if t.strip()]


def _check_value(spec: str, key: str, value: Any, p: inspect.Parameter) -> Any:
    """``value`` for option ``key``, checked against the reader's annotation where it is one of
    the plain types readers use (anything else is left to the reader)."""
    parts = _annotation_parts(p)
    if not parts:
        return value
    if value is None:
        if "None" in parts or p.default is None:
            return None
    elif "tuple[int, int]" in parts:  # a (height, width) size
        from ..geometry import parse_hw

        return parse_hw(value, f"dataset option {key} of {spec!r}")
    else:
        accepted = next(names for kind, names in _ACCEPTED_BY if isinstance(value, kind))
        if any(t in accepted or t.startswith(accepted) for t in parts):
            return value
    known = all(t in _WORDS or t.startswith(("tuple[", "list[")) for t in parts)
    if not known:
        return value  # an annotation this check does not understand
    words = [_WORDS.get(t, "a list such as [1,2]") for t in parts]
    expected = " or ".join(dict.fromkeys(words))
    raise ConfigError(f"dataset option {key}={value!r} of {spec!r} must be {expected}")


def check_options(spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for the reader of ``spec``, checked: an unknown name raises a
    :class:`ConfigError` with a "did you mean" and the list of the reader's options; a value of
    the wrong type says what was expected. Sizes come back as ``(height, width)``."""
    name, _ = parse_spec(spec)
    accepted = reader_options(name)
    if accepted is None:
        return dict(options)
    out = {}
    for key, value in options.items():
        if key not in accepted:
            close = difflib.get_close_matches(key, [*accepted, *FRAME_OPTIONS], n=1)
            names = ", ".join([*accepted, *FRAME_OPTIONS])
            if close:
                hint = f"did you mean {close[0]!r}? (its options: {names}; see docs/data.md)"
            else:
                hint = f"did you mean one of: {names}? (see docs/data.md)"
            raise ConfigError(f"dataset {name!r} has no option {key!r}; {hint}")
        out[key] = _check_value(spec.strip(), key, value, accepted[key])
    return out


def open_dataset(spec: str, split: str = "train", limit: int | None = None, **options: Any) -> DepthDataset:
    """Open the dataset named by ``spec`` (see the module docstring) at ``split``.

    ``offset``, ``stop`` and ``every`` choose ``split[offset:stop:every]`` (any reader);
    ``limit`` keeps the first N samples of that. Other keyword arguments go to the reader.
    The result has ``len``, ``ds[i] -> Sample`` and the attributes ``spec``, ``name``, ``split``,
    ``native_size``, ``max_depth`` and ``protocol``.
    """
    name, arg = parse_spec(spec)
    frames = {k: options.pop(k) for k in FRAME_OPTIONS if k in options}
    options = check_options(spec, options)
    if not frames:
        return _reader(name)(arg, split=split, limit=limit, spec=spec.strip(), **options)
    selection = _frame_slice(spec.strip(), **frames)
    dataset = _reader(name)(arg, split=split, limit=None, spec=spec.strip(), **options)
    return dataset.select(selection, limit)


def _frame_slice(spec: str, offset: Any = None, stop: Any = None, every: Any = None) -> slice:
    """``slice(offset, stop, every)`` from the frame options, checked (one-line errors)."""
    values = {"offset": offset, "stop": stop, "every": every}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"dataset option {key}={value!r} of {spec!r} must be an integer")
        if value < (1 if key == "every" else 0):
            least = "1 (keep one sample in N)" if key == "every" else "0"
            raise ConfigError(f"dataset option {key}={value} of {spec!r} must be at least {least}")
    if offset is not None and stop is not None and stop <= offset:
        raise ConfigError(f"dataset options of {spec!r}: stop={stop} must be larger than offset={offset}")
    return slice(offset, stop, every)


__all__ = [
    "FRAME_OPTIONS",
    "SPLITS",
    "DepthDataset",
    "Sample",
    "check_options",
    "list_readers",
    "open_dataset",
    "parse_spec",
    "reader_options",
    "register_reader",
]
