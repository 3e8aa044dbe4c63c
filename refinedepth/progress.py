"""Progress reporting for library loops, without depending on any UI library.

Long-running library functions accept ``progress: ProgressCallback | None``. They call it as
``progress(done, total, desc=..., **fields)`` after each unit of work: ``done`` counts units so far
in the current phase, ``total`` is the phase's length (or ``None`` if unknown), ``desc`` names the
phase (a new ``desc`` starts a new phase) and ``fields`` carry numbers worth showing (losses,
samples/s). The CLI adapts this to rich progress bars; library users can pass ``print`` or nothing.
"""

from __future__ import annotations

from typing import Any, Protocol


class ProgressCallback(Protocol):
    def __call__(self, done: int, total: int | None, *, desc: str = "", **fields: Any) -> None: ...


def null_progress(done: int, total: int | None, *, desc: str = "", **fields: Any) -> None:
    """A progress callback that does nothing."""
