"""refinedepth.config: the one declaration of every command's options (the one-spine issue,
acceptance 5; issue 13, "every option value is validated where the option is declared").

The command line is compared with the library here: every option's default and choice list
must equal the config field's and the library function's signature default.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import subprocess
import sys
from dataclasses import MISSING

import click
import pytest

import refinedepth
from refinedepth import config as C
from refinedepth.cli.main import cli
from refinedepth.errors import ConfigError

# command -> (config class, the library function that takes its options, the required
# command-line arguments, {config field: library parameter} where the names differ)
COMMANDS = {
    "train-refiner": (C.TrainConfig, None, ["--train", "a.h5", "--out", "run"], {}),
    "train-backbone": (C.TrainBackboneConfig, None, ["--dataset", "synthetic", "--out", "run"], {}),
    "cache": (
        C.CacheBuildConfig, "refinedepth.cache.build:build_cache",
        ["--backbone", "fcrn", "--dataset", "synthetic", "--out", "a.h5"], {},
    ),
    "evaluate": (C.EvaluateConfig, "refinedepth.evaluate:evaluate_cache", ["--cache", "a.h5"], {}),
    "predict": (
        C.PredictConfig, "refinedepth.predict:predict_images",
        ["img.png", "--backbone", "fcrn", "--out", "pred"], {"backbone_args": "backbone_options"},
    ),
}
# options of these commands that are about presenting the result, not library options
PRESENTATION = {"quiet", "as_json", "help"}


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def _function(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _required(name: str) -> dict:
    return {
        "train-refiner": dict(train="a.h5", out="run"),
        "train-backbone": dict(dataset="synthetic", out="run"),
        "cache": dict(backbone="fcrn", dataset="synthetic", out="a.h5"),
        "evaluate": dict(cache="a.h5"),
        "predict": dict(inputs=("img.png",), backbone="fcrn", out_dir="pred"),
    }[name]


def _same(a, b) -> bool:
    """Equal defaults, counting None, () and {} as the same "nothing given"."""
    empty = (None, (), {}, [])
    return (a in empty and b in empty) if (a in empty or b in empty) else a == b


def test_importing_the_configs_and_the_option_generator_imports_no_torch():
    code = (
        "import sys\n"
        "import refinedepth.config, refinedepth.cli._options\n"
        "import refinedepth.cli.cache, refinedepth.cli.train_refiner, refinedepth.cli.train_backbone\n"
        "import refinedepth.cli.evaluate, refinedepth.cli.predict, refinedepth.cli.demo\n"
        "import refinedepth.cli.backbones\n"
        "print(','.join(m for m in ('torch', 'numpy', 'h5py', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_configs_live_in_one_place_under_their_old_names_too():
    from refinedepth.refiner import train
    from refinedepth.train_backbone import TrainBackboneConfig

    assert refinedepth.TrainConfig is train.TrainConfig is C.TrainConfig
    assert TrainBackboneConfig is C.TrainBackboneConfig


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_defaults_equal_the_config_and_the_library(name):
    cls, target, required, renamed = COMMANDS[name]
    cmd = _command(name)
    ctx = cmd.make_context(name, list(required))
    params = dict(ctx.params)
    from refinedepth.cli._options import config_from_params

    # parsing nothing but the required options gives exactly the config's defaults
    assert config_from_params(cls, params) == cls(**_required(name))
    leftover = set(params) - PRESENTATION
    if name == "train-backbone":  # train_backbone(config, resume=False, overwrite=False)
        from refinedepth.train_backbone import train_backbone

        sig = inspect.signature(train_backbone).parameters
        for key in ("resume", "overwrite"):
            assert params[key] == sig[key].default
        leftover -= {"resume", "overwrite"}
    assert leftover == set(), f"'{name}' options that are no field of {cls.__name__}: {leftover}"
    if target is None:
        return
    sig = inspect.signature(_function(target)).parameters
    compared = 0
    for f in dataclasses.fields(cls):
        p = sig.get(renamed.get(f.name, f.name))
        if p is None or p.default is inspect.Parameter.empty:
            continue
        assert _same(p.default, C.field_default(f)), (
            f"{target} has {p.name}={p.default!r}, {cls.__name__}.{f.name} = {C.field_default(f)!r}"
        )
        compared += 1
    assert compared >= 4


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_choices_and_help_come_from_the_config(name):
    cls = COMMANDS[name][0]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for param in _command(name).params:
        if param.name not in fields:
            continue
        opt = C.option_of(fields[param.name])
        if isinstance(param.type, click.Choice):
            assert tuple(param.type.choices) == opt.choices
        if isinstance(param, click.Option):
            assert param.help == opt.help


def test_commands_without_a_config_agree_with_their_library_functions():
    from refinedepth.contract import check_backbone
    from refinedepth.data.synthetic import FAMILIES
    from refinedepth.demo import DemoConfig

    def parsed(cmd: click.Command, args: list[str]) -> dict:
        return cmd.make_context("x", args).params

    demo = parsed(_command("demo"), [])
    defaults = DemoConfig()
    assert (demo["out_dir"], demo["family"], demo["seed"], demo["device"]) == (
        defaults.out, defaults.family, defaults.seed, defaults.device
    )
    family = next(p for p in _command("demo").params if p.name == "family")
    assert tuple(family.type.choices) == C.SYNTHETIC_FAMILIES and set(FAMILIES) == set(C.SYNTHETIC_FAMILIES)
    check = parsed(_command("backbones").commands["check"], ["fcrn"])
    assert check == {"name": "fcrn", "weights": inspect.signature(check_backbone).parameters["weights"].default,
                     "backbone_args": {}}

    from refinedepth.cache.export import export_ab
    export = parsed(_command("export-ab"), ["c.h5", "out"])
    sig = inspect.signature(export_ab).parameters
    for key in ("scale", "at", "limit", "overwrite"):
        assert export[key] == sig[key].default, key
    at = next(p for p in _command("export-ab").params if p.name == "at")
    assert tuple(at.type.choices) == C.EXPORT_AT
    from refinedepth.cache import merge_shards

    merge = parsed(_command("cache-merge"), ["all.h5"])
    assert merge["overwrite"] == inspect.signature(merge_shards).parameters["overwrite"].default


def test_name_lists_match_the_modules_that_use_them():
    from refinedepth import metrics
    from refinedepth.refiner import normalize, presets

    assert tuple(presets.PRESETS) == C.PRESET_NAMES
    for name, preset in presets.PRESETS.items():  # the sizes the architecture needs
        assert C.PRESET_MULTIPLES[name] == preset.generator_config().downsampling
        assert preset.size[0] % C.PRESET_MULTIPLES[name] == 0
    assert presets.INPUT_MODES is C.INPUT_MODES and presets.AUGMENTATIONS is C.AUGMENTATIONS
    assert set(metrics.PROTOCOLS) == set(C.PROTOCOLS)
    from refinedepth import scoring

    assert scoring.ALIGNMENTS is C.ALIGNMENTS and scoring.KINDS is C.OUTPUT_KINDS
    assert set(metrics.ALIGNMENTS) == set(C.ALIGNMENTS) - {"auto"}  # auto is resolved before
    assert set(normalize.OUTPUT_KINDS) == set(C.OUTPUT_KINDS)
    from refinedepth import registry

    assert registry.OUTPUT_KINDS is C.OUTPUT_KINDS
    from refinedepth.cache.config import COMPRESSIONS, ROUGH_DTYPES
    assert ROUGH_DTYPES is C.ROUGH_DTYPES and COMPRESSIONS is C.COMPRESSIONS


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(size="0x0"), "size must be positive, got 0x0; use e.g. 256x256"),
        (dict(size="-64x64"), "size must be HEIGHTxWIDTH such as 256x256, got '-64x64'"),
        (dict(size=(60, 60)), "size 60x60 must be a multiple of 64 for preset 'small'; choose e.g. 64x64"),
        (dict(size=(128, 192), preset="pix2pix"), "must be a multiple of 256 for preset 'pix2pix'"),
        (dict(preset="smal"), "preset must be 'paper-nyu', 'paper-make3d', 'pix2pix', 'small' or 'guided', got 'smal'; did you mean 'small'?"),
        (dict(epochs=0), "epochs must be >= 1, got 0"),
        (dict(batch_size=2.5), "batch_size must be an integer, got 2.5"),
        (dict(lr=0.0), "lr must be > 0, got 0.0"),
        (dict(lr=float("nan")), "lr must be a finite number"),
        (dict(workers=-1), "workers must be >= 0, got -1"),
        (dict(beta1=1.0), "beta1 must be < 1, got 1.0"),
        (dict(augment=("hflip", "blur")), "unknown augmentation 'blur' in augment: expected any of hflip, scale, brightness, gain or none"),
        (dict(gan_mode="wgan"), "gan_mode must be 'vanilla', 'lsgan' or 'none', got 'wgan'"),
        (dict(inputs="rgb", residual=True), "residual=True needs the rough map as input"),
        (dict(bf16="yes"), "bf16 must be true or false, got 'yes'"),
    ],
)
def test_train_config_refuses_bad_values_in_one_line(kw, message):
    with pytest.raises(ConfigError) as info:
        C.TrainConfig("a.h5", "run", **kw)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_are_normalised():
    from pathlib import Path

    cfg = C.TrainConfig(Path("a.h5"), Path("run"), size="128x192", augment="hflip, none,scale")
    assert (cfg.train, cfg.out, cfg.size, cfg.augment) == (("a.h5",), "run", (128, 192), ("hflip", "scale"))
    assert C.TrainConfig("a", "b", augment=()).augment == ()
    assert C.EvaluateConfig("c.h5", averaging="pooled").averaging == "pixel"  # the metrics' name
    assert C.CacheBuildConfig(backbone="fcrn", dataset="synthetic", out="a.h5", size=64).size == (64, 64)
    with pytest.raises(ConfigError, match="gt_size must be positive"):
        C.CacheBuildConfig(backbone="fcrn", dataset="synthetic", out="a.h5", gt_size=(0, 4))
    with pytest.raises(ConfigError, match="png_scale must be > 0"):
        C.PredictConfig(("a.png",), "fcrn", "out", png_scale=0)
    with pytest.raises(ConfigError, match="optimizer must be 'sgd' or 'adam', got 'rmsprop'"):
        C.TrainBackboneConfig(optimizer="rmsprop")


# ----------------------------------------------------------------------- serialising


@pytest.mark.parametrize(
    "config",
    [
        C.TrainConfig("a.h5", "run", size=(128, 128), augment=("hflip",), val="v.h5"),
        C.TrainBackboneConfig(backbone_args={"encoder": "resnet18", "input_size": [64, 96]}, val_split=None),
        C.CacheBuildConfig(backbone="fcrn", dataset="synthetic", out="a.h5", refiners=("r1", "r2"), gt_size=(48, 64)),
        C.EvaluateConfig("c.h5", refiners=("r",), protocol="nyu"),
        C.PredictConfig(("a.png", "b/"), "fcrn", "out", overwrite=True),
    ],
    ids=lambda c: type(c).__name__,
)
def test_round_trip_through_json(config):
    data = json.loads(json.dumps(C.config_to_dict(config)))
    assert C.config_from_dict(type(config), data) == config
    assert config.to_dict() == C.config_to_dict(config)
    assert type(config).from_dict(data) == config


def test_unknown_keys_are_refused_with_a_suggestion_and_missing_keys_take_defaults():
    with pytest.raises(ConfigError) as info:
        C.config_from_dict(C.TrainConfig, {"train": "a.h5", "out": "run", "epoch": 3})
    assert "unknown TrainConfig option(s) 'epoch' (did you mean 'epochs'?)" in str(info.value)
    assert C.config_from_dict(C.TrainConfig, {"train": "a.h5", "out": "run"}) == C.TrainConfig("a.h5", "run")
    from refinedepth.registry import BackboneInfo

    info_dict = BackboneInfo("x", "metric", (8, 8), (4, 4)).to_dict()
    assert BackboneInfo.from_dict(info_dict).to_dict() == info_dict
    with pytest.raises(ConfigError, match="unknown BackboneInfo option"):
        BackboneInfo.from_dict({**info_dict, "colour": "red"})


def test_every_declared_field_has_help_and_a_default_the_check_accepts():
    for cls in (C.TrainConfig, C.TrainBackboneConfig, C.CacheBuildConfig, C.EvaluateConfig, C.PredictConfig):
        for f in dataclasses.fields(cls):
            opt = C.option_of(f)
            assert opt is not None and opt.help.strip(), f"{cls.__name__}.{f.name} has no help"
            default = C.field_default(f)
            if default is not MISSING:
                assert opt.check(default, f.name, default is None) == default or opt.kind == "size"
