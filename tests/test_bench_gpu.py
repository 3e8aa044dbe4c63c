"""benchmarks/gpu.sh runs end to end on CPU (--device cpu --quick): the GPU table's code path,
including the DDP part (gloo over two processes). Its figures mean nothing here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_quick_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--device", "cpu", "--quick", "--presets", "small",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    kinds = [(r["what"], r["batch"]) for r in result["rows"]]
    assert kinds == [("inference", 1), ("inference", 2), ("train D+G", 1)]
    assert all(r["ms"] > 0 and r["GFLOP"] > 0 for r in result["rows"])
    train = result["rows"][-1]
    assert train["NYU schedule min"] == pytest.approx(795 * 20 * train["ms"] / 1e3 / 60, rel=0.02)
    assert result["ddp"]["world"] == 2 and result["ddp"]["seconds"] > 0
    assert "| preset | what | batch |" in proc.stdout and "DDP over 2 process" in proc.stdout
