"""Radiograph I/O: DICOM / PNG / JPEG loading, lesion-box cropping, resizing, crop cache.

Every image enters multibone here and leaves as float32 (H, W) in [0, 1] with
bone bright; see :mod:`multibone.io.radiograph` for the DICOM steps.
"""

from multibone.io.cache import CACHE_VERSION, CropCache
from multibone.io.radiograph import (
    MAX_PIXELS,
    Radiograph,
    read_image_size,
    read_radiograph,
)
from multibone.io.roi import (
    Roi,
    crop_roi,
    normalize_roi,
    parse_roi,
    resize_square,
    roi_box,
    to_uint8,
)

__all__ = [
    "CACHE_VERSION",
    "MAX_PIXELS",
    "CropCache",
    "Radiograph",
    "Roi",
    "crop_roi",
    "normalize_roi",
    "parse_roi",
    "read_image_size",
    "read_radiograph",
    "resize_square",
    "roi_box",
    "to_uint8",
]
