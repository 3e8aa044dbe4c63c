"""Old module paths stay importable for one release, as aliases of the new homes (issue 12)."""

from __future__ import annotations


def test_old_module_paths_are_aliases():
    import refinedepth.cache as cache
    import refinedepth.cache_build as cache_build
    import refinedepth.cache_export as cache_export
    import refinedepth.transforms as transforms
    from refinedepth import augment, geometry

    assert cache_build.build_cache is cache.build_cache
    assert cache_export.export_ab is cache.export_ab
    assert transforms.fit_sample is geometry.fit_sample and transforms.resize_nearest is geometry.resize_nearest
    assert transforms.PairedAugment is augment.PairedAugment


def test_top_level_names_still_resolve():
    import refinedepth

    for name in ("Refiner", "build_cache", "CacheDataset", "open_cache", "train_refiner", "TrainConfig",
                 "compute_metrics", "MetricAccumulator", "wrap_backbone", "create_backbone"):
        assert getattr(refinedepth, name) is not None
    from refinedepth.evaluate import evaluate_cache  # noqa: F401
    from refinedepth.refiner.train import TrainConfig
    from refinedepth.train_backbone import TrainBackboneConfig, train_backbone  # noqa: F401

    assert TrainConfig is refinedepth.TrainConfig
