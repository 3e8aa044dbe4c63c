"""Entry point of the ``refinedepth`` command.

Sub-commands live one per module in this package and are imported only when invoked (or when
``--help`` lists their one-line summaries), so ``refinedepth --help`` never imports torch.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import re
import sys

import click

from refinedepth import __version__
from refinedepth.errors import RefinedepthError

# command name -> "module:attribute"; modules are imported lazily.
COMMANDS: dict[str, str] = {
    "backbones": "refinedepth.cli.backbones:backbones",
    "cache": "refinedepth.cli.cache:cache",
    "cache-merge": "refinedepth.cli.cache:cache_merge",
    "inspect": "refinedepth.cli.inspect:inspect_cmd",
    "export-ab": "refinedepth.cli.cache:export_ab",
    "convert": "refinedepth.cli.convert:convert",
    "train-backbone": "refinedepth.cli.train_backbone:train_backbone",
    "train-refiner": "refinedepth.cli.train_refiner:train_refiner",
    "evaluate": "refinedepth.cli.evaluate:evaluate",
    "predict": "refinedepth.cli.predict:predict",
    "demo": "refinedepth.cli.demo:demo",
    "export": "refinedepth.cli.export:export",
}


def debug_enabled() -> bool:
    return os.environ.get("REFINEDEPTH_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [n for n, target in COMMANDS.items() if _module_exists(target.split(":")[0])]
        return sorted(set(names) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target.split(":")[0]):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RefinedepthError as exc:
            if debug_enabled():
                raise
            raise click.ClickException(_one_line(exc)) from None
        except OSError as exc:
            # permission, read-only file system, disk full... on a file we read or write: the
            # one error path for OS-level failures (issue 13), one line naming the file
            line = os_error_line(exc)
            if line is None or debug_enabled():
                raise
            raise click.ClickException(line) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            raise click.Abort() from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep its own line
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split()) or type(exc).__name__


_PERMISSION = "check its permissions (and its folder's), or choose another path"
_FULL = "free some space, or choose a path on another disk"
# errno -> what to do about it
OS_ERROR_ADVICE: dict[int, str] = {
    errno.EACCES: _PERMISSION,
    errno.EPERM: _PERMISSION,
    errno.EROFS: "the file system is read-only: choose a path on a writable one",
    errno.ENOSPC: _FULL,
    errno.EDQUOT: "the disk quota is exceeded: " + _FULL,
    errno.EFBIG: "the file is too large for this file system: " + _FULL,
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENOENT: "check the path",
    errno.EEXIST: "a file is in the way: remove it, or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EIO: "the disk reported an I/O error: check the device, or choose another disk",
}


def os_error_line(exc: OSError) -> str | None:
    """One line for an OS-level failure on a file: ``FILE: what happened; what to do``.

    ``None`` when the error names no errno this knows (a bug, which keeps its traceback).
    h5py reports such failures as an ``OSError`` without ``errno``/``filename`` but with
    ``name = '...'`` and ``errno = N`` in its message; those are read from the message.
    """
    code, filename = exc.errno, exc.filename
    text = str(exc)
    if code is None:
        m = re.search(r"errno = (\d+)", text)
        code = int(m.group(1)) if m else None
    if filename is None:
        m = re.search(r"name = '([^']*)'", text)
        filename = m.group(1) if m else None
    if code not in OS_ERROR_ADVICE:
        return None
    what = os.strerror(code).lower()
    where = f"{os.fsdecode(filename)}: " if filename is not None else ""
    if exc.filename2 is not None:
        where = f"{os.fsdecode(filename)} -> {os.fsdecode(exc.filename2)}: "
    return f"{where}{what} (errno {errno.errorcode.get(code, code)}); {OS_ERROR_ADVICE[code]}"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="refinedepth")
def cli() -> None:
    """refinedepth: refine any monocular depth model's output with a learned cGAN.

    \b
    Typical pipeline:
      refinedepth cache --backbone fcrn --dataset synthetic --split train --out train.h5
      refinedepth train-refiner --train train.h5 --preset small --out runs/refiner
      refinedepth evaluate --cache test.h5 --refiner runs/refiner

    Set REFINEDEPTH_DEBUG=1 to see tracebacks of expected errors.
    """


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="refinedepth")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
