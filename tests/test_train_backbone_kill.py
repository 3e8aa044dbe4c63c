"""Stage-1 training killed with SIGKILL anywhere resumes to the uninterrupted run, bit for bit
(the one-spine issue, acceptance 4).

Each case runs training in a subprocess that SIGKILLs itself at one point — inside an epoch,
between two files of the epoch commit, between the two renames of the checkpoint swap, and after
the swap before the derived weights are written — then resumes in this process with
``resume=True`` and compares every tensor and the log with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from refinedepth.train_backbone import TrainBackboneConfig, train_backbone

from ._threads import torch_threads

pytestmark = pytest.mark.slow

TINY = {"encoder": "resnet18", "encoder_args": {"channels": [8, 16, 32, 64], "stem_width": 8}, "input_size": [64, 96]}

# the child: train with one function patched to SIGKILL the process on its n-th matching call
CHILD = r"""
import json, os, signal, sys
import torch
torch.set_num_threads(1)
torch.set_num_interop_threads(1)
from refinedepth.train_backbone import TrainBackboneConfig, train_backbone

config = TrainBackboneConfig(**json.loads(sys.argv[1]))
point, n = sys.argv[2], int(sys.argv[3])
seen = [0]

def die_on(match, fn):
    def wrapper(*args, **kwargs):
        if match(*args, **kwargs):
            seen[0] += 1
            if seen[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapper

if point == "step":
    torch.optim.Adam.step = die_on(lambda *a, **k: True, torch.optim.Adam.step)
elif point == "commit-files":  # before the optimizer file of a commit, after the model file
    import safetensors.torch as st
    st.save_file = die_on(lambda t, f, **k: str(f).endswith("optimizer.safetensors"), st.save_file)
elif point in ("swap", "publish"):  # tmp -> last (old last already moved aside) / the derived weights
    name = "last" if point == "swap" else "backbone.safetensors"
    os.replace = die_on(lambda src, dst, *a, **k: os.path.basename(os.fspath(dst)) == name, os.replace)
train_backbone(config)
"""


def _config(out) -> dict:
    return dict(
        dataset="synthetic", out=str(out), backbone_args=TINY, dataset_args={"size": [64, 96]}, limit=16,
        val_split=None, epochs=3, batch_size=8, optimizer="adam", lr=3e-3, lr_step=2, device="cpu", seed=1,
    )


def _tensors(out) -> dict:
    return {name: load_file(str(out / name)) for name in ("backbone.safetensors", "last/model.safetensors",
                                                           "last/optimizer.safetensors")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "straight"
    with torch_threads(1):
        train_backbone(TrainBackboneConfig(**_config(out)))
    return out


@pytest.mark.parametrize(
    "point,n,state",
    [
        ("step", 3, "in epoch 2"),  # 2 steps per epoch: the first step of epoch 2
        ("commit-files", 2, "epoch 2's commit, model written, optimizer not"),
        ("swap", 2, "between last -> .last.old and tmp -> last"),
        ("publish", 3, "epoch 3 committed, its backbone.safetensors not written"),
    ],
)
def test_killed_training_resumes_bitwise(reference, tmp_path, point, n, state):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(_config(out)), point, str(n)],
                          capture_output=True, env=env, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    if point == "swap":  # the kill left the previous checkpoint aside, as the swap's first rename does
        assert not (out / "last").exists() and (out / ".last.old" / "config.json").is_file()
    if point == "publish":
        done = json.loads((out / "config.json").read_text())["epochs_done"]
        assert done == 2 and json.loads((out / "last" / "config.json").read_text())["state"]["epoch"] == 3
    with torch_threads(1):
        result = train_backbone(TrainBackboneConfig(**_config(out)), resume=True)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    want, got = _tensors(reference), _tensors(out)
    for name in want:
        assert want[name].keys() == got[name].keys(), name
        for key in want[name]:
            assert torch.equal(want[name][key], got[name][key]), f"{state}: {name}:{key} differs"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2, 3]  # no line lost, none duplicated
    assert json.loads((out / "config.json").read_text())["epochs_done"] == 3
    names = {p.name for p in out.iterdir()}
    assert {"backbone.safetensors", "config.json", "last", "log.jsonl"} <= names
    assert not [n for n in names if n.startswith(".")], names  # killed writers' temporaries are gone
