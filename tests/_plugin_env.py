"""Fabricate installed-distribution metadata for plugin tests (no pip, no network)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "refinedepth-example-plugin"


def _dist_info(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[refinedepth.backbones]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def make_plugin_site(site: Path, broken: bool = True, raising: bool = False) -> Path:
    """Put the docs' example plugin (and optionally a broken one, which fails to import, and a
    raising one, whose factory raises) into ``site`` as if installed."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLE / "refinedepth_example_plugin", site / "refinedepth_example_plugin")
    _dist_info(
        site,
        "refinedepth-example-plugin",
        "0.1.0",
        {"example-tiny": "refinedepth_example_plugin:create_tiny"},
    )
    if broken:
        pkg = site / "refinedepth_broken_plugin"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(
            textwrap.dedent(
                """
                raise RuntimeError("this plugin is broken on purpose")
                """
            )
        )
        _dist_info(
            site,
            "refinedepth-broken-plugin",
            "0.0.1",
            {"broken-net": "refinedepth_broken_plugin:create"},
        )
    if raising:
        pkg = site / "refinedepth_raising_plugin"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(
            textwrap.dedent(
                """
                def create(weights=None, **options):
                    raise ValueError("width must be even")
                """
            )
        )
        _dist_info(site, "refinedepth-raising-plugin", "0.0.2", {"raising-net": "refinedepth_raising_plugin:create"})
    return site
