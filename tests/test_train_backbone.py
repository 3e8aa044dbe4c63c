"""Stage-1 training (SPEC §3.3): learns on synthetic data, resumes exactly, CLI wiring."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from refinedepth.cli.main import cli
from refinedepth.errors import CheckpointError, ConfigError
from refinedepth.registry import create_backbone
from refinedepth.train_backbone import TrainBackboneConfig, load_trained_backbone, train_backbone

from ._threads import torch_threads

TINY_NET = {"encoder": "resnet18", "encoder_args": {"channels": [16, 32, 64, 128], "stem_width": 16}, "input_size": [64, 96]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run fastest (and bit-reproducibly) on one thread; restore afterwards."""
    with torch_threads(1):
        yield


def _config(out, **kw) -> TrainBackboneConfig:
    base = dict(
        dataset="synthetic",
        out=str(out),
        backbone_args=TINY_NET,
        dataset_args={"size": [64, 96]},
        limit=48,
        val_limit=16,
        epochs=4,
        batch_size=8,
        optimizer="adam",
        lr=3e-3,
        lr_step=0,
        init_output_bias=False,
        device="cpu",
        seed=0,
    )
    base.update(kw)
    return TrainBackboneConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    config = _config(out, val_at_start=True)
    calls = []
    result = train_backbone(config, progress=lambda d, t, desc="", **f: calls.append((desc, d, t, f)))
    return {"out": out, "config": config, "result": result, "calls": calls}


def test_training_reduces_validation_abs_rel(run):
    history = run["result"].history
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4]
    untrained, final = history[0]["val"]["abs_rel"], history[-1]["val"]["abs_rel"]
    assert final < 0.5 * untrained, (untrained, final)
    assert history[-1]["val"]["count"] == 16
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    # one bar for the whole run: every report is "train", counting the run's steps (48 / 8 = 6 per
    # epoch); validation reports inside it
    assert {c[0] for c in run["calls"]} == {"train"}
    assert {c[2] for c in run["calls"]} == {24} and run["calls"][-1][1] == 24
    steps = [c[1] for c in run["calls"] if "loss" in c[3]]
    assert steps == list(range(1, 25)) and all("lr" in c[3] for c in run["calls"] if "loss" in c[3])
    validation = [c for c in run["calls"] if "validate" in c[3]]
    assert validation[0][1] == 0 and validation[-1][3] == {"epoch": "4/4", "validate": "2/2"}


def test_outputs_load_as_a_backbone(run):
    out = run["out"]
    payload = json.loads((out / "config.json").read_text())
    assert payload["backbone"]["name"] == "fcrn"
    assert payload["backbone"]["config"]["encoder_args"] == TINY_NET["encoder_args"]
    assert payload["train"]["optimizer"] == "adam" and payload["epochs_done"] == 4
    model = load_trained_backbone(out)
    assert not model.training and model.info.input_size == (64, 96)
    same = create_backbone("fcrn", weights=out / "backbone.safetensors")  # options from metadata
    again = create_backbone("fcrn", weights=out, **payload["backbone"]["config"])
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(same(x), ref)
        torch.testing.assert_close(again(x), ref)
    assert ref.shape == (2, 1, 32, 48)
    # every file gets the umask's permissions (safetensors alone writes 0600)
    from refinedepth.training.checkpoint import current_umask

    want = 0o666 & ~current_umask()
    for f in [out / "backbone.safetensors", out / "config.json", *sorted((out / "last").iterdir())]:
        assert stat.S_IMODE(f.stat().st_mode) == want, f


def test_resume_continues_exactly(run, tmp_path):
    out = tmp_path / "resumed"
    first = train_backbone(_config(out, epochs=2))
    assert first.epochs_done == 2
    with pytest.raises(CheckpointError, match="already holds a train-backbone run .* pass --resume"):
        train_backbone(_config(out, epochs=4))
    with pytest.raises(CheckpointError, match="cannot resume .* with different training options: optimizer was 'adam' "
                       "in the checkpoint, this run asks for 'sgd'"):
        train_backbone(_config(out, epochs=4, optimizer="sgd"), resume=True)
    resumed = train_backbone(_config(out, epochs=4), resume=True)
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        train_backbone(_config(out, epochs=4), resume=True, overwrite=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    # the same seed and per-epoch streams: identical to the uninterrupted run's weights
    a = load_file(str(run["out"] / "backbone.safetensors"))
    b = load_file(str(out / "backbone.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.history[-1]["val"]["abs_rel"] == run["result"].history[-1]["val"]["abs_rel"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2, 3, 4]


def test_resume_without_checkpoint_and_bad_dir(tmp_path):
    with pytest.raises(CheckpointError, match="expected config.json and backbone.safetensors"):
        load_trained_backbone(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="holds no last/ checkpoint to resume from"):
        train_backbone(_config(tmp_path), resume=True)


def test_config_round_trip_and_validation():
    config = _config("x")
    assert TrainBackboneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="optimizer must be 'sgd' or 'adam', got 'rmsprop'"):
        dataclasses.replace(config, optimizer="rmsprop")
    defaults = TrainBackboneConfig()
    assert (defaults.optimizer, defaults.lr, defaults.momentum, defaults.batch_size) == ("sgd", 1e-2, 0.9, 16)


def test_cli_trains_and_resumes(tmp_path):
    out = tmp_path / "cli"
    args = [
        "train-backbone", "fcrn", "--dataset", "synthetic", "--dataset-arg", "size=[48,64]",
        "--backbone-arg", "encoder=resnet18", "--backbone-arg", 'encoder_args={"channels":[8,16,32,64],"stem_width":8}',
        "--backbone-arg", "input_size=[48,64]", "--limit", "8", "--val-limit", "4", "--batch-size", "4",
        "--optimizer", "adam", "--lr", "1e-3", "--device", "cpu", "-q", "--out", str(out),
    ]
    result = CliRunner().invoke(cli, [*args, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary["final"]) >= {"abs_rel", "rmse", "d1"}
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["backbone"]["config"]["encoder_args"]["channels"] == [8, 16, 32, 64]
    again = CliRunner().invoke(cli, [*args, "--epochs", "1"])
    assert again.exit_code == 1 and "Error:" in again.output and "--resume" in again.output
    resumed = CliRunner().invoke(cli, [*args, "--epochs", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "config.json").read_text())["epochs_done"] == 2
    # without --epochs the recorded 2 stand (not the default 20): nothing left to train
    done = CliRunner().invoke(cli, [*args, "--resume"])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "config.json").read_text())["epochs_done"] == 2
    # an option that may not change is refused, naming those that may
    other = CliRunner().invoke(cli, [*args, "--lr", "1e-2", "--resume"])
    assert other.exit_code == 1 and "lr was 0.001" in other.output and "only epochs, device" in other.output
    fresh = CliRunner().invoke(cli, [*args, "--epochs", "1", "--overwrite"])
    assert fresh.exit_code == 0, fresh.output
    assert json.loads((out / "config.json").read_text())["epochs_done"] == 1


def test_cli_help_is_complete():
    result = CliRunner().invoke(cli, ["train-backbone", "--help"])
    assert result.exit_code == 0
    for option in ("--backbone-arg", "--val-split", "--resume", "--optimizer", "--workers", "Example:"):
        assert option in result.output


def test_inspect_describes_and_verifies_a_run(run, tmp_path):
    """``inspect`` knows a train-backbone run: its backbone, data, epochs and last validation;
    ``--verify`` checks the weights against the sha256 its config.json records (computed here
    with hashlib) and the last/ checkpoint, and names a damaged file."""
    import hashlib
    import shutil

    from click.testing import CliRunner

    from refinedepth.cli.main import cli

    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    payload = json.loads((out / "config.json").read_text())
    assert payload["weights"]["sha256"] == hashlib.sha256((out / "backbone.safetensors").read_bytes()).hexdigest()
    res = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["kind"] == "train-backbone-run" and report["backbone"] == "fcrn"
    assert report["epochs_done"] == 4 and report["last_validation"]["count"] == 16
    assert report["weights"]["ok"] and report["checkpoint"]["state"] == {"epoch": 4}
    assert CliRunner().invoke(cli, ["inspect", str(out), "--verify"]).exit_code == 0

    data = bytearray((out / "backbone.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in a weight: same size, another hash
    (out / "backbone.safetensors").write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["inspect", str(out), "--verify"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        f"Error: {out} failed verification: 1 problem(s), first: {out / 'backbone.safetensors'} does not match "
        "the sha256 in config.json (damaged); resume the run (--resume) to write it again from last/"
    )


def test_validation_scores_what_evaluate_gives_a_cache_of_the_trained_backbone(tmp_path):
    """The validation abs_rel is the rough row of ``evaluate`` on a cache that the trained backbone
    makes of the same split: the same RGB resize (float, from the image: 80x120 to 64x96 here), the
    same prediction, the same scoring (validation used to feed 8-bit-rounded images)."""
    from refinedepth.cache import build_cache
    from refinedepth.evaluate import evaluate_cache

    out = tmp_path / "run"
    config = _config(out, dataset_args={"size": [80, 120]}, limit=8, val_limit=4, epochs=1)
    result = train_backbone(config)
    payload = json.loads((out / "config.json").read_text())
    build_cache(tmp_path / "val.h5", backbone="fcrn", backbone_args=payload["backbone"]["config"],
                weights=out / "backbone.safetensors", dataset=config.dataset, dataset_args=config.dataset_args,
                split=config.val_split, limit=config.val_limit, size="native", device="cpu", workers=0)
    rough = evaluate_cache(tmp_path / "val.h5", device="cpu", boundary=False).metrics("rough")
    val = result.history[-1]["val"]
    assert rough["abs_rel"] == pytest.approx(val["abs_rel"], rel=1e-10)  # 8-bit input: 8e-9 off
    assert rough["rmse"] == pytest.approx(val["rmse"], rel=1e-10)
