"""benchmarks/real_kitchen.py and degraded_sensor.py on other folders of frames: the time split,
the one-command item-2 verdict, reusing another run's caches, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
from _common import time_split  # noqa: E402

REDKITCHEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "7scenes-redkitchen"


def test_time_split_of_the_shared_frames_is_the_documented_one():
    split = time_split(600)
    assert split == {"fcrn": range(0, 300), "refiner": range(300, 450), "val": range(450, 480), "test": range(480, 600)}


@pytest.mark.parametrize("frames", [20, 99, 1000, 1001])
def test_time_split_keeps_the_proportions_in_time_order(frames):
    split = time_split(frames)
    parts = [split[k] for k in ("fcrn", "refiner", "val")]
    assert [len(p) for p in parts] == [frames // 2, frames // 4, frames // 20]
    assert parts[0].start == 0 and parts[0].stop == parts[1].start and parts[1].stop == parts[2].start
    assert split["test"].stop == frames and len(split["test"]) == frames // 5
    assert split["test"].start >= parts[2].stop  # nothing is tested that trained or validated


def test_time_split_refuses_too_few_frames():
    with pytest.raises(ValueError, match="19 frames are too few .* need at least 20"):
        time_split(19)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env, timeout=600)


def _folder(tmp_path: Path, frames: int, start: int = 0) -> Path:
    """``frames`` frames of the shared kitchen from ``start`` on, as a folder of symbolic links."""
    root = tmp_path / f"kitchen-{start}-{frames}"
    for sub, ext in (("rgb", "jpg"), ("depth", "png")):
        (root / sub).mkdir(parents=True)
        for k in range(start, start + frames):
            (root / sub / f"frame-{k:06d}.{ext}").symlink_to(REDKITCHEN / sub / f"frame-{k:06d}.{ext}")
    return root


@pytest.mark.skipif(not REDKITCHEN.is_dir(), reason="real RGB-D frames (shared/data/7scenes-redkitchen) absent")
def test_degraded_sensor_refuses_a_folder_too_small_to_split(tmp_path):
    result = _run("degraded_sensor.py", "--data", str(_folder(tmp_path, 12)), "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("12 frames are too few for the time split "
                                                            "(first stage, refiner, validation, test): need at least 20")


@pytest.mark.skipif(not REDKITCHEN.is_dir(), reason="real RGB-D frames (shared/data/7scenes-redkitchen) absent")
def test_real_kitchen_refuses_a_folder_too_small_for_quick(tmp_path):
    result = _run("real_kitchen.py", "--data", str(_folder(tmp_path, 60)), "--out", str(tmp_path / "run"), "--quick")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("60 frames are too few for --quick: need at least 88")


@pytest.mark.skipif(not REDKITCHEN.is_dir(), reason="real RGB-D frames (shared/data/7scenes-redkitchen) absent")
def test_real_kitchen_refuses_a_test_folder_without_frames(tmp_path):
    result = _run("real_kitchen.py", "--data", str(_folder(tmp_path, 100)), "--test-data", str(tmp_path / "nope"),
                  "--out", str(tmp_path / "run"), "--quick")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"no frames at {tmp_path / 'nope'}: --test-data takes a folder with rgb/ and "
                                     "depth/, as --data does")


@pytest.mark.slow
@pytest.mark.skipif(not REDKITCHEN.is_dir(), reason="real RGB-D frames (shared/data/7scenes-redkitchen) absent")
def test_real_kitchen_quick_prints_the_item2_verdict_and_reuses_its_caches(tmp_path):
    data = _folder(tmp_path, 100)  # not 600: the split follows the folder
    first = tmp_path / "first"
    result = _run("real_kitchen.py", "--data", str(data), "--out", str(first), "--quick", "--preset", "guided",
                  "--cache-size", "native", "--rgb-size", "gt", "--refiner-size", "64x64", "--gan-mode", "none",
                  "--detail-sigma", "32", "--detail-scale", "image", "--target", "0.9")
    assert result.returncode == 0, result.stderr[-2000:]
    evaluation = json.loads((first / "evaluation.json").read_text())
    assert evaluation["count"] == 16  # the quick test split: the last 16 of the 100 frames
    stages = list(evaluation["better_than_all"])
    assert stages == ["+ refiner", "+ refiner (detail < 32 px, per-image scale)"]
    for stage in stages:
        share = evaluation["better_than_all"][stage]
        assert set(share) == {"abs_rel", "rmse", "silog", "dbe_acc"}
        verdict = evaluation["verdicts"][stage]
        assert verdict.startswith(("PASS", "FAIL"))
        assert f"{stage} better than every other row on (abs_rel, rmse, silog, dbe_acc):" in result.stdout
        assert verdict in result.stdout
    assert "frames 84-99 at 480x640" in (first / "report.md").read_text()

    # a second refiner on the first run's rough maps: no FCRN, no caches of its own
    second = tmp_path / "second"
    result = _run("real_kitchen.py", "--data", str(data), "--out", str(second), "--quick", "--preset", "guided",
                  "--refiner-size", "64x64", "--gan-mode", "none", "--stage1-from", str(first))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (second / "fcrn").exists() and not list(second.glob("*.h5"))
    assert json.loads((second / "evaluation.json").read_text())["count"] == 16

    # the paper's protocol: the first run's FCRN also caches its own training frames (0-39 in --quick)
    insample = tmp_path / "insample"
    result = _run("real_kitchen.py", "--data", str(data), "--out", str(insample), "--quick", "--preset", "guided",
                  "--refiner-size", "64x64", "--gan-mode", "none", "--stage1-from", str(first), "--in-sample")
    assert result.returncode == 0, result.stderr[-2000:]
    from refinedepth.cache import open_cache

    with open_cache(insample / "cache-train-insample.h5") as made:
        assert made.sample_ids() == [f"frame-{k:06d}" for k in range(40)]
    trained_on = json.loads((insample / "refiner" / "train_config.json").read_text())["training"]["train"]
    assert trained_on == [str(first / "cache-train.h5"), str(insample / "cache-train-insample.h5")]
    assert "in-sample) rough maps of frames 0-39" in (insample / "report.md").read_text()

    # another folder as the test split (another scene, in real use): the first run's FCRN caches it
    other = _folder(tmp_path, 30, start=500)
    scene = tmp_path / "scene"
    result = _run("real_kitchen.py", "--data", str(data), "--test-data", str(other), "--out", str(scene), "--quick",
                  "--preset", "guided", "--refiner-size", "64x64", "--gan-mode", "none", "--stage1-from", str(first))
    assert result.returncode == 0, result.stderr[-2000:]
    with open_cache(scene / "cache-test-scene.h5") as made:
        assert made.sample_ids() == [f"frame-{k:06d}" for k in range(500, 516)]  # --quick: its first 16
        # the sizes of the first run's test cache: native rough maps, RGB and ground truth at 480x640
        assert (made.config.rough_size, made.config.rgb_size, made.config.gt_size) == ((32, 48), (480, 640), (480, 640))
    assert json.loads((scene / "evaluation.json").read_text())["count"] == 16
    assert f"evaluated on 16 frames of another folder, {other}," in (scene / "report.md").read_text()

    result = _run("real_kitchen.py", "--data", str(data), "--out", str(tmp_path / "third"), "--quick",
                  "--stage1-from", str(tmp_path / "nothing-here"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"{tmp_path / 'nothing-here'}: no cache-train.h5, cache-val.h5, cache-test.h5; "
                                     "pass the --out folder of a finished run")
