"""One progress bar per training run: inner phases (validation) report inside the run's bar.

Trainers report ``progress(step, total_steps, desc="train", epoch=..., **losses)`` over the whole
run, so a progress bar's ETA is the run's; validation passes through :func:`inside`, which turns
its own ``progress(i, n, desc="validate")`` calls into the run's bar with a ``validate="i/n"``
field instead of starting a new bar.
"""

from __future__ import annotations

from typing import Any

from ..progress import ProgressCallback


def inside(
    progress: ProgressCallback | None, done: int, total: int | None, *, desc: str = "train",
    phase: str = "validate", **fields: Any,
) -> ProgressCallback | None:
    """A callback for an inner phase that reports into the run's bar at ``(done, total)``."""
    if progress is None:
        return None

    outer = desc

    def callback(i: int, n: int | None, *, desc: str = "", **inner: Any) -> None:
        progress(done, total, desc=outer, **fields, **{phase: f"{i}/{n}" if n else str(i)})

    return callback


__all__ = ["inside"]
