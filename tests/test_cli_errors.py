"""Bad input and OS-level failures on the command line: one line, exit 1, no traceback (issue 13,
rows 6, 8, 9 and 10, and the picture count of ``evaluate --num-visuals``).

The tests run as root, where ``chmod 555`` stops nothing: a read-only or full disk is simulated by
making the library raise the ``OSError`` the kernel would give, and a path under a file (which
fails for root too) is used wherever the real thing is possible.
"""

from __future__ import annotations

import errno
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from refinedepth import registry
from refinedepth.cli.main import cli, os_error_line

from ._helpers_evaluate import degraded_cache, register_toy_backbone
from ._plugin_env import make_plugin_site

SMALL_FCRN = ["--backbone", "fcrn", "--backbone-arg", "encoder=resnet18", "--backbone-arg", "input_size=[32,32]"]


def _error(args: list[str], after_output: bool = False) -> str:
    """Run the CLI; assert exit 1 with one ``Error:`` line (the only line, unless
    ``after_output``: then the last) and no traceback; return that line."""
    result = CliRunner().invoke(cli, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    if after_output:
        lines = lines[-1:]
        assert sum(line.startswith("Error: ") for line in result.output.splitlines()) == 1
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory):
    return degraded_cache(tmp_path_factory.mktemp("c") / "test.h5", n=4)


@pytest.fixture
def a_file(tmp_path):
    """A plain file: any path under it cannot be created, not even by root."""
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


# -- row 8: sizes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("0x0", "Error: --size must be positive, got 0x0; use e.g. 256x256"),
        ("-64x64", "Error: --size must be HEIGHTxWIDTH such as 256x256, got '-64x64'"),
        ("abc", "Error: --size must be HEIGHTxWIDTH such as 256x256, got 'abc'"),
        ("60x60", "Error: size 60x60 must be a multiple of 64 for preset 'small'; choose e.g. 64x64 (--size 64x64)"),
        ("100x100", "Error: size 100x100 must be a multiple of 64 for preset 'small'; choose e.g. 128x128 (--size 128x128)"),
    ],
)
def test_train_refiner_bad_size_is_one_line(tmp_path, size, message):
    assert _error(["train-refiner", "--train", "t.h5", "--out", str(tmp_path / "r"), "--size", size]) == message
    assert not (tmp_path / "r").exists()


def test_cache_bad_sizes_are_one_line(tmp_path):
    base = ["cache", "--backbone", "fcrn", "--dataset", "synthetic", "--out", str(tmp_path / "x.h5")]
    assert _error([*base, "--size", "0x0"]) == "Error: --size must be positive, got 0x0; use e.g. 256x256"
    assert _error([*base, "--size", "full"]) == (
        "Error: --size must be native, gt or HEIGHTxWIDTH such as 256x256, got 'full'"
    )
    assert _error([*base, "--gt-size", "-1x5"]).startswith("Error: --gt-size must be HEIGHTxWIDTH")
    assert not (tmp_path / "x.h5").exists()


# -- row 9: dataset options ----------------------------------------------------------------------
def test_unknown_or_malformed_dataset_arg_is_one_line_with_did_you_mean(tmp_path):
    folder = tmp_path / "scans"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    out = str(tmp_path / "x.h5")
    base = ["cache", *SMALL_FCRN, "--out", out, "--device", "cpu", "-q"]
    line = _error([*base, "--dataset", "synthetic", "--dataset-arg", "colour=red"])
    assert line == (
        "Error: dataset 'synthetic' has no option 'colour'; did you mean one of: size, seed, train_count, "
        "test_count, sky, fov, offset, stop, every? (see docs/data.md)"
    )
    line = _error([*base, "--dataset", f"folder:{folder}", "--dataset-arg", "scal=1000"])
    assert line.startswith("Error: dataset 'folder' has no option 'scal'; did you mean 'scale'? (its options: scale,")
    line = _error([*base, "--dataset", "synthetic", "--dataset-arg", "size=abc"])
    assert line == "Error: dataset option size of 'synthetic' must be HEIGHTxWIDTH such as 256x256, got 'abc'"
    line = _error([*base, "--dataset", "synthetic", "--dataset-arg", "fov=wide"])
    assert line == "Error: dataset option fov='wide' of 'synthetic' must be a number"
    assert not os.path.exists(out)
    line = _error(["train-backbone", "--dataset", "synthetic", "--dataset-arg", "sise=[32,32]",
                   "--out", str(tmp_path / "run"), "-q"])
    assert "did you mean 'size'?" in line


def test_dataset_options_are_checked_in_the_library_and_sizes_parsed():
    from pathlib import Path

    from refinedepth.data import check_options, open_dataset
    from refinedepth.errors import ConfigError

    assert check_options("synthetic", {"size": "24x32", "seed": 3}) == {"size": (24, 32), "seed": 3}
    assert check_options("nyu:x.mat", {"splits": Path("s.mat"), "raw": True}) == {"splits": Path("s.mat"), "raw": True}
    assert open_dataset("synthetic", split="test", limit=1, size="24x32")[0].depth.shape == (24, 32)
    with pytest.raises(ConfigError, match="dataset option seed=1.5 of 'synthetic' must be an integer"):
        open_dataset("synthetic", seed=1.5)


# -- row 10: a plugin whose factory raises -------------------------------------------------------
@pytest.fixture
def raising_plugin(tmp_path, monkeypatch):
    site = make_plugin_site(tmp_path / "site", broken=False, raising=True)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("REFINEDEPTH_DISABLE_PLUGINS", raising=False)
    registry.refresh_plugins()
    yield "raising-net"
    sys.modules.pop("refinedepth_raising_plugin", None)
    registry.refresh_plugins()


def test_a_raising_plugin_factory_is_a_plugin_error_naming_it(raising_plugin, tmp_path):
    from refinedepth.errors import PluginError

    expected = (
        "backbone 'raising-net' from distribution 'refinedepth-raising-plugin' "
        "(refinedepth_raising_plugin:create) failed to build: ValueError: width must be even"
    )
    with pytest.raises(PluginError) as info:
        registry.create_backbone(raising_plugin)
    assert str(info.value).startswith(expected)
    assert _error(["backbones", "check", raising_plugin]).startswith(f"Error: {expected}")
    out = tmp_path / "x.h5"
    line = _error(["cache", "--backbone", raising_plugin, "--dataset", "synthetic", "--limit", "1",
                   "--out", str(out), "--device", "cpu", "-q"])
    assert line.startswith(f"Error: {expected}")


def test_a_factory_raising_our_own_error_keeps_its_message():
    from refinedepth.errors import ConfigError, PluginError
    from refinedepth.registry import register_backbone, unregister_backbone

    def picky(weights=None, width=8):
        raise ConfigError("width must be one of 8, 16")

    register_backbone("picky", picky, overwrite=True)
    try:
        with pytest.raises(ConfigError, match="^width must be one of 8, 16$"):
            registry.create_backbone("picky")
        with pytest.raises(PluginError, match=r"'picky' registered at runtime \(.*\) does not accept these options"):
            registry.create_backbone("picky", colour="red")
    finally:
        unregister_backbone("picky")


# -- row 6: OS-level failures on our files -------------------------------------------------------
def test_writing_under_a_file_is_one_line_naming_it(cache_file, a_file, tmp_path):
    line = _error(["cache", *SMALL_FCRN, "--dataset", "synthetic", "--dataset-arg", "size=[32,32]",
                   "--limit", "1", "--size", "32x32", "--out", str(a_file / "x.h5"), "--device", "cpu", "-q"])
    assert str(a_file) in line
    line = _error(["evaluate", "--cache", str(cache_file), "--json", str(a_file / "e.json"), "--device", "cpu", "-q"])
    assert str(a_file) in line and "choose another path" in line
    line = _error(["evaluate", "--cache", str(cache_file), "--csv", str(a_file / "e.csv"), "--device", "cpu", "-q"])
    assert str(a_file) in line
    line = _error(["train-refiner", "--train", str(cache_file), "--out", str(a_file / "run"), "--size", "64x64",
                   "--max-steps", "1", "--device", "cpu", "-q"])
    assert str(a_file) in line


def test_predict_under_a_file_is_one_line(a_file, tmp_path):
    from PIL import Image

    toy = register_toy_backbone()
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(image)
    line = _error(["predict", str(image), "--backbone", toy, "--out", str(a_file / "pred"), "--device", "cpu", "-q"])
    assert str(a_file) in line


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EACCES, "permission denied (errno EACCES); check its permissions"),
        (errno.EROFS, "read-only file system (errno EROFS); the file system is read-only"),
        (errno.ENOSPC, "no space left on device (errno ENOSPC); free some space"),
    ],
)
def test_permission_read_only_and_full_disk_are_one_line(cache_file, tmp_path, monkeypatch, code, advice):
    import refinedepth.report

    target = tmp_path / "ro" / "eval.json"

    def refuse(path, payload):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(refinedepth.report, "write_json", refuse)
    args = ["evaluate", "--cache", str(cache_file), "--json", str(target), "--device", "cpu", "-q"]
    line = _error(args, after_output=True)  # the table is printed before the JSON is written
    assert line.startswith(f"Error: {target}: ") and advice in line


def test_os_error_lines():
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "ro/x.h5")) == (
        "ro/x.h5: permission denied (errno EACCES); check its permissions (and its folder's), or choose "
        "another path"
    )
    # h5py's wording: no errno attribute, the file and errno in the message
    h5 = OSError("Unable to create file (unable to open file: name = 'ro/x.h5', errno = 30, "
                 "error message = 'Read-only file system', flags = 13, o_flags = 242)")
    assert os_error_line(h5).startswith("ro/x.h5: read-only file system (errno EROFS)")
    moved = OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")
    assert os_error_line(moved) is None  # not one we know what to advise on: keeps its traceback
    assert os_error_line(OSError("something else")) is None


def test_debug_variable_keeps_the_os_error_traceback(cache_file, tmp_path, monkeypatch):
    import refinedepth.report

    monkeypatch.setenv("REFINEDEPTH_DEBUG", "1")

    def refuse(path, payload):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(refinedepth.report, "write_json", refuse)
    result = CliRunner().invoke(cli, ["evaluate", "--cache", str(cache_file), "--json", str(tmp_path / "e.json"),
                                      "--device", "cpu", "-q"])
    assert isinstance(result.exception, PermissionError)


# -- evaluate --num-visuals counts pictures right; predict --overwrite reaches the library ----------
def test_num_visuals_reports_the_number_of_samples(cache_file, tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "--cache", str(cache_file), "--visuals", str(tmp_path / "v"),
                                      "--num-visuals", "3", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert f"wrote a picture grid of 3 sample(s) and 3 per-sample picture(s) to {tmp_path / 'v'}" in result.output
    assert len(list((tmp_path / "v").glob("sample_*.png"))) == 3


def test_predict_overwrite_reaches_predict_images(tmp_path, monkeypatch):
    import refinedepth.predict
    from refinedepth.predict import PredictResult

    seen = []

    def fake(inputs, backbone, out_dir, **kw):
        seen.append(kw)
        return PredictResult(out_dir=str(out_dir))

    monkeypatch.setattr(refinedepth.predict, "predict_images", fake)
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(cli, ["predict", "a.png", "--backbone", "fcrn", "--out", str(tmp_path), *extra])
        assert result.exit_code == 0, result.output
    assert seen[0].get("overwrite", False) is False and seen[1]["overwrite"] is True
