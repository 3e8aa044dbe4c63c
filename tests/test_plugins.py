"""Entry-point plugins: listing without importing, loading on use, a broken plugin, disabling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from refinedepth import registry
from refinedepth.cli.main import cli
from refinedepth.errors import PluginError

from ._plugin_env import make_plugin_site


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = make_plugin_site(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("REFINEDEPTH_DISABLE_PLUGINS", raising=False)
    registry.refresh_plugins()
    yield site
    for mod in [m for m in sys.modules if m.startswith(("refinedepth_example_plugin", "refinedepth_broken_plugin"))]:
        del sys.modules[mod]
    registry.refresh_plugins()


def test_plugins_listed_without_importing(plugin_site):
    names = registry.list_backbones()
    assert "example-tiny" in names and "broken-net" in names
    assert registry.backbone_source("example-tiny") == (
        "refinedepth-example-plugin",
        "refinedepth_example_plugin:create_tiny",
    )
    assert "refinedepth_example_plugin" not in sys.modules
    assert "refinedepth_broken_plugin" not in sys.modules


def test_cli_list_shows_plugin_and_warns_about_broken_one(plugin_site):
    result = CliRunner().invoke(cli, ["backbones", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("example-tiny") and "refinedepth-example-plugin" in line for line in lines)
    assert any(line.startswith("fcrn") for line in lines)
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1
    assert "'broken-net'" in warning[0] and "refinedepth-broken-plugin" in warning[0]
    assert "this plugin is broken on purpose" in warning[0]
    # the check ran in a child process: neither plugin was imported here
    assert "refinedepth_example_plugin" not in sys.modules
    assert "refinedepth_broken_plugin" not in sys.modules


def test_create_plugin_backbone(plugin_site):
    import torch

    model = registry.create_backbone("example-tiny", width=8)
    assert model.info.name == "example-tiny" and model.info.output_kind == "metric"
    out = model(torch.rand(2, 3, *model.info.input_size))
    assert out.shape == (2, 1, *model.info.output_size)
    assert torch.isfinite(out).all() and (out > 0).all() and (out < 10).all()


def test_broken_plugin_fails_on_use_with_distribution_name(plugin_site):
    with pytest.raises(PluginError) as err:
        registry.create_backbone("broken-net")
    message = str(err.value)
    assert "\n" not in message
    assert "'broken-net'" in message and "'refinedepth-broken-plugin'" in message
    assert "RuntimeError: this plugin is broken on purpose" in message


def test_broken_plugin_cli_one_line_exit_1(plugin_site):
    proc = subprocess.run(
        [sys.executable, "-m", "refinedepth", "backbones", "info", "broken-net"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(plugin_site)},
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1, proc.stderr
    assert err_lines[0].startswith("Error: backbone 'broken-net' from distribution 'refinedepth-broken-plugin'")
    assert "Traceback" not in proc.stderr


def test_broken_plugin_does_not_break_other_commands(plugin_site):
    result = CliRunner().invoke(cli, ["backbones", "info", "example-tiny"])
    assert result.exit_code == 0, result.output
    assert '"output_kind": "metric"' in result.output
    assert '"distribution": "refinedepth-example-plugin"' in result.output


def test_disable_plugins(plugin_site, monkeypatch):
    monkeypatch.setenv("REFINEDEPTH_DISABLE_PLUGINS", "1")
    registry.refresh_plugins()
    names = registry.list_backbones()
    assert "example-tiny" not in names and "broken-net" not in names
    assert {"fcrn", "hf", "files"} <= set(names)


def test_docs_example_matches_the_package():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    pyproject = (
        Path(__file__).resolve().parents[1] / "docs" / "examples" / "refinedepth-example-plugin" / "pyproject.toml"
    ).read_text()
    line = 'example-tiny = "refinedepth_example_plugin:create_tiny"'
    assert line in doc and line in pyproject
