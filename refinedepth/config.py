"""Every command's options, once: torch-free frozen dataclasses with defaults, choices, help and
validation (the one-spine issue; STYLE: "the CLI declares no vocabulary or default of its own").

Each field is declared with one of the helpers below (:func:`int_option`, :func:`size_option`,
:func:`choice_option`, ...). The helper records the default, the help text, the choices and the
check in the field's metadata; the dataclass's ``__post_init__`` runs every field's check (sizes
through :func:`refinedepth.geometry.parse_hw`, the one HxW parser), and ``refinedepth.cli``
generates its Click options from the same fields, so a default or a choice list exists in one
place. Importing this module imports neither torch nor numpy.

Serialising: :func:`config_to_dict` gives plain JSON values (tuples become lists);
:func:`config_from_dict` rebuilds a config. **Unknown keys are refused** with a
:class:`~refinedepth.errors.ConfigError` naming them: a config is read back from our own files
(checkpoints, cache attributes, ``state.json``), and a key this version does not know means the
file was written by another version whose option would otherwise be silently dropped. Missing
keys take the field's default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

from .errors import ConfigError

# -- vocabularies (the one place each list is written) -----------------------------------------
PRESET_NAMES = ("paper-nyu", "paper-make3d", "pix2pix", "small", "guided")
# input sizes must be multiples of 2 ** (stride-2 encoder layers) of the preset; checked against
# refinedepth.refiner.presets in the tests (presets import torch, this module must not)
PRESET_MULTIPLES = {"paper-nyu": 256, "paper-make3d": 256, "pix2pix": 256, "small": 64, "guided": 64}
INPUT_MODES = ("rough", "rough+rgb", "rgb")
# the paper's (Eigen et al.'s) three, then refinedepth's first-stage gain (refiner training only)
PAPER_AUGMENTATIONS = ("hflip", "scale", "brightness")
AUGMENTATIONS = (*PAPER_AUGMENTATIONS, "gain")
GAN_MODES = ("vanilla", "lsgan", "none")
LR_SCHEDULES = ("constant", "linear")
OPTIMIZERS = ("sgd", "adam")
PROTOCOLS = ("nyu", "make3d", "kitti", "none")
# per image, before scoring; "auto": lstsq (scale and shift) for relative/disparity maps, none for metric ones
ALIGNMENTS = ("auto", "none", "median", "lstsq")
# "pixel" pools every pixel of every image (the metrics module calls it "pooled")
AVERAGING = ("image", "pixel")
ROUGH_DTYPES = ("float32", "float16")
COMPRESSIONS = ("gzip", "lzf", "none")
PRECISIONS = ("fp32", "bf16")
HEADS = ("none", "guided")
#: the checkpoints a train-refiner run directory holds, the one loaded by default first
RUN_CHECKPOINTS = ("best", "last")
EXPORT_FORMATS = ("onnx",)
#: the backbone name of caches written without one (``write_cache``'s default): not checked
#: against the backbone a refiner was trained on
UNKNOWN_BACKBONE = "unknown"
GUIDES = ("rgb", "gray", "none")
UPSAMPLES = ("transposed", "resize")  # refinedepth.refiner.models.UPSAMPLES
CACHE_SIZES = ("native", "gt")  # --size words: the backbone's output size, the gt size
RGB_SIZES = ("gt", "rough")  # --rgb-size words
OUTPUT_KINDS = ("metric", "relative", "disparity")
SYNTHETIC_FAMILIES = ("indoor", "outdoor")
# export-ab --at: pairs at the cache's rough size or at the ground truth's (evaluation) size
EXPORT_AT = ("rough", "gt")

DEVICE_HELP = "auto, cpu, cuda or cuda:N."
DATASET_HELP = "nyu:PATH, make3d:PATH, folder:PATH, synthetic, synthetic:indoor or synthetic:outdoor."


# -- the field helper --------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """What a field declares beyond its default (kept in ``field.metadata["option"]``).

    ``kind`` selects the check: ``int``, ``float``, ``bool``, ``str``, ``path``, ``choice``,
    ``size`` (HxW), ``names`` (a subset of ``choices``), ``paths`` (a tuple of paths) or
    ``mapping`` (``KEY=VALUE`` options). ``minimum``/``maximum`` bound numbers
    (``exclusive`` makes the minimum strict, ``below`` the maximum). The remaining attributes shape the command-line option generated from the field:
    ``cli`` is its name (``None``: ``--field-name``; ``False``: library only), ``argument``
    makes it positional, ``required`` makes it required on the command line even where the
    library has a default, ``cli_default``/``parse`` spell the default as text and read it back
    (e.g. ``--augment preset`` for ``None``), ``metavar`` names the value, ``filetype``
    (``file`` or ``dir``) says what a path names, ``noun`` names one item in messages.
    """

    kind: str
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    below: bool = False
    cli: str | bool | None = None
    argument: bool = False
    required: bool = False
    metavar: str | None = None
    noun: str | None = None
    filetype: str | None = None
    cli_default: Any = None
    parse: Callable[[Any], Any] | None = None

    def check(self, value: Any, what: str, optional: bool) -> Any:
        """``value`` normalised (tuples, str paths); a one-line :class:`ConfigError` naming
        ``what`` (the field, or the command-line option) when it is not acceptable."""
        if value is None:
            if optional:
                return None
            raise ConfigError(f"{what} is required")
        return _CHECKS[self.kind](self, value, what)


def _number(opt: Option, value: Any, what: str, integer: bool) -> int | float:
    word = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{what} must be {word}, got {value!r}")
    if integer:
        if not isinstance(value, numbers.Integral) and not float(value).is_integer():
            raise ConfigError(f"{what} must be {word}, got {value!r}")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{what} must be a finite number, got {value!r}")
    lo, hi = opt.minimum, opt.maximum
    if lo is not None and (value <= lo if opt.exclusive else value < lo):
        raise ConfigError(f"{what} must be {'>' if opt.exclusive else '>='} {lo:g}, got {value!r}")
    if hi is not None and (value >= hi if opt.below else value > hi):
        raise ConfigError(f"{what} must be {'<' if opt.below else '<='} {hi:g}, got {value!r}")
    return value


def _parse_hw(value: Any, what: str = "size") -> tuple[int, int]:
    """:func:`refinedepth.geometry.parse_hw` (the one HxW parser), imported on use: geometry
    imports numpy, and ``import refinedepth`` imports this module through the registry."""
    from .geometry import parse_hw as parse

    return parse(value, what)


def _one_of(choices: Sequence[str]) -> str:
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _choice(opt: Option, value: Any, what: str) -> str:
    if not isinstance(value, str) or value not in opt.choices:
        close = difflib.get_close_matches(str(value), opt.choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{what} must be {_one_of(opt.choices)}, got {value!r}{hint}")
    return value


def _names(opt: Option, value: Any, what: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(v).strip() for v in items if str(v).strip() and str(v).strip() != "none")
    for name in names:
        if name not in opt.choices:
            close = difflib.get_close_matches(name, opt.choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown {opt.noun or 'name'} {name!r}{hint} in {what}: expected any of "
                f"{', '.join(opt.choices)} or none"
            )
    return names


def _path(opt: Option, value: Any, what: str) -> str:
    try:
        return os.fspath(value) if not isinstance(value, str) else value
    except TypeError:
        raise ConfigError(f"{what} must be a path, got {value!r}") from None


def _typed(kind: type, word: str) -> Callable[[Option, Any, str], Any]:
    def check(opt: Option, value: Any, what: str) -> Any:
        if not isinstance(value, kind):
            raise ConfigError(f"{what} must be {word}, got {value!r}")
        return value

    return check


_CHECKS: dict[str, Callable[[Option, Any, str], Any]] = {
    "int": lambda o, v, w: _number(o, v, w, integer=True),
    "float": lambda o, v, w: _number(o, v, w, integer=False),
    "bool": _typed(bool, "true or false"),
    "str": _typed(str, "a string"),
    "path": _path,
    "choice": _choice,
    "size": lambda o, v, w: _parse_hw(v, w),
    "size_or": lambda o, v, w: v.strip().lower() if isinstance(v, str) and v.strip().lower() in o.choices
    else _size_or_error(o, v, w),
    "names": _names,
    "paths": lambda o, v, w: tuple(_path(o, p, w) for p in ([v] if isinstance(v, (str, os.PathLike)) else v)),
    "mapping": lambda o, v, w: dict(v) if isinstance(v, Mapping) else _typed(Mapping, "a mapping")(o, v, w),
}


def _field(default: Any, opt: Option, factory: Callable[[], Any] | None = None) -> Any:
    meta = {"option": opt}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def int_option(default: Any = MISSING, *, help: str, minimum: int | None = None, **cli: Any) -> Any:
    return _field(default, Option("int", help, minimum=minimum, **cli))


def float_option(
    default: Any = MISSING, *, help: str, minimum: float | None = None, maximum: float | None = None,
    exclusive: bool = False, below: bool = False, **cli: Any,
) -> Any:
    return _field(
        default,
        Option("float", help, minimum=minimum, maximum=maximum, exclusive=exclusive, below=below, **cli),
    )


def bool_option(default: Any = False, *, help: str, **cli: Any) -> Any:
    return _field(default, Option("bool", help, **cli))


def str_option(default: Any = MISSING, *, help: str, **cli: Any) -> Any:
    return _field(default, Option("str", help, **cli))


def path_option(default: Any = MISSING, *, help: str, **cli: Any) -> Any:
    return _field(default, Option("path", help, **cli))


def choice_option(default: Any = MISSING, *, choices: Sequence[str], help: str, **cli: Any) -> Any:
    return _field(default, Option("choice", help, choices=tuple(choices), **cli))


def _size_or_error(opt: Option, value: Any, what: str) -> tuple[int, int]:
    try:
        return _parse_hw(value, what)
    except ConfigError as exc:
        if "must be positive" in str(exc):
            raise
        raise ConfigError(
            f"{what} must be {', '.join(opt.choices)} or HEIGHTxWIDTH such as 256x256, got {value!r}"
        ) from None


def size_or_option(default: Any = MISSING, *, words: Sequence[str], help: str, **cli: Any) -> Any:
    """A size (``HxW``) or one of ``words`` (e.g. ``native``, ``gt``)."""
    cli.setdefault("metavar", "|".join(words).upper() + "|HxW")
    return _field(default, Option("size_or", help, choices=tuple(words), **cli))


def size_option(default: Any = MISSING, *, help: str, **cli: Any) -> Any:
    cli.setdefault("metavar", "HxW")
    return _field(default, Option("size", help, **cli))


def names_option(default: Any = MISSING, *, choices: Sequence[str], help: str, **cli: Any) -> Any:
    return _field(default, Option("names", help, choices=tuple(choices), **cli))


def paths_option(default: Any = (), *, help: str, **cli: Any) -> Any:
    if default is MISSING:
        return _field(MISSING, Option("paths", help, **cli))
    return _field(None, Option("paths", help, **cli), factory=lambda: tuple(default))


def mapping_option(*, help: str, **cli: Any) -> Any:
    cli.setdefault("metavar", "KEY=VALUE")
    return _field(None, Option("mapping", help, **cli), factory=dict)


def option_of(f: dataclasses.Field) -> Option | None:
    """The :class:`Option` a field was declared with (``None`` for a plain field)."""
    return f.metadata.get("option")


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory); ``MISSING`` when it has none."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


def accepts_none(f: dataclasses.Field) -> bool:
    """Whether a field may be ``None`` (its annotation says ``| None``, or its default is)."""
    return "None" in str(f.type) or f.default is None


class ConfigBase:
    """Validation and serialisation shared by the configs (a mixin of frozen dataclasses)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            opt = option_of(f)
            if opt is None:
                continue
            value = opt.check(getattr(self, f.name), f.name, accepts_none(f))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields (subclasses); single fields are checked by their declaration."""

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        return config_from_dict(cls, data)


C = TypeVar("C")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON values: tuples become lists, mappings dicts, paths str."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild ``cls`` from :func:`config_to_dict`'s output.

    Lists are turned back into tuples where the field holds a tuple; missing keys take their
    defaults; unknown keys raise a :class:`ConfigError` naming them (see the module docstring).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping of {cls.__name__} options, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown {cls.__name__} option(s) {', '.join(hints)}: the file was written by another "
            "refinedepth version, or edited; remove them or use the version that wrote it"
        )
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list) and _holds_tuple(fields[key]):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return cls(**kwargs)


def _holds_tuple(f: dataclasses.Field) -> bool:
    return "tuple" in str(f.type)


def validate(cls: type, name: str, value: Any, what: str | None = None) -> Any:
    """Check one option of ``cls`` on its own (the CLI checks each value as it is parsed, so the
    error names the command-line option)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    opt = option_of(f)
    if opt is None:
        return value
    return opt.check(value, what or name, accepts_none(f))


# -- shared declarations -----------------------------------------------------------------------
def _device() -> Any:
    return str_option("auto", help=DEVICE_HELP)


def _workers() -> Any:
    return int_option(0, minimum=0, help="DataLoader worker processes.")


def _seed(help: str) -> Any:
    return int_option(0, help=help)


def _backbone_args(help: str) -> Any:
    return mapping_option(help=help, cli="--backbone-arg")


def _dataset_args(help: str) -> Any:
    return mapping_option(help=help, cli="--dataset-arg")


BACKBONE_HELP = "First-stage backbone from the registry (see 'refinedepth backbones list')."


# -- stage 2: the refiner ----------------------------------------------------------------------
def _augment_text(text: Any) -> Any:
    """``--augment``: ``preset`` -> ``None`` (the preset's), ``none`` -> ``()``, else a comma list."""
    if not isinstance(text, str):
        return text
    text = text.strip().lower()
    if text == "preset":
        return None
    return () if text in ("none", "") else text


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Everything that defines a refiner training run (stored in every checkpoint).

    Attributes:
        train: training cache(s) (HDF5, SPEC §5): a path or a sequence of paths, stored as a tuple;
            several caches are joined end to end. ``val``: optional validation cache.
        out: run directory (``last/``, ``best/``, ``log.jsonl``).
        preset: architecture (``paper-nyu``, ``paper-make3d``, ``pix2pix``, ``small``).
        inputs: ``rough`` (the paper), ``rough+rgb``, or ``rgb`` (the "single cGAN" baseline).
        residual: predict a correction of the rough map; ``None`` takes the preset's default.
        size: generator input ``(height, width)``; ``None`` takes the preset's. Each side must be
            a multiple of the preset's downsampling (``PRESET_MULTIPLES``).
        epochs, batch_size, lr, beta1, beta2: optimisation (paper: 20, 1, 2e-4, 0.5, 0.999).
        lr_schedule: ``constant`` or ``linear`` (constant for the first half of the steps, then
            linearly to zero, as pix2pix does per epoch).
        gan_mode: ``vanilla`` (BCE, paper), ``lsgan``, or ``none`` (L1 only, no discriminator).
        lambda_l1: weight of the L1 term (paper: 100).
        augment: subset of ``hflip``, ``scale`` (zoom by s, depths / s) and ``brightness`` (RGB);
            ``None`` takes the preset's default.
        max_depth: metres mapped to +1; ``None`` reads the cache's ``max_depth`` attribute.
        seed, device, bf16 (autocast on CUDA), workers (DataLoader processes).
        max_steps: stop after this many optimisation steps in total (tests, smoke runs).
        resume: continue from ``out/last``; overwrite: start again even if ``out`` holds a run.
        val_limit: validate on the first N samples of ``val`` only.
        select_metric: validation metric (lower is better) that picks the ``best`` checkpoint.
        log_every: write a training line to ``log.jsonl`` every N steps.
    """

    train: tuple[str, ...] = paths_option(
        MISSING, filetype="file", required=True,
        help="Training cache (HDF5); repeat to train on several (one backbone kind and max depth).",
    )
    out: str = path_option(filetype="dir", help="Run directory (last/, best/, log.jsonl).", required=True)
    val: str | None = path_option(None, filetype="file", help="Validation cache, scored every epoch.")
    preset: str = choice_option("small", choices=PRESET_NAMES, help="Refiner architecture.")
    inputs: str = choice_option(
        "rough", choices=INPUT_MODES,
        help="Conditioning: the rough map (paper), rough + RGB, or RGB alone (the 'single cGAN' baseline).",
    )
    residual: bool | None = bool_option(
        None, help="Predict a correction of the rough map [default: preset's]."
    )
    size: tuple[int, int] | None = size_option(
        None, help="Generator input size [default: preset's, e.g. 256x256]."
    )
    epochs: int = int_option(20, minimum=1, help="Passes over --train (paper: 20).")
    batch_size: int = int_option(1, minimum=1, help="Pairs per step (paper: 1).")
    lr: float = float_option(2e-4, minimum=0, exclusive=True, help="Adam learning rate (G and D).")
    beta1: float = float_option(0.5, minimum=0, maximum=1, below=True, help="Adam beta1 (pix2pix: 0.5).")
    beta2: float = float_option(0.999, minimum=0, maximum=1, below=True, help="Adam beta2.")
    lr_schedule: str = choice_option(
        "constant", choices=LR_SCHEDULES,
        help="linear: constant for the first half of the steps, then linearly to zero.",
    )
    gan_mode: str = choice_option(
        "vanilla", choices=GAN_MODES, help="cGAN loss (vanilla = BCE, paper); none trains with L1 only."
    )
    lambda_l1: float = float_option(100.0, minimum=0, help="Weight of the L1 term (paper Eq. 2).")
    augment: tuple[str, ...] | None = names_option(
        None, choices=AUGMENTATIONS, cli_default="preset", parse=_augment_text, noun="augmentation",
        help="Comma list of hflip, scale, brightness, gain; 'none'; or 'preset' for the preset's default.",
    )
    max_depth: float | None = float_option(
        None, minimum=0, exclusive=True, help="Metres mapped to +1 [default: the cache's max_depth]."
    )
    seed: int = _seed("Seed for weights, sampling, augmentation and dropout.")
    device: str = _device()
    bf16: bool = bool_option(False, help="bfloat16 autocast (CUDA only; ignored on CPU).")
    workers: int = _workers()
    max_steps: int | None = int_option(None, minimum=1, help="Stop after N steps in total (smoke tests).")
    resume: bool = bool_option(False, help="Continue the run in --out from its last checkpoint.")
    overwrite: bool = bool_option(
        False, help="Start again even if --out already holds a run (kept in OUT/.replaced/ until the new run's first checkpoint; an interrupted start gives it back)."
    )
    val_limit: int | None = int_option(None, minimum=1, help="Validate on the first N samples only.")
    select_metric: str = str_option(
        "abs_rel", cli=False, help="Validation metric (lower is better) that picks best/."
    )
    log_every: int = int_option(50, minimum=1, help="Steps between log.jsonl lines.")
    head: str | None = choice_option(
        None, choices=HEADS,
        help="Full-resolution head after the U-Net: guided (detail at the image's resolution) or none "
        "[default: preset's: guided for the guided preset, none for the others].",
    )
    guide: str | None = choice_option(
        None, choices=GUIDES, help="What guides the head: rgb, gray or none [default: preset's, rgb]."
    )
    upsample: str | None = choice_option(
        None, choices=UPSAMPLES,
        help="The decoder's upsampling: transposed convolution (the papers') or resize (bilinear x2 + 3x3 "
        "convolution, no checkerboard; fewer weights) [default: preset's: resize for guided, transposed for "
        "the others].",
    )
    crop: tuple[int, int] = size_option(
        (256, 256), help="Full-resolution training crop of a head refiner (clipped to the gt size)."
    )
    head_lr: float = float_option(
        1e-3, minimum=0, exclusive=True,
        help="Adam learning rate of the head (betas 0.9, 0.999; its own loss: squared error of log depth on the crops).",
    )

    def check(self) -> None:
        if not self.train:
            raise ConfigError("train: expected at least one training cache")
        if self.inputs == "rgb" and self.residual:
            raise ConfigError("residual=True needs the rough map as input; use inputs 'rough' or 'rough+rgb'")
        if self.size is not None:
            check_refiner_size(self.size, self.preset)

    @property
    def effective_head(self) -> str:
        from .refiner.presets import get_preset

        return get_preset(self.preset).head if self.head is None else self.head

    @property
    def effective_guide(self) -> str:
        from .refiner.presets import get_preset

        return get_preset(self.preset).guide if self.guide is None else self.guide

    @property
    def effective_upsample(self) -> str:
        from .refiner.presets import get_preset

        return get_preset(self.preset).upsample if self.upsample is None else self.upsample

    @property
    def effective_residual(self) -> bool:
        from .refiner.presets import get_preset

        if self.residual is None:  # the preset's default, which needs a rough input
            return get_preset(self.preset).residual and self.inputs != "rgb"
        return bool(self.residual)

    @property
    def effective_augment(self) -> tuple[str, ...]:
        from .refiner.presets import get_preset

        return get_preset(self.preset).augment if self.augment is None else self.augment

    @property
    def effective_size(self) -> tuple[int, int]:
        from .refiner.presets import get_preset

        return self.size or get_preset(self.preset).size

    def resolved_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with the options left to the preset (``None``) replaced by what they
        resolve to (``effective_size`` ...), so that ``--size 256x256`` and no ``--size`` on
        ``paper-nyu`` compare equal (resuming a run)."""
        import json

        d = self.to_dict()
        for name in ("head", "guide", "upsample", "residual", "augment", "size"):
            d[name] = getattr(self, f"effective_{name}")
        return json.loads(json.dumps(d))


def nearest_multiple_size(h: int, w: int, multiple: int) -> str:
    """``"HxW"``: each side rounded to the nearest positive multiple of ``multiple``, the size a
    refused refiner size suggests instead."""
    return f"{max(1, round(h / multiple)) * multiple}x{max(1, round(w / multiple)) * multiple}"


def check_refiner_size(size: Any, preset: str, what: str = "size") -> tuple[int, int]:
    """``size`` as ``(h, w)``, refused unless both sides are multiples of the preset's
    downsampling (``2 ** stride-2 encoder layers``). The error names the field and, for a field
    name (``size``), its command-line option (``--size``) too: this check runs across fields,
    after the CLI's per-option checks, so it is the config's field name that reaches it."""
    h, w = _parse_hw(size, what)
    m = PRESET_MULTIPLES.get(preset)
    if m and (h % m or w % m):
        choice = nearest_multiple_size(h, w, m)
        option = f" (--{what.replace('_', '-')} {choice})" if what.isidentifier() else ""
        raise ConfigError(
            f"{what} {h}x{w} must be a multiple of {m} for preset {preset!r}; choose e.g. "
            f"{choice}{option}"
        )
    return h, w


# -- stage 1: the backbone ---------------------------------------------------------------------
def _val_split_text(text: Any) -> Any:
    return None if isinstance(text, str) and text.strip().lower() in ("none", "") else text


@dataclass(frozen=True)
class TrainBackboneConfig(ConfigBase):
    """Everything that defines a stage-1 training run (serialised into ``config.json``).

    Attributes:
        dataset: dataset spec (``synthetic``, ``nyu:PATH``, ``folder:PATH``...).
        out: output directory.
        backbone: registry name of the backbone to train.
        backbone_args: backbone options (e.g. ``{"encoder": "resnet18", "input_size": [96, 128]}``).
        weights: optional initial weights for the backbone (fine-tuning).
        dataset_args: reader options (e.g. ``{"size": [120, 160]}`` for ``synthetic``).
        split / val_split: training and validation splits (``val_split=None`` skips validation).
        limit / val_limit: use only the first N samples of a split.
        epochs, batch_size, optimizer (``sgd`` | ``adam``), lr, momentum, weight_decay.
        lr_step / lr_gamma: multiply the lr by ``lr_gamma`` every ``lr_step`` epochs (0: constant).
        augment: the paper's augmentations on the training split (:mod:`refinedepth.augment`:
            horizontal flips, scale with depth / s, brightness).
        init_output_bias: start the final conv's bias at the training set's mean depth (a fresh
            model then predicts a plausible constant, which shortens CPU-sized runs).
        val_at_start: also validate before the first epoch (records the untrained baseline).
        seed, device (``auto`` | ``cpu`` | ``cuda[:i]``), workers (DataLoader processes).
        cache_in_memory: keep resized samples in RAM after the first epoch (skipped automatically
            when the split would need more than 2 GiB).
    """

    dataset: str = str_option("synthetic", metavar="SPEC", required=True, help=DATASET_HELP)
    out: str = path_option(
        "runs/backbone", filetype="dir", required=True, help="Output directory (weights, config.json, checkpoint)."
    )
    backbone: str = str_option("fcrn", argument=True, help="Registry name of the backbone to train.")
    backbone_args: Mapping[str, Any] = _backbone_args(
        "Backbone option, repeatable (e.g. encoder=resnet18). Recorded in config.json."
    )
    weights: str | None = path_option(
        None, filetype="file", help="Initial backbone weights (.safetensors) to fine-tune from."
    )
    dataset_args: Mapping[str, Any] = _dataset_args(
        "Dataset reader option, repeatable (e.g. size=[120,160])."
    )
    split: str = str_option("train", help="Training split.")
    val_split: str | None = str_option(
        "test", parse=_val_split_text, help="Validation split ('none' to skip validation)."
    )
    limit: int | None = int_option(None, minimum=1, help="Use only the first N training samples.")
    val_limit: int | None = int_option(None, minimum=1, help="Use only the first N validation samples.")
    epochs: int = int_option(20, minimum=1, help="Epochs (paper: ~20 on NYU).")
    batch_size: int = int_option(16, minimum=1, help="Batch size per process.")
    optimizer: str = choice_option(
        "sgd", choices=OPTIMIZERS, help="SGD with momentum (paper) or Adam (quicker for small CPU runs)."
    )
    lr: float = float_option(1e-2, minimum=0, exclusive=True, help="Initial learning rate.")
    momentum: float = float_option(0.9, minimum=0, help="SGD momentum.")
    weight_decay: float = float_option(0.0, minimum=0, help="L2 weight decay.")
    lr_step: int = int_option(6, minimum=0, help="Divide the lr every N epochs (0: constant).")
    lr_gamma: float = float_option(0.1, minimum=0, exclusive=True, help="Factor applied every --lr-step epochs.")
    augment: bool = bool_option(True, help="Paper's flips, scale (depth / s), brightness.")
    init_output_bias: bool = bool_option(
        True, cli=False, help="Start the output bias at the training set's mean depth."
    )
    val_at_start: bool = bool_option(False, cli=False, help="Also validate before the first epoch.")
    seed: int = _seed("Seed for initialisation, shuffling and augmentation.")
    device: str = _device()
    workers: int = _workers()
    cache_in_memory: bool = bool_option(
        True, cli=False, help="Keep resized samples in RAM after the first epoch."
    )


def _detail_sigma() -> Any:
    return float_option(
        None, minimum=0, exclusive=True, metavar="PIXELS",
        help="Detail-only refinement: keep only the refiners' correction finer than a Gaussian of "
        "this many pixels of the refined map, the larger scales from rough x scale (the global scale "
        "stored in each checkpoint). For refiners whose large-scale correction does not carry to "
        "new views.",
    )


def _detail_scale() -> Any:
    from .refiner.chain import DETAIL_SCALES  # torch-free

    return choice_option(
        "global", choices=DETAIL_SCALES,
        help="With --detail-sigma, where each image's overall scale comes from: global (rough x scale) "
        "or image (the refiner's: the geometric mean of refined / (rough x scale) over the image).",
    )


def _any_backbone() -> Any:
    return bool_option(
        False,
        help="Apply the refiners to rough maps of another backbone than the one the first was trained "
        "on (refused otherwise: its correction and baselines were fitted to that backbone's maps).",
    )


# -- caching -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CacheBuildConfig(ConfigBase):
    """The options of :func:`refinedepth.cache.build.build_cache` (``refinedepth cache``).

    ``build_cache`` takes them as keyword arguments with the same names and defaults (a test
    compares them); ``CacheBuildConfig(...).kwargs()`` is what the CLI passes it.
    """

    backbone: str = str_option(metavar="NAME", help=BACKBONE_HELP)
    weights: str | None = path_option(
        None, filetype="file", help="Backbone weights (.safetensors). Without it the backbone keeps its initialisation."
    )
    backbone_args: Mapping[str, Any] = _backbone_args(
        "Backbone option, repeatable (e.g. encoder=resnet18). Recorded with the backbone's config."
    )
    dataset: str = str_option(metavar="SPEC", help=DATASET_HELP)
    split: str = str_option("train", help="Dataset split (train/test/...).")
    limit: int | None = int_option(None, minimum=1, help="Use only the first N samples.")
    dataset_args: Mapping[str, Any] = _dataset_args(
        "Dataset reader option, repeatable (e.g. size=[120,160] for synthetic, scale=1000 for folder)."
    )
    out: str = path_option(filetype="file", help="The cache file to write (.h5).", required=True)
    size: str | tuple[int, int] = size_or_option(
        "native", words=CACHE_SIZES,
        help="Size of the stored rough maps: native (the backbone's output, as it is), gt (resized to "
        "the evaluation resolution) or HxW. The refiner's model-size input is derived when loading.",
    )
    gt_size: tuple[int, int] | None = size_option(
        None,
        help="Evaluation resolution of the stored gt; default: the dataset's native size (480x640 for NYU).",
    )
    with_rgb: bool = bool_option(
        False, help="Also store the RGB image (for RGB-conditioned and guided refiners), at --rgb-size."
    )
    rgb_size: str | tuple[int, int] = size_or_option(
        "gt", words=RGB_SIZES,
        help="Size of the stored RGB: gt (the evaluation resolution), rough (the rough maps' size) or "
        "HxW (at most the gt size).",
    )
    dtype: str = choice_option("float32", choices=ROUGH_DTYPES, help="Storage type of the rough maps.")
    compression: str = choice_option(
        "lzf", choices=COMPRESSIONS,
        help="HDF5 compression, with the shuffle filter: lzf is fastest to read, gzip is readable by "
        "non-h5py tools.",
    )
    refiners: tuple[str, ...] = paths_option(
        filetype="dir",
        cli="--refiner", help="Trained refiner applied after the backbone, repeatable (chained in order)."
    )
    detail_sigma: float | None = _detail_sigma()
    detail_scale: str = _detail_scale()
    any_backbone: bool = _any_backbone()
    batch_size: int = int_option(8, minimum=1, help="Backbone batch size.")
    workers: int = _workers()
    seed: int = _seed("Seed set before building the backbone.")
    device: str = _device()
    overwrite: bool = bool_option(False, help="Replace an existing file made by a different command.")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``build_cache`` (all but ``out``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "out"}


# -- evaluation and prediction -----------------------------------------------------------------
def _precision() -> Any:
    return choice_option(
        "fp32", choices=PRECISIONS,
        help="Refiner inference precision: bf16 autocast is faster on GPUs and on CPUs with "
        "AVX-512-BF16/AMX (about 1e-2 relative difference), slower elsewhere.",
    )


@dataclass(frozen=True)
class EvaluateConfig(ConfigBase):
    """The options of :func:`refinedepth.evaluate.evaluate_cache` (``refinedepth evaluate``),
    plus where the command writes its JSON table."""

    cache: str = path_option(filetype="file", help="HDF5 cache to score (from 'refinedepth cache').", required=True)
    refiners: tuple[str, ...] = paths_option(
        filetype="dir",
        cli="--refiner",
        help="Refiner checkpoint directory; repeat to chain refiners (one table row per stage).",
    )
    protocol: str | None = choice_option(
        None, choices=PROTOCOLS, help="Evaluation protocol (crop and depth range).  [default: the cache's]"
    )
    align: str = choice_option(
        "auto", choices=ALIGNMENTS,
        help="Align predictions to GT per image: auto = lstsq for relative/disparity stages (scale and "
        "shift; for disparity fitted in inverse depth, as MiDaS evaluates), none for metric ones; "
        "lstsq or median for every stage; none only for metric caches.",
    )
    averaging: str = choice_option(
        "image", choices=AVERAGING,
        help="Mean of per-image metrics, or pooled over all pixels (FCRN's MATLAB code).",
    )
    json_path: str | None = path_option(None, filetype="file", cli="--json", help="Write the table and settings as JSON.")
    csv_path: str | None = path_option(
        None, filetype="file", cli="--csv", help="Write per-sample metrics (one row per sample and stage)."
    )
    visuals_dir: str | None = path_option(
        None, filetype="dir", cli="--visuals",
        help="Write picture grids (RGB | rough | refined | GT | error) to this folder.",
    )
    num_visuals: int = int_option(4, minimum=1, help="How many samples the picture grids show.")
    batch_size: int = int_option(4, minimum=1, help="Samples per batch.")
    limit: int | None = int_option(None, minimum=1, help="Score only the first N samples.")
    workers: int = int_option(0, minimum=0, cli=False, help="DataLoader worker processes.")
    precision: str = _precision()
    detail_sigma: float | None = _detail_sigma()
    detail_scale: str = _detail_scale()
    any_backbone: bool = _any_backbone()
    boundary: bool = bool_option(
        True, help="Also score depth-boundary accuracy/completeness (iBims-1) and boundary F1 (Depth Pro)."
    )
    device: str = _device()

    def __post_init__(self) -> None:
        if self.averaging == "pooled":  # the metrics module's name for "pixel"
            object.__setattr__(self, "averaging", "pixel")
        super().__post_init__()

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``evaluate_cache`` after ``cache`` and ``refiners``."""
        skip = {"cache", "refiners", "json_path"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


@dataclass(frozen=True)
class PredictConfig(ConfigBase):
    """The options of :func:`refinedepth.predict.predict_images` (``refinedepth predict``)."""

    inputs: tuple[str, ...] = paths_option(MISSING, argument=True, help="Image files or folders.")
    backbone: str = str_option(metavar="NAME", help=BACKBONE_HELP)
    out_dir: str = path_option(filetype="dir", help="Output folder.", cli="--out", required=True)
    weights: str | None = path_option(
        None, filetype="file", help="Backbone weights (.safetensors). Without it the backbone keeps its initialisation."
    )
    backbone_args: Mapping[str, Any] = _backbone_args(
        "Backbone option, repeatable (e.g. encoder=resnet18). Recorded with the backbone's config."
    )
    refiners: tuple[str, ...] = paths_option(
        filetype="dir",
        cli="--refiner", help="Refiner checkpoint directory applied after the backbone; repeat to chain."
    )
    batch_size: int = int_option(4, minimum=1, help="Images per batch.")
    png_scale: float = float_option(
        1000.0, minimum=0, exclusive=True,
        help="16-bit PNG units per metre (1000 = millimetres); recorded in the PNG.",
    )
    overwrite: bool = bool_option(
        False,
        help="Replace output files that already exist (otherwise they are refused before anything "
        "is written).",
    )
    precision: str = _precision()
    detail_sigma: float | None = _detail_sigma()
    detail_scale: str = _detail_scale()
    any_backbone: bool = _any_backbone()
    device: str = _device()


__all__ = [
    "ALIGNMENTS",
    "AUGMENTATIONS",
    "PAPER_AUGMENTATIONS",
    "AVERAGING",
    "COMPRESSIONS",
    "EXPORT_AT",
    "GAN_MODES",
    "INPUT_MODES",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "OUTPUT_KINDS",
    "PRECISIONS",
    "PRESET_MULTIPLES",
    "PRESET_NAMES",
    "PROTOCOLS",
    "ROUGH_DTYPES",
    "SYNTHETIC_FAMILIES",
    "CacheBuildConfig",
    "ConfigBase",
    "EvaluateConfig",
    "Option",
    "PredictConfig",
    "TrainBackboneConfig",
    "TrainConfig",
    "check_refiner_size",
    "config_from_dict",
    "config_to_dict",
    "validate",
]
