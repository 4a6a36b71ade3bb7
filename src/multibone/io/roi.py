"""Lesion box (ROI) cropping, square resizing and 8-bit conversion.

Boxes are ``(x0, y0, x1, y1)`` in original pixel coordinates of the image as
:func:`multibone.io.read_radiograph` returns it: x is the column, y the row,
x1 and y1 are exclusive (a box ``(0, 0, W, H)`` is the whole image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from multibone.errors import InputError

Roi = tuple[float, float, float, float]


def _fmt(roi: object) -> str:
    try:
        return "(" + ", ".join(f"{float(v):g}" for v in roi) + ")"  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return repr(roi)


def _is_missing(roi: Sequence[float] | None) -> bool:
    """None, or all four values NaN (how a manifest row without a box reads)."""
    if roi is None:
        return True
    try:
        return len(roi) == 4 and all(isinstance(v, float | int) and math.isnan(v) for v in roi)
    except TypeError:
        return False


def normalize_roi(roi: Sequence[float] | None) -> Roi | None:
    """Check a box and return it as a tuple of 4 floats, or None for "whole image".

    ``None`` and an all-NaN box mean the whole image.

    Raises:
        InputError: not 4 finite numbers, or zero / negative width or height.
    """
    if _is_missing(roi):
        return None
    try:
        vals = tuple(float(v) for v in roi)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise InputError(f"roi {roi!r}: must be 4 numbers (x0, y0, x1, y1)") from exc
    if len(vals) != 4:
        raise InputError(f"roi {_fmt(roi)}: must be 4 numbers (x0, y0, x1, y1), got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise InputError(f"roi {_fmt(vals)}: all of x0, y0, x1, y1 must be finite numbers")
    x0, y0, x1, y1 = vals
    if x1 <= x0 or y1 <= y0:
        raise InputError(
            f"roi {_fmt(vals)}: zero or negative area; need x1 > x0 and y1 > y0 "
            "(x is the column, y the row; x1, y1 exclusive)"
        )
    return (x0, y0, x1, y1)


def parse_roi(text: str) -> Roi:
    """Parse ``"x0,y0,x1,y1"`` (as typed on a command line) into a checked box.

    Raises:
        InputError: not four comma-separated numbers, or an empty box.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise InputError(
            f"roi '{text}': expected four comma-separated numbers x0,y0,x1,y1 "
            "(pixels; x is the column, y the row), e.g. 120,80,420,360"
        ) from exc
    roi = normalize_roi(vals)
    if roi is None:
        raise InputError(f"roi '{text}': expected four numbers, got NaN")
    return roi


def roi_box(
    shape: tuple[int, ...], roi: Sequence[float] | None, margin: float = 0.0
) -> tuple[int, int, int, int]:
    """Integer pixel box actually cropped for ``roi`` on an image of ``shape``.

    The box grows by ``margin`` x its width (height) on the left and right
    (top and bottom), is rounded outwards to whole pixels and clipped to the image.

    Args:
        shape: image shape, (H, W) or (H, W, ...).
        roi: (x0, y0, x1, y1) in pixels, x1/y1 exclusive; None = whole image.
        margin: fraction of the box size added on each side, >= 0.

    Returns:
        (x0, y0, x1, y1) ints with 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H.

    Raises:
        InputError: bad box (see :func:`normalize_roi`), box entirely outside
            the image, or a negative / non-finite margin.
    """
    height, width = int(shape[0]), int(shape[1])
    try:
        margin = float(margin)
    except (TypeError, ValueError) as exc:
        raise InputError(f"margin {margin!r}: must be a number >= 0") from exc
    if not math.isfinite(margin) or margin < 0:
        raise InputError(f"margin {margin!r}: must be a finite number >= 0 (a fraction of the box)")
    box = normalize_roi(roi)
    if box is None:
        return (0, 0, width, height)
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise InputError(
            f"roi {_fmt(box)}: lies outside the image ({width} wide x {height} high); "
            "coordinates are pixels of the original image, x is the column, y the row"
        )
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    # Round to 1e-6 first so 19.9999999 from float arithmetic does not grow a pixel.
    bx0 = max(0, math.floor(round(x0 - mx, 6)))
    by0 = max(0, math.floor(round(y0 - my, 6)))
    bx1 = min(width, math.ceil(round(x1 + mx, 6)))
    by1 = min(height, math.ceil(round(y1 + my, 6)))
    return (bx0, by0, bx1, by1)


def crop_roi(pixels: np.ndarray, roi: Sequence[float] | None, margin: float = 0.0) -> np.ndarray:
    """Crop the lesion box (plus margin) out of an image.

    Args:
        pixels: (H, W) array (any dtype; (H, W, C) works too).
        roi: (x0, y0, x1, y1) in pixels, x1/y1 exclusive; None = whole image.
        margin: fraction of the box size added on each side, clipped to the image.

    Returns:
        A copy of the crop, same dtype, shape (y1 - y0, x1 - x0) of :func:`roi_box`.

    Raises:
        InputError: empty box, box outside the image, or bad margin (message names the box).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim < 2 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InputError(f"crop_roi: expected an (H, W) image, got shape {pixels.shape}")
    x0, y0, x1, y1 = roi_box(pixels.shape, roi, margin)
    return pixels[y0:y1, x0:x1].copy()


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize an image to ``size`` x ``size`` (aspect not kept), antialiased.

    Pillow's bilinear (triangle) filter widens with the scale factor, so a
    downscale averages every input pixel (antialiased, no aliasing of
    trabecular texture) and, having no negative lobes, never leaves [0, 1].

    Args:
        pixels: (H, W) float image, values in [0, 1].
        size: output side in pixels, >= 1.

    Returns:
        float32 (size, size).
    """
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise InputError(f"size {size!r}: must be a whole number of pixels >= 1")
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"resize_square: expected a non-empty (H, W) image, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    size = int(size)
    if arr.shape == (size, size):
        return arr.copy()
    im = Image.fromarray(arr)  # float32 (H, W) -> mode "F"
    out = np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return out.copy()


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8 [0, 255] for display or PNG (rounded; NaN -> 0).

    Values outside [0, 1] are clipped.
    """
    arr = np.nan_to_num(np.asarray(pixels, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
