"""Threshold metrics: confusion counts, proportions with Wilson CIs, likelihood ratios.

A case is called positive when ``score >= threshold`` (the same rule as
``sklearn.metrics.roc_curve`` and decision curves).

* accuracy ``(TP + TN) / n``, sensitivity ``TP / (TP + FN)``, specificity
  ``TN / (TN + FP)``, PPV ``TP / (TP + FP)``, NPV ``TN / (TN + FN)``: each a
  binomial proportion with the Wilson score interval of the statistics core
  (:func:`multibone.stats.wilson`).
* F1 ``2 TP / (2 TP + FP + FN)``: not a binomial proportion, so no Wilson CI
  (use :func:`multibone.stats.bootstrap_metrics` for one).
* LR+ ``sens / (1 - spec)``, LR- ``(1 - sens) / spec`` with the log-method CI of
  Simel, Samsa & Matchar (1991, J Clin Epidemiol 44:763-770), formula in
  :func:`likelihood_ratios`. Undefined parts are NaN/inf.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from multibone.stats import OperatingPoint, Proportion, as_labels, as_scores, wilson


def confusion_counts(y: object, pred: object) -> dict[str, int]:
    """TP, FP, TN, FN of 0/1 predictions ``pred`` against 0/1 labels ``y`` (both (n,))."""
    labels = as_labels(y, "y").astype(bool)
    calls = as_labels(pred, "pred").astype(bool)
    if calls.shape != labels.shape:
        raise ValueError("y and pred differ in length")
    return {
        "TP": int(np.sum(labels & calls)),
        "FP": int(np.sum(~labels & calls)),
        "TN": int(np.sum(~labels & ~calls)),
        "FN": int(np.sum(labels & ~calls)),
    }


def likelihood_ratios(tp: int, fp: int, tn: int, fn: int, *, level: float = 0.95) -> dict:
    """LR+ and LR- with log-method CIs (Simel et al. 1991).

    ``LR+ = sens / (1 - spec)``, ``SE(log LR+) = sqrt(1/TP - 1/(TP+FN) + 1/FP - 1/(FP+TN))``;
    ``LR- = (1 - sens) / spec``, ``SE(log LR-) = sqrt(1/FN - 1/(TP+FN) + 1/TN - 1/(FP+TN))``.
    A zero count makes the ratio 0 or inf and its CI NaN (no continuity correction).
    """
    zq = stats.norm.ppf(0.5 + level / 2.0)
    pos, neg = tp + fn, fp + tn
    out: dict[str, float] = {}
    for name, num, den in (("lr_pos", tp, fp), ("lr_neg", fn, tn)):
        if pos == 0 or neg == 0:
            out.update({name: math.nan, f"{name}_ci_low": math.nan, f"{name}_ci_high": math.nan})
            continue
        a, b = num / pos, den / neg
        if b == 0:
            value = math.inf if a > 0 else math.nan
        else:
            value = a / b
        if num > 0 and den > 0:
            se = math.sqrt(1 / num - 1 / pos + 1 / den - 1 / neg)
            lo, hi = value * math.exp(-zq * se), value * math.exp(zq * se)
        else:
            lo = hi = math.nan
        out.update({name: value, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    return out


@dataclasses.dataclass(frozen=True)
class BinaryMetrics:
    """Everything at one threshold. Proportions carry Wilson CIs."""

    threshold: float
    TP: int
    FP: int
    TN: int
    FN: int
    accuracy: Proportion
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    f1: float
    lr_pos: float
    lr_pos_ci_low: float
    lr_pos_ci_high: float
    lr_neg: float
    lr_neg_ci_low: float
    lr_neg_ci_high: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """One flat row (``sensitivity``, ``sensitivity_ci_low``, ...) for tables."""
        row: dict = {"threshold": self.threshold}
        for k in ("TP", "FP", "TN", "FN"):
            row[k] = getattr(self, k)
        for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
            p: Proportion = getattr(self, k)
            row[k] = p.value
            row[f"{k}_ci_low"] = p.ci_low
            row[f"{k}_ci_high"] = p.ci_high
        row["f1"] = self.f1
        for k in (
            "lr_pos",
            "lr_pos_ci_low",
            "lr_pos_ci_high",
            "lr_neg",
            "lr_neg_ci_low",
            "lr_neg_ci_high",
        ):
            row[k] = getattr(self, k)
        return row


def metrics_from_counts(
    tp: int, fp: int, tn: int, fn: int, *, threshold: float = math.nan, level: float = 0.95
) -> BinaryMetrics:
    """Build :class:`BinaryMetrics` from the four counts."""
    n = tp + fp + tn + fn
    f1_den = 2 * tp + fp + fn
    return BinaryMetrics(
        threshold=float(threshold),
        TP=tp,
        FP=fp,
        TN=tn,
        FN=fn,
        accuracy=wilson(tp + tn, n, level=level),
        sensitivity=wilson(tp, tp + fn, level=level),
        specificity=wilson(tn, tn + fp, level=level),
        ppv=wilson(tp, tp + fp, level=level),
        npv=wilson(tn, tn + fn, level=level),
        f1=(2 * tp / f1_den) if f1_den else math.nan,
        **likelihood_ratios(tp, fp, tn, fn, level=level),
    )


def binary_metrics(
    y: object, score: object, threshold: float, *, level: float = 0.95
) -> BinaryMetrics:
    """Confusion counts and metrics of ``score >= threshold`` against labels ``y``.

    Parameters
    ----------
    y : (n,) 0/1 labels. score : (n,) float scores (same scale as ``threshold``).
    threshold : a case with ``score >= threshold`` is called positive.
    level : confidence level of the Wilson and LR intervals.
    """
    labels = as_labels(y, "y")
    s = as_scores(score, labels.shape[0], "score")
    c = confusion_counts(labels, (s >= threshold).astype(np.int8))
    return metrics_from_counts(c["TP"], c["FP"], c["TN"], c["FN"], threshold=threshold, level=level)


def apply_operating_point(
    y: object, p: object, threshold: float | OperatingPoint, *, level: float = 0.95
) -> BinaryMetrics:
    """Metrics of ``p >= threshold`` on another set (threshold fixed, never re-chosen)."""
    t = threshold.threshold if isinstance(threshold, OperatingPoint) else float(threshold)
    return binary_metrics(y, p, t, level=level)
