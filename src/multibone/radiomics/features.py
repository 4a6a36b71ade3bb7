"""2D radiomics features of lesion boxes, computed by Nyxus (MIT licence).

Nyxus (https://github.com/PolusAI/nyxus) computes IBSI-style features of a
labelled region. For each image with a lesion box we pass the box region (the
``roi_x0..roi_y1`` rectangle, no margin) as the region of interest:

* first order (``*ALL_INTENSITY*``: mean, percentiles, entropy, skewness, ...),
* shape of the box region (``*BASIC_MORPHOLOGY*``: area, aspect ratio, extent;
  the region is the box, so these describe the box as drawn),
* texture: grey-level co-occurrence (``*ALL_GLCM*``), run-length
  (``*ALL_GLRLM*``) and size-zone (``*ALL_GLSZM*``) matrices, on the ROI
  quantised to ``grey_levels`` levels by Nyxus (``coarse_gray_depth``).

Intensities: the radiograph as :func:`multibone.io.read_radiograph` returns it
(float in [0, 1], bone bright) scaled to 0-4095 integers. Position features
(bounding-box corner, centroids) are left out: they only say where the box sat
in the padded batch. Boxes of several images are featurised in one Nyxus call:
each is placed at the top-left corner of a zero canvas and labelled 1 (the
canvas 0 is background, outside every region); the tests check that this gives
the same numbers as Nyxus on the bare crop.

Nyxus is an optional dependency (``pip install "multibone[radiomics]"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from multibone.errors import InputError, MultiboneError

log = logging.getLogger(__name__)

FEATURE_GROUPS = ("*ALL_INTENSITY*", "*BASIC_MORPHOLOGY*", "*ALL_GLCM*", "*ALL_GLRLM*", "*ALL_GLSZM*")
_META = ("intensity_image", "mask_image", "ROI_label", "t_index")
_POSITION = ("BBOX_", "CENTROID_", "WEIGHTED_CENTROID", "MASS_DISPLACEMENT")
INTENSITY_MAX = 4095
INSTALL_HINT = 'the radiomics baseline needs Nyxus: pip install "multibone[radiomics]" (or pip install nyxus)'
CHUNK = 64


class MissingDependencyError(MultiboneError, ImportError):
    """An optional dependency of the requested feature is not installed."""


def _nyxus(grey_levels: int):
    try:
        import nyxus
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return nyxus.Nyxus(
        list(FEATURE_GROUPS), n_feature_calc_threads=1, coarse_gray_depth=int(grey_levels)
    )


def to_intensity(crop: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] -> uint16 0..4095 (what Nyxus is given)."""
    return np.rint(np.clip(crop, 0.0, 1.0) * INTENSITY_MAX).astype(np.uint16)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Nyxus output columns that are features (not metadata, not position)."""
    return [
        c for c in frame.columns if c not in _META and not any(c.startswith(p) for p in _POSITION)
    ]


def roi_features(
    crops: Sequence[np.ndarray], *, grey_levels: int = 32, names: Sequence[str] | None = None,
    min_roi: int = 2,
) -> pd.DataFrame:
    """Radiomics features of each crop (one row per crop, in order).

    Parameters
    ----------
    crops : 2D float arrays in [0, 1] (the lesion box regions).
    grey_levels : texture quantisation (Nyxus ``coarse_gray_depth``).
    names : one label per crop for error messages (default ``crop i``).
    min_roi : smallest accepted side in pixels; a smaller crop raises InputError naming it.
    """
    names = list(names) if names is not None else [f"crop {i}" for i in range(len(crops))]
    for name, c in zip(names, crops, strict=True):
        if c.ndim != 2 or min(c.shape) < min_roi:
            raise InputError(
                f"{name}: lesion box of {c.shape[1] if c.ndim == 2 else '?'} x "
                f"{c.shape[0]} px is smaller than the {min_roi} px per side the texture "
                "features need (radiomics.min_roi); redraw the box or lower radiomics.min_roi"
            )
    nyx = _nyxus(grey_levels)
    parts = []
    for start in range(0, len(crops), CHUNK):
        chunk = crops[start : start + CHUNK]
        h = max(c.shape[0] for c in chunk)
        w = max(c.shape[1] for c in chunk)
        img = np.zeros((len(chunk), h, w), np.uint16)
        lab = np.zeros((len(chunk), h, w), np.uint16)
        for i, c in enumerate(chunk):
            img[i, : c.shape[0], : c.shape[1]] = to_intensity(c)
            lab[i, : c.shape[0], : c.shape[1]] = 1
        ids = [f"i{start + i}" for i in range(len(chunk))]
        f = nyx.featurize(img, lab, intensity_names=ids, label_names=ids)
        f = f.set_index("intensity_image").loc[ids]
        parts.append(f[feature_columns(f)].astype(float).reset_index(drop=True))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def image_features(images: pd.DataFrame, *, grey_levels: int = 32, min_roi: int = 8,
                   progress: bool = False) -> pd.DataFrame:
    """Features of every boxed image of a cohort's image table.

    ``images``: ``cohort.images`` (``patient_id``, ``image_path``, ``roi_x0..roi_y1``,
    ``row``). Images without a box or without a file (clinical-only manifests) are skipped. Returns ``patient_id``, ``row``
    (manifest row) and one column per feature; no file names (they may hold
    identifiers).
    """
    from tqdm.auto import tqdm

    from multibone.io import crop_roi, read_radiograph

    has_path = images["image_path"].astype(object).fillna("").astype(str).str.strip() != ""
    im = images[images["roi_x0"].notna() & has_path]
    crops, names = [], []
    for r in tqdm(list(im.itertuples()), desc="radiomics", disable=not progress, leave=False):
        roi = (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1))
        name = f"manifest row {int(r.row)} (patient {r.patient_id})"
        try:
            crops.append(crop_roi(read_radiograph(r.image_path).pixels, roi))
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from exc
        names.append(name)
    feats = roi_features(crops, grey_levels=grey_levels, names=names, min_roi=min_roi)
    feats.insert(0, "row", im["row"].astype(int).to_numpy())
    feats.insert(0, "patient_id", im["patient_id"].astype(str).to_numpy())
    return feats


def check_roi_sizes(images: pd.DataFrame, min_roi: int) -> None:
    """InputError naming the manifest rows whose lesion box has a side under ``min_roi`` px.

    Reads only the box columns (no image), so a run can refuse before any work.
    """
    im = images[images["roi_x0"].notna()] if "roi_x0" in images else images.iloc[:0]
    w = im["roi_x1"] - im["roi_x0"]
    h = im["roi_y1"] - im["roi_y0"]
    small = im[(w < min_roi) | (h < min_roi)]
    if len(small):
        rows = ", ".join(str(int(r)) for r in small["row"].head(5))
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise InputError(
            f"manifest rows {rows}{more}: lesion box smaller than the {min_roi} px per side the "
            "radiomics texture features need (radiomics.min_roi); redraw the box, lower "
            "radiomics.min_roi, or set radiomics.enabled: false"
        )
