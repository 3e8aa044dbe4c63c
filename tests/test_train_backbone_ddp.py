"""Stage-1 training under torchrun with 2 CPU processes (gloo): each rank trains on its shard,
validation is all-reduced over every sample once, rank 0 writes one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from refinedepth.train_backbone import load_trained_backbone


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_run_directory(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REFINEDEPTH_DEBUG": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "refinedepth", "train-backbone", "fcrn", "--dataset", "synthetic", "--dataset-arg", "size=[64,96]",
        "--backbone-arg", "encoder=resnet18", "--backbone-arg", 'encoder_args={"channels":[8,16,32,64],"stem_width":8}',
        "--backbone-arg", "input_size=[64,96]", "--limit", "8", "--val-limit", "5", "--batch-size", "2",
        "--optimizer", "adam", "--lr", "1e-3", "--epochs", "2", "--device", "cpu", "-q", "--out", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((out / "config.json").read_text())
    assert payload["epochs_done"] == 2
    assert payload["history"][-1]["val"]["count"] == 5  # every validation sample once across ranks
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [1, 2]  # written once, by rank 0
    assert sorted(p.name for p in out.iterdir()) == ["backbone.safetensors", "config.json", "last", "log.jsonl"]
    model = load_trained_backbone(out)

    # the logged validation is the saved model's score: every rank scores rank 0's BatchNorm
    # statistics (each rank's copy had moved with its own last batch: abs_rel differed by 5e-7)
    from refinedepth.config import TrainBackboneConfig
    from refinedepth.train_backbone import _open, _Prepared, validate

    config = TrainBackboneConfig.from_dict(payload["train"])
    val_ds = _open(config, config.val_split, config.val_limit)
    prepared = _Prepared(val_ds, model.info.input_size, model.info.output_size, keep_native=True, cache=False)
    again = validate(model, prepared, payload["dataset"]["protocol"], 2, "cpu")
    logged = payload["history"][-1]["val"]
    for key in ("abs_rel", "rmse", "d1", "silog"):
        assert logged[key] == pytest.approx(again[key], rel=1e-9, abs=1e-12), key
