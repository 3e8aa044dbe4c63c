"""Training the refiner: it learns, resumes exactly, masks holes, and the CLI drives it."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from refinedepth.cli.main import cli
from refinedepth.errors import CheckpointError, ConfigError
from refinedepth.refiner import checkpoint as ckpt
from refinedepth.refiner.train import (
    TrainConfig,
    gan_loss,
    lr_factor,
    masked_l1,
    train_refiner,
)

from ._helpers_refiner import make_degraded_cache, one_torch_thread  # noqa: F401


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    d = tmp_path_factory.mktemp("refiner-caches")
    train = make_degraded_cache(d / "train.h5", 48, "train")
    val = make_degraded_cache(d / "val.h5", 12, "test")
    tiny = make_degraded_cache(d / "tiny.h5", 6, "train", holes=True, with_rgb=True)
    return {"train": train, "val": val, "tiny": tiny}


def _cfg(caches, out, **kw) -> TrainConfig:
    base = dict(
        train=str(caches["train"]), val=str(caches["val"]), out=str(out), preset="small", size=(64, 64),
        device="cpu", seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_small_preset_learns_to_correct_degraded_rough_maps(caches, tmp_path):
    # Rough = blurred, biased (x1.15 + 0.15 m), noisy ground truth; validation scenes are unseen.
    result = train_refiner(_cfg(caches, tmp_path / "run", epochs=1, max_steps=48))
    val = result.val
    rough, refined = val["rough"]["abs_rel"], val["refined"]["abs_rel"]
    assert rough > 0.15
    assert refined <= 0.7 * rough, (rough, refined)
    assert result.steps == 48 and result.best is not None and result.last is not None
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epoch_lines = [ln for ln in lines if ln["type"] == "epoch"]
    assert epoch_lines[-1]["val"]["refined"]["abs_rel"] == pytest.approx(refined)
    assert epoch_lines[-1]["best"] is True


def _weights(run_dir):
    meta = ckpt.read_config(run_dir / "last")
    return {
        name: ckpt.load_tensors(run_dir / "last", name, meta)
        for name in (ckpt.GENERATOR_FILE, ckpt.DISCRIMINATOR_FILE, ckpt.OPTIMIZER_FILE)
    }


def _assert_same(a, b):
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key} differs"


def test_resume_continues_exactly(caches, tmp_path):
    kw = dict(train=str(caches["tiny"]), val=None, batch_size=2, inputs="rough+rgb")
    straight = tmp_path / "straight"
    train_refiner(_cfg(caches, straight, epochs=2, **kw))
    split = tmp_path / "split"
    first = train_refiner(_cfg(caches, split, epochs=1, **kw))
    assert first.steps == 3
    second = train_refiner(_cfg(caches, split, epochs=2, resume=True, **kw))
    assert second.steps == 6
    _assert_same(_weights(straight), _weights(split))


def test_runs_started_before_new_config_fields_resume_exactly(caches, tmp_path):
    # a checkpoint written before GeneratorConfig.skip_relu and training_resolved existed
    kw = dict(train=str(caches["tiny"]), val=None, batch_size=2)
    straight = tmp_path / "straight"
    train_refiner(_cfg(caches, straight, epochs=2, **kw))
    split = tmp_path / "split"
    train_refiner(_cfg(caches, split, epochs=1, **kw))
    path = split / "last" / "config.json"
    meta = json.loads(path.read_text())
    del meta["refiner"]["generator"]["skip_relu"], meta["training_resolved"]
    path.write_text(json.dumps(meta))
    train_refiner(_cfg(caches, split, epochs=2, resume=True, **kw))
    _assert_same(_weights(straight), _weights(split))


def test_resume_compares_the_options_as_they_resolved_when_the_run_started(caches, tmp_path):
    # a preset's default may change between the start and the resume: the run keeps its own
    kw = dict(train=str(caches["tiny"]), val=None, batch_size=2)
    run = tmp_path / "run"
    train_refiner(_cfg(caches, run, epochs=1, **kw))
    path = run / "last" / "config.json"
    meta = json.loads(path.read_text())
    assert meta["training_resolved"]["augment"] == ["hflip", "scale", "brightness"]  # small's default
    meta["training_resolved"]["augment"] = []  # as if small had had no augmentation then
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"augment was \[\] in the checkpoint, this run asks for \['hflip'"):
        train_refiner(_cfg(caches, run, epochs=2, resume=True, **kw))


def test_a_run_killed_before_its_best_copy_gets_best_repaired_on_resume(caches, tmp_path, monkeypatch):
    # last/ saved as the best, killed before the copy to best/: --resume copies it
    kw = dict(train=str(caches["tiny"]), val=None, batch_size=2)  # without --val every epoch is the best
    straight = tmp_path / "straight"
    train_refiner(_cfg(caches, straight, epochs=2, **kw))
    run = tmp_path / "run"
    calls = []
    real = ckpt.copy_checkpoint

    def killed_on_the_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(ckpt, "copy_checkpoint", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        train_refiner(_cfg(caches, run, epochs=2, **kw))
    monkeypatch.undo()
    stale = ckpt.read_config(run / "best")["state"]
    assert stale["epoch"] == 1 and ckpt.read_config(run / "last")["state"]["best_step"] == 6
    train_refiner(_cfg(caches, run, epochs=2, resume=True, **kw))
    assert ckpt.read_config(run / "best")["state"]["step"] == 6
    best = {n: ckpt.load_tensors(run / "best", n) for n in (ckpt.GENERATOR_FILE,)}
    want = {n: ckpt.load_tensors(straight / "best", n) for n in (ckpt.GENERATOR_FILE,)}
    _assert_same(want, best)


def test_resume_from_the_middle_of_an_epoch_is_exact(caches, tmp_path):
    kw = dict(train=str(caches["tiny"]), val=None, epochs=2)
    straight = tmp_path / "straight"
    train_refiner(_cfg(caches, straight, **kw))
    split = tmp_path / "split"
    train_refiner(_cfg(caches, split, max_steps=4, **kw))  # stops inside epoch 1
    assert ckpt.read_config(split / "last")["state"]["epoch_step"] == 4
    moved = tmp_path / "moved"  # a run directory moved elsewhere resumes there
    split.rename(moved)
    train_refiner(_cfg(caches, moved, resume=True, **kw))
    _assert_same(_weights(straight), _weights(moved))


def test_existing_run_and_changed_options_are_refused(caches, tmp_path):
    kw = dict(train=str(caches["tiny"]), val=None, max_steps=1)
    train_refiner(_cfg(caches, tmp_path / "run", **kw))
    with pytest.raises(CheckpointError, match=r"already holds a training run .* pass --resume"):
        train_refiner(_cfg(caches, tmp_path / "run", **kw))
    with pytest.raises(CheckpointError, match=r"cannot resume .* different training options: lr was 0.0002 in the "
                       r"checkpoint, this run asks for 0.001; only epochs"):
        train_refiner(_cfg(caches, tmp_path / "run", resume=True, lr=1e-3, **kw))
    with pytest.raises(CheckpointError, match=r"different refiner: inputs was 'rough' in the checkpoint, this run asks "
                       r"for 'rough\+rgb'"):
        train_refiner(_cfg(caches, tmp_path / "run", resume=True, inputs="rough+rgb", **kw))
    res = train_refiner(_cfg(caches, tmp_path / "run", overwrite=True, **kw))
    assert res.steps == 1


def test_an_option_given_as_the_presets_default_resumes_without_it(caches, tmp_path):
    from refinedepth.refiner.presets import get_preset

    kw = dict(train=str(caches["tiny"]), val=None)
    default = get_preset("small").size
    train_refiner(_cfg(caches, tmp_path / "run", size=default, max_steps=1, **kw))
    res = train_refiner(_cfg(caches, tmp_path / "run", size=None, max_steps=2, resume=True, **kw))
    assert res.steps == 2
    other = (default[0] // 2, default[1] // 2)
    with pytest.raises(CheckpointError, match=rf"size was \[{default[0]}, {default[1]}\] in the checkpoint, this run "
                       rf"asks for \[{other[0]}, {other[1]}\]"):
        train_refiner(_cfg(caches, tmp_path / "run", size=other, max_steps=3, resume=True, **kw))


def test_config_errors_are_one_line_and_helpful(caches, tmp_path):
    with pytest.raises(ConfigError, match=r"residual=True needs the rough map"):
        _cfg(caches, tmp_path, inputs="rgb", residual=True)
    with pytest.raises(ConfigError, match=r"unknown augmentation 'blur'"):
        _cfg(caches, tmp_path, augment=("blur",))
    with pytest.raises(ConfigError, match=r"size 60x60 must be a multiple of 64 for preset 'small'"):
        train_refiner(_cfg(caches, tmp_path / "x", size=(60, 60)))
    with pytest.raises(ConfigError, match=r"training cache '.*missing.h5' does not exist"):
        train_refiner(_cfg(caches, tmp_path / "x", train=str(tmp_path / "missing.h5")))


def test_the_generators_own_size_check_suggests_the_nearest_size_as_the_config_does(caches, tmp_path, monkeypatch):
    # a preset without an entry in config's table (as a new one would be) meets train_refiner's
    # check of the built generator's downsampling; both suggest the nearest multiple, 112 -> 128
    from refinedepth import config as C

    monkeypatch.setattr(C, "PRESET_MULTIPLES", {k: v for k, v in C.PRESET_MULTIPLES.items() if k != "small"})
    with pytest.raises(ConfigError) as e:
        train_refiner(_cfg(caches, tmp_path / "x", size=(112, 176)))
    assert str(e.value) == ("refiner size 112x176 must be a multiple of 64 for preset 'small' (6 stride-2 layers); "
                            "choose e.g. 128x192")
    monkeypatch.undo()
    with pytest.raises(ConfigError) as e:
        _cfg(caches, tmp_path / "x", size=(112, 176))
    assert str(e.value).endswith("choose e.g. 128x192 (--size 128x192)")


def test_losses_and_schedule():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.zeros_like(pred)
    valid = torch.tensor([[[[True, False], [True, False]]]])
    assert masked_l1(pred, target, valid).item() == pytest.approx(2.0)  # (1 + 3) / 2
    assert masked_l1(pred, target, torch.zeros_like(valid)).item() == 0.0
    logits = torch.zeros(1, 1, 3, 3)
    assert gan_loss(logits, True, "vanilla").item() == pytest.approx(0.693147, rel=1e-5)
    assert gan_loss(logits, False, "lsgan").item() == 0.0
    assert [lr_factor(s, 10, "linear") for s in (0, 4, 5, 7, 10)] == pytest.approx([1, 1, 1, 0.6, 0])
    assert lr_factor(9, 10, "constant") == 1.0


def test_cli_trains_and_reports_json(caches, tmp_path):
    out = tmp_path / "cli-run"
    args = [
        "train-refiner", "--train", str(caches["tiny"]), "--out", str(out), "--size", "64x64",
        "--max-steps", "2", "--device", "cpu", "--json", "-q", "--augment", "none", "--gan-mode", "lsgan",
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["steps"] == 2 and summary["last"].endswith("last")
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith("Error: ") and "already holds a training run" in res.output
    res = CliRunner().invoke(cli, [*args[:-6], "--size", "10"])
    assert res.exit_code == 1 and "must be HEIGHTxWIDTH" in res.output


def test_rgb_only_baseline_trains_without_residual_and_refines_from_images(caches, tmp_path):
    from refinedepth.refiner.api import Refiner

    res = train_refiner(_cfg(caches, tmp_path / "rgb", train=str(caches["tiny"]), val=None, inputs="rgb", max_steps=2))
    refiner = Refiner.from_pretrained(res.out)
    assert refiner.inputs == "rgb" and refiner.residual is False
    rgb = torch.randint(0, 255, (2, 3, 30, 40), dtype=torch.uint8)
    depth = refiner.refine(None, rgb)
    assert depth.shape == (2, 30, 40) and bool((depth > 0).all())


@pytest.mark.parametrize("kind", ["relative", "disparity"])
def test_relative_and_disparity_rough_maps_are_lifted_to_metric_depth(tmp_path, kind):
    import numpy as np

    from refinedepth.cache import write_cache

    from ._helpers_refiner import _samples, degrade

    def cache(path, split, n, seed):
        _, depth = _samples(split, n, (48, 64))
        scale = np.random.default_rng(seed).uniform(0.2, 5.0, (n, 1, 1, 1)).astype(np.float32)
        rough = degrade(depth, (64, 64), seed) * scale  # unknown scale per map
        if kind == "disparity":
            rough = 1.0 / rough
        return write_cache(path, rough=rough, gt=depth, max_depth=10.0, output_kind=kind, compression="lzf")

    cfg = TrainConfig(train=str(cache(tmp_path / "t.h5", "train", 48, 0)), val=str(cache(tmp_path / "v.h5", "test", 12, 1)),
                      out=str(tmp_path / "run"), preset="small", size=(64, 64), epochs=2, device="cpu")
    result = train_refiner(cfg)
    norm = ckpt.read_config(result.best)["refiner"]["normalization"]
    assert norm["output_kind"] == kind and 0 < norm["target_low"] < norm["target_high"] < 10
    # without a scale the rough maps score only after a per-image scale and shift; the refined maps are metric
    assert result.val["rough_align"] == "lstsq"
    assert result.val["refined"]["abs_rel"] < 0.4, result.val["refined"]


def test_optimize_hook_gets_the_built_models(caches, tmp_path):
    seen = []

    def optimize(generator, discriminator, device):
        seen.append((type(generator).__name__, type(discriminator).__name__, str(device)))
        return generator, discriminator

    train_refiner(_cfg(caches, tmp_path / "opt", train=str(caches["tiny"]), val=None, max_steps=1), optimize=optimize)
    assert seen == [("UNetGenerator", "PatchDiscriminator", "cpu")]


def test_g_step_skips_d_weight_gradients_without_changing_the_run(caches, tmp_path, monkeypatch):
    """The G step back-propagates into G's parameters only (D's weight gradients there would be
    discarded by the next D step): the run equals one whose G step computes them too."""
    from safetensors.torch import load_file

    cfg = dict(train=str(caches["tiny"]), val=None, max_steps=3, batch_size=2)
    train_refiner(_cfg(caches, tmp_path / "lean", **cfg))
    calls = []
    full_backward = torch.Tensor.backward

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        calls.append(inputs is not None)
        return full_backward(self, gradient, retain_graph, create_graph, None)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    train_refiner(_cfg(caches, tmp_path / "full", **cfg))
    assert calls.count(True) == 3  # one restricted G-step backward per step
    for name in ("generator.safetensors", "discriminator.safetensors", "optimizer.safetensors"):
        lean, full = load_file(tmp_path / "lean" / "last" / name), load_file(tmp_path / "full" / "last" / name)
        assert lean.keys() == full.keys()
        for key in lean:
            torch.testing.assert_close(lean[key], full[key], rtol=0, atol=0, msg=f"{name}:{key}")
