"""Refiners by Hugging Face Hub id, offline from a local Hub cache; model cards; push_to_hub
against a mocked upload (no network in tests)."""

from __future__ import annotations

import shutil

import pytest
import torch

from refinedepth.errors import CheckpointError
from refinedepth.refiner.api import Refiner
from refinedepth.refiner.hub import is_hub_id, model_card

from .test_refiner_export import make_refiner

pytest.importorskip("huggingface_hub")
SHA = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(tmp_path, folder, repo="org/my-refiner"):
    """Lay ``folder`` out as huggingface_hub's cache does: models--org--name/snapshots/<sha>/..."""
    root = tmp_path / "hub"
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, repo_dir / "snapshots" / SHA)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(SHA)
    return root


@pytest.fixture
def saved(tmp_path):
    refiner = make_refiner("small", residual=True)
    refiner.meta["state"] = {"epoch": 3, "step": 120, "best_value": 0.1234}
    refiner.meta["source"] = {"backbone": "fcrn", "dataset": "synthetic", "train": "/data/train.h5",
                              "output_kind": "metric", "train_samples": 40}
    refiner.meta["val"] = {"rough": {"abs_rel": 0.2, "rmse": 0.5, "silog": 20.0, "d1": 0.7},
                           "refined": {"abs_rel": 0.1, "rmse": 0.3, "silog": 15.0, "d1": 0.9},
                           "rough x scale": {"abs_rel": 0.15, "rmse": 0.4, "silog": 20.0, "d1": 0.8}}
    refiner.meta["baselines"] = {"scale": 1.15, "scale_shift": [1.1, 0.05], "pixels": 999, "fitted_on": "t.h5"}
    return refiner, refiner.save_pretrained(tmp_path / "local", repo_id="org/my-refiner")


def test_hub_id_loads_like_the_local_directory(tmp_path, saved):
    refiner, local = saved
    cache = hub_cache(tmp_path, local)
    rough = 0.5 + 5 * torch.rand(2, 1, 50, 70, generator=torch.Generator().manual_seed(0))
    from_dir = Refiner.from_pretrained(local).refine_tensor(rough)
    for ref in ("org/my-refiner", f"org/my-refiner@{SHA}"):
        from_hub = Refiner.from_pretrained(ref, cache_dir=cache, local_files_only=True)
        assert torch.equal(from_hub.refine_tensor(rough), from_dir)
    assert torch.allclose(from_dir, refiner.refine_tensor(rough), atol=1e-5)


def test_offline_and_unknown_id_is_one_line(tmp_path, saved):
    cache = hub_cache(tmp_path, saved[1])
    with pytest.raises(CheckpointError, match=r"org/other.*not in the local Hub cache") as info:
        Refiner.from_pretrained("org/other", cache_dir=cache, local_files_only=True)
    assert "\n" not in str(info.value)


def test_local_paths_are_not_hub_ids(tmp_path):
    (tmp_path / "runs").mkdir()
    assert is_hub_id("org/name") and is_hub_id("org/name@v1")
    assert not is_hub_id(tmp_path / "runs") and not is_hub_id("./runs/x") and not is_hub_id("a/b/c")


def test_mistyped_local_path_is_reported_as_a_missing_directory(tmp_path, monkeypatch, saved):
    """`--refiner runs/guidd` where runs/ exists: the error names the missing local directory
    (and the close match beside it) first, then says the Hub had no such repository either."""
    (tmp_path / "runs" / "guided").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cache = hub_cache(tmp_path, saved[1])
    with pytest.raises(CheckpointError) as info:
        Refiner.from_pretrained("runs/guidd", cache_dir=cache, local_files_only=True)
    assert str(info.value) == (
        "refiner directory 'runs/guidd' does not exist (the local directory 'runs' has no 'guidd'; "
        "did you mean 'runs/guided'?), and 'runs/guidd' is not in the local Hugging Face Hub cache "
        "either (offline mode; LocalEntryNotFoundError); pass the directory written by "
        "'refinedepth train-refiner --out DIR'"
    )
    # online (mocked: no network in tests) the Hub part says it could not be fetched
    import huggingface_hub

    class RepositoryNotFoundError(Exception):  # huggingface_hub's wants an HTTP response
        pass

    def not_found(repo_id, **kwargs):
        raise RepositoryNotFoundError(f"{repo_id} not found")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(CheckpointError) as info:
        Refiner.from_pretrained("runs/zzz")
    assert str(info.value) == (
        "refiner directory 'runs/zzz' does not exist (the local directory 'runs' has no 'zzz'), "
        "and 'runs/zzz' could not be fetched from the Hugging Face Hub either "
        "(RepositoryNotFoundError); pass the directory written by 'refinedepth train-refiner --out DIR'"
    )
    # a run killed between the two renames of a checkpoint save, its twin incomplete: the error says so
    (tmp_path / "runs" / ".last.old").mkdir(parents=True)
    with pytest.raises(CheckpointError) as info:
        Refiner.from_pretrained("runs/last")
    assert str(info.value).startswith(
        "refiner directory 'runs/last' does not exist (the local directory 'runs' has no 'last'; "
        "'runs/.last.old' is an incomplete checkpoint left by an interrupted save: use the run's other "
        "checkpoint ('runs' loads best/) or train again)"
    )
    # an id whose first part is not a local directory is still a Hub problem
    with pytest.raises(CheckpointError, match=r"^cannot get refiner 'org/zzz' from the Hugging Face Hub"):
        Refiner.from_pretrained("org/zzz")
    # and a real Hub id in the cache still loads, local folder or not
    (tmp_path / "org").mkdir()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    Refiner.from_pretrained("org/my-refiner", cache_dir=cache, local_files_only=True)


def test_model_card_lists_metrics(saved):
    card = (saved[1] / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\nlibrary_name: refinedepth")
    assert "| preset | `small` |" in card and "`fcrn`" in card and "train.h5" in card and "40 pairs" in card
    assert "| rough | 0.2000 | 0.5000 | 20.0000 | 0.7000 |" in card
    assert "| refined | 0.1000 | 0.3000 | 15.0000 | 0.9000 |" in card
    assert "| rough x scale | 0.1500 | 0.4000 | 20.0000 | 0.8000 |" in card
    assert "| rough x scale | 1.1500 x rough |" in card and "| rough x (scale, shift) | 1.1000 x rough + 0.0500 m |" in card
    assert 'Refiner.from_pretrained("org/my-refiner")' in card


def test_a_local_model_card_loads_from_where_it_was_saved(tmp_path):
    refiner = make_refiner("small", residual=True)
    where = refiner.save_pretrained(tmp_path / "mine")
    card = (where / "README.md").read_text()
    assert "\n# small\n" in card  # titled by its preset, loaded from its directory
    line = next(x for x in card.splitlines() if "from_pretrained(" in x)
    assert line == f'refiner = Refiner.from_pretrained("{tmp_path / "mine"}")'
    Refiner.from_pretrained(str(tmp_path / "mine"))  # the usage line runs
    # without validation rows the best value is stated
    assert "0.1234" in model_card({"state": {"best_value": 0.1234}, "training": {"select_metric": "abs_rel"}})
    # several training caches (a list) and the one string of older runs
    several = model_card({"source": {"train": ["/data/a.h5", "/data/b.h5"], "train_samples": 9}})
    assert "| training cache | `a.h5`, `b.h5` (9 pairs" in several
    assert "| training cache | `old.h5` (" in model_card({"training": {"train": "/data/old.h5"}})


def test_push_to_hub_uploads_checkpoint_and_card(monkeypatch, saved):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message, repo_type=None):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["card"] = (Path(folder_path) / "README.md").read_text()
            return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = saved[0].push_to_hub("org/pushed", private=True, token="t")
    assert url.endswith("org/pushed/commit/1")
    assert calls["create"] == ("org/pushed", True, True) and calls["token"] == "t"
    assert calls["files"] == ["README.md", "config.json", "generator.safetensors"]
    assert 'Refiner.from_pretrained("org/pushed")' in calls["card"]


def test_fast_path_falls_back_with_one_warning_when_operators_are_missing(monkeypatch, saved):
    import warnings

    from refinedepth.refiner import fast

    def broken(*args, **kwargs):
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_convolution_pointwise'")

    monkeypatch.setattr(fast, "optimize_for_inference", broken)
    rough = 0.5 + 5 * torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refiner = Refiner.from_pretrained(saved[1])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "using the plain PyTorch module" in messages[0]
    assert refiner._module is refiner.generator
    plain = Refiner.from_pretrained(saved[1], optimize=None)
    assert torch.equal(refiner.refine_tensor(rough), plain.refine_tensor(rough))


def test_fast_path_that_disagrees_is_not_used(monkeypatch, saved):
    from refinedepth.refiner import fast

    real = fast.optimize_for_inference

    def wrong(module, *args, **kwargs):
        good = real(module, *args, **kwargs)
        return lambda x: good(x) + 0.5

    monkeypatch.setattr(fast, "optimize_for_inference", wrong)
    with pytest.warns(RuntimeWarning, match="differs from the plain module"):
        refiner = Refiner.from_pretrained(saved[1])
    assert refiner._module is refiner.generator


def test_bf16_precision_is_close_to_fp32(saved):
    rough = 0.5 + 5 * torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    fp32 = Refiner.from_pretrained(saved[1]).refine_tensor(rough)
    bf16 = Refiner.from_pretrained(saved[1], precision="bf16").refine_tensor(rough)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert float((bf16 - fp32).abs().max()) < 0.1  # metres, on 0.5-5.5 m maps
    with pytest.raises(Exception, match="unknown precision 'fp8'"):
        Refiner.from_pretrained(saved[1], precision="fp8")


def test_cli_takes_a_hub_id_offline(tmp_path, saved):
    """`evaluate --refiner org/name` with HF_HUB_OFFLINE=1 and the Hub cache in HF_HUB_CACHE."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np

    from refinedepth.cache import write_cache

    cache_dir = hub_cache(tmp_path, saved[1])
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, (3, 48, 64)).astype(np.float32)
    write_cache(tmp_path / "c.h5", rough=gt[:, None] * 1.1, gt=gt, max_depth=10.0)
    env = dict(os.environ, HF_HUB_CACHE=str(cache_dir), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "refinedepth", "evaluate", "--cache", str(tmp_path / "c.h5"),
           "--json", str(tmp_path / "e.json"), "-q"]
    ok = subprocess.run([*cmd, "--refiner", "org/my-refiner"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    stages = [s["name"] for s in json.loads((tmp_path / "e.json").read_text())["stages"]]
    assert stages == ["rough", "rough x scale", "rough x (scale, shift)", "+ my-refiner"]
    bad = subprocess.run([*cmd, "--refiner", "org/absent"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "org/absent" in bad.stderr
