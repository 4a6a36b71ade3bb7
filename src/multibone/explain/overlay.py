"""Showing class activation maps on radiographs, and measuring where their energy lies.

* :func:`colormap` - a [0, 1] map as RGB uint8 through a matplotlib colormap.
* :func:`overlay` - blend a CAM over a grey radiograph, over the whole image
  or pasted into the ROI crop box it was computed on (the crop is resized to
  a square for the model; the map is resized back to the box's shape).
* :func:`cam_energy_in_box` / :func:`box_area_share` - share of map energy
  inside the lesion box, and the share an evenly spread map would get.
* :func:`box_in_crop` - a radiograph box (the lesion) in the pixels of the
  resized crop; the crop box itself comes from ``multibone.io.roi_box``.

Boxes are ``(x0, y0, x1, y1)`` in pixels, x1 / y1 exclusive, as in
``multibone.io.crop_roi``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multibone.errors import InputError

__all__ = [
    "box_area_share",
    "box_in_crop",
    "cam_energy_in_box",
    "colormap",
    "overlay",
    "resize_map",
    "save_png",
]

Box = Sequence[float]


def _check_map(cam: np.ndarray, what: str = "CAM") -> np.ndarray:
    cam = np.asarray(cam)
    if cam.ndim != 2 or cam.shape[0] < 1 or cam.shape[1] < 1:
        raise InputError(f"{what} must be a 2-D array (H, W); got shape {cam.shape}")
    if not np.issubdtype(cam.dtype, np.number):
        raise InputError(f"{what} must be numeric; got dtype {cam.dtype}")
    cam = cam.astype(np.float32, copy=False)
    if not np.isfinite(cam).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return cam


def _int_box(box: Box, shape: tuple[int, int], what: str = "box") -> tuple[int, int, int, int]:
    """Round a box to whole pixels and clip it to ``shape`` (H, W); refuse an empty result."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} must be (x0, y0, x1, y1) numbers; got {box!r}") from err
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"{what} {tuple(box)} has a missing or infinite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{what} {tuple(box)} is empty: need x1 > x0 and y1 > y0")
    h, w = shape
    ix0, iy0 = max(0, round(x0)), max(0, round(y0))
    ix1, iy1 = min(w, round(x1)), min(h, round(y1))
    if ix1 <= ix0 or iy1 <= iy0:
        raise InputError(
            f"{what} {tuple(box)} lies outside the {h}x{w} (HxW) map; boxes are "
            "(x0, y0, x1, y1) in that map's pixels"
        )
    return ix0, iy0, ix1, iy1


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map to ``shape`` (H, W); float32, values stay within the input range."""
    cam = _check_map(cam)
    h, w = int(shape[0]), int(shape[1])
    if cam.shape == (h, w):
        return cam.copy()
    t = torch.from_numpy(np.ascontiguousarray(cam))[None, None]
    # antialias when shrinking so thin peaks are averaged, not skipped
    shrink = h < cam.shape[0] or w < cam.shape[1]
    out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].numpy().clip(float(cam.min()), float(cam.max())).astype(np.float32)


def colormap(cam: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """RGB uint8 (H, W, 3) rendering of a map in [0, 1] (values outside are clipped)."""
    import matplotlib

    cam = _check_map(cam)
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as err:
        raise InputError(
            f"unknown matplotlib colormap {cmap!r}; try 'jet', 'turbo' or 'inferno'"
        ) from err
    rgba = cm(np.clip(cam, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(
    pixels_uint8: np.ndarray,
    cam: np.ndarray,
    alpha: float = 0.4,
    *,
    box: Box | None = None,
    cmap: str = "jet",
    outline: bool = False,
    weighted: bool = False,
) -> np.ndarray:
    """Blend a CAM over a radiograph; RGB uint8 (H, W, 3).

    Args:
        pixels_uint8: uint8 (H, W) grey (bone bright) or (H, W, 3) RGB image,
            e.g. ``multibone.io.to_uint8(radiograph.pixels)``.
        cam: float (h, w) in [0, 1]; resized bilinearly to the image, or to
            ``box`` when given.
        alpha: heat-map weight in [0, 1] (0 = image only, 1 = map only).
        box: the crop box the CAM was computed on, (x0, y0, x1, y1) in the
            image's pixels (x1 / y1 exclusive); outside it the image is shown
            unchanged. ``None`` = the map covers the whole image.
        cmap: matplotlib colormap name.
        outline: draw the box's border (white, 1 px) when ``box`` is given.
        weighted: blend with ``alpha * cam`` per pixel, so where the map is
            low the radiograph shows unchanged (easier to read than a uniform
            tint); ``False`` blends uniformly as ``pytorch_grad_cam``'s
            ``show_cam_on_image``.
    """
    img = np.asarray(pixels_uint8)
    if img.dtype != np.uint8:
        raise InputError(
            f"overlay needs a uint8 image (use multibone.io.to_uint8); got dtype {img.dtype}"
        )
    if img.ndim == 2:
        rgb = np.repeat(img[..., None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 3:
        rgb = img.copy()
    else:
        raise InputError(f"overlay image must be (H, W) or (H, W, 3); got shape {img.shape}")
    if not (isinstance(alpha, int | float) and 0.0 <= float(alpha) <= 1.0):
        raise InputError(f"overlay alpha must be a number in [0, 1]; got {alpha!r}")
    cam = _check_map(cam)
    h, w = rgb.shape[:2]
    if box is None:
        x0, y0, x1, y1 = 0, 0, w, h
    else:
        x0, y0, x1, y1 = _int_box(box, (h, w), "overlay box")
    resized = resize_map(cam, (y1 - y0, x1 - x0))
    heat = colormap(resized, cmap).astype(np.float32)
    region = rgb[y0:y1, x0:x1].astype(np.float32)
    a = float(alpha) * np.clip(resized, 0.0, 1.0)[..., None] if weighted else float(alpha)
    rgb[y0:y1, x0:x1] = np.clip((1.0 - a) * region + a * heat + 0.5, 0, 255).astype(np.uint8)
    if box is not None and outline:
        rgb[y0, x0:x1] = rgb[y1 - 1, x0:x1] = 255
        rgb[y0:y1, x0] = rgb[y0:y1, x1 - 1] = 255
    return rgb


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 (H, W, 3) image as PNG atomically; returns the path."""
    from PIL import Image

    from multibone._atomic import atomic_path

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"save_png needs RGB uint8 (H, W, 3); got {arr.dtype} {arr.shape}")
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(arr, mode="RGB").save(tmp, format="PNG")
    return path


def cam_energy_in_box(cam: np.ndarray, box: Box) -> float:
    """Share of the map's energy (sum of values) inside ``box``; in [0, 1].

    Args:
        cam: float (H, W), non-negative (a CAM in [0, 1]).
        box: (x0, y0, x1, y1) in the map's pixels, x1 / y1 exclusive;
            rounded to whole pixels and clipped to the map.

    Returns:
        sum(cam inside box) / sum(cam); NaN when the map is all zero (an
        uninformative map has no energy to place).
    """
    cam = _check_map(cam)
    if (cam < 0).any():
        raise InputError("cam_energy_in_box needs a non-negative map (a CAM in [0, 1])")
    x0, y0, x1, y1 = _int_box(box, cam.shape, "lesion box")
    total = float(cam.sum(dtype=np.float64))
    if total <= 0.0:
        return float("nan")
    inside = float(cam[y0:y1, x0:x1].sum(dtype=np.float64))
    return min(1.0, inside / total)


def box_area_share(box: Box, shape: tuple[int, int]) -> float:
    """Box area / map area (after rounding and clipping as in :func:`cam_energy_in_box`).

    This is the energy share of a perfectly uniform map: the chance level for
    :func:`cam_energy_in_box`.
    """
    h, w = int(shape[0]), int(shape[1])
    x0, y0, x1, y1 = _int_box(box, (h, w), "lesion box")
    return (x1 - x0) * (y1 - y0) / float(h * w)


def box_in_crop(
    box: Box, crop_box: Box, size: int | tuple[int, int]
) -> tuple[float, float, float, float]:
    """Map a box in image pixels into the pixels of the crop resized to ``size``.

    Args:
        box: lesion box in the radiograph (x0, y0, x1, y1).
        crop_box: the region that was cropped, ``multibone.io.roi_box(shape, roi, margin)``.
        size: side of the square the crop was resized to, or (H, W).
    """
    sh, sw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    cx0, cy0, cx1, cy1 = (float(v) for v in crop_box)
    if cx1 <= cx0 or cy1 <= cy0:
        raise InputError(f"crop box {tuple(crop_box)} is empty")
    sx, sy = sw / (cx1 - cx0), sh / (cy1 - cy0)
    x0, y0, x1, y1 = (float(v) for v in box)
    return ((x0 - cx0) * sx, (y0 - cy0) * sy, (x1 - cx0) * sx, (y1 - cy0) * sy)
