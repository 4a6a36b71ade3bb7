"""Calibration of predicted probabilities.

With the linear predictor ``LP = logit(p)`` (Steyerberg, *Clinical Prediction
Models*, 2nd ed., ch. 15; Van Calster et al. 2016, J Clin Epidemiol 74:167-176):

* calibration intercept ("calibration-in-the-large"): ``a`` in
  ``logit P(y=1) = a + 1 * LP`` (LP as offset); 0 is ideal, > 0 means the model
  under-predicts risk;
* calibration slope: ``b`` in ``logit P(y=1) = a' + b LP``; 1 is ideal, < 1
  means predictions are too extreme (overfitting);
* Brier score ``mean((p - y)^2)``; O/E ratio ``sum(y) / sum(p)``;
* decile table: cases binned by predicted risk (10 quantile bins), mean
  predicted vs observed rate with a Wilson CI per bin.

Both logistic fits use ``statsmodels.api.GLM`` (binomial, logit link); Wald
CIs come from the fits. This reproduces R's predRupdate ``pred_validate`` on its
SYNPM data (tests/test_evaluation_calibration.py).

Saturated probabilities. A model that outputs exactly 0 or 1 has an infinite
LP. Probabilities are clipped to ``[EPS, 1 - EPS]`` with ``EPS = 1e-6``
(``|LP| <= 13.8``) before the logit: a model answering 0 or 1 is taken at its
word as at least that certain. The intercept is the root of its (monotone)
score equation, found by bracketing, so a few confidently wrong saturated
cases give a large but finite intercept instead of the overflow an iterative
fit runs into (the demo once printed -9.0e14). ``note`` says how many
probabilities were clipped, since the intercept and slope then depend on EPS;
a slope fit that does not converge to a finite value is reported as NaN,
"not estimable", with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd

from multibone.evaluation._checks import (
    SingleClassError,
    as_labels,
    as_probabilities,
    as_scores,
    require_both_classes,
)
from multibone.stats import wilson

#: Probabilities are clipped to ``[EPS, 1 - EPS]`` before the logit (module doc).
EPS = 1e-6
_EPS = EPS


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """Calibration summary (see module docstring). CIs are 95 % Wald intervals."""

    intercept: float
    intercept_ci_low: float
    intercept_ci_high: float
    slope: float
    slope_ci_low: float
    slope_ci_high: float
    brier: float
    oe_ratio: float
    n: int
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with p clipped to ``[EPS, 1 - EPS]`` (EPS = 1e-6)."""
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def calibration(
    y: object, p: object | None = None, *, lp: object | None = None
) -> CalibrationResult:
    """Calibration intercept, slope, Brier score and O/E ratio.

    Parameters
    ----------
    y : (n,) 0/1 outcomes.
    p : (n,) predicted probabilities in [0, 1] (or give ``lp``).
    lp : (n,) linear predictor (log-odds); when given, ``p = expit(lp)``.

    A single-class ``y`` (or a constant LP) makes the slope undefined: NaN with a note.
    """
    import statsmodels.api as sm
    from scipy.special import expit

    labels = as_labels(y, "y")
    if lp is not None:
        lin = as_scores(lp, labels.shape[0], "lp")
        prob = expit(lin)
    else:
        prob = as_probabilities(p, labels.shape[0], "p")
        lin = logit(prob)
    n = labels.shape[0]
    brier = float(np.mean((prob - labels) ** 2))
    oe = float(labels.sum() / prob.sum()) if prob.sum() > 0 else math.nan
    nan = math.nan
    try:
        require_both_classes(labels, 1, "calibration intercept/slope")
    except SingleClassError as exc:  # report what remains (Brier, O/E)
        return CalibrationResult(nan, nan, nan, nan, nan, nan, brier, oe, n, str(exc))
    notes = []
    if lp is None:
        n_sat = int(((prob <= EPS) | (prob >= 1 - EPS)).sum())
        if n_sat:
            notes.append(
                f"{n_sat} of {n} probabilities were 0 or 1 (within {EPS:g}), clipped to "
                f"[{EPS:g}, 1 - {EPS:g}]: intercept and slope depend on that clip"
            )
    a, a_lo, a_hi = _intercept(labels, lin)
    if np.ptp(lin) == 0:
        notes.append("constant predictions: slope undefined")
        return CalibrationResult(a, a_lo, a_hi, nan, nan, nan, brier, oe, n, "; ".join(notes))
    ones = np.ones((n, 1))
    with warnings.catch_warnings(record=True) as caught:
        # a perfectly separating score makes the slope diverge: report it in `note`
        warnings.simplefilter("always")
        fit_b = sm.GLM(labels, np.column_stack([ones, lin]), family=sm.families.Binomial()).fit()
    b = float(fit_b.params[1])
    b_lo, b_hi = (float(v) for v in fit_b.conf_int()[1])
    if any("separation" in str(w.message).lower() for w in caught):
        notes.append("perfect separation: the calibration slope is not identified (very large)")
    elif not (getattr(fit_b, "converged", True) and all(map(math.isfinite, (b, b_lo, b_hi)))):
        notes.append("slope not estimable: the logistic fit of outcome on LP did not converge")
        b = b_lo = b_hi = nan
    return CalibrationResult(a, a_lo, a_hi, b, b_lo, b_hi, brier, oe, n, "; ".join(notes))


def _intercept(labels: np.ndarray, lin: np.ndarray) -> tuple[float, float, float]:
    """Calibration-in-the-large ``a`` (``logit P(y) = a + LP``) with its 95 % Wald CI.

    The maximum-likelihood ``a`` solves ``sum(y - expit(a + LP)) = 0``, whose
    left side falls monotonically in ``a``: bracketed and solved by Brent's
    method (the same estimate as statsmodels' GLM with LP as offset, without
    its overflow when LP is huge). Needs both classes in ``labels``.
    """
    from scipy.optimize import brentq
    from scipy.special import expit

    observed = float(labels.sum())

    def score(a: float) -> float:
        return observed - float(expit(a + lin).sum())

    lo, hi = -1.0, 1.0
    while score(lo) < 0:
        lo *= 2.0
    while score(hi) > 0:
        hi *= 2.0
    a = float(brentq(score, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=500))
    q = expit(a + lin)
    info = float(np.sum(q * (1.0 - q)))
    se = 1.0 / math.sqrt(info) if info > 0 else math.inf
    z = 1.959963984540054
    return a, a - z * se, a + z * se


def calibration_table(y: object, p: object, *, n_bins: int = 10) -> pd.DataFrame:
    """Decile (quantile-bin) calibration table.

    Returns a DataFrame with one row per bin: ``bin`` (1..), ``p_low``, ``p_high``
    (range of predicted risk), ``n``, ``mean_predicted``, ``observed`` (event
    rate), ``observed_ci_low``, ``observed_ci_high`` (Wilson). Bins with equal
    edges (many tied predictions) are merged, so fewer than ``n_bins`` may appear.
    """
    labels = as_labels(y, "y")
    prob = as_probabilities(p, labels.shape[0], "p")
    if labels.shape[0] == 0:
        return pd.DataFrame(
            columns=[
                "bin",
                "p_low",
                "p_high",
                "n",
                "mean_predicted",
                "observed",
                "observed_ci_low",
                "observed_ci_high",
            ]
        )
    k = max(1, min(n_bins, labels.shape[0]))
    codes = pd.qcut(prob, k, labels=False, duplicates="drop")
    codes = np.asarray(codes, dtype=float)
    codes = np.where(np.isnan(codes), 0, codes).astype(int)
    rows = []
    for i, c in enumerate(np.unique(codes), start=1):
        m = codes == c
        w = wilson(int(labels[m].sum()), int(m.sum()))
        rows.append(
            {
                "bin": i,
                "p_low": float(prob[m].min()),
                "p_high": float(prob[m].max()),
                "n": int(m.sum()),
                "mean_predicted": float(prob[m].mean()),
                "observed": w.value,
                "observed_ci_low": w.ci_low,
                "observed_ci_high": w.ci_high,
            }
        )
    return pd.DataFrame(rows)
