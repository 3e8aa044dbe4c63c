"""Every registered backbone honours the contract of SPEC §3.1.

Parametrised over ``list_backbones()``: the bundled ones and any installed plugin. Backbones that
cannot be built without options get them from ``_options``; a name this file does not know (a
third-party plugin) is built with its defaults.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refinedepth import create_backbone, list_backbones  # noqa: E402
from refinedepth.contract import check_backbone  # noqa: E402
from refinedepth.registry import OUTPUT_KINDS, BackboneInfo  # noqa: E402

from ._helpers_adapters import one_thread  # noqa: E402, F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from ._helpers_adapters import save_tiny_dpt

    return save_tiny_dpt(tmp_path_factory.mktemp("contract-hf") / "dpt")


@pytest.fixture(scope="module")
def files_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract-files")
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(root / f"sample-{i}.npy", rng.uniform(0.5, 9.5, (12, 16)).astype(np.float32))
    return root


def _options(name: str, request, monkeypatch) -> dict:
    if name == "fcrn":  # the exact model is covered by its own tests; a small encoder is enough
        return {
            "encoder": "resnet18",
            "decoder_channels": [64, 32, 16, 8, 4],
            "input_size": [96, 128],
        }
    if name == "hf":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        return {"model": str(request.getfixturevalue("hf_model_dir"))}
    if name == "files":
        return {"root": str(request.getfixturevalue("files_root"))}
    return {}


def _assert_info_complete(name: str, info: BackboneInfo) -> None:
    assert isinstance(info, BackboneInfo)
    assert info.name == name
    assert info.output_kind in OUTPUT_KINDS
    assert all(isinstance(s, int) and s > 0 for s in (*info.input_size, *info.output_size))
    low, high = info.value_range
    assert math.isfinite(low) and low < high
    assert info.description.strip()
    json.dumps(dict(info.config))  # recorded as JSON in caches


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name, request, monkeypatch):
    options = _options(name, request, monkeypatch)
    torch.manual_seed(0)
    model = create_backbone(name, **options)
    _assert_info_complete(name, model.info)
    report = check_backbone(name, **options)
    info = model.info
    assert report["output_shape"] == [2, 1, *info.output_size]
    assert math.isfinite(report["output_min"]) and math.isfinite(report["output_max"])

    # info.config recreates the backbone: what a cache records is enough to rebuild it
    again = create_backbone(name, **json.loads(json.dumps(dict(info.config))))
    assert again.info == info
