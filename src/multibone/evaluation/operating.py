"""Operating points: thresholds chosen on one set (development) and applied to others.

Rules (Hasei et al. 2025, seed 000; a case is positive when ``score >= t``):

* ``youden``: maximise ``sensitivity + specificity - 1``;
* ``sens90``: among thresholds with sensitivity >= 0.90, maximise specificity;
* ``spec90``: among thresholds with specificity >= 0.90, maximise sensitivity;
* ``maxf1``: maximise ``F1 = 2 TP / (2 TP + FP + FN)``.

Candidates are the distinct observed scores (``sklearn.metrics.roc_curve`` with
``drop_intermediate=False``). Ties in the criterion go to the highest
threshold (fewest positive calls). When the best rule is "call nobody
positive" the threshold is the next float above the largest score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from multibone.errors import InputError
from multibone.evaluation._checks import as_labels, as_scores, require_both_classes
from multibone.evaluation.metrics import BinaryMetrics, binary_metrics

OPERATING_POINTS = ("youden", "sens90", "spec90", "maxf1")
LABELS = {
    "youden": "Youden (max sens + spec - 1)",
    "sens90": "sensitivity >= 0.90",
    "spec90": "specificity >= 0.90",
    "maxf1": "max F1",
}


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """A threshold and what it achieved on the set it was chosen on."""

    name: str
    threshold: float
    sensitivity: float
    specificity: float
    f1: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_operating_points(
    y: object,
    p: object,
    which: Iterable[str] = OPERATING_POINTS,
    *,
    target: float = 0.90,
) -> dict[str, OperatingPoint]:
    """Choose thresholds on ``(y, p)`` by the rules in the module docstring.

    Parameters
    ----------
    y : (n,) 0/1 labels with both classes present.
    p : (n,) float scores (probabilities or any monotone score).
    which : subset of ``("youden", "sens90", "spec90", "maxf1")``.
    target : the 0.90 of ``sens90``/``spec90``.

    Returns
    -------
    ``{name: OperatingPoint}`` in the order asked.
    """
    from sklearn.metrics import roc_curve

    which = tuple(which)
    unknown = [w for w in which if w not in OPERATING_POINTS]
    if unknown:
        raise InputError(f"unknown operating point(s) {unknown}; choose from {OPERATING_POINTS}")
    labels = as_labels(y, "y")
    s = as_scores(p, labels.shape[0], "p")
    require_both_classes(labels, 1, "choosing an operating point")
    fpr, tpr, thr = roc_curve(labels, s, drop_intermediate=False)
    thr = thr.astype(float)
    thr[~np.isfinite(thr)] = np.nextafter(s.max(), np.inf)
    n_pos = int(labels.sum())
    n_neg = labels.shape[0] - n_pos
    tp = tpr * n_pos
    fp = fpr * n_neg
    fn = n_pos - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    spec = 1.0 - fpr
    eps = 1e-12  # so a computed 0.8999999999 does not miss a true 0.90
    out: dict[str, OperatingPoint] = {}
    for name in which:
        if name == "youden":
            i = int(np.argmax(tpr - fpr))  # first max = highest threshold
        elif name == "sens90":
            ok = np.flatnonzero(tpr >= target - eps)
            i = int(ok[np.argmax(spec[ok])])
        elif name == "spec90":
            ok = np.flatnonzero(spec >= target - eps)
            i = int(ok[np.argmax(tpr[ok])])
        else:
            i = int(np.argmax(f1))
        out[name] = OperatingPoint(name, float(thr[i]), float(tpr[i]), float(spec[i]), float(f1[i]))
    return out


def apply_operating_point(
    y: object, p: object, threshold: float | OperatingPoint, *, level: float = 0.95
) -> BinaryMetrics:
    """Metrics of ``p >= threshold`` on another set (threshold fixed, never re-chosen)."""
    t = threshold.threshold if isinstance(threshold, OperatingPoint) else float(threshold)
    return binary_metrics(y, p, t, level=level)
