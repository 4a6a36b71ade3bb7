"""multibone.io ROI crop, square resize, uint8 conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multibone.errors import InputError
from multibone.io import crop_roi, normalize_roi, parse_roi, resize_square, roi_box, to_uint8


@pytest.fixture
def image() -> np.ndarray:
    """float32 (60, 100) whose value encodes its position: row * 1000 + column."""
    rows, cols = np.mgrid[0:60, 0:100]
    return (rows * 1000 + cols).astype(np.float32)


@pytest.mark.parametrize(
    "roi,margin,box",
    [
        (None, 0.0, (0, 0, 100, 60)),
        (None, 0.5, (0, 0, 100, 60)),
        ((math.nan,) * 4, 0.0, (0, 0, 100, 60)),  # a manifest row without a box
        ((10, 20, 30, 40), 0.0, (10, 20, 30, 40)),
        ((10, 20, 30, 40), 0.5, (0, 10, 40, 50)),  # 20 px box + 10 px each side
        ((90, 50, 100, 60), 1.0, (80, 40, 100, 60)),  # clipped at the image edge
        ((10.5, 20.2, 30.1, 40.9), 0.0, (10, 20, 31, 41)),  # rounded outwards
        ((-5, -5, 10, 10), 0.0, (0, 0, 10, 10)),  # partly outside: clipped
        ((0, 0, 100, 60), 0.1, (0, 0, 100, 60)),
    ],
)
def test_roi_box_and_crop(image, roi, margin, box):
    assert roi_box(image.shape, roi, margin) == box
    x0, y0, x1, y1 = box
    crop = crop_roi(image, roi, margin)
    np.testing.assert_array_equal(crop, image[y0:y1, x0:x1])
    assert crop.dtype == image.dtype
    crop[...] = -1  # a copy: the image is left unchanged
    assert image.min() == 0


@pytest.mark.parametrize(
    "roi,margin,match",
    [
        ((10, 10, 10, 20), 0.0, r"roi \(10, 10, 10, 20\): zero or negative area"),
        ((10, 20, 30, 5), 0.0, r"roi \(10, 20, 30, 5\): zero or negative area"),
        (
            (100, 0, 120, 10),
            0.0,
            r"roi \(100, 0, 120, 10\): lies outside the image \(100 wide x 60 high\)",
        ),
        ((-30, -30, 0, 0), 0.0, r"lies outside the image"),
        ((0, 70, 10, 80), 0.0, r"lies outside the image"),
        ((1, 2, 3), 0.0, r"roi \(1, 2, 3\): must be 4 numbers"),
        ((1, 2, math.nan, 4), 0.0, r"must be finite"),
        ((1, 2, math.inf, 4), 0.0, r"must be finite"),
        (("a", 2, 3, 4), 0.0, r"roi .*must be 4 numbers"),
        ((1, 2, 3, 4), -0.1, r"margin -0.1: must be a finite number >= 0"),
        ((1, 2, 3, 4), math.nan, r"margin nan"),
    ],
)
def test_bad_roi_names_the_roi(image, roi, margin, match):
    with pytest.raises(InputError, match=match):
        crop_roi(image, roi, margin)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1,2,3,4", (1.0, 2.0, 3.0, 4.0)),
        (" 10.5, 20 ,30,40 ", (10.5, 20.0, 30.0, 40.0)),
    ],
)
def test_parse_roi(text, expected):
    assert parse_roi(text) == expected


@pytest.mark.parametrize(
    "text,match",
    [
        ("1,2,3", r"four comma-separated numbers"),
        ("1;2;3;4", r"four comma-separated numbers"),
        ("", r"four comma-separated numbers"),
        ("1,2,x,4", r"four comma-separated numbers"),
        ("5,5,1,9", r"zero or negative area"),
        ("nan,nan,nan,nan", r"got NaN"),
    ],
)
def test_parse_roi_bad(text, match):
    with pytest.raises(InputError, match=match):
        parse_roi(text)


def test_normalize_roi_none_and_tuple():
    assert normalize_roi(None) is None
    assert normalize_roi(np.array([1, 2, 3, 4])) == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize(
    "shape,size", [((300, 200), 64), ((50, 70), 128), ((64, 64), 32), ((9, 9), 9)]
)
def test_resize_square_matches_torch_antialiased_bilinear(shape, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    img = rng.random(shape, dtype=np.float32)
    out = resize_square(img, size)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(img)[None, None],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0, 0].numpy()
    assert out.shape == (size, size) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_resize_square_antialias_removes_stripes():
    stripes = np.tile(np.array([0.0, 1.0], dtype=np.float32), (256, 128))  # 1-px columns
    out = resize_square(stripes, 32)
    assert np.abs(out - 0.5).max() < 0.02  # averaged (edges 0.018 off), not aliased to 0 or 1


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "64"])
def test_resize_square_bad_size(size):
    with pytest.raises(InputError, match="size"):
        resize_square(np.zeros((4, 4), np.float32), size)


def test_resize_square_bad_image():
    with pytest.raises(InputError, match=r"shape \(0, 4\)"):
        resize_square(np.zeros((0, 4), np.float32), 8)


def test_to_uint8():
    x = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(x), [[0, 0, 128, 255, 255, 0]])
    assert to_uint8(x).dtype == np.uint8
