"""Colour maps, error maps and picture grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refinedepth.errors import ConfigError, ShapeError
from refinedepth.visualize import COLORMAPS, colorize_depth, error_map, save_grid


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def test_luts_are_256_entries_with_the_published_end_points():
    for lut in COLORMAPS.values():
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert COLORMAPS["viridis"][0].tolist() == [0x44, 0x01, 0x54]
    assert COLORMAPS["viridis"][-1].tolist() == [0xFD, 0xE7, 0x25]
    assert COLORMAPS["magma"][-1].tolist() == [0xFC, 0xFD, 0xBF]
    # perceptual maps: lightness grows monotonically, so near/far reads correctly in grey too
    for name in ("viridis", "magma", "gray"):
        assert (np.diff(luminance(COLORMAPS[name])) >= -0.5).all(), name


def test_colorize_depth_ranges_and_invalid_pixels():
    depth = np.array([[1.0, 2.0, 3.0], [0.0, np.nan, np.inf]], np.float32)
    rgb = colorize_depth(depth)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == COLORMAPS["viridis"][0].tolist()
    assert rgb[0, 2].tolist() == COLORMAPS["viridis"][255].tolist()
    assert rgb[0, 1].tolist() == COLORMAPS["viridis"][128].tolist()
    assert (rgb[1] == 0).all()  # invalid: black
    fixed = colorize_depth(depth, vmin=0.0, vmax=10.0)
    assert fixed[0, 2].tolist() == COLORMAPS["viridis"][round(0.3 * 255)].tolist()
    clipped = colorize_depth(np.array([[20.0]]), vmin=0.0, vmax=10.0)
    assert clipped[0, 0].tolist() == COLORMAPS["viridis"][255].tolist()
    t = colorize_depth(torch.from_numpy(depth)[None], cmap="gray")  # [1,H,W] tensors accepted
    assert t[0, 2].tolist() == [255, 255, 255]
    mask = colorize_depth(depth, valid=np.array([[1, 0, 1], [0, 0, 0]]))
    assert (mask[0, 1] == 0).all() and mask[0, 2].tolist() == COLORMAPS["viridis"][255].tolist()
    assert (colorize_depth(np.zeros((2, 2))) == 0).all()  # nothing valid: all black, no error


def test_colorize_errors():
    with pytest.raises(ConfigError, match="unknown colour map 'jet'; expected one of viridis, magma, gray"):
        colorize_depth(np.ones((2, 2)), cmap="jet")
    with pytest.raises(ShapeError, match=r"depth: expected a map \[H,W\] \(or \[1,H,W\]\), got shape \[2, 2, 2\]"):
        colorize_depth(np.ones((2, 2, 2)))


def test_error_map():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])
    pred = np.array([[1.0, 3.0], [8.0, 5.0]])
    e = error_map(pred, gt, vmax=4.0)
    assert e.shape == (2, 2, 3)
    assert e[0, 0].tolist() == COLORMAPS["magma"][round(0.15 * 255)].tolist()  # zero error: not black
    assert e[1, 0].tolist() == COLORMAPS["magma"][255].tolist()  # error 4 = vmax
    assert (e[1, 1] == 0).all()  # invalid gt: black
    rel = error_map(pred, gt, vmax=1.0, kind="abs_rel")
    assert rel[1, 0].tolist() == COLORMAPS["magma"][255].tolist() and luminance(rel[0, 1]) < luminance(rel[1, 0])
    with pytest.raises(ShapeError, match=r"error_map: pred \[2, 2\] and gt \[3, 3\] differ"):
        error_map(pred, np.ones((3, 3)))


def test_save_grid_layout_and_labels(tmp_path):
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((10, 15), 128, np.uint8)  # another size, and greyscale: resized into the cell
    path = save_grid(tmp_path / "sub" / "grid.png", [[red, grey], [grey, red]], ["RGB", "depth"])
    out = np.asarray(Image.open(path))
    pad = 4
    top = 10 + 2 * pad  # the label band: font size clamps to 10 px for 20 px cells
    assert out.shape == (top + 2 * 20 + 3 * pad, 2 * 30 + 3 * pad, 3)
    assert (out[top + pad : top + pad + 20, pad : pad + 30] == [255, 0, 0]).all()
    y2, x2 = top + 2 * pad + 20, 2 * pad + 30
    assert (out[y2 : y2 + 20, x2 : x2 + 30] == [255, 0, 0]).all()
    assert (out[top + pad : top + pad + 20, x2 : x2 + 30] == 128).all()
    assert (out[:top] < 100).any()  # the labels were drawn
    plain = np.asarray(Image.open(save_grid(tmp_path / "plain.png", [[red]])))
    assert plain.shape == (20 + 2 * pad, 30 + 2 * pad, 3)
    rows = np.asarray(Image.open(save_grid(tmp_path / "rows.png", [[red]], row_labels=["sample 1"])))
    assert rows.shape[1] > plain.shape[1] and (rows[:, :pad + 10] < 100).any()


def test_save_grid_errors(tmp_path):
    with pytest.raises(ShapeError, match="row 0 image 1: expected uint8 pixels, got float32; colourise depth"):
        save_grid(tmp_path / "x.png", [[np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32)]])
    with pytest.raises(ShapeError, match="save_grid: no images given"):
        save_grid(tmp_path / "x.png", [])
    with pytest.raises(ShapeError, match="save_grid: 3 labels for 1 columns"):
        save_grid(tmp_path / "x.png", [[np.zeros((4, 4, 3), np.uint8)]], ["a", "b", "c"])
