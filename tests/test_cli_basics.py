"""The CLI's conventions: fast --help, --version, error lines and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

import refinedepth
from refinedepth.cli.main import cli


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "refinedepth", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_help_imports_no_heavy_modules():
    code = (
        "import sys\n"
        "from refinedepth.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'timm', 'h5py', 'transformers', 'numpy') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout and "backbones" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"refinedepth, version {refinedepth.__version__}"


def test_console_script_and_module_entry_points():
    script = os.path.join(os.path.dirname(sys.executable), "refinedepth")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and refinedepth.__version__ in proc.stdout
    assert _run("--version").stdout == proc.stdout


def test_unknown_backbone_one_line_exit_1():
    proc = _run("backbones", "info", "nosuch")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: unknown backbone 'nosuch'; did you mean one of: ")
    assert "fcrn" in lines[0]
    assert "Traceback" not in proc.stderr


def test_close_name_suggests_it():
    result = CliRunner().invoke(cli, ["backbones", "info", "fcnr"])
    assert result.exit_code == 1
    assert "did you mean 'fcrn'?" in result.output


def test_debug_env_shows_traceback():
    proc = _run("backbones", "info", "nosuch", env={"REFINEDEPTH_DEBUG": "1"})
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "BackboneNotFoundError" in proc.stderr


def test_usage_error_exit_2():
    result = CliRunner().invoke(cli, ["backbones", "info"])
    assert result.exit_code == 2
    assert "Missing argument 'NAME'" in result.output
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def test_list_json_and_pattern():
    result = CliRunner().invoke(cli, ["backbones", "list", "f*", "--json", "--no-check"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    names = [r["name"] for r in rows]
    assert "fcrn" in names and "files" in names and "hf" not in names
    assert all(r["distribution"] == "refinedepth" for r in rows if r["name"] in ("fcrn", "files"))


def test_bad_backbone_arg_is_usage_error():
    from refinedepth.cli._common import parse_key_values, parse_value

    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("[228, 304]") == [228, 304] and parse_value("resnet18") == "resnet18"
    assert parse_key_values(["encoder=resnet18", "input-size=[96,128]"]) == {
        "encoder": "resnet18",
        "input_size": [96, 128],
    }
    import click
    import pytest

    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        parse_key_values(["encoder"])


def test_package_import_is_light_and_lazy_names_resolve():
    code = (
        "import sys, refinedepth\n"
        "assert 'torch' not in sys.modules, 'import refinedepth must not import torch'\n"
        "for name in refinedepth._LAZY:\n"
        "    assert getattr(refinedepth, name).__name__ == name, name\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_progress_bar_is_silent_until_used_then_reports(monkeypatch):
    import io

    from rich.console import Console

    from refinedepth.cli import _common

    buf = io.StringIO()
    monkeypatch.setattr(_common, "_console", Console(file=buf, force_terminal=False, width=160))
    with _common.progress_bar():
        pass  # a command that fails before any work prints only its error line
    assert buf.getvalue() == ""
    with _common.progress_bar(unit="samples") as progress:
        for done in range(4):
            progress(done, 3, desc="cache", loss=0.5)
    out = buf.getvalue()
    assert "cache" in out and "3/3" in out and "loss=0.5" in out and "samples/s" in out
    with _common.progress_bar(quiet=True) as progress:
        progress(1, 1, desc="quiet")
    assert "quiet" not in buf.getvalue()


def _strict_json(text: str):
    """``json.loads`` as strictly as JSON.parse: ``Infinity``, ``-Infinity`` and ``NaN`` raise."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_backbones_info_and_check_print_strict_json(tmp_path):
    import numpy as np

    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", np.ones((4, 6), np.float32))
    args = ["files", "--backbone-arg", f"root={tmp_path}"]
    info = CliRunner().invoke(cli, ["backbones", "info", *args])
    assert info.exit_code == 0, info.output
    assert "Infinity" not in info.output
    payload = _strict_json(info.output)
    assert payload["value_range"] == [0.0, "inf"]  # unbounded: the string float() reads back
    assert float(payload["value_range"][1]) == float("inf")
    check = CliRunner().invoke(cli, ["backbones", "check", *args])
    assert check.exit_code == 0, check.output
    report = _strict_json(check.output)
    assert report["info"]["value_range"] == [0.0, "inf"] and report["output_shape"] == [2, 1, 4, 6]
    fcrn = CliRunner().invoke(cli, ["backbones", "info", "fcrn"])
    assert _strict_json(fcrn.output)["value_range"] == [0.0, 10.0]  # finite numbers stay numbers
    _strict_json(CliRunner().invoke(cli, ["backbones", "list", "--json", "--no-check"]).output)


def test_non_finite_numbers_become_strings():
    from refinedepth.cli.backbones import _dumps

    value = {"a": [float("inf"), -float("inf"), float("nan"), 1.5, 2], "b": (0.0, {"c": float("nan")})}
    assert json.loads(_dumps(value)) == {"a": ["inf", "-inf", "nan", 1.5, 2], "b": [0.0, {"c": "nan"}]}
