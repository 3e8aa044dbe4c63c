"""``RefinerChain``: the one refiner chain of evaluate, predict and cache --refiner."""

from __future__ import annotations

import hashlib

import pytest
import torch

from refinedepth.errors import CheckpointError
from refinedepth.refiner.chain import RefinerChain, stage_names

from ._helpers_evaluate import shared_refiner


def _dir_sha256(path):
    """sha256 over a directory's files, relative names and contents, sorted (written here)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def test_names_records_and_kinds():
    ref = shared_refiner()
    chain = RefinerChain.load([ref, ref], device="cpu")
    assert len(chain) == 2
    assert chain.stage_names == ["rough", f"+ {ref.name}", f"+ {ref.name} + {ref.name}"]
    assert chain.records == [{"path": str(ref), "sha256": _dir_sha256(ref)}] * 2
    assert chain.output_kind("disparity") == "metric"
    empty = RefinerChain([])
    assert empty.stage_names == ["rough"] and empty.records == [] and empty.output_kind("relative") == "relative"
    # a checkpoint inside a run directory is named after the run
    assert stage_names(["runs/a/best", "runs/b/"]) == ["rough", "+ a", "+ a + b"]


def test_call_applies_each_refiner_to_the_previous_stage():
    from refinedepth.refiner.api import Refiner

    ref = shared_refiner()
    chain = RefinerChain.load([ref, ref], device="cpu")
    rough = 1.0 + 3.0 * torch.rand(2, 1, 40, 48, generator=torch.Generator().manual_seed(0))
    stages = chain(rough, kind="metric")
    assert len(stages) == 3 and stages[0] is rough
    r = Refiner.from_pretrained(ref)
    once = r.refine_tensor(rough, output_kind="metric")
    torch.testing.assert_close(stages[1], once)
    torch.testing.assert_close(stages[2], r.refine_tensor(once, output_kind="metric"))
    assert stages[2].shape == rough.shape


def test_missing_or_file_paths_are_refused_before_loading(tmp_path):
    ref = shared_refiner()
    with pytest.raises(CheckpointError) as err:
        RefinerChain.load([ref, tmp_path / "nope"])
    assert str(err.value) == (
        f"refiner checkpoint {str(tmp_path / 'nope')!r} does not exist: expected a directory written by "
        "'refinedepth train-refiner --out DIR'"
    )
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="is a file: expected a directory"):
        RefinerChain.load([tmp_path / "f"])


def _kitchen_like_cache(path, backbone, n=2, seed=0, rgb=False):
    import numpy as np

    from refinedepth.cache import write_cache

    rng = np.random.default_rng(seed)
    gt = (1.0 + 4.0 * rng.random((n, 32, 32))).astype(np.float32)
    image = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) if rgb else None
    return write_cache(path, rough=gt / 1.2, gt=gt, rgb=image, max_depth=10.0, backbone=backbone)


def _refiner_trained_on(cache, run, **kw):
    """``run``: a refiner after one training step on ``cache`` (what it records is what is tested)."""
    from refinedepth.refiner.train import TrainConfig, train_refiner

    train_refiner(TrainConfig(train=str(cache), out=str(run), size=(64, 64), max_steps=1, device="cpu", **kw))
    return run


def test_a_cache_of_another_backbone_is_refused_unless_asked(tmp_path):
    from click.testing import CliRunner

    from refinedepth.cli.main import cli
    from refinedepth.errors import DataError
    from refinedepth.evaluate import evaluate_cache

    train = _kitchen_like_cache(tmp_path / "files.h5", "files")
    run = _refiner_trained_on(train, tmp_path / "run")
    other = _kitchen_like_cache(tmp_path / "fcrn.h5", "fcrn", seed=1)
    with pytest.raises(DataError) as err:
        evaluate_cache(other, [run], device="cpu", boundary=False)
    assert str(err.value) == (
        f"cache {str(other)!r} holds rough maps of backbone 'fcrn' but refiner {str(run)!r} was trained on "
        "rough maps of 'files': its correction and baselines do not carry over; use that backbone's maps "
        "(--backbone files), or pass --any-backbone to apply it anyway"
    )
    res = CliRunner().invoke(cli, ["evaluate", "--cache", str(other), "--refiner", str(run), "--device", "cpu"])
    assert res.exit_code == 1 and "holds rough maps of backbone 'fcrn'" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    # asked for, or the same backbone, or a cache that names none: scored
    assert evaluate_cache(other, [run], device="cpu", boundary=False, any_backbone=True).count == 2
    assert evaluate_cache(train, [run], device="cpu", boundary=False).count == 2
    unnamed = _kitchen_like_cache(tmp_path / "unnamed.h5", "unknown", seed=2)
    assert evaluate_cache(unnamed, [run], device="cpu", boundary=False).count == 2


def test_a_refiner_that_needs_rgb_on_a_cache_without_it_names_the_fix(tmp_path):
    from refinedepth.errors import CacheError
    from refinedepth.evaluate import evaluate_cache

    run = _refiner_trained_on(_kitchen_like_cache(tmp_path / "rgb.h5", "files", rgb=True), tmp_path / "run",
                              inputs="rough+rgb")
    bare = _kitchen_like_cache(tmp_path / "bare.h5", "files", seed=1)
    with pytest.raises(CacheError) as err:
        evaluate_cache(bare, [run], device="cpu", boundary=False)
    assert str(err.value) == (
        f"cache {str(bare)!r} has no rgb dataset but refiner {str(run)!r} is conditioned on 'rough+rgb'; "
        "re-create the cache with 'refinedepth cache ... --with-rgb'"
    )


@pytest.mark.filterwarnings("ignore:backbone 'fcrn' has no weights")
def test_predict_and_cache_refuse_a_refiner_of_another_backbone_before_writing(tmp_path):
    import numpy as np
    from PIL import Image

    from refinedepth.cache.build import build_cache
    from refinedepth.errors import DataError
    from refinedepth.predict import predict_images

    run = _refiner_trained_on(_kitchen_like_cache(tmp_path / "files.h5", "files"), tmp_path / "run")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "a.png")
    tiny = {"encoder": "resnet18", "input_size": [32, 32]}
    expected = (f"--backbone is 'fcrn' but refiner {str(run)!r} was trained on rough maps of 'files': its "
                "correction and baselines do not carry over; use that backbone's maps (--backbone files), or "
                "pass --any-backbone to apply it anyway")
    with pytest.raises(DataError) as err:
        predict_images([tmp_path / "a.png"], "fcrn", tmp_path / "pred", backbone_options=tiny, refiners=[run],
                       device="cpu")
    assert str(err.value) == expected and not list((tmp_path / "pred").glob("*"))
    with pytest.raises(DataError) as err:
        build_cache(tmp_path / "c.h5", backbone="fcrn", backbone_args=tiny, dataset="synthetic", limit=1,
                    refiners=[run], device="cpu")
    assert str(err.value) == expected and not (tmp_path / "c.h5").exists()
    out = predict_images([tmp_path / "a.png"], "fcrn", tmp_path / "pred", backbone_options=tiny, refiners=[run],
                         device="cpu", any_backbone=True)
    assert len(out.outputs) == 1
