"""Operating points: thresholds chosen on one set (development) and applied unchanged to others.

A case is called **positive when score >= threshold** (``sklearn.metrics.roc_curve``'s
convention), everywhere in multibone. The points (Hasei et al. 2025, seed 000):

* ``youden``: maximise ``sensitivity + specificity - 1``;
* ``sens90``: among thresholds with sensitivity >= 0.90, maximise specificity;
* ``spec90``: among thresholds with specificity >= 0.90, maximise sensitivity;
* ``maxf1``: maximise ``F1 = 2 TP / (2 TP + FP + FN)``.

Candidates are the distinct observed scores (``roc_curve(drop_intermediate=False)``)
plus "nobody positive", whose threshold is the next float above the largest
score; so every reported sensitivity and specificity is exact on ``(y, p)``.

**The tie rule** (one for every layer): when several candidates reach the same
best value of the criterion, the **highest threshold** wins (fewest positive
calls), except that for ``sens90`` candidates tied on specificity are first
split by sensitivity, higher first: with the same specificity, more
sensitivity costs nothing (it dominates). Without that, perfectly separated
development data gave a "sens90" point at sensitivity 0.90 where a threshold
with 1.0 / 1.0 existed (issue #11); ``spec90`` needs no such step, since
among thresholds tied on sensitivity the highest has the best specificity. For ``spec90`` this differs from the rule stacking used before
multibone 0.2 ("the lowest threshold with specificity >= 0.90"): with tied
sensitivity, that rule could pick a lower threshold with lower specificity
(issue #10: 0.64 with 0.70 / 0.90 instead of 0.70 with 0.70 / 1.00).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from multibone.errors import InputError
from multibone.stats._checks import as_labels, as_scores, require_both_classes

#: Every operating point the statistics core can choose, in report order.
OPERATING_POINTS: tuple[str, ...] = ("youden", "sens90", "spec90", "maxf1")
#: The points a model bundle carries and the dashboard offers as decisions.
DECISION_POINTS: tuple[str, ...] = ("youden", "sens90", "spec90")
#: Technical labels (reports, tables, plots).
LABELS: dict[str, str] = {
    "youden": "Youden (max sens + spec - 1)",
    "sens90": "sensitivity >= 0.90",
    "spec90": "specificity >= 0.90",
    "maxf1": "max F1",
}
#: Plain names for clinicians, in the order a clinician picks them (case report, dashboard).
PLAIN_LABELS: dict[str, str] = {
    "sens90": "high sensitivity (>= 0.90 on development data)",
    "youden": "balanced (Youden)",
    "spec90": "high specificity (>= 0.90 on development data)",
}

# So a computed 0.8999999999 does not miss a true 0.90.
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """A threshold and what it achieved on the set it was chosen on (rates in [0, 1])."""

    name: str
    threshold: float
    sensitivity: float
    specificity: float
    f1: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def rates(self) -> dict[str, float]:
        """``{"threshold", "sensitivity", "specificity"}``: the form stored in a bundle."""
        return {
            "threshold": self.threshold,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
        }


def choose_operating_points(
    y: object,
    p: object,
    which: Iterable[str] = OPERATING_POINTS,
    *,
    target: float = 0.90,
) -> dict[str, OperatingPoint]:
    """Choose thresholds on ``(y, p)`` by the rules and the tie rule of the module docstring.

    Parameters
    ----------
    y : (n,) 0/1 labels with both classes present.
    p : (n,) finite float scores (probabilities or any monotone score).
    which : subset of :data:`OPERATING_POINTS`.
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
    # Thresholds come out decreasing, so the first index of a maximum is the highest threshold.
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
    out: dict[str, OperatingPoint] = {}
    for name in which:
        if name == "youden":
            i = int(np.argmax(tpr - fpr))
        elif name == "sens90":
            ok = np.flatnonzero(tpr >= target - _EPS)
            # tied best specificity: the higher sensitivity (it dominates), then the highest threshold
            best = ok[spec[ok] >= spec[ok].max() - _EPS]
            i = int(best[np.argmax(tpr[best] + _EPS >= tpr[best].max())])
        elif name == "spec90":
            ok = np.flatnonzero(spec >= target - _EPS)
            i = int(ok[np.argmax(tpr[ok])])
        else:
            i = int(np.argmax(f1))
        out[name] = OperatingPoint(name, float(thr[i]), float(tpr[i]), float(spec[i]), float(f1[i]))
    return out


def apply_threshold(p: object, threshold: float) -> np.ndarray:
    """0/1 int array (n,): 1 where ``p >= threshold``; a NaN score gives 0."""
    p = np.asarray(p, dtype="float64")
    with np.errstate(invalid="ignore"):
        return (p >= float(threshold)).astype(int)
