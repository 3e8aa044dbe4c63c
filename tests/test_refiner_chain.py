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
