"""DeLong: variance and CI of an ROC AUC, and the paired test of two correlated AUCs.

Implementation: the fast DeLong algorithm of Sun & Xu (2014), *Fast
implementation of DeLong's algorithm for comparing the areas under correlated
receiver operating characteristic curves*, IEEE Signal Processing Letters
21(11):1389-1393. With ``m`` positives (cases) and ``n`` negatives (controls):

* ``T_z`` = mid-ranks of all ``m + n`` scores, ``T_x`` = mid-ranks within the
  positives, ``T_y`` = mid-ranks within the negatives (ties get the average
  rank, so a tied positive/negative pair counts 1/2);
* ``AUC = (sum(T_z[pos]) - m (m + 1) / 2) / (m n)`` (Mann-Whitney);
* structural components ``V10_i = (T_z[i] - T_x[i]) / n`` for each positive and
  ``V01_j = 1 - (T_z[j] - T_y[j]) / m`` for each negative;
* ``Var(AUC) = S10 / m + S01 / n`` with ``S10``, ``S01`` the sample (n - 1)
  (co)variances of the components over models (DeLong, DeLong & Clarke-Pearson
  1988, Biometrics 44:837-845).

The cost is that of sorting, O(n log n) per model. This reproduces R's pROC
(``var(roc, method="delong")``, ``ci.auc``, ``roc.test(method="delong")``); see
``tests/test_stats_delong.py`` for the published values on pROC's ``aSAH``.

Conventions (PITFALLS.md): the z statistic keeps its sign (``auc_a - auc_b``),
the p-value is a real two-sided p (not a log), the CI is a normal interval on
the AUC scale clipped to [0, 1], and each class needs at least two cases.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from multibone.errors import InputError
from multibone.stats._checks import as_labels, as_scores, require_both_classes


@dataclasses.dataclass(frozen=True)
class AUCResult:
    """AUC with its DeLong variance and a normal-theory CI clipped to [0, 1].

    ``direction`` is ``"<"`` when higher scores mean the positive class
    (controls < cases, pROC's notation) and ``">"`` otherwise.
    """

    auc: float
    variance: float
    se: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int
    direction: str = "<"
    level: float = 0.95

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PairedDeLongResult:
    """Paired DeLong test of ``H0: AUC_a == AUC_b`` on the same cases.

    ``z = (auc_a - auc_b) / se_diff`` keeps its sign; ``p`` is two-sided.
    ``ci_low``/``ci_high`` bound ``auc_a - auc_b`` (normal, not clipped).
    """

    auc_a: float
    auc_b: float
    diff: float
    se_diff: float
    z: float
    p: float
    ci_low: float
    ci_high: float
    covariance: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fast_delong(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Sun & Xu fast DeLong on scores ordered positives first.

    Parameters
    ----------
    scores : float array (k, m + n); columns ``[:m]`` are the positives.
    m : number of positives.

    Returns
    -------
    aucs : (k,) AUCs; cov : (k, k) DeLong covariance matrix of the AUCs.
    """
    n = scores.shape[1] - m
    tx = stats.rankdata(scores[:, :m], axis=1)
    ty = stats.rankdata(scores[:, m:], axis=1)
    tz = stats.rankdata(scores, axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def _prepare(y: object, score_list: list[object]) -> tuple[np.ndarray, int, int]:
    labels = as_labels(y, "y")
    rows = [
        as_scores(s, labels.shape[0], f"score{'' if len(score_list) == 1 else i}")
        for i, s in enumerate(score_list)
    ]
    require_both_classes(labels, 2, "AUC (DeLong)")
    order = np.argsort(-labels, kind="stable")  # positives first
    m = int(labels.sum())
    return np.vstack(rows)[:, order], m, labels.shape[0] - m


def _resolve_direction(y: np.ndarray, s: np.ndarray, direction: str) -> str:
    if direction in ("<", ">"):
        return direction
    if direction != "auto":
        raise InputError(f"direction must be '<', '>' or 'auto', got {direction!r}")
    # pROC: controls < cases when median(controls) <= median(cases).
    return "<" if np.median(s[y == 0]) <= np.median(s[y == 1]) else ">"


def delong_auc(y: object, score: object, *, level: float = 0.95, direction: str = "<") -> AUCResult:
    """ROC AUC with DeLong variance and CI.

    Parameters
    ----------
    y : array-like (n,) of 0/1 labels (1 = positive class / "case").
    score : array-like (n,) float, any scale (probability, logit, rank).
    level : confidence level of the CI (0.95 -> 95 %).
    direction : ``"<"`` (default) higher scores mean positive; ``">"`` the
        reverse; ``"auto"`` chooses like pROC (``"<"`` when the median of the
        negatives is <= the median of the positives).

    Returns
    -------
    AUCResult; CI = ``auc +/- z_{(1+level)/2} * se`` clipped to [0, 1] (pROC).

    Raises
    ------
    SingleClassError when a class has fewer than two cases.
    """
    labels = as_labels(y, "y")
    s = as_scores(score, labels.shape[0], "score")
    require_both_classes(labels, 2, "AUC (DeLong)")
    d = _resolve_direction(labels, s, direction)
    ordered, m, n = _prepare(labels, [s if d == "<" else -s])
    aucs, cov = _fast_delong(ordered, m)
    auc = float(np.clip(aucs[0], 0.0, 1.0))
    var = float(max(cov[0, 0], 0.0))
    se = float(np.sqrt(var))
    zq = stats.norm.ppf(0.5 + level / 2.0)
    return AUCResult(
        auc=auc,
        variance=var,
        se=se,
        ci_low=float(np.clip(auc - zq * se, 0.0, 1.0)),
        ci_high=float(np.clip(auc + zq * se, 0.0, 1.0)),
        n_pos=m,
        n_neg=n,
        direction=d,
        level=level,
    )


def delong_paired(
    y: object, score_a: object, score_b: object, *, level: float = 0.95
) -> PairedDeLongResult:
    """Paired DeLong test of two correlated AUCs (same cases, two models).

    ``z = (AUC_a - AUC_b) / sqrt(Var_a + Var_b - 2 Cov_ab)`` with the DeLong
    covariance; ``p = 2 * (1 - Phi(|z|))``. Both scores use direction ``"<"``
    (higher = positive). When both scores rank every pair identically the
    variance of the difference is 0: z = 0 and p = 1 are returned.

    Parameters
    ----------
    y : (n,) 0/1 labels; score_a, score_b : (n,) float scores of the same cases.

    Returns
    -------
    PairedDeLongResult (signed z, real two-sided p, normal CI of the difference).
    """
    ordered, m, n = _prepare(y, [score_a, score_b])
    aucs, cov = _fast_delong(ordered, m)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) <= 1e-15 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2.0 * stats.norm.sf(abs(z)))
    zq = stats.norm.ppf(0.5 + level / 2.0)
    return PairedDeLongResult(
        auc_a=float(np.clip(aucs[0], 0, 1)),
        auc_b=float(np.clip(aucs[1], 0, 1)),
        diff=diff,
        se_diff=se,
        z=float(z),
        p=p,
        ci_low=float(diff - zq * se),
        ci_high=float(diff + zq * se),
        covariance=float(cov[0, 1]),
        n_pos=m,
        n_neg=n,
    )
