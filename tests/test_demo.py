"""A miniature end-to-end run of ``refinedepth demo --quick``: every stage runs and writes its files.

(The full demo's claim, refined beating rough, is checked by running ``make demo``; see
docs/demo.md. The quick run is too small for its numbers to mean anything.)
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from refinedepth.cli.main import cli
from refinedepth.demo import DemoConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out), "-q", "--device", "cpu"])
    return out, result


def test_quick_demo_prints_the_report_path(quick_run):
    out, result = quick_run
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out / "report.md")


def test_quick_demo_writes_every_stage(quick_run):
    out, _ = quick_run
    for name in ("fcrn/config.json", "cache-train.h5", "cache-test.h5", "refiner/best/config.json",
                 "evaluation.json", "per_sample.csv", "report.md", "visuals/grid.png"):
        assert (out / name).exists(), name
    payload = json.loads((out / "evaluation.json").read_text())
    assert [s["name"] for s in payload["stages"]] == ["rough", "rough x scale", "rough x (scale, shift)", "+ refiner"]
    assert {"dbe_acc", "dbe_comp", "boundary_f1"} <= set(payload["stages"][0]["metrics"])
    assert set(payload["win_rates"]) == {"rough", "rough x scale", "rough x (scale, shift)"}
    assert payload["count"] == DemoConfig.quick().test


def test_report_has_table_and_pictures(quick_run):
    out, _ = quick_run
    text = (out / "report.md").read_text()
    assert "| stage | rel ↓" in text and "| rough |" in text and "| + refiner |" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "the report shows no picture"
    for rel in images:
        img = np.asarray(Image.open(out / rel))
        assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 0


def test_quick_config_is_small_and_full_is_not():
    quick, full = DemoConfig.quick(), DemoConfig.full()
    assert quick.quick_run and not full.quick_run
    assert quick.backbone_train < full.backbone_train and quick.test < full.test
    with pytest.raises(Exception, match="family must be"):
        DemoConfig(family="space")


def test_rerunning_into_the_same_folder_starts_again(quick_run):
    out, first = quick_run
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out), "-q", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert (out / "report.md").is_file()
