"""The Laina .npy -> safetensors converter and exact loading of the NYU FCRN (SPEC §3.3).

The acceptance test compares the converted model with a forward pass written here from the
semantics of Laina's ``tensorflow/models/network.py`` and ``fcrn.py``, working directly on the
157-entry dict (HWIO weights), without the model code or the converter's name mapping.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from refinedepth.backbones.fcrn_laina import convert_laina_dict, laina_entries, load_laina_npy
from refinedepth.cli.main import cli
from refinedepth.errors import CheckpointError, ConfigError, FileFormatError
from refinedepth.registry import create_backbone

# --------------------------------------------------------------------------- an independent spec
# Written from the paper/SPEC, not from the converter: op name -> (kind, HWIO or channel shape).


def _reference_ops() -> dict[str, tuple[str, tuple[int, ...], bool]]:
    ops: dict[str, tuple[str, tuple[int, ...], bool]] = {
        "conv1": ("conv", (7, 7, 3, 64), True),
        "bn_conv1": ("bn", (64,), False),
    }
    cin = 64
    for stage, n, mid in ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)):
        for i, letter in enumerate("abcdef"[:n]):
            name = f"{stage}{letter}"
            if i == 0:
                ops[f"res{name}_branch1"] = ("conv", (1, 1, cin, 4 * mid), False)
                ops[f"bn{name}_branch1"] = ("bn", (4 * mid,), False)
            ops[f"res{name}_branch2a"] = ("conv", (1, 1, cin, mid), False)
            ops[f"res{name}_branch2b"] = ("conv", (3, 3, mid, mid), False)
            ops[f"res{name}_branch2c"] = ("conv", (1, 1, mid, 4 * mid), False)
            for b, ch in (("2a", mid), ("2b", mid), ("2c", 4 * mid)):
                ops[f"bn{name}_branch{b}"] = ("bn", (ch,), False)
            cin = 4 * mid
    ops["layer1"] = ("conv", (1, 1, 2048, 1024), True)
    ops["layer1_BN"] = ("bn", (1024,), False)
    cin = 1024
    for uid in ("2x", "4x", "8x", "16x"):
        cout = cin // 2
        for br in ("br1", "br2"):
            for part, (kh, kw) in zip("ABCD", ((3, 3), (2, 3), (3, 2), (2, 2))):
                ops[f"layer{uid}_{br}_Conv{part}"] = ("conv", (kh, kw, cin, cout), True)
            ops[f"layer{uid}_{br}_BN"] = ("bn", (cout,), False)
        ops[f"layer{uid}_Conv"] = ("conv", (3, 3, cout, cout), True)
        ops[f"layer{uid}_BN"] = ("bn", (cout,), False)
        cin = cout
    ops["ConvPred"] = ("conv", (3, 3, 64, 1), True)
    return ops


def _torch_name(op: str) -> str:
    """Where an op should land in the PyTorch FCRN, by pattern (independent of the converter)."""
    if op == "conv1":
        return "encoder.conv1"
    if op == "bn_conv1":
        return "encoder.bn_conv1"
    m = re.fullmatch(r"(res|bn)(\d)([a-f])_(branch\w+)", op)
    if m:
        prefix = "" if m[1] == "res" else "bn_"
        return f"encoder.res{m[2]}.{ord(m[3]) - ord('a')}.{prefix}{m[4]}"
    if op == "layer1":
        return "decoder.layer1"
    if op == "layer1_BN":
        return "decoder.layer1_bn"
    if op == "ConvPred":
        return "decoder.pred"
    m = re.fullmatch(r"layer(\d+)x_(.+)", op)
    k = {"2": 0, "4": 1, "8": 2, "16": 3}[m[1]]
    rest = {"Conv": "conv", "BN": "bn", "br1_BN": "br1_bn", "br2_BN": "br2_bn"}.get(m[2])
    if rest is None:
        br, part = re.fullmatch(r"(br[12])_Conv([A-D])", m[2]).groups()
        rest = f"{br}.conv_{part.lower()}"
    return f"decoder.up.{k}.{rest}"


def _fake_laina(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    data = {}
    for op, (kind, shape, biased) in _reference_ops().items():
        if kind == "conv":
            fan_in = shape[0] * shape[1] * shape[2]
            params = {"weights": (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)}
            if biased:
                params["biases"] = rng.standard_normal(shape[3]).astype(np.float32) * 0.1
        else:
            c = shape[0]
            params = {
                "mean": rng.standard_normal(c).astype(np.float32) * 0.1,
                "variance": rng.uniform(0.5, 1.5, c).astype(np.float32),
                "scale": rng.uniform(0.5, 1.5, c).astype(np.float32),
                "offset": rng.standard_normal(c).astype(np.float32) * 0.1,
            }
        data[op] = params
    return data


def _save_npy(path, data) -> None:
    np.save(path, data, allow_pickle=True)  # tests may write pickles; the library never does


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("laina")
    data = _fake_laina()
    npy = tmp / "NYU_ResNet-UpProj.npy"
    _save_npy(npy, data)
    out = tmp / "fcrn-nyu.safetensors"
    # Convert through the CLI (which calls convert_fcrn_tf): the whole path is exercised once.
    result = CliRunner().invoke(cli, ["convert", "fcrn-tf", str(npy), "--out", str(out), "--allow-pickle", "-q"])
    assert result.exit_code == 0, result.output
    model = create_backbone("fcrn", weights=out)
    return {"dir": tmp, "npy": npy, "out": out, "data": data, "model": model}


# --------------------------------------------------------------------------- the entry list


def test_entry_list_is_157_ops_91_conv_66_bn():
    entries = laina_entries()
    assert len(entries) == 157
    assert sum(e.kind == "conv" for e in entries) == 91
    assert sum(e.kind == "bn" for e in entries) == 66
    assert {e.name for e in entries} == set(_reference_ops())
    assert len({e.module for e in entries}) == 157
    biased = {e.name for e in entries if e.kind == "conv" and e.biased}
    assert biased == {op for op, (kind, _, b) in _reference_ops().items() if kind == "conv" and b}
    assert not any(name.startswith("res") for name in biased)


# --------------------------------------------------------------------------- conversion


def test_every_entry_lands_in_the_right_tensor(converted):
    state = converted["model"].state_dict()
    used = set()
    for op, params in converted["data"].items():
        base = _torch_name(op)
        if "weights" in params:
            w = torch.from_numpy(params["weights"])
            expected = w.permute(3, 2, 0, 1)  # HWIO -> OIHW, no flip
            assert torch.equal(state[f"{base}.weight"], expected), op
            # spot-check the layout by explicit indexing: out o, in i, row r, col c
            o, i, r, c = (s - 1 for s in expected.shape)
            assert state[f"{base}.weight"][o, i, r, c] == params["weights"][r, c, i, o]
            used.add(f"{base}.weight")
            if "biases" in params:
                assert torch.equal(state[f"{base}.bias"], torch.from_numpy(params["biases"])), op
                used.add(f"{base}.bias")
            else:
                assert f"{base}.bias" not in state, op
        else:
            for lp, tp in (("mean", "running_mean"), ("variance", "running_var"), ("scale", "weight"), ("offset", "bias")):
                assert torch.equal(state[f"{base}.{tp}"], torch.from_numpy(params[lp])), (op, lp)
                used.add(f"{base}.{tp}")
    assert used == {k for k in state if not k.endswith("num_batches_tracked")}


def test_converted_model_is_the_exact_architecture(converted):
    model = converted["model"]
    assert not model.training
    assert model.info.output_size == (128, 160)
    assert model.info.config["encoder"] == "laina-resnet50"
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 66 and all(m.eps == 1e-4 for m in bns)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 91
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 63_572_737


def test_metadata_records_source(converted):
    from safetensors import safe_open

    with safe_open(str(converted["out"]), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "refinedepth.fcrn"
    assert meta["source_file"] == "NYU_ResNet-UpProj.npy"
    assert len(meta["source_sha256"]) == 64


# --------------------------------------------------------------------------- network.py semantics
# An independent forward pass: Laina's TF graph, op by op, on the {op: {param: HWIO array}} dict.


def _tf_conv(x, params, stride=1, pads=None):
    """``Network.conv``: for 'SAME' it pads ``(k-1)//2`` zeros on *every* side with ``tf.pad`` and
    convolves 'VALID'; ``pads`` = (top, bottom, left, right) for an explicit ``tf.pad`` + 'VALID'.
    out[o, y, x] = b[o] + sum_{r,c,i} xp[i, s*y + r, s*x + c] * W[r, c, i, o]."""
    w = params["weights"]
    kh, kw = w.shape[:2]
    if pads is None:
        pads = ((kh - 1) // 2, (kh - 1) // 2, (kw - 1) // 2, (kw - 1) // 2)
    top, bottom, left, right = pads
    x = F.pad(x, (left, right, top, bottom))
    kernel = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))  # [o, i, r, c]
    bias = torch.from_numpy(params["biases"]) if "biases" in params else None
    return F.conv2d(x, kernel, bias, stride=stride)


def _tf_bn(x, params):
    """``Network.batch_normalization``: ``tf.nn.batch_normalization``, ``variance_epsilon=1e-4``."""
    c = lambda name: torch.from_numpy(params[name]).view(1, -1, 1, 1)  # noqa: E731
    return (x - c("mean")) / torch.sqrt(c("variance") + 1e-4) * c("scale") + c("offset")


def _tf_max_pool_same(x, k=3, s=2):
    """TensorFlow-native 'SAME' max pool (``Network.max_pool``): out = ceil(n / s), the padding
    split with the extra pixel after; padded pixels never win."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), k, s)


def _tf_unpool_as_conv(x, data, prefix):
    """``Network.unpool_as_conv``: A 'SAME' 3x3; B 2x3 on tf.pad [[1,0],[1,1]]; C 3x2 on
    [[1,1],[1,0]]; D 2x2 on [[1,0],[1,0]] (rows, cols), then dynamic_stitch into
    Y[2h,2w]=A, Y[2h+1,2w]=B, Y[2h,2w+1]=C, Y[2h+1,2w+1]=D, then BN."""
    a = _tf_conv(x, data[f"{prefix}_ConvA"])
    b = _tf_conv(x, data[f"{prefix}_ConvB"], pads=(1, 0, 1, 1))
    c = _tf_conv(x, data[f"{prefix}_ConvC"], pads=(1, 1, 1, 0))
    d = _tf_conv(x, data[f"{prefix}_ConvD"], pads=(1, 0, 1, 0))
    n, ch, h, w = a.shape
    y = torch.zeros(n, ch, 2 * h, 2 * w, dtype=a.dtype)
    y[:, :, 0::2, 0::2] = a
    y[:, :, 1::2, 0::2] = b
    y[:, :, 0::2, 1::2] = c
    y[:, :, 1::2, 1::2] = d
    return _tf_bn(y, data[f"{prefix}_BN"])


def _network_py_forward(data, rgb255, conv1_pads=None):
    """``ResNet50UpProj.setup`` (fcrn.py) on NCHW raw 0-255 RGB."""
    relu = torch.relu
    x = relu(_tf_bn(_tf_conv(rgb255, data["conv1"], 2, pads=conv1_pads), data["bn_conv1"]))
    x = _tf_max_pool_same(x)
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for i, letter in enumerate("abcdef"[:blocks]):
            op = f"{stage}{letter}"
            stride = 2 if i == 0 and stage > 2 else 1  # Caffe: stride on branch1 and branch2a
            y = _tf_conv(x, data[f"res{op}_branch2a"], stride)
            y = relu(_tf_bn(y, data[f"bn{op}_branch2a"]))
            y = relu(_tf_bn(_tf_conv(y, data[f"res{op}_branch2b"]), data[f"bn{op}_branch2b"]))
            y = _tf_bn(_tf_conv(y, data[f"res{op}_branch2c"]), data[f"bn{op}_branch2c"])
            if i == 0:
                x = _tf_bn(_tf_conv(x, data[f"res{op}_branch1"], stride), data[f"bn{op}_branch1"])
            x = relu(x + y)
    x = _tf_bn(_tf_conv(x, data["layer1"]), data["layer1_BN"])
    for uid in ("2x", "4x", "8x", "16x"):  # Network.up_project
        b1 = relu(_tf_unpool_as_conv(x, data, f"layer{uid}_br1"))
        b1 = _tf_bn(_tf_conv(b1, data[f"layer{uid}_Conv"]), data[f"layer{uid}_BN"])
        x = relu(b1 + _tf_unpool_as_conv(x, data, f"layer{uid}_br2"))
    # .conv(3, 3, 1, 1, 1, name='ConvPred'): Network.conv's default relu=True applies
    return relu(_tf_conv(x, data["ConvPred"]))


def _rel_l2(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_converted_model_equals_network_py_forward(converted):
    """Acceptance: 228x304 -> 128x160, converted model == network.py semantics to 1e-5."""
    model = converted["model"]
    rgb = torch.rand(1, 3, 228, 304, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(rgb)
        ref = _network_py_forward(converted["data"], rgb * 255.0)
    assert got.shape == ref.shape == (1, 1, 128, 160)
    assert torch.isfinite(ref).all()
    assert 0.2 < float((ref > 0).float().mean()) < 0.9  # the final ReLU is active, not all-zero
    assert _rel_l2(got, ref) < 1e-5


@pytest.mark.parametrize("size", [(64, 96), (67, 83)])
def test_network_py_padding_at_other_sizes(converted, size):
    """Even and odd sizes (odd ones exercise pool1's TF split); and the test can fail: the
    TF-native 'SAME' conv1 pad (2 before, 3 after), which the model once used, is far off."""
    model = converted["model"]
    rgb = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(rgb)
        ref = _network_py_forward(converted["data"], rgb * 255.0)
        if size == (64, 96):
            shifted = _network_py_forward(converted["data"], rgb * 255.0, conv1_pads=(2, 3, 2, 3))
    assert got.shape == ref.shape
    assert got.shape[-2:] == model.output_size_for(size)
    assert _rel_l2(got, ref) < 1e-5
    if size == (64, 96):
        assert shifted.shape == ref.shape
        assert _rel_l2(shifted, ref) > 0.05


# --------------------------------------------------------------------------- the up-projection


def _np_conv_phase(x, w, b, pads, kernel):
    """Explicit index arithmetic: out[o,h,w] = b[o] + sum_{i,r,c} xp[i,h+r,w+c] * W[r,c,i,o]."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    kh, kw = kernel
    _, H, W = x.shape
    out = np.zeros((w.shape[3], H, W))
    for r in range(kh):
        for c in range(kw):
            out += np.einsum("ihw,io->ohw", xp[:, r : r + H, c : c + W], w[r, c])
    return out + b[:, None, None]


def _np_upconv(x, data, prefix):
    """Laina's four phases with the NYU pads, interleaved Y[2h+dy, 2w+dx]."""
    spec = {"A": ((1, 1, 1, 1), (3, 3)), "B": ((1, 0, 1, 1), (2, 3)), "C": ((1, 1, 1, 0), (3, 2)), "D": ((1, 0, 1, 0), (2, 2))}
    phases = {}
    for part, (pads, kernel) in spec.items():
        p = data[f"{prefix}_Conv{part}"]
        phases[part] = _np_conv_phase(x, p["weights"].astype(np.float64), p["biases"].astype(np.float64), pads, kernel)
    _, H, W = x.shape
    y = np.zeros((phases["A"].shape[0], 2 * H, 2 * W))
    y[:, 0::2, 0::2] = phases["A"]  # Y[2h, 2w]
    y[:, 1::2, 0::2] = phases["B"]  # Y[2h+1, 2w]
    y[:, 0::2, 1::2] = phases["C"]  # Y[2h, 2w+1]
    y[:, 1::2, 1::2] = phases["D"]  # Y[2h+1, 2w+1]
    return y


def _np_bn(y, p, eps=1e-4):
    scale = p["scale"] / np.sqrt(p["variance"].astype(np.float64) + eps)
    return (y - p["mean"][:, None, None]) * scale[:, None, None] + p["offset"][:, None, None]


def _np_up_projection(x, data, uid):
    b1 = np.maximum(_np_bn(_np_upconv(x, data, f"layer{uid}_br1"), data[f"layer{uid}_br1_BN"]), 0)
    conv = data[f"layer{uid}_Conv"]
    b1 = _np_conv_phase(b1, conv["weights"].astype(np.float64), conv["biases"], (1, 1, 1, 1), (3, 3))
    b1 = _np_bn(b1, data[f"layer{uid}_BN"])
    b2 = _np_bn(_np_upconv(x, data, f"layer{uid}_br2"), data[f"layer{uid}_br2_BN"])
    return np.maximum(b1 + b2, 0)


def test_up_projection_matches_explicit_phase_arithmetic(converted):
    block = converted["model"].decoder.up[3]  # layer16x: 128 -> 64
    x = np.random.default_rng(1).standard_normal((128, 5, 7))
    expected = _np_up_projection(x, converted["data"], "16x")
    with torch.no_grad():
        got = block.double()(torch.from_numpy(x)[None])[0].numpy()
    block.float()
    assert got.shape == (64, 10, 14)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_nyu_pads_differ_from_unpool_plus_5x5(converted):
    """With top/left pads the fast block is not zero-unpooling + one 5x5 conv (SPEC §3.3.6)."""
    up = converted["model"].decoder.up[3].br1.double()
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 128, 4, 4)))
    with torch.no_grad():
        fast = up(x)
        # Scatter the four kernels into one 5x5 the way the bottom/right-padded variant implies.
        w5 = torch.zeros(64, 128, 5, 5, dtype=torch.float64)
        w5[:, :, 0::2, 0::2] = up.conv_a.weight
        w5[:, :, 1::2, 0::2] = up.conv_b.weight
        w5[:, :, 0::2, 1::2] = up.conv_c.weight
        w5[:, :, 1::2, 1::2] = up.conv_d.weight
        unpooled = torch.zeros(1, 128, 8, 8, dtype=torch.float64)
        unpooled[:, :, 0::2, 0::2] = x
        slow = torch.nn.functional.conv2d(unpooled, w5.flip(-1, -2), padding=2)
    converted["model"].decoder.up[3].float()
    assert fast.shape == slow.shape
    assert not torch.allclose(fast, slow, atol=1e-3)


# --------------------------------------------------------------------------- failures


def test_refuses_without_allow_pickle(converted):
    with pytest.raises(ConfigError, match="pickled.*--allow-pickle"):
        load_laina_npy(converted["npy"])
    result = CliRunner().invoke(
        cli, ["convert", "fcrn-tf", str(converted["npy"]), "--out", str(converted["dir"] / "x.safetensors")]
    )
    assert result.exit_code == 1
    assert "Error:" in result.output and "--allow-pickle" in result.output
    assert not (converted["dir"] / "x.safetensors").exists()


def _small_copy(data, drop=None, add=None, reshape=None):
    out = {k: dict(v) for k, v in data.items() if k != drop}
    if add:
        out[add] = {"weights": np.zeros((1, 1, 1, 1), np.float32)}
    if reshape:
        out[reshape]["weights"] = out[reshape]["weights"][..., :-1]
    return out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop": "res4c_branch2b"}, r"1 missing \(e.g. \['res4c_branch2b'\]\), 0 unexpected"),
        ({"add": "fc1000"}, r"0 missing \(e.g. \[\]\), 1 unexpected \(e.g. \['fc1000'\]\)"),
        ({"reshape": "layer8x_br2_ConvC"}, r"layer8x_br2_ConvC/weights has shape \[3, 2, 256, 127\], expected HWIO \[3, 2, 256, 128\]; the file does not match"),
    ],
)
def test_missing_extra_or_misshapen_entry_fails(converted, kwargs, message):
    with pytest.raises(FileFormatError, match=message):
        convert_laina_dict(_small_copy(converted["data"], **kwargs), source="x.npy")


def test_missing_param_and_nan_fail(converted):
    data = _small_copy(converted["data"])
    data["bn3a_branch1"] = {k: v for k, v in data["bn3a_branch1"].items() if k != "variance"}
    with pytest.raises(FileFormatError, match=r"op 'bn3a_branch1' has params \['mean', 'offset', 'scale'\]"):
        convert_laina_dict(data, source="x.npy")
    data = _small_copy(converted["data"])
    data["conv1"] = {"weights": data["conv1"]["weights"].copy(), "biases": data["conv1"]["biases"].copy()}
    data["conv1"]["biases"][3] = np.inf
    with pytest.raises(FileFormatError, match="conv1/biases contains NaN or inf"):
        convert_laina_dict(data, source="x.npy")


def test_truncated_or_foreign_npy_fails(converted, tmp_path):
    cut = tmp_path / "cut.npy"
    cut.write_bytes(converted["npy"].read_bytes()[:5000])
    with pytest.raises(FileFormatError, match=r"cut.npy: cannot read it as a pickled .npy dict .*truncated"):
        load_laina_npy(cut, allow_pickle=True)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((3, 3)))
    with pytest.raises(FileFormatError, match="expected a pickled dict .* got ndarray"):
        load_laina_npy(plain, allow_pickle=True)


def test_truncated_or_mislabelled_safetensors_fails(converted, tmp_path):
    raw = converted["out"].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match="cut.safetensors: .*truncated or corrupt"):
        create_backbone("fcrn", weights=cut)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(FileFormatError, match=r"expected FCRN weights .*got format='something-else'"):
        create_backbone("fcrn", weights=other)
    with pytest.raises(CheckpointError, match="weights file not found"):
        create_backbone("fcrn", weights=tmp_path / "nope.safetensors")


def test_weights_for_another_architecture_fail(converted):
    with pytest.raises(ConfigError, match="were made with encoder='laina-resnet50' but encoder='resnet18'"):
        create_backbone("fcrn", weights=converted["out"], encoder="resnet18")


def test_converted_file_gets_umask_permissions(converted, tmp_path):
    from refinedepth.backbones.fcrn_laina import convert_fcrn_tf

    old = os.umask(0o022)
    try:
        out = convert_fcrn_tf(converted["npy"], tmp_path / "w.safetensors", allow_pickle=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # safetensors alone would write 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_old_module_path_is_an_alias_for_one_release():
    import refinedepth.backbones.fcrn_laina as new
    import refinedepth.convert_fcrn as old

    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name)
