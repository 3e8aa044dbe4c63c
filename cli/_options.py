"""Click options generated from the fields of a :mod:`refinedepth.config` dataclass.

A command declares ``@config_options(TrainConfig)`` and builds its config with
:func:`config_from_params`; the option names, defaults, choices, help texts and checks all come
from the config's fields, so the command line never re-declares the library's vocabulary (the
one-spine issue). Each value is checked as it is parsed by the field's own check, so a bad value
(``--size 0x0``) is a one-line error naming the option, exit 1 (``cli/main.py``). Importing this
module imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

import click

from refinedepth.config import Option, field_default, option_of, validate

from ._common import parse_key_values


def option_name(f: dataclasses.Field) -> str:
    """The command-line spelling of a field: its ``cli`` name or ``--field-name``."""
    opt = option_of(f)
    if opt is not None and isinstance(opt.cli, str):
        return opt.cli
    return "--" + f.name.replace("_", "-")


def cli_fields(cls: type, exclude: tuple[str, ...] = ()) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a command-line option."""
    return [
        f
        for f in dataclasses.fields(cls)
        if (opt := option_of(f)) is not None and opt.cli is not False and f.name not in exclude
    ]


def _path_type(opt: Option) -> click.Path:
    if opt.filetype == "file":
        return click.Path(dir_okay=False)
    if opt.filetype == "dir":
        return click.Path(file_okay=False)
    return click.Path()


def _number_type(opt: Option, integer: bool) -> click.ParamType:
    if opt.minimum is None and opt.maximum is None:
        return click.INT if integer else click.FLOAT
    kind = click.IntRange if integer else click.FloatRange
    return kind(min=opt.minimum, max=opt.maximum, min_open=opt.exclusive, max_open=opt.below)


def _callback(cls: type, f: dataclasses.Field, opt: Option, name: str) -> Callable[..., Any]:
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if opt.kind == "mapping":
            value = parse_key_values(value, name)
        if opt.parse is not None:
            value = opt.parse(value)
        return validate(cls, f.name, value, what=name)

    return check


def param_for(cls: type, f: dataclasses.Field) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The Click decorator for one field of ``cls``."""
    opt = option_of(f)
    assert opt is not None
    name = option_name(f)
    default = field_default(f)
    if opt.cli_default is not None:
        default = opt.cli_default
    kw: dict[str, Any] = {"callback": _callback(cls, f, opt, name)}
    if opt.metavar:
        kw["metavar"] = opt.metavar
    kind = opt.kind
    if kind in ("int", "float"):
        kw["type"] = _number_type(opt, kind == "int")
    elif kind == "choice":
        kw["type"] = click.Choice(opt.choices)
    elif kind == "path":
        kw["type"] = _path_type(opt)
    elif kind == "paths":
        kw["type"] = _path_type(opt)
        if opt.argument:
            kw["nargs"] = -1
        else:
            kw["multiple"] = True
    elif kind == "mapping":
        kw["multiple"] = True
    elif kind in ("size", "size_or") and isinstance(default, tuple):
        default = "x".join(str(v) for v in default)

    if opt.argument:
        kw.pop("metavar", None)
        if default is MISSING or kind == "paths":
            kw["required"] = default is MISSING
        else:
            kw.update(default=default, required=False)
        return click.argument(f.name, **kw)

    decls = [name, f.name]
    if kind == "bool":
        if default is False:
            kw["is_flag"] = True
        else:  # default True or None (None: "the preset's", say so in the help)
            decls = [f"{name}/--no-{name[2:]}", f.name]
    if opt.required or default is MISSING:
        kw["required"] = True
    elif kind not in ("paths", "mapping"):
        kw["default"] = default
        kw["show_default"] = default is not None and default is not False
    return click.option(*decls, help=opt.help, **kw)


def config_options(cls: type, *, exclude: tuple[str, ...] = ()):
    """Decorator: one Click parameter per field of ``cls`` (in field order), except ``exclude``
    and fields declared ``cli=False``."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(cli_fields(cls, exclude)):
            fn = param_for(cls, f)(fn)
        return fn

    return decorator


def field_option(cls: type, name: str):
    """Decorator: the Click parameter of one field of ``cls`` (for commands that share an option
    with a config but have no config of their own, e.g. ``backbones check --weights``)."""
    return param_for(cls, {f.name: f for f in dataclasses.fields(cls)}[name])


def config_from_params(cls: type, params: dict[str, Any], **extra: Any):
    """Build ``cls`` from a command's keyword arguments, removing the ones it used from
    ``params``; ``extra`` sets fields the command line does not carry."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: params.pop(k) for k in list(params) if k in names}
    return cls(**values, **extra)


__all__ = ["cli_fields", "config_from_params", "config_options", "field_option", "option_name", "param_for"]
