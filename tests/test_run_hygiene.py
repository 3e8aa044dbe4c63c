"""What a user sees and keeps: one progress bar per training run (with the run's ETA), and
library calls that leave torch's global random stream as they found it (issue 15)."""

from __future__ import annotations

import re

import torch
from click.testing import CliRunner

from refinedepth.cli.main import cli

from ._helpers_refiner import make_degraded_cache, one_torch_thread  # noqa: F401


def test_a_20_epoch_train_refiner_run_shows_one_progress_bar(tmp_path):
    train = make_degraded_cache(tmp_path / "train.h5", 2, "train")
    val = make_degraded_cache(tmp_path / "val.h5", 2, "test")
    out = tmp_path / "run"
    res = CliRunner().invoke(
        cli,
        [
            "train-refiner", "--train", str(train), "--val", str(val), "--out", str(out), "--size", "64x64",
            "--epochs", "20", "--device", "cpu", "--augment", "none",
        ],
    )
    assert res.exit_code == 0, res.output
    # rich draws each bar once when the output is not a terminal: one line per bar, starting with
    # its description ("train"); validation reports inside the training bar (20 validations).
    bars = [line for line in res.stderr.splitlines() if re.match(r"^\s*(train|validate|epoch)\b", line)]
    assert len(bars) == 1, res.stderr
    assert "40/40" in bars[0]  # 2 samples x 20 epochs, batch 1: the whole run's steps
    assert (out / "best" / "config.json").is_file()


TINY_NET = {"encoder": "resnet18", "encoder_args": {"channels": [16, 32, 64, 128], "stem_width": 16}, "input_size": [48, 64]}


def _draws():
    return torch.rand(4)


def test_library_calls_leave_the_global_rng_alone(tmp_path):
    from refinedepth.cache import build_cache
    from refinedepth.refiner.train import TrainConfig, train_refiner
    from refinedepth.train_backbone import TrainBackboneConfig, train_backbone

    train = make_degraded_cache(tmp_path / "train.h5", 2, "train")
    calls = {
        "train_refiner": lambda: train_refiner(
            TrainConfig(train=str(train), out=str(tmp_path / "r"), size=(64, 64), max_steps=2, device="cpu", seed=3)
        ),
        "train_backbone": lambda: train_backbone(
            TrainBackboneConfig(
                dataset="synthetic", out=str(tmp_path / "b"), limit=2, epochs=1, batch_size=2, device="cpu", seed=3,
                dataset_args={"size": [48, 64]},
                backbone_args=TINY_NET,
            )
        ),
        "build_cache": lambda: build_cache(
            tmp_path / "c.h5", backbone="fcrn", dataset="synthetic", limit=2, size=(32, 32), device="cpu", seed=3,
            dataset_args={"size": [48, 64]},
            backbone_args=TINY_NET,
        ),
    }
    from refinedepth.evaluate import evaluate_cache

    calls["evaluate_cache"] = lambda: evaluate_cache(train, [tmp_path / "r"], device="cpu")
    for name, call in calls.items():
        torch.manual_seed(1234)
        expected = _draws()
        torch.manual_seed(1234)
        call()
        assert torch.equal(_draws(), expected), f"{name} changed torch's global RNG state"
