"""Precision-recall curve, average precision, max-F1, and decision curves.

* PR curve and AP: ``sklearn.metrics.precision_recall_curve`` and
  ``average_precision_score`` (AP = sum_k (R_k - R_{k-1}) P_k, no interpolation).
* max-F1: the largest ``F1 = 2 P R / (P + R)`` over thresholds (``score >= t``),
  i.e. :mod:`multibone.stats`' ``maxf1`` operating point (ties: highest threshold).
* Net benefit (Vickers & Elkin 2006, Med Decis Making 26:565-574) at threshold
  probability ``pt``, counting ``risk >= pt`` as treat (dcurves' convention):
  ``NB = TP/n - FP/n * pt / (1 - pt)``; treat-all
  ``NB = prevalence - (1 - prevalence) * pt / (1 - pt)``; treat-none ``NB = 0``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from multibone.errors import InputError
from multibone.evaluation._checks import (
    as_labels,
    as_probabilities,
    as_scores,
    require_both_classes,
)
from multibone.stats import choose_operating_points

DEFAULT_DCA_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


@dataclasses.dataclass(frozen=True)
class PRResult:
    """PR curve points (precision, recall, thresholds), AP, prevalence, max-F1."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float
    prevalence: float
    max_f1: float
    max_f1_threshold: float

    def summary(self) -> dict:
        return {
            "average_precision": self.average_precision,
            "prevalence": self.prevalence,
            "max_f1": self.max_f1,
            "max_f1_threshold": self.max_f1_threshold,
        }


def pr_curve(y: object, score: object) -> PRResult:
    """Precision-recall curve, AP and max-F1 of ``score`` (n,) against 0/1 ``y`` (n,)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels = as_labels(y, "y")
    s = as_scores(score, labels.shape[0], "score")
    require_both_classes(labels, 1, "PR curve / AP")
    prec, rec, thr = precision_recall_curve(labels, s)
    ap = float(average_precision_score(labels, s))
    # max-F1 is the statistics core's "maxf1" operating point (one tie rule: highest threshold)
    best = choose_operating_points(labels, s, ("maxf1",))["maxf1"]
    return PRResult(prec, rec, thr, ap, float(labels.mean()), best.f1, best.threshold)


def net_benefit(y: object, risk: object, thresholds: object | None = None) -> pd.DataFrame:
    """Decision curve: net benefit of the model, treat-all and treat-none.

    Parameters
    ----------
    y : (n,) 0/1 outcomes. risk : (n,) predicted probabilities in [0, 1].
    thresholds : threshold probabilities in (0, 1); default 0.01, 0.02, ..., 0.99.

    Returns
    -------
    DataFrame with columns ``threshold``, ``net_benefit`` (model), ``treat_all``,
    ``treat_none``, ``tp_rate`` (TP/n), ``fp_rate`` (FP/n).
    """
    labels = as_labels(y, "y")
    prob = as_probabilities(risk, labels.shape[0], "risk")
    pts = DEFAULT_DCA_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=float)
    if pts.ndim != 1 or np.any((pts <= 0) | (pts >= 1)):
        raise InputError("decision-curve thresholds must lie strictly between 0 and 1")
    n = labels.shape[0]
    if n == 0:
        raise InputError("decision curve of an empty set")
    treat = prob[None, :] >= pts[:, None]
    tp = (treat & (labels[None, :] == 1)).sum(axis=1) / n
    fp = (treat & (labels[None, :] == 0)).sum(axis=1) / n
    odds = pts / (1 - pts)
    prev = labels.mean()
    return pd.DataFrame(
        {
            "threshold": pts,
            "net_benefit": tp - fp * odds,
            "treat_all": prev - (1 - prev) * odds,
            "treat_none": np.zeros_like(pts),
            "tp_rate": tp,
            "fp_rate": fp,
        }
    )
