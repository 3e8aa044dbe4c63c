"""Convert Laina et al.'s released TensorFlow FCRN weights (``NYU_ResNet-UpProj.npy``) to
safetensors for ``create_backbone("fcrn", weights=...)`` (SPEC §3.3). It lives next to the model it
fills, :mod:`refinedepth.backbones.fcrn`; ``refinedepth convert fcrn-tf`` calls
:func:`convert_fcrn_tf`.

The ``.npy`` holds a pickled dict ``{op_name: {param_name: ndarray}}``: convolutions have
``weights`` (HWIO) and, where biased, ``biases``; batch norms have ``mean``, ``variance``,
``scale`` and ``offset``. Loading a pickle can execute code, so :func:`load_laina_npy` refuses
unless ``allow_pickle=True`` (the CLI's ``--allow-pickle``); this module is the only place in
refinedepth that ever reads a pickle.

The 157 entries, in network order (91 convolutions + 66 batch norms):

* ``conv1`` (7x7/2, biased), ``bn_conv1``;
* for stages 2..5 with 3, 4, 6, 3 blocks lettered a, b, ...: ``res{s}{x}_branch2a/2b/2c`` and
  ``bn{s}{x}_branch2a/2b/2c``, plus ``res{s}a_branch1`` / ``bn{s}a_branch1`` on each stage's
  first block (no biases on any ``res`` conv);
* ``layer1`` (biased 1x1), ``layer1_BN``;
* for each up-projection id in 2x, 4x, 8x, 16x: ``layer{id}_br1_Conv{A,B,C,D}``,
  ``layer{id}_br1_BN``, ``layer{id}_Conv``, ``layer{id}_BN``, ``layer{id}_br2_Conv{A,B,C,D}``,
  ``layer{id}_br2_BN`` (all biased);
* ``ConvPred`` (biased 3x3 -> 1).
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinedepth.contract import replace_file
from refinedepth.errors import ConfigError, FileFormatError
from refinedepth.progress import ProgressCallback

UP_IDS = ("2x", "4x", "8x", "16x")
CONV_PARAMS = {"weights": "weight", "biases": "bias"}
BN_PARAMS = {"mean": "running_mean", "variance": "running_var", "scale": "weight", "offset": "bias"}


@dataclass(frozen=True)
class LainaEntry:
    """One op of Laina's model and the module it fills in :class:`~refinedepth.backbones.fcrn.FCRN`."""

    name: str  # op name in the .npy
    kind: str  # "conv" or "bn"
    module: str  # dotted module path in the PyTorch model
    biased: bool = False

    @property
    def params(self) -> dict[str, str]:
        """``{laina_param: torch_param}`` for this op."""
        if self.kind == "bn":
            return dict(BN_PARAMS)
        return dict(CONV_PARAMS) if self.biased else {"weights": "weight"}


def laina_entries() -> list[LainaEntry]:
    """The 157 ops of ``NYU_ResNet-UpProj.npy`` in network order."""
    entries = [LainaEntry("conv1", "conv", "encoder.conv1", biased=True), LainaEntry("bn_conv1", "bn", "encoder.bn_conv1")]
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
        for i in range(blocks):
            letter = string.ascii_lowercase[i]
            branches = (["branch1"] if i == 0 else []) + ["branch2a", "branch2b", "branch2c"]
            for branch in branches:
                base = f"encoder.res{stage}.{i}"
                entries.append(LainaEntry(f"res{stage}{letter}_{branch}", "conv", f"{base}.{branch}"))
                entries.append(LainaEntry(f"bn{stage}{letter}_{branch}", "bn", f"{base}.bn_{branch}"))
    entries.append(LainaEntry("layer1", "conv", "decoder.layer1", biased=True))
    entries.append(LainaEntry("layer1_BN", "bn", "decoder.layer1_bn"))
    for k, uid in enumerate(UP_IDS):
        base = f"decoder.up.{k}"
        for br in ("br1", "br2"):
            for part in "ABCD":
                entries.append(LainaEntry(f"layer{uid}_{br}_Conv{part}", "conv", f"{base}.{br}.conv_{part.lower()}", biased=True))
            entries.append(LainaEntry(f"layer{uid}_{br}_BN", "bn", f"{base}.{br}_bn"))
            if br == "br1":
                entries.append(LainaEntry(f"layer{uid}_Conv", "conv", f"{base}.conv", biased=True))
                entries.append(LainaEntry(f"layer{uid}_BN", "bn", f"{base}.bn"))
    entries.append(LainaEntry("ConvPred", "conv", "decoder.pred", biased=True))
    return entries


def load_laina_npy(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, dict[str, Any]]:
    """Read Laina's pickled ``.npy`` dict; refuses without ``allow_pickle=True``."""
    import numpy as np

    path = Path(path)
    if not allow_pickle:
        raise ConfigError(
            f"{path}: Laina's .npy is a pickled Python dict and unpickling can run arbitrary code; "
            "refinedepth only reads it when you pass --allow-pickle (allow_pickle=True) for a file you trust"
        )
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found; expected Laina's NYU_ResNet-UpProj.npy")
    try:
        # latin1: the released file was pickled by Python 2.
        raw = np.load(str(path), allow_pickle=True, encoding="latin1")
    except Exception as exc:  # numpy/pickle raise many types for truncated or foreign files
        raise FileFormatError(
            f"{path}: cannot read it as a pickled .npy dict ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); the file is truncated or not Laina's weights: download it again"
        ) from exc
    if isinstance(raw, np.ndarray) and raw.dtype == object and raw.shape == ():
        raw = raw.item()
    if not isinstance(raw, dict):
        raise FileFormatError(
            f"{path}: expected a pickled dict {{op_name: {{param: array}}}}, got {type(raw).__name__}; "
            "this is not Laina's TensorFlow weights file"
        )
    out: dict[str, dict[str, Any]] = {}
    for op, params in raw.items():
        op_name = op.decode("latin1") if isinstance(op, bytes) else str(op)
        if not isinstance(params, dict):
            raise FileFormatError(f"{path}: entry {op_name!r} should be a dict of arrays, got {type(params).__name__}")
        out[op_name] = {
            (k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in params.items()
        }
    return out


def convert_laina_dict(data: dict[str, dict[str, Any]], source: str = "<dict>", progress: ProgressCallback | None = None):
    """Map Laina's ops onto the exact FCRN's state dict, checking names and shapes.

    Returns ``{torch_name: float32 tensor}`` (OIHW weights, BN running stats and affine terms).
    Raises :class:`FileFormatError` on a missing or extra op/param, a shape mismatch, or
    non-finite values.
    """
    import numpy as np
    import torch

    from refinedepth.backbones.fcrn import FCRN

    with torch.device("meta"):
        reference = FCRN()
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    entries = laina_entries()
    names = {e.name for e in entries}
    missing = [e.name for e in entries if e.name not in data]
    extra = sorted(set(data) - names)
    if missing or extra:
        raise FileFormatError(
            f"{source}: expected the {len(entries)} ops of NYU_ResNet-UpProj.npy; {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}); this is not the FCRN NYU model"
        )
    # Check every name, dtype and shape before converting anything: errors come fast.
    for entry in entries:
        params = data[entry.name]
        wanted = entry.params
        if set(params) != set(wanted):
            raise FileFormatError(
                f"{source}: op {entry.name!r} has params {sorted(params)}, expected {sorted(wanted)}"
            )
        for lp, tp in wanted.items():
            array = params[lp]
            if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
                kind = getattr(array, "dtype", type(array).__name__)
                raise FileFormatError(f"{source}: {entry.name}/{lp} is {kind}, expected a float array")
            o_shape = shapes[f"{entry.module}.{tp}"]
            if entry.kind == "conv" and lp == "weights":
                o, i, kh, kw = o_shape
                expected, label = (kh, kw, i, o), "expected HWIO "
            else:
                expected, label = o_shape, "expected "
            if array.shape != expected:
                raise FileFormatError(
                    f"{source}: {entry.name}/{lp} has shape {list(array.shape)}, {label}{list(expected)}; "
                    "the file does not match the FCRN NYU architecture"
                )
    state: dict[str, torch.Tensor] = {}
    for done, entry in enumerate(entries, start=1):
        for lp, tp in entry.params.items():
            tensor = torch.from_numpy(np.asarray(data[entry.name][lp], dtype=np.float32))
            if entry.kind == "conv" and lp == "weights":
                tensor = tensor.permute(3, 2, 0, 1)  # HWIO -> OIHW, no spatial flip
            if not torch.isfinite(tensor).all():
                raise FileFormatError(f"{source}: {entry.name}/{lp} contains NaN or inf values")
            state[f"{entry.module}.{tp}"] = tensor.contiguous()
        if progress is not None:
            progress(done, len(entries), desc="convert")
    expected_keys = {k for k in shapes if not k.endswith("num_batches_tracked")}
    if set(state) != expected_keys:  # a bug in the table, not in the file
        raise AssertionError(f"mapping does not cover the model: {sorted(expected_keys ^ set(state))[:5]}")
    return state


def convert_fcrn_tf(
    npy_path: str | os.PathLike,
    out_path: str | os.PathLike,
    allow_pickle: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Convert ``NYU_ResNet-UpProj.npy`` to a safetensors file loadable by ``create_backbone("fcrn")``.

    Returns the written path. The metadata records the format, the architecture config, the
    source file's name and sha256.
    """
    from safetensors.torch import save_file

    from refinedepth.backbones.fcrn import DEFAULTS, EXACT_ENCODER, weights_metadata

    npy_path, out_path = Path(npy_path), Path(out_path)
    data = load_laina_npy(npy_path, allow_pickle=allow_pickle)
    state = convert_laina_dict(data, source=str(npy_path), progress=progress)
    digest = hashlib.sha256()
    with open(npy_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    config = {"encoder": EXACT_ENCODER, "encoder_args": {}, "input_size": list(DEFAULTS["input_size"]), "max_depth": 10.0}
    meta = weights_metadata(
        config,
        source="Laina et al. 2016 TensorFlow release",
        source_file=npy_path.name,
        source_sha256=digest.hexdigest(),
        converter="refinedepth convert fcrn-tf",
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    replace_file(tmp, out_path)
    return out_path


__all__ = ["LainaEntry", "laina_entries", "load_laina_npy", "convert_laina_dict", "convert_fcrn_tf", "UP_IDS"]
