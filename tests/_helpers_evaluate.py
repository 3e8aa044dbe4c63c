"""Shared fixtures of the evaluate / predict / demo tests: tiny caches and refiners, a toy backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def degraded_cache(path: Path, n: int = 6, rough_size=(64, 64), gt_size=(48, 64), seed: int = 0, **config) -> Path:
    """A cache whose rough maps are a blurred, biased, noisy ground truth (with RGB)."""
    import torch
    import torch.nn.functional as F

    from refinedepth.cache import write_cache

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : gt_size[0], 0 : gt_size[1]]
    gt = np.stack(
        [1.0 + 3.0 * xx / gt_size[1] + rng.uniform(0, 3) + 0.8 * (yy > gt_size[0] * rng.uniform(0.3, 0.7)) for _ in range(n)]
    ).astype(np.float32)
    small = F.interpolate(torch.from_numpy(gt)[:, None], size=rough_size, mode="area")
    blurred = F.avg_pool2d(small, 5, stride=1, padding=2, count_include_pad=False)
    noise = torch.from_numpy(rng.standard_normal((n, 1, *rough_size))).float()
    rough = (blurred * 1.15 + 0.1 + 0.05 * noise).numpy()
    rgb = (np.clip(small.numpy()[:, 0, :, :, None] / 8.0, 0, 1) * 255 * np.ones(3)).astype(np.uint8)
    config.setdefault("max_depth", 10.0)
    return write_cache(path, rough=rough, gt=gt, rgb=rgb, **config)


def tiny_refiner(out: Path, train_cache: Path, inputs: str = "rough", steps: int = 1, seed: int = 0) -> Path:
    """A ``small``-preset refiner at 64x64 after one optimisation step (weights only matter
    for being deterministic, not good)."""
    from refinedepth.refiner.train import TrainConfig, train_refiner

    train_refiner(
        TrainConfig(
            train=str(train_cache),
            out=str(out),
            preset="small",
            inputs=inputs,
            size=(64, 64),
            epochs=1,
            batch_size=2,
            max_steps=steps,
            seed=seed,
            device="cpu",
            overwrite=True,
        )
    )
    return out


def register_toy_backbone(name: str = "toy-depth"):
    """A metric backbone without weights: depth = 1 + 4 * mean(rgb), half the input resolution."""
    import torch

    from refinedepth.registry import BackboneInfo, register_backbone

    info = BackboneInfo(name=name, output_kind="metric", input_size=(32, 48), output_size=(16, 24), value_range=(1.0, 5.0))

    class Toy(torch.nn.Module):
        def forward(self, rgb):
            return 1.0 + 4.0 * torch.nn.functional.avg_pool2d(rgb.mean(1, keepdim=True), 2)

    def factory(weights=None, **options):
        model = Toy()
        model.info = info
        return model

    register_backbone(name, factory, info=info, overwrite=True)
    return name


_SHARED: dict[str, Path] = {}


def shared_refiner() -> Path:
    """One tiny refiner per test process (trained on first use), shared by the test modules."""
    if "refiner" not in _SHARED:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="refinedepth-test-refiner-"))
        atexit.register(shutil.rmtree, root, True)
        _SHARED["refiner"] = tiny_refiner(root / "refiner", degraded_cache(root / "train.h5"))
    return _SHARED["refiner"]
