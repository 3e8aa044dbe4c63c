"""Every command's ``--help`` has a summary and an example, and ``docs/cli.md`` documents them all.

Parametrised over ``cli/main.py``'s COMMANDS and the sub-commands of each group, so a new command
is covered without touching this file. Running this file as a script regenerates the reference
part of ``docs/cli.md`` (between the GENERATED markers):

    .venv/bin/python tests/test_cli_help.py --write
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from refinedepth.cli.main import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
BEGIN = "<!-- BEGIN GENERATED: tests/test_cli_help.py --write -->"
END = "<!-- END GENERATED -->"


def _load(name: str) -> click.Command:
    cmd = cli.get_command(click.Context(cli), name)
    assert cmd is not None, f"command {name!r} in COMMANDS has no importable module ({COMMANDS[name]})"
    return cmd


def all_commands() -> list[tuple[str, ...]]:
    """``("cache",)``, ``("backbones", "list")``, ... for every command and sub-command."""
    paths: list[tuple[str, ...]] = []
    for name in sorted(COMMANDS):
        paths.append((name,))
        try:
            cmd = _load(name)
        except AssertionError:
            continue
        if isinstance(cmd, click.Group):
            paths += [(name, sub) for sub in sorted(cmd.commands)]
    return paths


def _resolve(path: tuple[str, ...]) -> click.Command:
    cmd = _load(path[0])
    for part in path[1:]:
        cmd = cmd.commands[part]
    return cmd


COMMAND_PATHS = all_commands()


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_help_has_summary_and_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd = _resolve(path)
    summary = (cmd.help or "").strip().splitlines()
    assert summary and summary[0].strip(), f"'refinedepth {' '.join(path)}' has no one-line summary"
    assert "Example:" in result.output, f"'refinedepth {' '.join(path)} --help' has no example block"
    examples = result.output.split("Example:", 1)[1]
    assert f"refinedepth {path[0]}" in examples, "the example should show the command itself"


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_options_are_kebab_case(path):
    cmd = _resolve(path)
    for param in cmd.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                assert opt == opt.lower() and "_" not in opt, f"{opt} should be kebab-case"


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_every_option_has_help(path):
    cmd = _resolve(path)
    missing = [
        param.opts[0]
        for param in cmd.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert missing == [], f"'refinedepth {' '.join(path)}': options without help: {missing}"


def _doc_sections() -> dict[tuple[str, ...], str]:
    """``## refinedepth NAME`` / ``### refinedepth NAME SUB`` headings -> their text."""
    text = DOC.read_text()
    sections: dict[tuple[str, ...], str] = {}
    matches = list(re.finditer(r"^#{2,4} `?refinedepth ([a-z0-9 -]+?)`?\s*$", text, flags=re.M))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[tuple(m.group(1).split())] = text[m.end() : end]
    return sections


def test_cli_doc_lists_exactly_the_commands():
    documented = set(_doc_sections())
    expected = set(COMMAND_PATHS)
    assert documented - expected == set(), "docs/cli.md documents commands that do not exist"
    assert expected - documented == set(), "commands missing from docs/cli.md (run tests/test_cli_help.py --write)"


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_cli_doc_mentions_every_option(path):
    section = _doc_sections().get(path)
    assert section is not None, f"docs/cli.md has no section for 'refinedepth {' '.join(path)}'"
    for param in _resolve(path).params:
        if isinstance(param, click.Option):
            assert param.opts[-1] in section or param.opts[0] in section, (
                f"docs/cli.md does not mention {param.opts[0]} of 'refinedepth {' '.join(path)}' "
                "(run tests/test_cli_help.py --write)"
            )


def test_top_level_help_imports_no_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from refinedepth.cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'h5py', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"'refinedepth --help' imported {out.stdout.strip()}"


# --- docs/cli.md generation -------------------------------------------------------------------


def render_reference() -> str:
    """Markdown reference of every command: summary, usage, options, examples (from --help)."""
    runner = CliRunner()
    parts = []
    for path in COMMAND_PATHS:
        cmd = _resolve(path)
        level = "##" if len(path) == 1 else "###"
        parts.append(f"{level} refinedepth {' '.join(path)}\n")
        result = runner.invoke(cli, [*path, "--help"], prog_name="refinedepth", terminal_width=100)
        parts.append("```text\n" + result.output.rstrip() + "\n```\n")
        if isinstance(cmd, click.Group):
            parts.append("Sub-commands: " + ", ".join(f"`{s}`" for s in sorted(cmd.commands)) + ".\n")
    return "\n".join(parts)


def write_doc() -> None:
    text = DOC.read_text() if DOC.exists() else f"# Command line\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + BEGIN + "\n\n" + render_reference() + "\n" + END + tail)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_doc()
        print(f"wrote {DOC}")
