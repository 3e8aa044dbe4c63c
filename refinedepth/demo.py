"""The demo: the paper's whole two-stage pipeline on the embedded synthetic scenes (SPEC §9).

``run_demo`` does, with nothing downloaded:

1. train a small FCRN (stage 1) on synthetic indoor scenes;
2. cache its rough maps next to the ground truth, for a *second* set of training scenes (rendered
   from another seed, so the FCRN has never seen them: the refiner learns the errors the FCRN
   makes on new images, not on the images it memorised) and for the held-out test split;
3. train the small cGAN refiner (stage 2) on the training cache;
4. evaluate rough vs refined on the test split (the paper's table layout);
5. write ``report.md`` with the table, the settings, timings and picture grids.

Budgets are set for about a minute and a half on two idle CPU cores (a few minutes on a loaded
machine; the limit is 8-9 minutes); ``quick=True`` is a miniature run (seconds) used by the
tests, whose numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SYNTHETIC_FAMILIES
from .errors import ConfigError
from .progress import ProgressCallback


@dataclass(frozen=True)
class DemoConfig:
    """Settings of a demo run. ``DemoConfig.full()`` and ``DemoConfig.quick()`` are the presets.

    Attributes:
        out: output folder (caches, runs, report).
        family: synthetic family (``indoor`` or ``outdoor``).
        image_size: rendered ``(height, width)``: the ground truth's and evaluation resolution.
        source_fov / target_fov: horizontal field of view (degrees) of the camera the FCRN is
            trained on, and of the camera it is deployed on (refiner training, validation, test).
            A different camera is the everyday reason a pretrained depth model is off (here it
            over-estimates depth by about 25%); the refiner learns the correction from a few
            hundred pairs of the target camera. Equal values give the paper's same-camera setting.
        backbone_args: FCRN options (small timm encoder, reduced input size).
        backbone_train / backbone_epochs / backbone_batch / backbone_lr: stage-1 budget. Kept
            small on purpose: the rough maps must be imperfect for stage 2 to have work to do.
        refiner_train: scenes (from another seed) cached for training the refiner.
        test: held-out test scenes.
        cache_size: rough map size in the caches (= the refiner's input size).
        refiner_*: stage-2 settings (preset, inputs, epochs, batch size, lr, λ, GAN mode).
        seed: every seed derives from it. device: ``cpu`` by default (the demo's budget).
        num_visuals: samples shown in the picture grid.
    """

    out: str = "demo-out"
    family: str = "indoor"
    image_size: tuple[int, int] = (120, 160)
    source_fov: float = 60.0
    target_fov: float = 80.0
    backbone_args: dict[str, Any] = field(
        default_factory=lambda: {
            "encoder": "resnet18",
            "encoder_args": {"channels": [16, 32, 64, 128], "stem_width": 16},
            "input_size": [64, 96],
        }
    )
    backbone_train: int = 400
    backbone_epochs: int = 12
    backbone_batch: int = 16
    backbone_lr: float = 3e-3
    refiner_train: int = 400
    val: int = 48
    test: int = 100
    cache_size: tuple[int, int] = (64, 64)
    refiner_preset: str = "small"
    refiner_inputs: str = "rough+rgb"
    refiner_epochs: int = 20
    refiner_batch: int = 4
    refiner_lr: float = 2e-4
    refiner_lambda: float = 100.0
    refiner_gan: str = "vanilla"
    seed: int = 0
    device: str = "cpu"
    num_visuals: int = 4
    quick_run: bool = False

    @classmethod
    def full(cls, **overrides: Any) -> DemoConfig:
        return cls(**overrides)

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A miniature run for tests: tiny images, a handful of samples and steps."""
        settings: dict[str, Any] = dict(
            image_size=(48, 64),
            backbone_args={
                "encoder": "resnet18",
                "encoder_args": {"channels": [8, 16, 32, 64], "stem_width": 8},
                "input_size": [48, 64],
            },
            backbone_train=16,
            backbone_epochs=1,
            backbone_batch=8,
            refiner_train=8,
            val=4,
            test=6,
            cache_size=(64, 64),
            refiner_epochs=1,
            refiner_batch=4,
            num_visuals=2,
            quick_run=True,
        )
        settings.update(overrides)
        return cls(**settings)

    def __post_init__(self) -> None:
        if self.family not in SYNTHETIC_FAMILIES:
            raise ConfigError(
                f"demo family must be one of {', '.join(map(repr, SYNTHETIC_FAMILIES))}, got {self.family!r}"
            )
        for name in ("backbone_train", "refiner_train", "val", "test", "backbone_epochs", "refiner_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"demo {name} must be >= 1, got {getattr(self, name)}")
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "cache_size", tuple(int(s) for s in self.cache_size))
        object.__setattr__(self, "backbone_args", dict(self.backbone_args))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def dataset(self) -> str:
        return f"synthetic:{self.family}"


@dataclass
class DemoResult:
    """Where the demo wrote its report, and what it measured."""

    report: Path
    evaluation: Any  # refinedepth.evaluate.EvaluationResult
    seconds: dict[str, float]
    improved: dict[str, bool]
    paths: dict[str, str]

    @property
    def refined_beats_rough(self) -> bool:
        return all(self.improved.values())


def run_demo(config: DemoConfig | None = None, progress: ProgressCallback | None = None) -> DemoResult:
    """Run the whole pipeline of the module docstring; returns a :class:`DemoResult`.

    Re-running with the same ``out`` starts again (the demo's caches and runs are overwritten).
    """
    from .training.seeding import preserve_global_rng

    with preserve_global_rng():  # seeded for reproducibility; the caller's stream is restored
        return _run_demo(config or DemoConfig(), progress)


def _run_demo(config: DemoConfig, progress: ProgressCallback | None) -> DemoResult:
    import torch

    from .cache import build_cache
    from .evaluate import evaluate_cache
    from .refiner.train import TrainConfig, train_refiner
    from .report import improvement, write_json
    from .train_backbone import TrainBackboneConfig, train_backbone

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    seconds: dict[str, float] = {}
    paths = {
        "backbone": str(out / "fcrn"),
        "train_cache": str(out / "cache-train.h5"),
        "val_cache": str(out / "cache-val.h5"),
        "test_cache": str(out / "cache-test.h5"),
        "refiner": str(out / "refiner"),
        "visuals": str(out / "visuals"),
        "evaluation": str(out / "evaluation.json"),
        "per_sample": str(out / "per_sample.csv"),
    }
    size = list(config.image_size)
    data_args = {"size": size, "seed": config.seed, "fov": config.source_fov}
    # the deployment camera: the refiner's training and validation scenes come from other seeds,
    # so the FCRN has never seen them; the test split is disjoint from every training split
    refiner_data_args = {"size": size, "seed": config.seed + 1, "fov": config.target_fov}
    val_data_args = {"size": size, "seed": config.seed + 2, "fov": config.target_fov}
    test_data_args = {"size": size, "seed": config.seed, "fov": config.target_fov}

    def step(name: str):
        return _Timer(seconds, name)

    with step("1 train FCRN"):
        stage1 = train_backbone(
            TrainBackboneConfig(
                dataset=config.dataset,
                out=paths["backbone"],
                backbone="fcrn",
                backbone_args=config.backbone_args,
                dataset_args=data_args,
                split="train",
                val_split=None,
                limit=config.backbone_train,
                epochs=config.backbone_epochs,
                batch_size=config.backbone_batch,
                optimizer="adam",
                lr=config.backbone_lr,
                lr_step=max(1, (2 * config.backbone_epochs) // 3),
                lr_gamma=0.3,
                seed=config.seed,
                device=config.device,
            ),
            progress=progress,
            overwrite=True,  # the demo re-creates its output folder on every run
        )
    weights = str(stage1.weights)

    with step("2 cache rough maps"):
        for key, split, limit, args in (
            ("train_cache", "train", config.refiner_train, refiner_data_args),
            ("val_cache", "train", config.val, val_data_args),
            ("test_cache", "test", config.test, test_data_args),
        ):
            build_cache(
                paths[key],
                backbone="fcrn",
                weights=weights,
                dataset=config.dataset,
                split=split,
                dataset_args=args,
                limit=limit,
                size=config.cache_size,
                with_rgb=True,
                batch_size=16,
                device=config.device,
                overwrite=True,
                seed=config.seed,
                progress=progress,
            )

    with step("3 train refiner"):
        train_refiner(
            TrainConfig(
                train=paths["train_cache"],
                val=paths["val_cache"],
                out=paths["refiner"],
                preset=config.refiner_preset,
                inputs=config.refiner_inputs,
                size=config.cache_size,
                epochs=config.refiner_epochs,
                batch_size=config.refiner_batch,
                lr=config.refiner_lr,
                lr_schedule="linear",
                gan_mode=config.refiner_gan,
                lambda_l1=config.refiner_lambda,
                seed=config.seed,
                device=config.device,
                overwrite=True,
            ),
            progress=progress,
        )

    with step("4 evaluate"):
        evaluation = evaluate_cache(
            paths["test_cache"],
            [paths["refiner"]],
            device=config.device,
            csv_path=paths["per_sample"],
            visuals_dir=paths["visuals"],
            num_visuals=config.num_visuals,
            progress=progress,
        )
    rough_row, refined_row = evaluation.metrics(0), evaluation.metrics(-1)
    improved = improvement(rough_row, refined_row)
    write_json(paths["evaluation"], {**evaluation.to_dict(), "demo": config.to_dict(), "seconds": seconds})
    report = write_demo_report(out / "report.md", config, evaluation, seconds, improved, paths)
    return DemoResult(report=report, evaluation=evaluation, seconds=seconds, improved=improved, paths=paths)


class _Timer:
    def __init__(self, seconds: dict[str, float], name: str) -> None:
        self.seconds, self.name = seconds, name

    def __enter__(self) -> _Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds[self.name] = round(time.perf_counter() - self.t0, 1)


def write_demo_report(
    path: Path,
    config: DemoConfig,
    evaluation: Any,
    seconds: dict[str, float],
    improved: dict[str, bool],
    paths: dict[str, str],
) -> Path:
    """``report.md``: what ran, the table (rough vs refined), whether refined wins, pictures."""
    from .report import write_markdown_report

    verdict = ", ".join(f"{k} {'better' if v else 'NOT better'}" for k, v in improved.items())
    total = sum(seconds.values())
    h, w = config.image_size
    intro = f"""
Two-stage depth estimation (Sun et al.) on procedurally rendered `{config.dataset}` scenes, run by
`refinedepth demo`{" --quick (a miniature run: its numbers mean nothing)" if config.quick_run else ""}.

1. **Stage 1**: a small FCRN (`{json.dumps(config.backbone_args)}`) trained on {config.backbone_train}
   scenes seen by a camera with a {config.source_fov:g}° field of view, for {config.backbone_epochs} epochs
   (a deliberately small budget: its maps are rough).
2. **Cache**: its rough maps for {config.refiner_train} *other* training scenes (another seed, unseen
   by the FCRN) and for the {config.test} held-out test scenes, all seen by the deployment camera
   ({config.target_fov:g}° field of view), at {config.cache_size[0]}x{config.cache_size[1]}.
3. **Stage 2**: the `{config.refiner_preset}` refiner (inputs `{config.refiner_inputs}`, residual on the
   rough map, loss: {_loss_text(config)}), trained for {config.refiner_epochs} epochs on the training
   cache; the checkpoint with the best abs_rel on {config.val} validation scenes (a third seed) is kept.
4. **Evaluation** on the {evaluation.count} held-out test scenes at {h}x{w} (the ground truth's
   resolution; predictions are resized to it), protocol `{evaluation.protocol}`, per-image mean.

Refined vs rough on the test split: **{verdict}**. Total time {total:.0f} s
({", ".join(f"{k[2:]} {v:.0f} s" for k, v in seconds.items())}).

The rows `rough x scale` and `rough x (scale, shift)` are the baselines the refiner must beat: the
rough maps times one global scale, and times a scale plus a shift, both fitted on the refiner's
training pairs (stored in its checkpoint). The last three columns are boundary metrics (iBims-1
depth-boundary accuracy and completeness in pixels, lower is better; Depth Pro style boundary F1,
higher is better).

{chr(10).join(f"- {line}" for line in evaluation.summary_lines())}
"""
    settings = {
        "demo config": config.to_dict(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), torch threads {_threads()}",
        "files": {k: os.path.relpath(v, path.parent) for k, v in paths.items()},
    }
    images = []
    if evaluation.visuals:
        images.append(
            (
                "Test samples, one per row: RGB | rough (FCRN) | refined | ground truth | |rough - gt| "
                "| |refined - gt| (depth colours share each row's ground-truth range; errors: white 0 "
                "to red = the row's 98th percentile error).",
                evaluation.visuals[0],
            )
        )
    return write_markdown_report(
        path,
        title="refinedepth demo: rough vs refined",
        rows=evaluation.rows,
        intro=intro,
        settings=settings,
        images=images,
    )


def _loss_text(config: DemoConfig) -> str:
    if config.refiner_gan == "none":
        return "L1 only (`gan_mode=none`)"
    return f"{config.refiner_gan} cGAN + {config.refiner_lambda:g}·L1 (paper Eq. 2)"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


__all__ = ["DemoConfig", "DemoResult", "run_demo", "write_demo_report"]
