"""``--precision bf16`` for refiner inference in evaluate and predict (issue 15): close to fp32,
not equal to it (the bf16 path really runs)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from refinedepth.cli.main import cli
from refinedepth.evaluate import evaluate_cache
from refinedepth.refiner.train import TrainConfig, train_refiner

from ._helpers_refiner import make_degraded_cache, one_torch_thread  # noqa: F401


def test_bf16_evaluation_is_close_to_fp32(tmp_path):
    train = make_degraded_cache(tmp_path / "train.h5", 4, "train")
    test = make_degraded_cache(tmp_path / "test.h5", 4, "test")
    run = tmp_path / "run"
    train_refiner(TrainConfig(train=str(train), out=str(run), size=(64, 64), max_steps=4, device="cpu"))
    fp32 = evaluate_cache(test, [run], device="cpu").metrics(-1)
    bf16 = evaluate_cache(test, [run], device="cpu", precision="bf16").metrics(-1)
    assert bf16["abs_rel"] != fp32["abs_rel"]
    assert abs(bf16["abs_rel"] - fp32["abs_rel"]) < 0.02 * fp32["abs_rel"] + 1e-3
    res = CliRunner().invoke(
        cli, ["evaluate", "--cache", str(test), "--refiner", str(run), "--precision", "bf16", "--device", "cpu",
              "--json", str(tmp_path / "e.json")],
    )
    assert res.exit_code == 0, res.output
    stages = json.loads((tmp_path / "e.json").read_text())["stages"]
    assert abs(stages[-1]["metrics"]["abs_rel"] - bf16["abs_rel"]) < 1e-9
    res = CliRunner().invoke(cli, ["evaluate", "--cache", str(test), "--refiner", str(run), "--precision", "fp16"])
    assert res.exit_code != 0 and "fp16" in res.output
