"""A tiny refiner with a full-resolution RGB-guided head whose head is not the identity, for the
tests that check where (at which resolution, with which RGB) ``predict`` and ``cache --refiner``
run the head."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def guided_refiner() -> Path:
    """``guided`` preset at 64x64 after one step, its head's output layer randomised so that the
    head changes the map and the RGB guide matters (an untrained head is the identity); one per
    test process."""
    import atexit
    import shutil
    import tempfile

    import torch

    from refinedepth.refiner import Refiner
    from refinedepth.refiner.train import TrainConfig, train_refiner

    from ._helpers_evaluate import degraded_cache

    root = Path(tempfile.mkdtemp(prefix="refinedepth-test-guided-"))
    atexit.register(shutil.rmtree, root, True)
    train = degraded_cache(root / "train.h5", n=2, rough_size=(64, 64), gt_size=(24, 32))
    train_refiner(
        TrainConfig(train=str(train), out=str(root / "run"), preset="guided", size=(64, 64), crop=(16, 16),
                    epochs=1, batch_size=2, max_steps=1, gan_mode="none", seed=0, device="cpu", overwrite=True)
    )
    r = Refiner.from_pretrained(root / "run")
    assert r.head is not None and r.needs_rgb and r.head.config.guide == "rgb"
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        r.head.out.weight.copy_(0.03 * torch.randn(r.head.out.weight.shape, generator=gen))
    return r.save_pretrained(root / "guided")
