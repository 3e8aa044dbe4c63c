"""The install layout: backbones/ and cli/ ship inside the package, never as top-level names."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_files():
    skip = {".venv", "build", "dist", ".git"}
    for path in REPO.rglob("*.py"):
        if not skip.intersection(path.relative_to(REPO).parts):
            yield path


def test_no_module_imports_top_level_backbones_or_cli():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in {"backbones", "cli"}:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert offenders == []


def test_installed_mapping():
    import refinedepth.backbones
    import refinedepth.cli

    assert Path(refinedepth.backbones.__file__).parent == REPO / "backbones"
    assert Path(refinedepth.cli.__file__).parent == REPO / "cli"


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    # Build from a copy of the tracked files so the checkout is left untouched.
    src = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("refinedepth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert "backbones" not in top and "cli" not in top
    assert "refinedepth/backbones/__init__.py" in names
    assert "refinedepth/backbones/fcrn.py" in names or not (REPO / "backbones" / "fcrn.py").exists()
    assert "refinedepth/cli/main.py" in names and "refinedepth/cli/__init__.py" in names
    assert "refinedepth/registry.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[refinedepth.backbones]" in text and "fcrn = refinedepth.backbones.fcrn:create_fcrn" in text
    assert "refinedepth = refinedepth.cli.main:main" in text
