"""The shared training infrastructure: checkpoint permissions and debris, the run directory's
resume-or-refuse gate, option comparison with normalised paths, the log after a resume, sharding."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from refinedepth.errors import CheckpointError, ConfigError
from refinedepth.refiner import checkpoint as refiner_ckpt
from refinedepth.refiner.api import Refiner
from refinedepth.refiner.train import TrainConfig, train_refiner
from refinedepth.training import checkpoint as ckpt
from refinedepth.training.resume import check_resume, differences, normalize_spec, same_path
from refinedepth.training.rundir import RunDir
from refinedepth.training.sharding import batches, epoch_indices, shard

from ._helpers_refiner import make_degraded_cache, one_torch_thread  # noqa: F401


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoint_files_get_the_umask_permissions(tmp_path, umask022):
    path = ckpt.save_checkpoint_dir(tmp_path / "last", {"w.safetensors": {"x": torch.zeros(3)}}, {"a": 1},
                                    format="test")
    assert _mode(path / "w.safetensors") == 0o644  # safetensors alone writes 0600
    assert _mode(path / "config.json") == 0o644
    os.umask(0o077)
    path = ckpt.save_checkpoint_dir(tmp_path / "last", {"w.safetensors": {"x": torch.zeros(3)}}, {"a": 1},
                                    format="test")
    assert _mode(path / "w.safetensors") == 0o600


def test_refiner_checkpoint_is_0644_under_umask_022(tmp_path, umask022):
    from refinedepth.refiner.models import GeneratorConfig, build_generator

    g = build_generator(GeneratorConfig(encoder="C4-C8", decoder="C4"), seed=0)
    path = refiner_ckpt.save_checkpoint(tmp_path / "last", config={"refiner": {}}, generator=g)
    assert {p.name: _mode(p) for p in path.iterdir()} == {"config.json": 0o644, "generator.safetensors": 0o644}
    copy = refiner_ckpt.copy_checkpoint(path, tmp_path / "best")
    assert _mode(copy / "generator.safetensors") == 0o644


def test_broken_checkpoints_advise_by_their_role(tmp_path):
    for role, advice, never in (("last", "start again with --overwrite", "use the run's last/"),
                                ("best", "use the run's last/ checkpoint instead", "--overwrite")):
        path = ckpt.save_checkpoint_dir(tmp_path / role, {"w.safetensors": {"x": torch.zeros(64)}}, {}, format="t")
        meta = ckpt.read_config(path, format="t")
        f = path / "w.safetensors"
        f.write_bytes(f.read_bytes()[:-8])
        with pytest.raises(CheckpointError) as err:
            ckpt.load_tensors(path, "w.safetensors", meta)
        assert "is truncated" in str(err.value) and advice in str(err.value) and never not in str(err.value)


def test_debris_of_dead_writers_is_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / ".last.tmp-999999999-abcd"
    dead.mkdir()
    live = tmp_path / f".last.tmp-{os.getpid()}-abcd"
    live.mkdir()
    (tmp_path / ".config.json.tmp-999999999").write_text("{")
    (tmp_path / ".backbone.safetensors.999999999.tmp").write_text("")
    (tmp_path / ".hidden").write_text("")
    removed = ckpt.remove_debris(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".backbone.safetensors.999999999.tmp", ".config.json.tmp-999999999", ".last.tmp-999999999-abcd",
    ]
    assert live.is_dir() and (tmp_path / ".hidden").is_file()


def test_paths_compare_after_normalisation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.h5").write_bytes(b"")
    assert same_path("./a.h5", "a.h5") and same_path("a.h5", str(tmp_path / "a.h5"))
    assert same_path("runs/x/", "runs/x") and same_path("runs/./x", "runs/x")
    assert not same_path("runs/x", "runs/y") and not same_path(None, "a") and same_path(None, None)
    assert normalize_spec("folder:./data/") == normalize_spec(f"folder:{tmp_path}/data")
    assert normalize_spec("synthetic") == "synthetic"
    stored = {"train": "a.h5", "out": "r", "lr": 1e-3, "size": [64, 64], "model": {"depth": 3}}
    asked = {"train": "./a.h5", "out": "r/", "lr": 1e-3, "size": (64, 64), "model": {"depth": 3}}
    assert differences(stored, asked, paths=("train", "out")) == []
    assert differences(stored, {**asked, "model": {"depth": 4}}, paths=("train", "out")) == [("model.depth", 3, 4)]


def test_a_refused_resume_names_the_key_and_both_values():
    stored = {"preset": "small", "lr": 0.0002, "generator": {"encoder": ["C4", "C8"], "in_channels": 1}}
    asked = {"preset": "small", "lr": 0.001, "generator": {"encoder": ["C4", "C8"], "in_channels": 4}}
    with pytest.raises(CheckpointError) as err:
        check_resume(stored, asked, where="'r/last'", advice="use the same options")
    assert str(err.value) == (
        "cannot resume 'r/last' with different training options: lr was 0.0002 in the checkpoint, this run asks "
        "for 0.001 (and 1 more: generator.in_channels); use the same options"
    )
    check_resume(stored, asked, where="x", ignore=("lr", "generator.in_channels"))


def test_run_directory_gate(tmp_path):
    run = RunDir(tmp_path / "r", extra=("weights.bin",), scratch=("about.json",))
    assert run.start(resume=False, overwrite=False) is False  # nothing there: a new run
    # a run that stopped before its first checkpoint left only scratch: a new run replaces it,
    # and --resume has nothing to continue, so it starts afresh too
    run.log({"step": 1})
    (run.root / "about.json").write_text("{}")
    assert run.start(resume=True, overwrite=False) is False
    assert not run.log_path.exists() and not (run.root / "about.json").exists()
    ckpt.save_checkpoint_dir(run.last, {}, {}, format="t")
    with pytest.raises(CheckpointError, match=r"already holds a training run .* pass --resume .* --overwrite"):
        run.start(resume=False, overwrite=False)
    with pytest.raises(ConfigError, match=r"--resume and --overwrite exclude each other"):
        run.start(resume=True, overwrite=True)
    os.replace(run.last, ckpt.old_path(run.last))  # killed between the swap's two renames
    assert run.start(resume=True, overwrite=False) is True and (run.last / "config.json").is_file()
    run.log({"step": 1})
    assert run.start(resume=False, overwrite=True) is False
    assert not run.last.exists() and not run.log_path.exists()
    run.committed()  # as a new run's first checkpoint does: the run set aside is deleted
    (run.root / "weights.bin").write_bytes(b"")  # e.g. weights of an older layout: kept, not resumed
    with pytest.raises(CheckpointError, match=r"holds no last/ checkpoint to resume from"):
        run.start(resume=True, overwrite=False)
    with pytest.raises(CheckpointError, match=r"already holds a training run"):
        run.start(resume=False, overwrite=False)
    assert RunDir("runs/x/").root == RunDir("runs/x").root


def test_resume_accepts_paths_spelled_differently_and_leaves_no_duplicate_log_lines(tmp_path, monkeypatch):
    make_degraded_cache(tmp_path / "test.h5", 6, "train")
    monkeypatch.chdir(tmp_path)
    kw = dict(val=None, preset="small", size=(64, 64), device="cpu", log_every=1, epochs=1)
    train_refiner(TrainConfig(train="test.h5", out="r", max_steps=2, **kw))
    with open(tmp_path / "r" / "log.jsonl", "a") as f:  # a run killed after logging step 3, mid-line
        f.write(json.dumps({"type": "train", "epoch": 1, "step": 3}) + "\n" + '{"type": "tr')
    result = train_refiner(TrainConfig(train="./test.h5", out=str(tmp_path / "r") + "/", max_steps=4, resume=True,
                                       **kw))
    assert result.steps == 4
    lines = [json.loads(s) for s in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if ln["type"] == "train"] == [1, 2, 3, 4]
    assert Refiner.from_pretrained(tmp_path / "r").path == str(tmp_path / "r" / "best")


def test_epoch_indices_shard_a_permutation_across_ranks():
    full = epoch_indices(10, seed=1, epoch=0)
    assert sorted(full) == list(range(10))
    assert full != epoch_indices(10, seed=1, epoch=1)
    shards = [epoch_indices(10, seed=1, epoch=0, rank=r, world=3) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set().union(*map(set, shards)) == set(range(10))
    assert [shard(list(range(7)), r, 3, pad=False) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches(list(range(7)), 3, drop_last=True) == [[0, 1, 2], [3, 4, 5]]


def test_cli_resumes_with_paths_spelled_differently(tmp_path, monkeypatch):
    """Issue 13 row 11, as written: train with --train test.h5 --out r, resume with ./test.h5 and r/."""
    from click.testing import CliRunner

    from refinedepth.cli.main import cli

    make_degraded_cache(tmp_path / "test.h5", 4, "train")
    monkeypatch.chdir(tmp_path)
    common = ["--size", "64x64", "--device", "cpu", "-q", "--json", "--augment", "none"]
    first = CliRunner().invoke(cli, ["train-refiner", "--train", "test.h5", "--out", "r", "--max-steps", "1", *common])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, ["train-refiner", "--train", "./test.h5", "--out", "r/", "--max-steps", "2",
                                     "--resume", *common])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["steps"] == 2


def _tree(root):
    """Every file under ``root`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_interrupted_overwrite_gives_the_previous_run_back(tmp_path):
    run = RunDir(tmp_path / "r", scratch=("about.json",))
    run.start(resume=False, overwrite=False)
    ckpt.save_checkpoint_dir(run.last, {"w.safetensors": {"w": torch.ones(3)}}, {"state": {"step": 7}}, format="t")
    ckpt.copy_checkpoint(run.last, run.best)
    run.log({"step": 7})
    (run.root / "about.json").write_text('{"run": "old"}')
    before = _tree(run.root)

    # --overwrite sets the old run aside; the new run logs and describes itself, then is killed
    assert run.start(resume=False, overwrite=True) is False
    assert not run.last.exists() and not run.best.exists() and not run.log_path.exists()
    run.log({"step": 1})
    (run.root / "about.json").write_text('{"run": "new"}')
    # the next start, of any kind, finds the old run where it was, byte for byte
    with pytest.raises(CheckpointError, match=r"already holds a training run"):
        RunDir(tmp_path / "r", scratch=("about.json",)).start(resume=False, overwrite=False)
    assert _tree(run.root) == before

    # killed half way through setting it aside: given back too
    aside = run.root / ".replaced"
    aside.mkdir()
    os.replace(run.log_path, aside / run.log_path.name)
    os.replace(run.best, aside / "best")
    assert run.start(resume=True, overwrite=False) is True
    assert _tree(run.root) == before

    # once the new run has a checkpoint, the old one is gone, also when the kill came between the
    # checkpoint and its removal
    run.start(resume=False, overwrite=True)
    ckpt.save_checkpoint_dir(run.last, {"w.safetensors": {"w": torch.zeros(3)}}, {"state": {"step": 1}}, format="t")
    assert (aside / "last" / "config.json").is_file()  # not yet committed
    assert run.start(resume=True, overwrite=False) is True
    assert not aside.exists() and ckpt.read_config(run.last, format="t")["state"]["step"] == 1
    run.start(resume=False, overwrite=True)
    ckpt.save_checkpoint_dir(run.last, {}, {"state": {"step": 2}}, format="t")
    run.committed()
    assert not aside.exists() and ckpt.read_config(run.last, format="t")["state"]["step"] == 2


def test_train_refiner_overwrite_killed_before_its_first_checkpoint_loses_nothing(tmp_path, monkeypatch):
    import refinedepth.refiner.train as train_module

    make_degraded_cache(tmp_path / "c.h5", 4, "train")
    kw = dict(train=str(tmp_path / "c.h5"), out=str(tmp_path / "r"), val=None, preset="small", size=(64, 64),
              device="cpu", epochs=1, max_steps=1, augment=())
    train_refiner(TrainConfig(**kw))
    before = _tree(tmp_path / "r")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.ckpt, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        train_refiner(TrainConfig(**kw, overwrite=True, seed=1))
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"already holds"):
        train_refiner(TrainConfig(**kw))
    assert _tree(tmp_path / "r") == before
    Refiner.from_pretrained(tmp_path / "r")  # loads as before
    train_refiner(TrainConfig(**kw, overwrite=True, seed=1))  # and a completed overwrite replaces it
    assert not (tmp_path / "r" / ".replaced").exists()
    assert _tree(tmp_path / "r")["last/config.json"] != before["last/config.json"]


def test_a_linear_schedule_resumes_over_the_length_it_started_with(tmp_path, monkeypatch):
    """``--lr-schedule linear`` decays over the run's length, fixed when it starts: a run killed after
    its first epoch and resumed with the same options gives the uninterrupted run's weights; a resume
    with another --epochs/--max-steps is refused (its decay jumped back up to the full rate)."""
    from safetensors.torch import load_file

    import refinedepth.refiner.train as train_module

    make_degraded_cache(tmp_path / "c.h5", 8, "train")
    kw = dict(train=str(tmp_path / "c.h5"), val=None, preset="small", size=(64, 64), device="cpu", batch_size=2,
              augment=(), lr_schedule="linear", gan_mode="none", epochs=2)
    train_refiner(TrainConfig(out=str(tmp_path / "straight"), **kw))

    real, saves = train_module.ckpt.save_checkpoint, []

    def killed_after_the_first(*args, **kwargs):
        if saves:
            raise KeyboardInterrupt
        saves.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module.ckpt, "save_checkpoint", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        train_refiner(TrainConfig(out=str(tmp_path / "r"), **kw))
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"decays over the 8 steps the run started with, and this "
                                          r"--epochs/--max-steps gives 12; resume with the run's"):
        train_refiner(TrainConfig(out=str(tmp_path / "r"), resume=True, **{**kw, "epochs": 3}))
    train_refiner(TrainConfig(out=str(tmp_path / "r"), resume=True, **kw))
    a = load_file(str(tmp_path / "straight" / "last" / "generator.safetensors"))
    b = load_file(str(tmp_path / "r" / "last" / "generator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_upsample_option_swaps_the_decoder_and_old_runs_still_resume(tmp_path):
    """``--upsample resize`` gives another preset the resize-convolution decoder (the `small` layer
    lists then hold 1,665,793 generator parameters, docs/refiner.md); a checkpoint written before
    the option existed (no ``upsample`` in its resolved options) resumes."""
    from refinedepth.refiner.models import count_parameters

    make_degraded_cache(tmp_path / "c.h5", 4, "train")
    kw = dict(train=str(tmp_path / "c.h5"), val=None, preset="small", size=(64, 64), device="cpu", augment=(),
              gan_mode="none", epochs=2)
    train_refiner(TrainConfig(out=str(tmp_path / "r"), upsample="resize", max_steps=1, **kw))
    r = Refiner.from_pretrained(tmp_path / "r")
    assert r.generator.config.upsample == "resize" and count_parameters(r.generator) == 1_665_793
    train_refiner(TrainConfig(out=str(tmp_path / "t"), max_steps=1, **kw))
    assert Refiner.from_pretrained(tmp_path / "t").generator.config.upsample == "transposed"  # the preset's
    cfg_path = tmp_path / "t" / "last" / "config.json"
    meta = json.loads(cfg_path.read_text())
    del meta["training_resolved"]["upsample"]  # as written before the option existed
    cfg_path.write_text(json.dumps(meta))
    assert train_refiner(TrainConfig(out=str(tmp_path / "t"), resume=True, max_steps=2, **kw)).steps == 2
    with pytest.raises(CheckpointError, match="upsample"):
        train_refiner(TrainConfig(out=str(tmp_path / "t"), resume=True, upsample="resize", max_steps=3, **kw))
