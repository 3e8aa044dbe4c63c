"""ONNX export of a refiner: normalisation inside the graph, dynamic batch and size, checked
against the PyTorch path with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinedepth.refiner.api import Refiner
from refinedepth.refiner.models import build_generator
from refinedepth.refiner.normalize import Normalization
from refinedepth.refiner.presets import get_preset

ort = pytest.importorskip("onnxruntime")


def make_refiner(
    preset: str, inputs: str = "rough", residual: bool = False, kind: str = "metric", upsample: str = "transposed"
) -> Refiner:
    import dataclasses

    p = get_preset(preset)
    gcfg = dataclasses.replace(p.generator_config(inputs, residual), upsample=upsample)
    gen = build_generator(gcfg, seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # non-trivial BatchNorm statistics, and a non-zero residual head
        for m in gen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
        for prm in gen.head.parameters():  # outputs that vary over the image (and residual != 0)
            prm.normal_(0, 0.5, generator=g)
    norm = Normalization(output_kind=kind, max_depth=10.0, target_low=1.0 if kind != "metric" else None,
                         target_high=6.0 if kind != "metric" else None)
    meta = {"refiner": {"normalization": norm.to_dict(), "inputs": inputs, "residual": residual,
                        "size": list(p.size), "preset": preset,
                        "generator": gcfg.to_dict()}}
    return Refiner(gen, meta)


TOL = 5e-5  # see run_both


def run_both(refiner: Refiner, path, sizes, rgb_sizes=None):
    """The largest difference between ONNX Runtime and PyTorch, in metres below 1 m and relative
    above (``|onnx - torch| / max(|torch|, 1)``). Their fp32 kernels round differently, and
    differently on different CPUs: about 1e-5 relative at the far end of a 10 m range through the
    guided preset's head (1.05e-4 m absolute at 8.75 m on an AMD EPYC). An export bug (a wrong
    pad, a missing normalisation, a resize with other corners) is 1e-3 or more."""
    from refinedepth.refiner.export import export_onnx

    export_onnx(refiner, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for k, (b, h, w) in enumerate(sizes):
        rough = 0.5 + 6 * torch.rand(b, 1, h, w, generator=g)
        feeds = {"rough": rough.numpy()}
        rgb = None
        if refiner.needs_rgb:
            rh, rw = rgb_sizes[k] if rgb_sizes else (h, w)
            rgb = torch.rand(b, 3, rh, rw, generator=g)
            feeds["rgb"] = rgb.numpy()
        (onnx_out,) = sess.run(None, feeds)
        # a guided head outputs at the image's (the RGB's) size; every other refiner at the rough map's
        guided = refiner.head is not None and refiner.head.config.guide != "none"
        out = tuple(rgb.shape[-2:]) if guided else (h, w)
        ref = refiner.refine_tensor(rough, rgb=rgb, out_size=out).numpy()
        assert onnx_out.shape == ref.shape == (b, 1, *out)
        worst = max(worst, float((np.abs(onnx_out - ref) / np.maximum(np.abs(ref), 1.0)).max()))
    return worst


@pytest.mark.parametrize("kind", ["metric", "disparity"])
def test_small_matches_pytorch_on_two_sizes(tmp_path, kind):
    refiner = make_refiner("small", residual=True, kind=kind)
    worst = run_both(refiner, tmp_path / "small.onnx", [(1, 64, 64), (3, 120, 160)])
    assert worst < TOL


def test_resize_decoder_exports(tmp_path):
    refiner = make_refiner("small", residual=True, upsample="resize")
    state = torch.get_rng_state()
    worst = run_both(refiner, tmp_path / "resize.onnx", [(1, 64, 64), (2, 96, 80)])
    assert worst < TOL
    assert torch.equal(torch.get_rng_state(), state)  # exporting leaves the caller's global RNG alone


def test_rough_rgb_refiner_with_rgb_of_another_size(tmp_path):
    refiner = make_refiner("small", inputs="rough+rgb")
    worst = run_both(refiner, tmp_path / "rgb.onnx", [(2, 48, 64), (1, 100, 90)], rgb_sizes=[(96, 128), (50, 45)])
    assert worst < TOL


@pytest.mark.parametrize("guide", ["rgb", "gray"])
def test_guided_preset_with_its_head_matches_pytorch_on_two_sizes(tmp_path, guide):
    from refinedepth.refiner.head import HeadConfig, build_head

    base = make_refiner("guided", residual=True, upsample="resize")
    head = build_head(HeadConfig(guide=guide), seed=5)
    with torch.no_grad():  # a head that changes the map (an untrained one is the identity)
        head.out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(6))
    meta = dict(base.meta)
    meta["refiner"] = {**meta["refiner"], "head": head.config.to_dict()}
    refiner = Refiner(base.generator, meta, head=head)
    # the image larger than the rough map, as in use, and smaller
    worst = run_both(refiner, tmp_path / "guided.onnx", [(1, 64, 64), (2, 75, 100), (1, 150, 200)],
                     rgb_sizes=[(64, 64), (150, 200), (75, 100)])
    assert worst < TOL
    plain = Refiner(base.generator, base.meta).refine_tensor(torch.full((1, 1, 64, 64), 3.0))
    rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(refiner.refine_tensor(torch.full((1, 1, 64, 64), 3.0), rgb=rgb), plain)


@pytest.mark.slow
def test_pix2pix_matches_pytorch(tmp_path):
    refiner = make_refiner("pix2pix")
    worst = run_both(refiner, tmp_path / "pix2pix.onnx", [(1, 256, 256), (2, 240, 320)])
    assert worst < TOL


def test_cli_export_writes_a_model_that_runs(tmp_path):
    from click.testing import CliRunner

    from refinedepth.cli.main import cli

    refiner = make_refiner("small", residual=True)
    run = refiner.save_pretrained(tmp_path / "run")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["rough"]
    rough = 0.5 + 5 * torch.rand(1, 1, 70, 90, generator=torch.Generator().manual_seed(5))
    (got,) = sess.run(None, {"rough": rough.numpy()})
    assert np.abs(got - refiner.refine_tensor(rough).numpy()).max() < 1e-4
    missing = CliRunner().invoke(cli, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "other.onnx")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    # an existing file is never replaced silently (an image passed as --out by mistake survives)
    again = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert again.exit_code == 1 and again.output.strip().splitlines()[-1] == (
        f"Error: output {str(out)!r} already exists; pass --overwrite to replace it or choose another --out")
    assert CliRunner().invoke(cli, ["export", str(run), "--out", str(out), "--overwrite"]).exit_code == 0
