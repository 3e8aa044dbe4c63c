"""train-refiner on several caches (``--train A --train B``): joined end to end, checked for one
kind / max depth / size, baselines fitted on all of them, resumable, old runs still resume."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from refinedepth.cache import CacheDataset, JoinedCacheDataset, write_cache
from refinedepth.cli.main import cli
from refinedepth.errors import ConfigError
from refinedepth.refiner import checkpoint as ckpt
from refinedepth.refiner.train import TrainConfig, train_refiner

from ._helpers_refiner import one_torch_thread  # noqa: F401


def _cache(path, n, scale, size=(16, 16), **config):
    """Ground truth 1.5-5.5 m; rough = gt / scale, so one cache's global scale is ``scale``."""
    rng = np.random.default_rng(n)
    gt = (1.5 + 4.0 * rng.random((n, *size))).astype(np.float32)
    config.setdefault("max_depth", 10.0)
    ids = [f"{path.stem}-{i}" for i in range(n)]
    return write_cache(path, rough=gt / scale, gt=gt, sample_ids=ids, **config), gt


def test_a_path_or_several_are_stored_as_a_tuple():
    assert TrainConfig(train="a.h5", out="run").train == ("a.h5",)
    assert TrainConfig(train=["a.h5", "b.h5"], out="run").train == ("a.h5", "b.h5")
    with pytest.raises(ConfigError, match="at least one training cache"):
        TrainConfig(train=(), out="run")


def test_joined_caches_are_end_to_end(tmp_path):
    a, _ = _cache(tmp_path / "a.h5", 3, 1.0)
    b, _ = _cache(tmp_path / "b.h5", 2, 1.0)
    joined = JoinedCacheDataset([CacheDataset(a), CacheDataset(b)])
    assert len(joined) == 5
    assert [joined[i]["id"] for i in range(5)] == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert joined[4]["index"] == 1 and joined.output_kind == "metric" and joined.max_depth == 10.0
    with pytest.raises(IndexError):
        joined[5]
    # DataLoader workers get a pickled copy
    copy = pickle.loads(pickle.dumps(joined))
    assert len(copy) == 5 and copy[3]["id"] == "b-0"


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"output_kind": "relative"}, "holds 'relative' rough maps but .* holds 'metric' ones"),
        ({"max_depth": 20.0}, "has max_depth 20 m but .* has 10 m; re-create one"),
        ({"size": (16, 24)}, "stores rough_size 16x24 but .* 16x16; re-create one with the other's --size"),
    ],
)
def test_caches_that_cannot_be_batched_together_are_refused_in_one_line(tmp_path, other, message):
    a, _ = _cache(tmp_path / "a.h5", 2, 1.0)
    size = other.pop("size", (16, 16))
    b, _ = _cache(tmp_path / "b.h5", 2, 1.0, size=size, **other)
    with pytest.raises(ConfigError, match=message) as err:
        JoinedCacheDataset([CacheDataset(a), CacheDataset(b)])
    assert "\n" not in str(err.value) and str(b) in str(err.value)


def test_train_refiner_on_two_caches_from_the_cli(tmp_path):
    a, gt_a = _cache(tmp_path / "a.h5", 3, 1.25)
    b, gt_b = _cache(tmp_path / "b.h5", 2, 1.25)
    run = tmp_path / "run"
    args = ["train-refiner", "--train", str(a), "--train", str(b), "--out", str(run), "--size", "64x64",
            "--epochs", "2", "--max-steps", "3", "--device", "cpu", "-q"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    meta = ckpt.read_config(run / "last")
    assert meta["source"]["train"] == [str(a), str(b)] and meta["source"]["train_samples"] == 5
    assert meta["training"]["train"] == [str(a), str(b)]
    # the baselines are fitted on both caches' pairs: here both scale by 1.25 exactly
    assert meta["baselines"]["scale"] == pytest.approx(1.25, rel=1e-5)
    assert meta["baselines"]["fitted_on"] == f"{a}, {b}"
    assert meta["baselines"]["pixels"] == gt_a.size + gt_b.size
    # resumable with the same caches, refused with others
    again = CliRunner().invoke(cli, [*args[:-5], "--max-steps", "4", "--device", "cpu", "--resume", "-q"])
    assert again.exit_code == 0, again.output
    other = CliRunner().invoke(cli, ["train-refiner", "--train", str(a), "--out", str(run), "--size", "64x64",
                                     "--epochs", "2", "--device", "cpu", "--resume", "-q"])
    assert other.exit_code == 1 and "cannot resume" in other.output and "train was" in other.output


def test_a_run_stored_with_one_path_string_still_resumes(tmp_path):
    a, _ = _cache(tmp_path / "a.h5", 2, 1.0)
    run = tmp_path / "run"
    cfg = dict(train=str(a), out=str(run), size=(64, 64), epochs=2, device="cpu")
    train_refiner(TrainConfig(**cfg, max_steps=1))
    path = run / "last" / "config.json"
    meta = json.loads(path.read_text())
    meta["training"]["train"] = str(a)  # what runs written before several caches stored
    path.write_text(json.dumps(meta))
    train_refiner(TrainConfig(**cfg, max_steps=2, resume=True))
    assert ckpt.read_config(run / "last")["state"]["step"] == 2  # it went on from step 1
