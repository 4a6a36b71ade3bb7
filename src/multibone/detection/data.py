"""The detector's images and boxes: a manifest read into an image table, images loaded
through :mod:`multibone.io` and resized to one square side with their boxes.

Manifest contract used here (one row per image):

* ``patient_id``, ``image_path`` (relative to the manifest's folder, or absolute);
* ``roi_x0, roi_y0, roi_x1, roi_y1``: the lesion box in original pixels (x1, y1
  exclusive), all four or none;
* ``diagnosis``: ``normal`` marks a normal control (no lesion: must have no box);
  any other value (``tumor``, ``infection``, empty) is an image with a lesion.
  A lesion image without a box cannot teach the detector where the lesion is:
  it is left out of training (and of localisation), but still scored.
* ``view`` (optional): used by the patient-level rules of :mod:`.metrics`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multibone.detection.boxes import check_box, resize_with_boxes
from multibone.errors import InputError

log = logging.getLogger(__name__)

ROI_COLUMNS = ("roi_x0", "roi_y0", "roi_x1", "roi_y1")
#: ``diagnosis`` value of a normal control.
NORMAL = "normal"


def read_image_table(
    manifest: str | Path | pd.DataFrame, root: str | Path | None = None
) -> pd.DataFrame:
    """The detector's image table from a manifest CSV (or an already read DataFrame).

    Returns one row per image with ``patient_id`` (str), ``image_path`` (absolute
    str), ``view`` (str, may be empty), ``lesion`` (1 image with a lesion, 0 normal
    control), ``has_box`` (bool) and ``roi_x0..roi_y1`` (float, NaN without a box),
    plus any other manifest columns. ``root``: folder relative paths start from
    (default the manifest's folder).

    Raises InputError naming the row for a missing column, part of a box, or a
    normal control with a box.
    """
    if isinstance(manifest, pd.DataFrame):
        df, where = manifest.copy(), "manifest"
        base = Path(root) if root is not None else Path.cwd()
    else:
        path = Path(manifest)
        if not path.is_file():
            raise InputError(f"{path}: manifest not found")
        df, where = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=True), str(path)
        base = Path(root) if root is not None else path.parent
    for col in ("patient_id", "image_path"):
        if col not in df.columns:
            raise InputError(f"{where}: column {col!r} is missing")
    for col in ROI_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    diag = df["diagnosis"] if "diagnosis" in df.columns else pd.Series("", index=df.index)
    diag = diag.astype(object).fillna("").astype(str).str.strip().str.lower()
    df["lesion"] = (diag != NORMAL).astype(int)
    n_given = df[list(ROI_COLUMNS)].notna().sum(axis=1)
    for i in np.flatnonzero((n_given > 0) & (n_given < 4)):
        raise InputError(f"{where}, row {i + 2}: give all four roi_ columns or none")
    df["has_box"] = n_given == 4
    for i in np.flatnonzero(df["has_box"] & (df["lesion"] == 0)):
        raise InputError(
            f"{where}, row {i + 2}: a normal control (diagnosis normal) must have no lesion "
            "box; leave roi_x0..roi_y1 empty"
        )
    df["patient_id"] = df["patient_id"].astype(str)
    df["image_path"] = [str(p if Path(p).is_absolute() else base / p) for p in df["image_path"]]
    df["view"] = df["view"].astype(object).fillna("").astype(str) if "view" in df.columns else ""
    return df.reset_index(drop=True)


def check_boxes(table: pd.DataFrame) -> None:
    """Every box of ``table`` inside its image and of positive area (image headers only).

    Raises ImageReadError (missing file) or InputError naming the file.
    """
    from multibone.io import read_image_size

    for row in table[table["has_box"]].itertuples(index=False):
        h, w = read_image_size(row.image_path)
        box = (row.roi_x0, row.roi_y0, row.roi_x1, row.roi_y1)
        check_box(box, w, h, f"{row.image_path}: roi_x0..roi_y1")


@dataclasses.dataclass
class DetectionImages:
    """Images resized to one square side, with their boxes.

    images: float32 ``(N, S, S)`` grey in [0, 1].
    boxes: N float32 ``(n_i, 4)`` xyxy boxes in the resized pixels (``(0, 4)``: none).
    sizes: int ``(N, 2)`` original ``(height, width)``, to map predictions back.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    sizes: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: list[int]) -> DetectionImages:
        """The images at positions ``index``, in that order."""
        return DetectionImages(
            self.images[index], [self.boxes[i] for i in index], self.sizes[index]
        )


def load_images(table: pd.DataFrame, img_size: int) -> DetectionImages:
    """Read every image of ``table`` (see :func:`read_image_table`) and resize it to
    ``img_size`` square, its box scaled along.

    Raises ImageReadError (unreadable file) or InputError naming the file for a box
    outside its image or of zero area.
    """
    from multibone.io import read_radiograph

    images, boxes, sizes = [], [], []
    for row in table.itertuples(index=False):
        pixels = read_radiograph(row.image_path).pixels
        h, w = pixels.shape
        box = np.zeros((0, 4), dtype=np.float32)
        if row.has_box:
            box = np.array([[row.roi_x0, row.roi_y0, row.roi_x1, row.roi_y1]], dtype=np.float32)
            check_box(box[0], w, h, f"{row.image_path}: roi_x0..roi_y1")
        img, b = resize_with_boxes(torch.from_numpy(pixels)[None], box, img_size)
        images.append(img[0].clamp(0.0, 1.0))
        boxes.append(b)
        sizes.append((h, w))
    if not images:
        return DetectionImages(torch.zeros(0, img_size, img_size), [], np.zeros((0, 2), int))
    return DetectionImages(torch.stack(images), boxes, np.asarray(sizes, dtype=int))
