"""Operating points: thresholds chosen on development (out-of-fold) predictions.

Convention everywhere in multibone: a patient is called **positive when
p >= threshold** (scikit-learn's ``roc_curve`` convention). Thresholds are
chosen once on development data and applied unchanged to test and external
sets (:func:`apply_threshold`).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from multibone.errors import InputError
from multibone.stacking.folds import check_binary_labels

OPERATING_POINTS: tuple[str, ...] = ("youden", "sens90", "spec90")


def _sens_spec(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float]:
    pred = p >= t
    pos = y == 1
    return float(pred[pos].mean()), float((~pred[~pos]).mean())


def operating_points(
    y, p, *, sens_target: float = 0.90, spec_target: float = 0.90
) -> dict[str, dict[str, float]]:
    """Youden, high-sensitivity and high-specificity thresholds.

    Parameters
    ----------
    y: (n,) 0/1 labels (both classes needed). p: (n,) scores, float (usually
        probabilities in [0, 1]); NaN not allowed.
    sens_target, spec_target: the 0.90 of ``sens90`` / ``spec90``.

    Returns
    -------
    ``{name: {"threshold", "sensitivity", "specificity"}}`` for

    * ``youden``: maximises sensitivity + specificity - 1 (ties: highest threshold);
    * ``sens90``: the highest threshold with sensitivity >= ``sens_target``;
    * ``spec90``: the lowest threshold with specificity >= ``spec_target``.

    Candidate thresholds are the observed scores, plus one just above the
    maximum (nobody positive), so each threshold is an attained value and the
    reported sensitivity/specificity are exact on (y, p).
    """
    y = check_binary_labels(y, "operating_points: y")
    p = np.asarray(p, dtype="float64").ravel()
    if p.shape != y.shape:
        raise InputError(f"operating_points: {p.shape[0]} scores for {y.shape[0]} labels")
    if not np.isfinite(p).all():
        raise InputError("operating_points: scores contain NaN or infinity")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    # roc_curve's first threshold is +inf (nobody positive): make it a finite number.
    thr = thr.copy()
    thr[0] = float(np.nextafter(p.max(), np.inf))
    j = tpr - fpr
    picks = {
        "youden": int(np.argmax(j)),  # first max = highest threshold among ties
        "sens90": int(np.flatnonzero(tpr >= sens_target - 1e-12)[0]),
        "spec90": int(np.flatnonzero(1.0 - fpr >= spec_target - 1e-12)[-1]),
    }
    out: dict[str, dict[str, float]] = {}
    for name, k in picks.items():
        t = float(thr[k])
        sens, spec = _sens_spec(y, p, t)
        out[name] = {"threshold": t, "sensitivity": sens, "specificity": spec}
    return out


def apply_threshold(p, threshold: float) -> np.ndarray:
    """0/1 int array: 1 where ``p >= threshold`` (NaN scores give 0)."""
    p = np.asarray(p, dtype="float64")
    with np.errstate(invalid="ignore"):
        return (p >= float(threshold)).astype(int)
