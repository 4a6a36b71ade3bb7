"""Detection statistics of seeds 000 and 003 that are about boxes, not scores.

* localisation: a reference lesion is *found* at threshold t when some predicted
  box (scoring at least ``score_thresh``) overlaps it with IoU > t (seed 003:
  t = 0.2; 0.5 reported too); *missed* when no predicted box touches it (IoU = 0);
* false-positive boxes: predicted boxes overlapping no reference lesion with
  IoU > the hit threshold, per image (normal controls included);
* image score: the best box confidence (0 without a box; seed 000);
* patient calls: seed 003's rule, positive only when *every* view is positive
  (AP and lateral: the minimum of the view scores), or the maximum over views.

ROC/AUC, DeLong, operating points, McNemar and calibration of the image and
patient scores come from :mod:`multibone.stats` / :mod:`multibone.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from multibone.detection.boxes import as_boxes, box_iou
from multibone.errors import InputError

PatientRule = Literal["all_views", "max"]


def localisation(
    predicted: Sequence[object],
    scores: Sequence[object],
    reference: Sequence[object],
    *,
    thresholds: Sequence[float] = (0.2, 0.5),
    score_thresh: float = 0.0,
    fp_iou: float = 0.2,
) -> dict[str, float]:
    """Localisation rates, missed lesions and false-positive boxes over images.

    Parameters
    ----------
    predicted: per image, predicted boxes ``(K_i, 4)`` xyxy pixels.
    scores: per image, their scores ``(K_i,)``.
    reference: per image, reference lesion boxes ``(M_i, 4)`` (``(0, 4)``: normal).
    thresholds: IoU thresholds t of "found" (IoU > t).
    score_thresh: predicted boxes scoring below this are ignored.
    fp_iou: a predicted box is a false positive unless IoU > this with a lesion.

    Returns
    -------
    dict with ``n_images``, ``n_lesions``, ``found_iou>t`` and ``rate_iou>t`` for each
    t, ``missed`` and ``missed_rate`` (IoU = 0), ``fp_boxes`` and ``fp_per_image``.
    Rates are NaN without lesions.
    """
    if not len(predicted) == len(scores) == len(reference):
        raise InputError(
            f"localisation: {len(predicted)} predicted, {len(scores)} score and "
            f"{len(reference)} reference entries; give one per image"
        )
    best: list[float] = []
    fp = 0
    for boxes, sc, ref in zip(predicted, scores, reference, strict=True):
        b = as_boxes(boxes).numpy()
        s = np.asarray(sc, dtype=float).reshape(-1)
        if len(s) != len(b):
            raise InputError(f"localisation: {len(b)} boxes but {len(s)} scores on one image")
        b = b[s >= score_thresh]
        r = as_boxes(ref).numpy()
        iou = box_iou(r, b)  # (M, K)
        best += (iou.max(axis=1) if iou.shape[1] else np.zeros(len(r))).tolist()
        fp += int(np.sum(~(iou > fp_iou).any(axis=0))) if len(r) else len(b)
    best_a = np.asarray(best)
    n, n_img = len(best_a), len(predicted)
    out: dict[str, float] = {"n_images": n_img, "n_lesions": n}
    for t in thresholds:
        found = int(np.sum(best_a > t))
        out[f"found_iou>{t:g}"] = found
        out[f"rate_iou>{t:g}"] = found / n if n else float("nan")
    missed = int(np.sum(best_a == 0))
    out["missed"] = missed
    out["missed_rate"] = missed / n if n else float("nan")
    out["fp_boxes"] = fp
    out["fp_per_image"] = fp / n_img if n_img else float("nan")
    return out


def image_score(scores: object) -> float:
    """Best box confidence of one image (0 when there is no box)."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    return float(s.max()) if len(s) else 0.0


def patient_scores(images: pd.DataFrame, rule: PatientRule = "all_views") -> pd.DataFrame:
    """Patient scores from image scores.

    ``images``: ``patient_id`` and ``score`` (image score) columns, plus optional
    ``lesion`` (image label 0/1; the patient's label is the maximum).
    ``all_views``: the minimum over the patient's images (positive at threshold c only
    when every view scores >= c: seed 003's "positive on both views");
    ``max``: the maximum over the views.

    Returns ``patient_id``, ``score`` (and ``lesion``) in first-appearance order.
    """
    if rule not in ("all_views", "max"):
        raise InputError(f"patient rule {rule!r}: use all_views or max")
    for col in ("patient_id", "score"):
        if col not in images.columns:
            raise InputError(f"patient_scores: column {col!r} is missing")
    agg = {"score": "min" if rule == "all_views" else "max"}
    if "lesion" in images.columns:
        agg["lesion"] = "max"
    return images.groupby("patient_id", sort=False).agg(agg).reset_index()


def patient_calls(
    images: pd.DataFrame, threshold: float, rule: PatientRule = "all_views"
) -> pd.DataFrame:
    """Patient-level positive calls (``call`` 0/1) at image-score ``threshold``."""
    p = patient_scores(images, rule)
    p["call"] = (p["score"] >= threshold).astype(int)
    return p
