"""DDP under torchrun with 2 CPU processes (gloo): trains, rank 0 writes one loadable checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from refinedepth.refiner import checkpoint as ckpt
from refinedepth.refiner.api import Refiner

from ._helpers_refiner import make_degraded_cache, one_torch_thread  # noqa: F401


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_and_write_one_checkpoint(tmp_path):
    train = make_degraded_cache(tmp_path / "train.h5", 8, "train")
    val = make_degraded_cache(tmp_path / "val.h5", 4, "test")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REFINEDEPTH_DEBUG": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "refinedepth", "train-refiner", "--train", str(train), "--val", str(val), "--out", str(out),
        "--size", "64x64", "--epochs", "2", "--device", "cpu", "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each rank trains on half of every epoch: 8 samples / 2 ranks / batch 1 = 4 steps per epoch
    meta = ckpt.read_config(out / "last")
    assert meta["state"]["step"] == 8 and meta["state"]["epoch"] == 2
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines if ln["type"] == "epoch"] == [1, 2]  # written once, by rank 0
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "log.jsonl", "train_config.json"]
    refiner = Refiner.from_pretrained(out)
    refined = refiner.refine(np.full((30, 40), 3.0, np.float32))
    assert refined.shape == (30, 40) and np.isfinite(refined).all()


_HEAD_SCRIPT = """
import os, sys
import torch
torch.set_num_threads(1)
import refinedepth.refiner.train as T
from refinedepth.config import TrainConfig

train, val, out = sys.argv[1:4]
heads = []
original = T._head_loss
def recording(batch, out_, rough_model, head, *args, **kwargs):  # the head each rank trains
    heads.append(head)
    return original(batch, out_, rough_model, head, *args, **kwargs)
T._head_loss = recording
T.train_refiner(TrainConfig(train=(train,), val=val, out=out, preset="small", head="guided", guide="none",
                            size=(64, 64), crop=(32, 32), epochs=2, device="cpu"))
rank = int(os.environ["RANK"])
from safetensors.torch import save_file
save_file({k: v.detach().clone().contiguous() for k, v in heads[-1].state_dict().items()}, f"{out}-head-rank{rank}.safetensors")
"""


@pytest.mark.slow
def test_torchrun_trains_one_guided_head_not_one_per_rank(tmp_path):
    # the head is trained beside the DDP-wrapped U-Net with its own optimiser: its gradients must
    # be averaged across ranks too, or each rank drifts off with its own (rank 0 saves 1/W of the data)
    import torch

    train = make_degraded_cache(tmp_path / "train.h5", 6, "train")
    val = make_degraded_cache(tmp_path / "val.h5", 3, "test")
    script = tmp_path / "run.py"
    script.write_text(_HEAD_SCRIPT)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), str(train), str(val), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    heads = [load_file(f"{out}-head-rank{r}.safetensors") for r in (0, 1)]
    assert heads[0].keys() == heads[1].keys() and len(heads[0]) > 0
    for key in heads[0]:
        assert torch.equal(heads[0][key], heads[1][key]), key
    saved = ckpt.load_tensors(out / "last", ckpt.HEAD_FILE, ckpt.read_config(out / "last"))
    for key, value in heads[0].items():  # what rank 0 saved is the head every rank has
        assert torch.equal(saved[key], value), key
