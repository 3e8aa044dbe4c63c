"""Checkpoints: round trips, optimiser flattening, truncation refused, crash-safe saving."""

from __future__ import annotations

import json

import pytest
import torch

from refinedepth.errors import CheckpointError
from refinedepth.refiner import checkpoint as ckpt
from refinedepth.refiner.api import Refiner
from refinedepth.refiner.models import build_discriminator, build_generator
from refinedepth.refiner.presets import get_preset

from ._helpers_refiner import one_torch_thread  # noqa: F401


def _meta(generator):
    return {
        "refiner": {
            "preset": "tiny",
            "inputs": "rough",
            "residual": True,
            "size": [16, 16],
            "generator": generator.config.to_dict(),
            "discriminator": {},
            "normalization": {"output_kind": "metric", "max_depth": 10.0},
        },
        "state": {"epoch": 1, "step": 7},
    }


def _models(seed=0):
    from refinedepth.refiner.models import DiscriminatorConfig, GeneratorConfig

    g = build_generator(GeneratorConfig(encoder="C4-C8-C8", decoder="CD8-C4", zero_init_output=True), seed=seed)
    d = build_discriminator(DiscriminatorConfig(layers="C4-C8"), seed=seed)
    return g, d


def _adam_after_steps(g, steps=2):
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(steps):
        opt.zero_grad()
        g(torch.rand(2, 1, 16, 16)).square().mean().backward()
        opt.step()
    return opt


def test_round_trip_generator_discriminator_optimizer_rng(tmp_path):
    torch.manual_seed(0)
    g, d = _models()
    opt = _adam_after_steps(g)
    rng = {"torch_cpu": torch.get_rng_state()}
    path = ckpt.save_checkpoint(tmp_path / "last", config=_meta(g), generator=g, discriminator=d,
                                optimizers={"g": (opt, g)}, rng=rng)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "discriminator.safetensors", "generator.safetensors", "optimizer.safetensors", "rng.safetensors",
    ]
    meta = ckpt.read_config(path)
    assert meta["format"] == "refinedepth-refiner" and meta["state"]["step"] == 7
    g2, _ = _models(seed=5)
    ckpt.load_state(g2, ckpt.load_tensors(path, ckpt.GENERATOR_FILE, meta), "gen")
    for (k, a), b in zip(g.state_dict().items(), g2.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.Adam(g2.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ckpt.unflatten_optimizer(opt2, g2, "g", ckpt.load_tensors(path, ckpt.OPTIMIZER_FILE, meta))
    for p, p2 in zip(g.parameters(), g2.parameters()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], opt2.state[p2][key])
    assert torch.equal(ckpt.load_tensors(path, ckpt.RNG_FILE, meta)["torch_cpu"], rng["torch_cpu"])
    # the same directory serves the library API
    refiner = Refiner.from_pretrained(path)
    assert refiner.refine(torch.full((20, 30), 4.0)).shape == (20, 30)


def test_truncated_or_altered_file_is_refused_with_its_name(tmp_path):
    g, _ = _models()
    path = ckpt.save_checkpoint(tmp_path / "last", config=_meta(g), generator=g)
    f = path / ckpt.GENERATOR_FILE
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        Refiner.from_pretrained(path)
    msg = str(err.value)
    assert f"checkpoint file '{f}' is truncated: expected {len(data)} bytes, found {len(data) // 2}" in msg
    assert "\n" not in msg
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match=r"does not match its sha256 in config.json"):
        Refiner.from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"is not valid JSON .* the checkpoint is corrupt"):
        Refiner.from_pretrained(path)


def test_crash_while_saving_keeps_the_previous_last_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch

    g, d = _models()
    last = ckpt.save_checkpoint(tmp_path / "last", config=_meta(g), generator=g, discriminator=d)
    before = (last / "config.json").read_text()
    real_save = safetensors.torch.save_file
    calls = []

    def crashing_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # die half way through the second file
            with open(filename, "wb") as fh:
                fh.write(b"\x00" * 10)
            raise KeyboardInterrupt("killed while saving")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "last", config=_meta(g), generator=g, discriminator=d)
    monkeypatch.undo()
    assert (last / "config.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temp debris
    Refiner.from_pretrained(tmp_path / "last")


def test_interrupted_swap_is_recovered(tmp_path):
    g, _ = _models()
    last = ckpt.save_checkpoint(tmp_path / "last", config=_meta(g), generator=g)
    last.rename(tmp_path / ".last.old")  # crash between the two renames
    assert Refiner.from_pretrained(tmp_path, which="last").path == str(tmp_path / ".last.old")  # read as is
    import torch

    from refinedepth.refiner.chain import RefinerChain  # evaluate/predict's --refiner RUN/last too

    assert RefinerChain.load([tmp_path / "last"], torch.device("cpu")).refiners[0].path == str(tmp_path / ".last.old")
    from refinedepth.cache.config import sha256_path
    from refinedepth.refiner.chain import refiner_records

    # what a cache records of it: the twin's content, the same as once last/ is back
    assert refiner_records([tmp_path / "last"])[0]["sha256"] == sha256_path(tmp_path / ".last.old")
    ckpt.recover(tmp_path / "last")  # what the next save or --resume does
    assert Refiner.from_pretrained(tmp_path / "last").path == str(tmp_path / "last")


def test_describe_checkpoint_reads_config_and_headers(tmp_path):
    g, d = _models()
    run = tmp_path / "run"
    ckpt.save_checkpoint(run / "last", config=_meta(g), generator=g, discriminator=d)
    ckpt.copy_checkpoint(run / "last", run / "best")
    (run / "log.jsonl").write_text(json.dumps({"type": "epoch", "epoch": 1}) + "\n")
    info = ckpt.describe_checkpoint(run)
    assert info["kind"] == "refiner-checkpoint" and info["path"] == str(run / "best")
    assert info["checkpoints"] == ["best", "last"] and info["log_entries"] == 1
    assert info["parameters"]["generator"] == sum(p.numel() for p in g.parameters())
    assert info["parameters"]["discriminator"] == sum(p.numel() for p in d.parameters())
    assert info["encoder"] == ["C4", "C8", "C8"] and info["files"]["generator.safetensors"]["ok"]
    json.dumps(info)

    # a damaged header (same size) is described, not a traceback
    from click.testing import CliRunner

    from refinedepth.cli.main import cli

    f = run / "best" / "generator.safetensors"
    data = bytearray(f.read_bytes())
    data[:4] = b"XXXX"
    f.write_bytes(bytes(data))
    info = ckpt.describe_checkpoint(run)
    entry = info["files"]["generator.safetensors"]
    assert entry["ok"] is False and entry["damaged"].startswith("unreadable safetensors header (")
    assert "generator" not in info["parameters"]
    res = CliRunner().invoke(cli, ["inspect", str(run)])
    assert res.exit_code == 0 and "Traceback" not in res.output and "unreadable safetensors header" in res.output


def test_presets_state_dict_matches_module_after_load(tmp_path):
    # pix2pix-sized files are big; the paper presets' small cousin checks BN buffers round trip
    p = get_preset("small")
    g = build_generator(p.generator_config("rough+rgb"), seed=1)
    g.train()
    g(torch.rand(2, 4, 128, 128))  # updates running stats
    path = ckpt.save_checkpoint(tmp_path / "c", config={**_meta(g)}, generator=g)
    g2 = build_generator(p.generator_config("rough+rgb"), init=False)
    ckpt.load_state(g2, ckpt.load_tensors(path, ckpt.GENERATOR_FILE), "g")
    assert torch.equal(g2.encoder[1][1].running_mean, g.encoder[1][1].running_mean)
    with pytest.raises(CheckpointError, match=r"does not match the architecture in config.json: missing"):
        ckpt.load_state(build_generator(p.generator_config("rough")), {}, "g")
