"""geometry: one resampling convention, checked against PIL and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from refinedepth.errors import ConfigError, ShapeError
from refinedepth.geometry import (
    center_crop,
    parse_hw,
    resize_depth,
    resize_mask,
    resize_rgb,
    resize_smooth,
)


@pytest.mark.parametrize(
    "value, expected",
    [("256x256", (256, 256)), ("480X640", (480, 640)), ("48,64", (48, 64)), ("3×4", (3, 4)),
     (64, (64, 64)), ((2, 3), (2, 3)), ([5, 7], (5, 7))],
)
def test_parse_hw_accepts(value, expected):
    assert parse_hw(value) == expected


@pytest.mark.parametrize("value", ["0x0", "-64x64", "abc", "64", "1x2x3", (0, 4), "64x", 1.5, (2.5, 3), True])
def test_parse_hw_refuses_with_the_option_name(value):
    with pytest.raises(ConfigError, match="--size"):
        parse_hw(value, "--size")


@pytest.mark.parametrize(
    "value, expected",
    [(np.array([240, 320]), (240, 320)), (torch.tensor([4, 5]), (4, 5)), (torch.Size([6, 7]), (6, 7)),
     ((2.0, 3.0), (2, 3)), ((np.int64(8), np.float32(9.0)), (8, 9)), (["240", "320"], (240, 320)),
     (np.int64(12), (12, 12)), (torch.tensor(3), (3, 3))],
)
def test_parse_hw_accepts_arrays_tensors_and_whole_floats(value, expected):
    out = parse_hw(value)
    assert out == expected and all(type(v) is int for v in out)


# Each odd input of the one-parser issue, with the whole message: the option, what is expected and
# what was received. Strings keep the short message the command-line errors have always had.
PAIR = "HEIGHTxWIDTH such as 256x256 or a pair of whole numbers [height, width]"


@pytest.mark.parametrize(
    "value, message",
    [
        ("48", "--size must be HEIGHTxWIDTH such as 256x256, got '48'"),  # not (4, 8)
        ((2.7, 3.9), f"--size must be {PAIR}, got (2.7, 3.9) (not a whole number: 2.7)"),  # not (2, 3)
        ([True, 5], f"--size must be {PAIR}, got [True, 5] (not a number: True is a boolean)"),  # not (1, 5)
        ((np.bool_(True), 5), f"--size must be {PAIR}, got (np.True_, 5) (not a number: True is a boolean)"),
        ((float("inf"), 3), f"--size must be {PAIR}, got (inf, 3) (not a whole number: inf)"),
        ((float("nan"), 3), f"--size must be {PAIR}, got (nan, 3) (not a whole number: nan)"),
        (b"48", f"--size must be {PAIR}, got b'48'"),  # not the character codes (52, 56)
        ({3: 4, 5: 6}, f"--size must be {PAIR}, got {{3: 4, 5: 6}}"),  # not its keys
        ((1, 2, 3), f"--size must be {PAIR}, got (1, 2, 3)"),
        ((0, 4), "--size must be positive, got 0x4; use e.g. 256x256"),
        ("²x3", "--size must be HEIGHTxWIDTH such as 256x256, got '²x3'"),
        (None, f"--size must be {PAIR}, got None"),
    ],
)
def test_parse_hw_odd_inputs_name_option_expected_and_received(value, message):
    with pytest.raises(ConfigError) as err:
        parse_hw(value, "--size")
    assert str(err.value) == message


def test_parse_hw_refuses_sets_and_iterators():
    # their two "sides" would be an accident of iteration order (and an iterator is used up)
    for value in ({3, 4}, iter([3, 4]), (v for v in (3, 4))):
        with pytest.raises(ConfigError, match=r"^--size must be HEIGHTxWIDTH .* got "):
            parse_hw(value, "--size")


def _centre_reference(depth, size):
    """Pixel-centre sampling from its definition, with Python's exact fractions."""
    from fractions import Fraction

    H, W = depth.shape
    h, w = size
    rows = [min(int((Fraction(i) + Fraction(1, 2)) * Fraction(H, h)), H - 1) for i in range(h)]
    cols = [min(int((Fraction(j) + Fraction(1, 2)) * Fraction(W, w)), W - 1) for j in range(w)]
    return depth[np.ix_(rows, cols)]


def test_nearest_is_pixel_centres():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 10, (48, 64)).astype(np.float32)
    for size in [(37, 53), (96, 128), (10, 10), (48, 64), (480, 640), (7, 3)]:
        ref = _centre_reference(depth, size)
        np.testing.assert_array_equal(resize_depth(depth, size), ref)
        t = resize_depth(torch.from_numpy(depth)[None, None], size)[0, 0].numpy()
        np.testing.assert_array_equal(t, ref)
    # where no output centre falls exactly on an input pixel edge, PIL and torch agree with it
    for size in [(96, 128), (240, 320)]:
        pil = np.asarray(Image.fromarray(depth, mode="F").resize(size[::-1], Image.NEAREST))
        np.testing.assert_array_equal(resize_depth(depth, size), pil)
        exact = F.interpolate(torch.from_numpy(depth)[None, None], size=size, mode="nearest-exact")[0, 0]
        np.testing.assert_array_equal(resize_depth(depth, size), exact.numpy())


def test_nearest_hand_case_and_dtypes():
    x = np.arange(4, dtype=np.float32)[None].repeat(2, 0)  # [[0 1 2 3], [0 1 2 3]]
    # 4 -> 2 columns: centres 0.5*2=1.0 -> 1, 1.5*2=3.0 -> 3 (plain 'nearest' would take 0, 2)
    np.testing.assert_array_equal(resize_depth(x, (2, 2)), [[1, 3], [1, 3]])
    mask = torch.tensor([[True, False, False, True]])
    out = resize_mask(mask, (1, 2))
    assert out.dtype == torch.bool and out.tolist() == [[False, True]]


def test_invalid_pixels_never_blend():
    depth = np.zeros((40, 40), np.float32)
    depth[:, 20:] = 5.0
    out = resize_depth(depth, (17, 23))
    assert set(np.unique(out)) <= {0.0, 5.0}


def test_smooth_matches_bilinear_and_antialias():
    x = torch.rand(2, 1, 30, 40, dtype=torch.float64)
    up = resize_smooth(x, (60, 80))
    np.testing.assert_allclose(up, F.interpolate(x, size=(60, 80), mode="bilinear", align_corners=False))
    # a constant stays constant, shrinking or growing, in any leading layout
    c = torch.full((3, 30, 40), 2.5)
    assert torch.allclose(resize_smooth(c, (7, 9)), torch.full((3, 7, 9), 2.5))
    assert resize_smooth(x, (30, 40)) is x


def test_rgb_numpy_close_to_pil_bilinear():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(img).resize((160, 120), Image.BOX))  # some spatial structure
    for size in [(60, 80), (228, 304)]:
        ours = resize_rgb(img, size)
        ref = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR))
        assert ours.dtype == np.uint8 and ours.shape == (*size, 3)
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 2


def test_center_crop_and_errors():
    a = np.arange(30).reshape(5, 6)
    np.testing.assert_array_equal(center_crop(a, (3, 2)), a[1:4, 2:4])
    t = torch.arange(30).reshape(1, 5, 6)
    assert torch.equal(center_crop(t, (3, 2)), t[..., 1:4, 2:4])
    with pytest.raises(ShapeError, match="larger than the image"):
        center_crop(a, (6, 6))
