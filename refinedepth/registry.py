"""The backbone registry: first-stage depth estimators by name.

Shaped after timm's registry: a module-level dict, one decorator, a thin factory call.
Backbones come from two places:

* ``register_backbone`` calls made in-process (library use, tests);
* the entry-point group ``refinedepth.backbones`` (``name = "module:factory"``), which is how both
  the bundled backbones and third-party plugins are found. Entry points are listed by name without
  importing their modules; a module is imported on first use, and an import failure is reported as
  a :class:`PluginError` naming the distribution that provides it.

Set ``REFINEDEPTH_DISABLE_PLUGINS=1`` to ignore entry points from every distribution but
refinedepth itself.

A factory is any callable ``factory(weights=None, **options) -> nn.Module`` whose result carries a
:class:`BackboneInfo` as ``.info`` (the contract of SPEC §3.1). A factory may also carry a static
``.info`` attribute (set by :func:`register_backbone` or by hand) so that ``backbone_info`` need not
build the model.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import OUTPUT_KINDS, config_from_dict, config_to_dict
from .errors import BackboneNotFoundError, PluginError, RefinedepthError

ENTRY_POINT_GROUP = "refinedepth.backbones"
_OWN_DISTRIBUTION = "refinedepth"


@dataclass(frozen=True)
class BackboneInfo:
    """What downstream code needs to know about a first-stage estimator (SPEC §3.1).

    Attributes:
        name: registry name.
        output_kind: ``"metric"`` (depth in metres), ``"relative"`` (depth up to scale/shift) or
            ``"disparity"`` (relative inverse depth).
        input_size: preferred input ``(height, width)``; callers resize RGB to it.
        output_size: native output ``(height, width)`` for ``input_size``.
        value_range: expected ``(min, max)`` of the output (metres for metric backbones).
        config: the options that recreate this backbone with ``create_backbone(name, **config)``.
        description: one line for listings.
    """

    name: str
    output_kind: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    value_range: tuple[float, float] = (0.0, float("inf"))
    config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, got {self.output_kind!r}")
        for attr in ("input_size", "output_size"):
            size = getattr(self, attr)
            if len(size) != 2 or any(int(s) <= 0 for s in size):
                raise ValueError(f"{attr} must be a (height, width) pair of positive ints, got {size!r}")
            object.__setattr__(self, attr, (int(size[0]), int(size[1])))
        object.__setattr__(self, "value_range", (float(self.value_range[0]), float(self.value_range[1])))
        object.__setattr__(self, "config", dict(self.config))

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BackboneInfo:
        return config_from_dict(cls, d)


@dataclass
class _Entry:
    name: str
    source: str  # distribution name, or "<runtime>" for register_backbone
    target: str  # "module:attr" or a repr of the factory
    factory: Callable[..., Any] | None = None
    entry_point: Any = None
    load_error: str | None = None


_runtime: dict[str, _Entry] = {}
_entry_points: dict[str, _Entry] | None = None


def plugins_disabled() -> bool:
    return os.environ.get("REFINEDEPTH_DISABLE_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _discover() -> dict[str, _Entry]:
    """Read the entry-point group once; never imports the targets."""
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points

        found: dict[str, _Entry] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "<unknown>"
            if plugins_disabled() and (dist_name or "").lower() != _OWN_DISTRIBUTION:
                continue
            if ep.name in found and found[ep.name].source != dist_name:
                warnings.warn(
                    f"backbone {ep.name!r} is provided by both {found[ep.name].source!r} and "
                    f"{dist_name!r}; using {found[ep.name].source!r}",
                    stacklevel=2,
                )
                continue
            found[ep.name] = _Entry(ep.name, dist_name, ep.value, entry_point=ep)
        _entry_points = found
    return _entry_points


def refresh_plugins() -> None:
    """Forget the cached entry points (after installing a plugin in the same process)."""
    global _entry_points
    _entry_points = None


def _entries() -> dict[str, _Entry]:
    merged = dict(_discover())
    merged.update(_runtime)  # in-process registrations win
    return merged


def register_backbone(
    name: str,
    factory: Callable[..., Any] | None = None,
    *,
    info: BackboneInfo | None = None,
    overwrite: bool = False,
):
    """Register ``factory`` under ``name``; usable as a decorator.

    ``info``, if given, is attached to the factory as its static ``.info``.
    """

    def _register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not overwrite and name in _runtime:
            raise ValueError(f"backbone {name!r} is already registered; pass overwrite=True to replace it")
        if info is not None:
            fn.info = info  # type: ignore[attr-defined]
        target = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
        _runtime[name] = _Entry(name, "<runtime>", target, factory=fn)
        return fn

    return _register(factory) if factory is not None else _register


def unregister_backbone(name: str) -> None:
    """Remove a backbone registered with :func:`register_backbone` (tests use this)."""
    _runtime.pop(name, None)


def list_backbones(pattern: str | None = None) -> list[str]:
    """Names of all known backbones, sorted, optionally filtered by a shell-style pattern."""
    names = sorted(_entries())
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def backbone_source(name: str) -> tuple[str, str]:
    """``(distribution, "module:attr")`` for ``name`` without importing it."""
    entry = _lookup(name)
    return entry.source, entry.target


def _lookup(name: str) -> _Entry:
    entries = _entries()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
    else:
        names = sorted(entries)
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        hint = f"did you mean one of: {shown}?"
    raise BackboneNotFoundError(
        f"unknown backbone {name!r}; {hint} (see 'refinedepth backbones list')"
    )


def get_factory(name: str) -> Callable[..., Any]:
    """Import (once) and return the factory for ``name``."""
    entry = _lookup(name)
    if entry.factory is not None:
        return entry.factory
    try:
        factory = entry.entry_point.load()
    except Exception as exc:  # any failure inside third-party import code
        entry.load_error = f"{type(exc).__name__}: {exc}"
        raise PluginError(
            f"backbone {name!r} from distribution {entry.source!r} ({entry.target}) failed to load: "
            f"{entry.load_error}".replace("\n", " ")
        ) from exc
    if not callable(factory):
        raise PluginError(
            f"backbone {name!r} from distribution {entry.source!r}: {entry.target} is not callable"
        )
    entry.factory = factory
    return factory


def create_backbone(name: str, weights: str | os.PathLike | None = None, **options: Any):
    """Build the backbone registered as ``name``.

    Args:
        name: registry name (see :func:`list_backbones`).
        weights: a safetensors file (or whatever the backbone documents) to load; ``None`` keeps
            the backbone's initialisation and never downloads anything.
        **options: backbone-specific options (e.g. ``encoder="resnet18"`` for ``fcrn``).

    Returns:
        a ``torch.nn.Module`` with a :class:`BackboneInfo` as ``.info``.
    """
    factory = get_factory(name)
    try:
        model = factory(weights=weights, **options)
    except RefinedepthError:
        raise  # the factory's own one-line error (bad option value, missing weights...)
    except Exception as exc:  # anything else is the plugin's failure: say whose
        source = _describe_source(_lookup(name))
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        if isinstance(exc, TypeError) and "unexpected keyword" in str(exc):
            raise PluginError(
                f"backbone {name!r} {source} does not accept these options: {detail}; "
                f"see 'refinedepth backbones info {name}'"
            ) from exc
        raise PluginError(
            f"backbone {name!r} {source} failed to build: {detail}; check its options, or report "
            "it to the plugin's authors (REFINEDEPTH_DEBUG=1 shows the traceback)"
        ) from exc
    info = getattr(model, "info", None)
    if not isinstance(info, BackboneInfo):
        source = _lookup(name).source
        raise PluginError(
            f"backbone {name!r} from {source!r} returned {type(model).__name__} without a "
            "BackboneInfo as .info (see docs/plugins.md)"
        )
    return model


def _describe_source(entry: _Entry) -> str:
    if entry.source == "<runtime>":
        return f"registered at runtime ({entry.target})"
    return f"from distribution {entry.source!r} ({entry.target})"


def backbone_info(name: str, **options: Any) -> BackboneInfo:
    """The :class:`BackboneInfo` of ``name``: the factory's static ``.info`` if it has one and no
    options are given, otherwise that of a freshly built model."""
    factory = get_factory(name)
    static = getattr(factory, "info", None)
    if isinstance(static, BackboneInfo) and not options:
        return static
    return create_backbone(name, **options).info


__all__ = [
    "ENTRY_POINT_GROUP",
    "BackboneInfo",
    "register_backbone",
    "unregister_backbone",
    "list_backbones",
    "backbone_source",
    "backbone_info",
    "create_backbone",
    "get_factory",
    "refresh_plugins",
]
