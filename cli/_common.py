"""Options and helpers shared by the sub-commands. Imports nothing heavy at module level."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import click

_console = None


def console():
    """The rich console every command draws on: stderr, so stdout stays parseable."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], else the string."""
    lowered = text.strip().lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered in {"none", "null"}:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_key_values(items: tuple[str, ...] | list[str], option: str = "--backbone-arg") -> dict[str, Any]:
    """Parse repeated ``key=value`` options into a dict (values through :func:`parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise click.BadParameter(f"empty key in {item!r}", param_hint=option)
        out[key] = parse_value(value)
    return out


def check_writable(path: str | None) -> None:
    """Fail now, not after the work, when ``path`` cannot be written: create its folder and a
    scratch file beside it (an ``OSError`` here becomes the one-line error of ``cli/main.py``)."""
    if not path:
        return
    import os
    import tempfile
    from pathlib import Path

    from refinedepth.errors import ConfigError

    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=f".{Path(path).name}.", dir=folder)
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:  # name the user's path, not the scratch file
        blocker = next((f for f in (folder, *folder.parents) if f.exists() and not f.is_dir()), None)
        reason = (f"{str(blocker)!r} is a file, not a folder" if blocker is not None
                  else f"{(exc.strerror or type(exc).__name__).lower()} in {str(folder)!r}")
        raise ConfigError(f"cannot write {str(path)!r}: {reason}; choose another path") from None


def quiet_option(f):
    return click.option("-q", "--quiet", is_flag=True, help="No progress bars (for logs).")(f)


class RichProgress:
    """Adapts the library's ``progress(done, total, desc=..., **fields)`` callbacks to rich bars."""

    def __init__(self, quiet: bool = False, unit: str = "it") -> None:
        self.quiet = quiet
        self.unit = unit
        self._progress = None
        self._task = None
        self._desc = None
        self._start = 0.0

    def __enter__(self) -> RichProgress:
        return self

    def _open(self) -> None:
        # Started on the first report, so a command that fails before any work prints nothing
        # but its one-line error.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console(),
            transient=False,
        )
        self._progress.__enter__()

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, done: int, total: int | None, *, desc: str = "", **fields: Any) -> None:
        if self.quiet:
            return
        if self._progress is None:
            self._open()
        if desc != self._desc or self._task is None:
            self._task = self._progress.add_task(desc or "working", total=total, rate="", info="")
            self._desc = desc
            self._start = time.perf_counter()
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = f"{done / elapsed:.1f} {self.unit}/s" if done else ""
        info = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        self._progress.update(self._task, completed=done, total=total, rate=rate, info=info)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@contextlib.contextmanager
def progress_bar(quiet: bool = False, unit: str = "it") -> Iterator[RichProgress]:
    with RichProgress(quiet=quiet, unit=unit) as p:
        yield p


EXAMPLE_PREFIX = "\b\nExample:\n"
