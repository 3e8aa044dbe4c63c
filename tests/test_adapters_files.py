"""The ``files`` adapter: predictions another program wrote, matched to samples by id."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refinedepth import create_backbone  # noqa: E402
from refinedepth.data.io import write_depth_png, write_pfm  # noqa: E402
from refinedepth.errors import ConfigError, DataError, ShapeError  # noqa: E402

from ._helpers_adapters import one_thread  # noqa: E402, F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _ramp(h: int, w: int, offset: float = 1.0) -> np.ndarray:
    """An asymmetric map (rows and columns differ) so flips and transposes show."""
    return (offset + np.arange(h * w, dtype=np.float32).reshape(h, w) / 10).astype(np.float32)


@pytest.fixture
def npy_root(tmp_path):
    root = tmp_path / "preds"
    (root / "scene").mkdir(parents=True)
    np.save(root / "c.npy", _ramp(6, 8, 1.0))
    np.save(root / "scene" / "a.npy", _ramp(6, 8, 2.0))
    np.save(root / "scene" / "b.npy", _ramp(6, 8, 3.0)[None])  # [1,H,W] is accepted too
    return root


def _rgb(batch: int, size=(6, 8)) -> torch.Tensor:
    return torch.rand(batch, 3, *size)


def test_npy_predictions_by_id_with_nested_ids(npy_root):
    model = create_backbone("files", root=str(npy_root))
    assert model.accepts_ids
    info = model.info
    assert (info.name, info.output_kind) == ("files", "metric")
    assert info.output_size == (6, 8) and info.input_size == (6, 8)  # from the first file
    assert model.available_ids() == ["c", "scene/a", "scene/b"]
    out = model(_rgb(3), ids=["scene/b", "c", "scene/a"])
    assert out.shape == (3, 1, 6, 8) and out.dtype == torch.float32
    np.testing.assert_array_equal(out[0, 0].numpy(), _ramp(6, 8, 3.0))
    np.testing.assert_array_equal(out[1, 0].numpy(), _ramp(6, 8, 1.0))
    np.testing.assert_array_equal(out[2, 0].numpy(), _ramp(6, 8, 2.0))


def test_missing_prediction_names_the_id(npy_root):
    model = create_backbone("files", root=str(npy_root))
    with pytest.raises(DataError) as err:
        model(_rgb(2), ids=["c", "scene/zzz"])
    assert str(err.value) == (
        f"files: no prediction for sample 'scene/zzz' under {npy_root.resolve()} "
        "(looked for {zzz.npy,zzz.pfm,zzz.png}); write one for every sample of the dataset "
        "split, or check root= and pattern="
    )


def test_predictions_resized_bilinear_to_output_size(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[2.0, 6.0]], dtype=np.float32))
    model = create_backbone("files", root=str(tmp_path), output_size=[1, 4])
    out = model(_rgb(1), ids=["x"])
    # bilinear 1x2 -> 1x4 with half-pixel centres: a, 0.75a + 0.25b, 0.25a + 0.75b, b
    np.testing.assert_allclose(out[0, 0].numpy(), [[2.0, 3.0, 5.0, 6.0]])


def test_png_scale_round_trip(tmp_path):
    depth = _ramp(5, 7, 0.5)
    write_depth_png(tmp_path / "kitti.png", depth, scale=256)  # scale recorded in the file
    model = create_backbone("files", root=str(tmp_path))
    out = model(_rgb(1, (5, 7)), ids=["kitti"])[0, 0].numpy()
    np.testing.assert_allclose(out, depth, atol=0.5 / 256)
    assert not np.array_equal(out, depth)  # really quantised at 1/256 m, not stored as floats


def test_png_without_recorded_scale_defaults_to_millimetres(tmp_path):
    from PIL import Image

    raw = np.array([[1000, 2500], [0, 65535]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "mm.png")  # a plain 16-bit PNG, no metadata
    default = create_backbone("files", root=str(tmp_path))(_rgb(1, (2, 2)), ids=["mm"])
    np.testing.assert_allclose(default[0, 0].numpy(), [[1.0, 2.5], [0.0, 65.535]], rtol=1e-6)
    explicit = create_backbone("files", root=str(tmp_path), scale=256)(_rgb(1, (2, 2)), ids=["mm"])
    np.testing.assert_allclose(explicit[0, 0].numpy(), raw / 256.0, rtol=1e-6)


def test_pfm_round_trip(tmp_path):
    depth = _ramp(4, 9, 7.25)
    write_pfm(tmp_path / "frame-000001.pfm", depth)
    model = create_backbone("files", root=str(tmp_path))
    out = model(_rgb(1, (4, 9)), ids=["frame-000001"])
    np.testing.assert_array_equal(out[0, 0].numpy(), depth)  # exact floats, orientation kept


def test_extension_priority_and_pattern(tmp_path):
    np.save(tmp_path / "s.npy", np.full((2, 2), 1.0, np.float32))
    write_depth_png(tmp_path / "s.png", np.full((2, 2), 2.0, np.float32))
    rgb = _rgb(1, (2, 2))
    assert float(create_backbone("files", root=str(tmp_path))(rgb, ids=["s"]).mean()) == 1.0
    by_png = create_backbone("files", root=str(tmp_path), extensions="png,npy")
    assert float(by_png(rgb, ids=["s"]).mean()) == 2.0

    (tmp_path / "nested" / "s").mkdir(parents=True)
    np.save(tmp_path / "nested" / "s" / "s.npy", np.full((2, 2), 4.0, np.float32))
    by_name = create_backbone("files", root=str(tmp_path), pattern="nested/{id}/{name}.npy")
    assert by_name.available_ids() == ["s"]
    assert float(by_name(rgb, ids=["s"]).mean()) == 4.0

    np.save(tmp_path / "s_pred.npy", np.full((2, 2), 3.0, np.float32))
    patterned = create_backbone("files", root=str(tmp_path), pattern="{id}_pred.npy")
    assert patterned.available_ids() == ["s"]
    assert float(patterned(rgb, ids=["s"]).mean()) == 3.0


def test_nonfinite_values(tmp_path):
    np.save(tmp_path / "bad.npy", np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float32))
    model = create_backbone("files", root=str(tmp_path))
    with pytest.raises(DataError) as err:
        model(_rgb(1, (2, 2)), ids=["bad"])
    assert str(err.value) == (
        f"files: prediction for sample 'bad' ({tmp_path.resolve() / 'bad.npy'}) has 2 NaN/inf "
        "values; write 0 for invalid pixels or pass nonfinite=zero"
    )
    zeroed = create_backbone("files", root=str(tmp_path), nonfinite="zero")
    np.testing.assert_array_equal(
        zeroed(_rgb(1, (2, 2)), ids=["bad"])[0, 0].numpy(), [[1, 0], [0, 2]]
    )


def test_ids_are_required_and_must_match_the_batch(npy_root):
    model = create_backbone("files", root=str(npy_root))
    with pytest.raises(ConfigError) as err:
        model(_rgb(1))
    assert str(err.value) == (
        "files: predictions are matched to samples by id; call model(rgb, ids=[...]) with the "
        "dataset's sample ids"
    )
    with pytest.raises(ShapeError) as err:
        model(_rgb(2), ids=["c"])
    assert (
        str(err.value) == "files: got 1 sample ids for a batch of 2 images; pass one id per image"
    )
    with pytest.raises(DataError, match="ids must be relative paths without '..'"):
        model(_rgb(1), ids=["../escape"])


def test_option_errors(tmp_path):
    with pytest.raises(ConfigError) as err:
        create_backbone("files")
    assert str(err.value) == (
        "files: no root given; pass root=DIR (the directory of predictions), e.g. "
        "--backbone-arg root=preds/"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as err:
        create_backbone("files", root=str(tmp_path / "empty"))
    assert str(err.value) == (
        f"files: no predictions under {(tmp_path / 'empty').resolve()} matching "
        "{id}.npy|pfm|png; write them there or pass output_size=[H,W]"
    )
    with pytest.raises(ConfigError) as err:
        create_backbone("files", root=str(tmp_path), pattern="{id}.tiff")
    assert str(err.value) == (
        "files: pattern '{id}.tiff' must end in .npy, .pfm or .png (e.g. pattern={id}.npy)"
    )
    with pytest.raises(ConfigError) as err:
        create_backbone("files", root=str(tmp_path), pattern="{id}_{model}.npy")
    assert str(err.value) == (
        "files: pattern '{id}_{model}.npy' may only use the fields {id} and {name} "
        "(e.g. pattern={id}_depth.png)"
    )
    with pytest.raises(ConfigError, match="output_kind must be one of metric, relative, disparity"):
        create_backbone("files", root=str(tmp_path), output_kind="depth", output_size=[2, 2])


def test_config_recreates_the_backbone(npy_root):
    model = create_backbone("files", root=str(npy_root), output_kind="relative", output_size=[3, 4])
    config = json.loads(json.dumps(model.info.config))  # what a cache records
    again = create_backbone("files", **config)
    assert again.info == model.info
    rgb = _rgb(2)
    torch.testing.assert_close(again(rgb, ids=["c", "scene/a"]), model(rgb, ids=["c", "scene/a"]))


def test_contract_with_ids(npy_root):
    """The contract of SPEC §3.1, called as the cache calls an ``accepts_ids`` backbone."""
    model = create_backbone("files", root=str(npy_root), output_size=[4, 5])
    ids = model.available_ids()[:2]
    out = model(torch.rand(2, 3, *model.info.input_size), ids=ids)
    assert out.shape == (2, 1, *model.info.output_size)
    assert torch.isfinite(out).all()


def test_cache_built_from_files_matches_the_predictions(tmp_path):
    """End to end: the cache passes the dataset's sample ids and stores our predictions."""
    cache_build = pytest.importorskip("refinedepth.cache.build")
    from refinedepth.cache import open_cache
    from refinedepth.data import open_dataset

    ds = open_dataset("synthetic", split="test", limit=3)
    root = tmp_path / "preds"
    root.mkdir()
    for i in range(len(ds)):
        sample = ds[i]
        np.save(root / f"{sample.id}.npy", np.full(sample.depth.shape, i + 1.5, np.float32))
    out = tmp_path / "files.h5"
    cache_build.build_cache(
        out,
        backbone="files",
        backbone_args={"root": str(root)},
        dataset="synthetic",
        split="test",
        limit=3,
        size=(16, 24),
        batch_size=2,
        workers=0,
        device="cpu",
    )
    cache = open_cache(out)
    assert len(cache) == 3
    for i in range(3):
        record = cache[i]
        assert record["id"] == ds[i].id
        # a constant map stays constant, to float32 rounding (the antialiased shrink sums weights)
        np.testing.assert_allclose(np.asarray(record["rough"]), np.full((1, 16, 24), i + 1.5), rtol=1e-6)


def test_kitti_command_of_the_docs_scores_devkit_pngs_in_metres(tmp_path):
    """docs/backbones.md's KITTI command on KITTI-style files: ground truth and predictions are
    uint16 metres x 256 without a recorded scale (as the devkit writes them). Perfect predictions
    score abs_rel 0 under the Garg protocol; with the ground truth read as millimetres they gave 2.9."""
    from click.testing import CliRunner
    from PIL import Image

    from refinedepth.cli.main import cli

    h, w = 40, 132
    depth = np.where(np.arange(w)[None, :] % 7 == 0, 0.0, 20.0 + np.arange(h)[:, None] * 0.25)  # 0: invalid
    raw = np.round(depth * 256).astype(np.uint16)
    for sub in ("kitti/rgb", "kitti/depth", "kitti-preds"):
        (tmp_path / sub).mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((h, w, 3), 40 * k, np.uint8)).save(tmp_path / "kitti" / "rgb" / f"{k:06d}.png")
        Image.fromarray(raw).save(tmp_path / "kitti" / "depth" / f"{k:06d}.png")
        Image.fromarray(np.where(raw > 0, raw, 5120).astype(np.uint16)).save(tmp_path / "kitti-preds" / f"{k:06d}_depth.png")
    runner = CliRunner()
    result = runner.invoke(cli, [
        "cache", "--backbone", "files", "--backbone-arg", f"root={tmp_path / 'kitti-preds'}",
        "--backbone-arg", "pattern={id}_depth.png", "--backbone-arg", "scale=256",
        "--dataset", f"folder:{tmp_path / 'kitti'}", "--dataset-arg", "protocol=kitti", "--split", "all",
        "--out", str(tmp_path / "kitti-test.h5"), "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["evaluate", "--cache", str(tmp_path / "kitti-test.h5"), "--device", "cpu",
                                 "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["protocol"] == "kitti" and report["count"] == 3
    assert report["stages"][0]["name"] == "rough"
    rough = report["stages"][0]["metrics"]
    assert rough["abs_rel"] < 1e-6 and rough["d1"] == 1.0
