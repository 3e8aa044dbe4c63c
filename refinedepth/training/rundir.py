"""A training run's directory: ``last/`` and ``best/`` checkpoints, ``log.jsonl``, its config.

::

    OUT/last/        the latest checkpoint (what --resume continues from)
    OUT/best/        the best one by the validation metric (trainers that select)
    OUT/log.jsonl    one JSON object per line (training steps, epochs with validation)
    OUT/<config>     the run's description, for people and loaders

:meth:`RunDir.start` is the resume-or-refuse gate every trainer passes first: a directory that
holds a run is continued only with ``resume``, replaced only with ``overwrite``. On resume the log
is cut back to what the checkpoint has seen, so lines written after it (and replayed now) are
not duplicated.

``overwrite`` does not delete the previous run at once: its files move to ``OUT/.replaced/`` and
are deleted when the new run has written its first checkpoint (:meth:`RunDir.committed`). A new
run stopped before that point gives the previous one back: the next start of any kind moves its
files home again (and discards the new run's log), so an interrupted ``--overwrite`` loses nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from . import checkpoint as ckpt

LOG_NAME = "log.jsonl"
REPLACED = ".replaced"  # an --overwrite's previous run, until the new run's first checkpoint
_SET_ASIDE = ".complete"  # in REPLACED: every file of the previous run is in it


class RunDir:
    """Paths and housekeeping of one run directory.

    ``extra`` names further files the run owns that are worth keeping (a stage-1 run's weights):
    with them, or a checkpoint, the directory *holds a run*. ``scratch`` names files that mean
    nothing without a checkpoint (a run description, like the log): a run that stopped before its
    first checkpoint leaves only those, and a new run simply replaces them.
    """

    def __init__(
        self, root: str | os.PathLike, *, extra: Iterable[str] = (), scratch: Iterable[str] = (),
        what: str = "training run",
    ) -> None:
        self.root = Path(os.path.normpath(os.fspath(root)))
        self.last = self.root / "last"
        self.best = self.root / "best"
        self.log_path = self.root / LOG_NAME
        self.extra = tuple(extra)
        self.scratch = tuple(scratch)
        self.what = what

    def _has_checkpoint(self) -> bool:
        return any((d / ckpt.CONFIG_NAME).is_file() for d in (self.last, ckpt.old_path(self.last)))

    def holds_run(self) -> bool:
        """Whether a previous run left something worth keeping: a checkpoint or an ``extra``."""
        return self._has_checkpoint() or any((self.root / e).exists() for e in self.extra)

    def start(self, *, resume: bool, overwrite: bool, is_main: bool = True) -> bool:
        """Resume-or-refuse; returns whether there is a ``last/`` checkpoint to resume from.

        Refuses ``resume`` with ``overwrite``, a directory holding a run without either, and
        ``resume`` where a run left no checkpoint but other files; with ``overwrite`` (rank 0)
        removes the previous run's files. Rank 0 first finishes an interrupted checkpoint swap and
        removes killed writers' temporary files; a new run replaces the scratch files of one that
        stopped before its first checkpoint."""
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other; pick one")
        if is_main:
            ckpt.recover(self.last)
            ckpt.recover(self.best)
            ckpt.remove_debris(self.root)
            self._settle_replaced()
        if resume and self._has_checkpoint():
            return True
        if resume and self.holds_run():
            raise CheckpointError(
                f"{str(self.root)!r} holds no last/ checkpoint to resume from (it was written by an older "
                "refinedepth, or its checkpoint was removed); start again with --overwrite"
            )
        if overwrite or not self.holds_run():
            if is_main:
                if self.holds_run():
                    self._set_aside()
                else:
                    self.clear()
            return False
        raise CheckpointError(
            f"{str(self.root)!r} already holds a {self.what} (last/ checkpoint): pass --resume to continue "
            "it, --overwrite to start again, or choose another --out"
        )

    def _files(self) -> list[Path]:
        """The run's own files and directories, the checkpoints last."""
        files = [self.log_path, *(self.root / e for e in self.extra + self.scratch)]
        return files + [self.best, ckpt.old_path(self.best), ckpt.old_path(self.last), self.last]

    def clear(self) -> None:
        """Remove the previous run's checkpoints, log, extra and scratch files."""
        for f in self._files():
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)

    def _set_aside(self) -> None:
        """``overwrite``: move the previous run's files to ``.replaced/`` (marked complete once all
        are there), to be deleted by :meth:`committed` or given back by the next start."""
        aside = self.root / REPLACED
        aside.mkdir(exist_ok=True)
        for f in self._files():
            if f.exists() or f.is_symlink():
                os.replace(f, aside / f.name)
        (aside / _SET_ASIDE).touch()
        ckpt.fsync_dir(aside)
        ckpt.fsync_dir(self.root)

    def _settle_replaced(self) -> None:
        """A previous run set aside by ``overwrite``: deleted if the new run has a checkpoint (it was
        stopped before :meth:`committed`), given back otherwise (with the new run's files gone)."""
        aside = self.root / REPLACED
        if not aside.is_dir():
            return
        complete = (aside / _SET_ASIDE).exists()
        if complete and self._has_checkpoint():
            shutil.rmtree(aside, ignore_errors=True)
            return
        if complete:  # everything in the root is the new run's, which never reached a checkpoint
            self.clear()
        for f in aside.iterdir():
            if f.name != _SET_ASIDE:
                os.replace(f, self.root / f.name)
        shutil.rmtree(aside, ignore_errors=True)
        ckpt.fsync_dir(self.root)

    def committed(self) -> None:
        """The run has written a checkpoint: a previous run set aside by ``overwrite`` is deleted."""
        shutil.rmtree(self.root / REPLACED, ignore_errors=True)

    def log(self, entry: dict[str, Any]) -> None:
        """Append one line to ``log.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """The log's complete lines (a torn last line is skipped)."""
        if not self.log_path.is_file():
            return []
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def trim_log(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the log (atomically) with only the entries ``keep`` accepts: on resume, what
        the checkpoint has seen."""
        if not self.log_path.is_file():
            return
        self.rewrite_log([e for e in self.read_log() if keep(e)])

    def rewrite_log(self, entries: Iterable[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.log_path.with_name(f".{LOG_NAME}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in entries))
        ckpt.fsync_file(tmp)
        os.replace(tmp, self.log_path)


__all__ = ["LOG_NAME", "REPLACED", "RunDir"]
