"""Depth and RGB file IO: round trips, metadata, and one-line errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refinedepth.data.io import (
    image_size,
    png_depth_scale,
    read_depth,
    read_depth_png,
    read_npy,
    read_pfm,
    read_rgb,
    write_depth,
    write_depth_png,
    write_pfm,
)
from refinedepth.errors import DataError, FileFormatError


@pytest.fixture
def depth():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.3, 9.0, (7, 11)).astype(np.float32)
    d[0, 0] = 0.0
    d[1, 2] = np.nan
    return d


def test_png_round_trip_records_the_scale(tmp_path, depth):
    path = write_depth_png(tmp_path / "d.png", depth, scale=1000)
    assert Image.open(path).mode == "I;16"
    assert png_depth_scale(path) == 1000.0
    back = read_depth_png(path)
    valid = np.isfinite(depth) & (depth > 0)
    assert back.dtype == np.float32 and back.shape == (7, 11)
    assert np.abs(back[valid] - depth[valid]).max() <= 0.5e-3 + 1e-6
    assert back[0, 0] == 0 and back[1, 2] == 0  # invalid -> 0
    raw = np.asarray(Image.open(path))
    assert raw[2, 3] == round(float(depth[2, 3]) * 1000)
    # KITTI-style scale, and an explicit scale overriding the recorded one
    write_depth_png(tmp_path / "k.png", depth, scale=256)
    assert np.allclose(read_depth_png(tmp_path / "k.png")[valid], depth[valid], atol=1 / 512 + 1e-6)
    assert np.allclose(read_depth_png(tmp_path / "k.png", scale=512)[valid], depth[valid] / 2, atol=1 / 512)


def test_png_without_recorded_scale_needs_one(tmp_path):
    Image.fromarray(np.full((4, 5), 1500, np.uint16)).save(tmp_path / "plain.png")
    assert np.allclose(read_depth_png(tmp_path / "plain.png", scale=1000), 1.5)
    with pytest.raises(DataError, match=r"plain\.png: no depth scale given and none recorded in the PNG; pass scale="):
        read_depth_png(tmp_path / "plain.png")


def test_png_sentinels_are_invalid(tmp_path):
    Image.fromarray(np.array([[0, 1000, 65535]], np.uint16)).save(tmp_path / "s.png")
    assert read_depth_png(tmp_path / "s.png", scale=1000)[0].tolist() == pytest.approx([0.0, 1.0, 65.535])
    assert read_depth_png(tmp_path / "s.png", scale=1000, invalid=(65535,)).tolist() == [[0.0, 1.0, 0.0]]


def test_eight_bit_png_is_refused_with_the_file_name(tmp_path):
    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(FileFormatError) as err:
        read_depth_png(tmp_path / "eight.png", scale=1000)
    msg = str(err.value)
    assert str(tmp_path / "eight.png") in msg and "expected a 16-bit single-channel depth PNG, got 8-bit" in msg
    assert "\n" not in msg


def test_png_overflow_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"does not fit a 16-bit PNG at scale 1000 \(max 65\.535 m\)"):
        write_depth_png(tmp_path / "far.png", np.full((2, 2), 80.0), scale=1000)


def test_pfm_and_npy_round_trip(tmp_path, depth):
    write_pfm(tmp_path / "d.pfm", depth)
    back = read_pfm(tmp_path / "d.pfm")
    assert np.array_equal(back, depth, equal_nan=True)
    # rows are stored bottom-up in the format: the first row written is the image's last
    raw = np.frombuffer((tmp_path / "d.pfm").read_bytes()[-11 * 4 :], dtype="<f4")
    assert np.array_equal(raw, depth[0], equal_nan=True)
    write_depth(tmp_path / "d.npy", torch.from_numpy(depth)[None])  # [1,H,W] tensor accepted
    assert np.array_equal(read_npy(tmp_path / "d.npy"), depth, equal_nan=True)
    assert image_size(tmp_path / "d.npy") == (7, 11) and image_size(tmp_path / "d.pfm") == (7, 11)
    for ext in ("png", "npy", "pfm"):
        write_depth(tmp_path / f"x.{ext}", depth)
        assert read_depth(tmp_path / f"x.{ext}").shape == (7, 11)


def test_bad_files(tmp_path):
    (tmp_path / "bad.pfm").write_bytes(b"P6\n1 1\n255\n\x00\x00\x00")
    with pytest.raises(FileFormatError, match=r"bad\.pfm: not a PFM file"):
        read_pfm(tmp_path / "bad.pfm")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match=r"obj\.npy: not a plain \.npy array"):
        read_npy(tmp_path / "obj.npy")  # never unpickled
    with pytest.raises(FileFormatError, match=r"d\.exr: unsupported depth format '\.exr'"):
        read_depth(tmp_path / "d.exr")
    with pytest.raises(FileFormatError, match=r"missing\.png: file not found"):
        read_depth(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(FileFormatError, match=r"junk\.png: not a readable image"):
        read_rgb(tmp_path / "junk.png")


def test_read_rgb_converts(tmp_path):
    Image.fromarray(np.full((3, 4), 200, np.uint8)).save(tmp_path / "g.png")
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8 and (rgb == 200).all()


def test_truncated_jpeg_only_when_allowed(tmp_path):
    import io

    from PIL import ImageFile

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:-100])
    with pytest.raises(FileFormatError, match=r"cut\.jpg: not a readable image \(image file is truncated"):
        read_rgb(tmp_path / "cut.jpg")
    assert read_rgb(tmp_path / "cut.jpg", allow_truncated=True).shape == (32, 32, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # PIL's global switch is restored
