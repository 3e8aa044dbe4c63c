"""Real Kinect frames (7-Scenes redkitchen): the refiner trains with real holes in the ground
truth and improves held-out later frames. Skipped when the shared data folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refinedepth.cache import write_cache
from refinedepth.refiner.train import TrainConfig, train_refiner

from ._helpers_refiner import one_torch_thread  # noqa: F401

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "7scenes-redkitchen"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/7scenes-redkitchen")

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="7-Scenes frames not available (shared/data)")


def _kinect_cache(path: Path, frames: range, seed: int) -> Path:
    from refinedepth.data import open_dataset

    ds = open_dataset(f"folder:{DATA}", split="all")
    gt = np.stack([ds[i].depth[::4, ::4] for i in frames]).astype(np.float32)  # 120x160, holes kept
    gt[~np.isfinite(gt)] = 0
    g = torch.from_numpy(gt)[:, None]
    v = (g > 0).float()
    # a dense rough map: holes filled by normalised blur, then blurred, biased and noisy
    num = F.avg_pool2d(g, 9, stride=1, padding=4)
    den = F.avg_pool2d(v, 9, stride=1, padding=4).clamp_min(1e-3)
    filled = torch.where(v > 0, g, num / den)
    rough = F.interpolate(F.avg_pool2d(filled, 7, stride=1, padding=3, count_include_pad=False), size=(64, 64),
                          mode="bilinear", align_corners=False)
    rough = rough * 1.15 + 0.15 + 0.05 * torch.randn(rough.shape, generator=torch.Generator().manual_seed(seed))
    return write_cache(path, rough=rough.clamp_min(0.05).numpy(), gt=gt, max_depth=10.0, output_kind="metric",
                       protocol="none", backbone="degraded-gt", dataset=f"folder:{DATA}", compression="lzf")


@pytest.mark.slow
def test_refiner_learns_on_kinect_frames_with_holes_and_generalises_forward_in_time(tmp_path):
    train = _kinect_cache(tmp_path / "train.h5", range(0, 480, 8), 0)  # split by time, never at random
    val = _kinect_cache(tmp_path / "val.h5", range(480, 600, 8), 1)
    cfg = TrainConfig(train=str(train), val=str(val), out=str(tmp_path / "run"), preset="small", size=(64, 64),
                      epochs=1, device="cpu")
    result = train_refiner(cfg)
    rough, refined = result.val["rough"]["abs_rel"], result.val["refined"]["abs_rel"]
    assert refined <= 0.7 * rough, (rough, refined)
