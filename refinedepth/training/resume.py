"""Resume-or-refuse: a run continues only with the options it was started with.

Both trainers store their config in every checkpoint; on ``--resume`` the stored and the asked-for
options are compared key by key (nested mappings by dotted key). Paths are compared after
normalisation — ``./a.h5``, ``a.h5`` and its absolute path are the same file, ``runs/x/`` is
``runs/x`` — and a refusal names the first differing key with both values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import CheckpointError

_MISSING = object()


def normalize_path(value: Any) -> Any:
    """An absolute, normalised spelling of a path (``None`` stays ``None``)."""
    if value is None:
        return None
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(value))))


def same_path(a: Any, b: Any) -> bool:
    """Whether two spellings name the same file or directory (existing or not); two lists of
    paths are the same when they name the same files in the same order."""
    if a is None or b is None:
        return a is b
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        a, b = ([v] if isinstance(v, str) else list(v) for v in (a, b))
        return len(a) == len(b) and all(same_path(x, y) for x, y in zip(a, b))
    na, nb = normalize_path(a), normalize_path(b)
    if na == nb:
        return True
    try:
        return os.path.samefile(na, nb)
    except OSError:
        return False


def normalize_spec(spec: Any) -> Any:
    """A dataset spec ``name:PATH`` with its path normalised (``synthetic`` stays as it is)."""
    if not isinstance(spec, str) or ":" not in spec:
        return spec
    name, _, rest = spec.partition(":")
    if not name.isidentifier() or len(name) == 1:  # not a reader prefix (e.g. a drive letter)
        return spec
    return f"{name}:{normalize_path(rest)}" if rest else spec


def differences(
    stored: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    ignore: Iterable[str] = (),
    paths: Iterable[str] = (),
    specs: Iterable[str] = (),
    prefix: str = "",
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, current value)`` for every option that differs.

    ``ignore`` names keys that may change; ``paths`` keys holding file paths (compared with
    :func:`same_path`); ``specs`` keys holding dataset specs (``name:PATH``). A key missing on one
    side differs (its value shows as ``<missing>``)."""
    ignore, paths, specs = set(ignore), set(paths), set(specs)
    out: list[tuple[str, Any, Any]] = []
    for key in list(stored) + [k for k in current if k not in stored]:
        dotted = f"{prefix}{key}"
        if dotted in ignore:
            continue
        a, b = stored.get(key, _MISSING), current.get(key, _MISSING)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, ignore=ignore, paths=paths, specs=specs, prefix=f"{dotted}.")
            continue
        if a is _MISSING or b is _MISSING:
            same = False
        elif dotted in paths:
            same = same_path(a, b)
        elif dotted in specs:
            same = normalize_spec(a) == normalize_spec(b)
        else:
            same = _plain(a) == _plain(b)
        if not same:
            out.append((dotted, "<missing>" if a is _MISSING else a, "<missing>" if b is _MISSING else b))
    return out


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (JSON has only lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_resume(
    stored: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    where: str,
    what: str = "training options",
    ignore: Iterable[str] = (),
    paths: Iterable[str] = (),
    specs: Iterable[str] = (),
    advice: str = "use the same options, --overwrite to start again, or another --out",
) -> None:
    """Raise a one-line :class:`CheckpointError` naming the first differing key and both values."""
    diff = differences(stored, current, ignore=ignore, paths=paths, specs=specs)
    if not diff:
        return
    key, a, b = diff[0]
    more = f" (and {len(diff) - 1} more: {', '.join(k for k, _, _ in diff[1:4])})" if len(diff) > 1 else ""
    raise CheckpointError(
        f"cannot resume {where} with different {what}: {key} was {_short(a)} in the checkpoint, "
        f"this run asks for {_short(b)}{more}; {advice}"
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["check_resume", "differences", "normalize_path", "normalize_spec", "same_path"]
