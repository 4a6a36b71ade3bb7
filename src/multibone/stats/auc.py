"""The one ROC AUC of multibone (Mann-Whitney with mid-ranks) and ROC curve points.

``AUC = (sum of the positives' mid-ranks - m (m + 1) / 2) / (m n)`` with ``m``
positives and ``n`` negatives: the probability that a random positive scores
above a random negative, a tied pair counting 1/2. Same value as
``sklearn.metrics.roc_auc_score``, O(n log n).

The NaN rule, the same for every caller:

* a NaN **label** means "no label" (e.g. an unlabelled external patient):
  :func:`auc_or_nan` leaves such rows out; :func:`auc_score` refuses them;
* a NaN or infinite **score** is always an error naming the positions: a model
  that failed to score a labelled patient must not silently vanish from its AUC;
* an AUC with an empty class is undefined: :func:`auc_score` raises
  :class:`~multibone.stats.SingleClassError`; :func:`auc_or_nan` returns NaN
  (training logs and run summaries, where "undefined" is an answer).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from multibone.stats._checks import as_labels, as_scores, require_both_classes


def auc_score(y: object, score: object) -> float:
    """Mann-Whitney AUC of ``score`` against 0/1 labels ``y`` (both (n,)).

    Raises InputError for non-0/1 labels or non-finite scores, and
    SingleClassError when a class is empty.
    """
    labels = as_labels(y, "y")
    s = as_scores(score, labels.shape[0], "score")
    require_both_classes(labels, 1, "AUC")
    r = stats.rankdata(s)
    m = int(labels.sum())
    n = labels.shape[0] - m
    return float((r[labels == 1].sum() - m * (m + 1) / 2.0) / (m * n))


def auc_or_nan(y: object, score: object) -> float:
    """AUC over the labelled rows; NaN when a class is empty (see the module's NaN rule).

    Parameters
    ----------
    y : (n,) 0/1 labels, float NaN where unknown. score : (n,) finite float scores
        (a non-finite score of a labelled row raises InputError).
    """
    lab = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    if lab.ndim == 1 and s.shape == lab.shape:
        keep = ~np.isnan(lab)
        lab, s = lab[keep], s[keep]
    labels = as_labels(lab, "y")
    s = as_scores(s, labels.shape[0], "score")
    if labels.sum() == 0 or labels.sum() == labels.shape[0]:
        return math.nan
    return auc_score(labels, s)


def roc_points(y: object, score: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points (fpr, tpr, thresholds) where ``score >= threshold`` is positive.

    Thin wrapper over ``sklearn.metrics.roc_curve(drop_intermediate=False)``;
    the first threshold (``inf``: nobody positive) is kept so the curve starts at (0, 0).
    """
    from sklearn.metrics import roc_curve

    labels = as_labels(y, "y")
    s = as_scores(score, labels.shape[0], "score")
    require_both_classes(labels, 1, "ROC curve")
    fpr, tpr, thr = roc_curve(labels, s, drop_intermediate=False)
    return fpr, tpr, thr
