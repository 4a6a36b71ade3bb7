"""Overlays, colormaps and lesion-box energy of multibone.explain.overlay."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from multibone.errors import InputError
from multibone.explain import (
    box_area_share,
    box_in_crop,
    cam_energy_in_box,
    colormap,
    overlay,
    resize_map,
    save_png,
)


def _ramp(h: int = 8, w: int = 12) -> np.ndarray:
    return np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def test_colormap_matches_matplotlib():
    cam = _ramp()
    ref = (matplotlib.colormaps["viridis"](cam)[..., :3] * 255 + 0.5).astype(np.uint8)
    out = colormap(cam, "viridis")
    assert out.dtype == np.uint8 and out.shape == (8, 12, 3)
    np.testing.assert_array_equal(out, ref)


def test_overlay_whole_image_blend():
    img = np.full((16, 24), 100, np.uint8)
    cam = _ramp(4, 6)
    out = overlay(img, cam, alpha=0.0)
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    assert (out == 100).all()  # alpha 0: image only
    full = overlay(img, cam, alpha=1.0, cmap="gray")
    assert full[0, 0, 0] == 0 and full[0, -1, 0] == 255  # map only, resized to the image
    half = overlay(img, np.ones((4, 6), np.float32), alpha=0.5, cmap="gray")
    assert (half == round(0.5 * 100 + 0.5 * 255)).all()


def test_overlay_weighted_keeps_image_where_map_is_zero():
    img = np.full((10, 10), 80, np.uint8)
    cam = np.zeros((10, 10), np.float32)
    cam[:, 5:] = 1.0
    out = overlay(img, cam, alpha=0.5, cmap="gray", weighted=True)
    assert (out[:, :4] == 80).all()  # map 0: radiograph unchanged
    assert (out[:, 6:] == round(0.5 * 80 + 0.5 * 255)).all()


def test_overlay_in_box_leaves_outside_unchanged_and_input_alone():
    img = (np.arange(40 * 50) % 251).astype(np.uint8).reshape(40, 50)
    before = img.copy()
    box = (10, 5, 30, 25)
    out = overlay(img, np.ones((7, 7), np.float32), alpha=0.6, box=box, outline=True)
    np.testing.assert_array_equal(img, before)
    mask = np.zeros((40, 50), bool)
    mask[5:25, 10:30] = True
    np.testing.assert_array_equal(out[~mask], np.repeat(img[..., None], 3, 2)[~mask])
    assert (out[5, 10:30] == 255).all()  # the outline
    assert not np.array_equal(out[10:20, 15:25], np.repeat(img[10:20, 15:25, None], 3, 2))


@pytest.mark.parametrize(
    "img, cam, kwargs, match",
    [
        (np.zeros((8, 8), np.float32), np.zeros((4, 4)), {}, "uint8"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((4, 4)), {}, r"\(H, W, 3\)"),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 4, 1)), {}, "2-D"),
        (np.zeros((8, 8), np.uint8), np.full((4, 4), np.nan), {}, "NaN"),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 4)), {"alpha": 1.5}, r"alpha .* \[0, 1\]"),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 4)), {"cmap": "nope"}, "colormap 'nope'"),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 4)), {"box": (5, 5, 2, 9)}, "empty"),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 4)), {"box": (20, 20, 30, 30)}, "outside"),
    ],
)
def test_overlay_bad_input(img, cam, kwargs, match):
    with pytest.raises(InputError, match=match):
        overlay(img, cam, **kwargs)


def test_resize_map_keeps_range():
    cam = _ramp(3, 3)
    up = resize_map(cam, (30, 20))
    assert up.shape == (30, 20) and up.min() >= 0 and up.max() <= 1
    down = resize_map(_ramp(64, 64), (8, 8))
    assert down.shape == (8, 8)


def test_save_png_roundtrip(tmp_path):
    rgb = colormap(_ramp())
    path = save_png(rgb, tmp_path / "sub" / "cam.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    with pytest.raises(InputError, match="RGB uint8"):
        save_png(rgb[..., 0], tmp_path / "x.png")


def test_energy_uniform_map_equals_area_share():
    cam = np.ones((40, 60), np.float32)
    box = (6, 4, 36, 24)
    assert cam_energy_in_box(cam, box) == pytest.approx(30 * 20 / (40 * 60))
    assert box_area_share(box, cam.shape) == pytest.approx(30 * 20 / (40 * 60))


def test_energy_concentrated_and_partial():
    cam = np.zeros((20, 20), np.float32)
    cam[5:10, 5:10] = 1.0
    assert cam_energy_in_box(cam, (5, 5, 10, 10)) == 1.0
    assert cam_energy_in_box(cam, (0, 0, 7.4, 20)) == pytest.approx(2 / 5)  # rounded to x < 7
    assert cam_energy_in_box(cam, (-5, -5, 50, 50)) == 1.0  # clipped to the map
    assert np.isnan(cam_energy_in_box(np.zeros((4, 4)), (0, 0, 2, 2)))


@pytest.mark.parametrize(
    "cam, box, match",
    [
        (np.ones((4, 4)), (0, 0, 0, 2), "empty"),
        (np.ones((4, 4)), (0, float("nan"), 2, 2), "missing or infinite"),
        (np.ones((4, 4)), (0, 0, 2), r"\(x0, y0, x1, y1\)"),
        (np.ones((4, 4)), (10, 10, 12, 12), "outside the 4x4"),
        (-np.ones((4, 4)), (0, 0, 2, 2), "non-negative"),
    ],
)
def test_energy_bad_input(cam, box, match):
    with pytest.raises(InputError, match=match):
        cam_energy_in_box(cam, box)


def test_box_in_crop_with_io_roi_box():
    from multibone.io import crop_roi, resize_square, roi_box

    pixels = np.zeros((50, 80), np.float32)
    lesion = (10, 10, 30, 20)
    pixels[10:20, 10:30] = 1.0
    crop_box = roi_box(pixels.shape, lesion, 0.5)
    assert crop_box == (0, 5, 40, 25)
    box = box_in_crop(lesion, crop_box, 64)
    assert box == (16.0, 16.0, 48.0, 48.0)
    crop = resize_square(crop_roi(pixels, lesion, margin=0.5), 64)
    # the lesion's pixels land inside the mapped box
    assert cam_energy_in_box(crop, box) > 0.95
    with pytest.raises(InputError, match="empty"):
        box_in_crop(lesion, (5, 5, 5, 9), 64)


def test_package_exports_resolve():
    import multibone.explain as ex

    for name in ex.__all__:
        assert getattr(ex, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ex.nope  # noqa: B018
