"""Paired tests and agreement: McNemar, Cochran's Q, Cohen's and Fleiss' kappa.

* McNemar (McNemar 1947, Psychometrika 12:153-157) with continuity correction:
  ``chi2 = (|b - c| - 1)^2 / (b + c)``, 1 df, where ``b``/``c`` are the
  discordant pair counts; ``statsmodels.stats.contingency_tables.mcnemar
  (exact=False, correction=True)``. No discordant pairs: statistic 0, p = 1
  (statsmodels would divide by zero).
* Cochran's Q (Cochran 1950, Biometrika 37:256-266) for k paired binary
  outcomes: ``Q = (k-1) (k sum_j C_j^2 - N^2) / (k N - sum_i R_i^2)`` with column
  totals ``C_j``, row totals ``R_i``, grand total ``N``; chi-square, k-1 df;
  ``statsmodels.stats.contingency_tables.cochrans_q``.
* Cohen's kappa (Cohen 1960) with the asymptotic SE (ASE) of Fleiss, Cohen &
  Everitt (1969) and the Wald CI ``kappa +/- z ASE``;
  ``statsmodels.stats.inter_rater.cohens_kappa`` (matches SAS PROC FREQ).
* Fleiss' kappa (Fleiss 1971, Psychol Bull 76:378-382) for m raters;
  ``statsmodels.stats.inter_rater.fleiss_kappa``. Its CI here is a percentile
  bootstrap over subjects (rows resampled with replacement, raters kept), since
  the large-sample variance of Fleiss, Nee & Landis (1979) holds only under H0.
* Difference of two kappas against the same truth (e.g. model vs reader, as in
  seed 003): paired permutation test. Under H0 the two raters are exchangeable
  within each subject, so each permutation swaps the two raters' calls for a
  random half of the subjects; ``p = (1 + #{|d*| >= |d|}) / (1 + P)``
  (Phipson & Smyth 2010).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from multibone.errors import InputError
from multibone.evaluation._checks import as_labels


@dataclasses.dataclass(frozen=True)
class McNemarResult:
    """``b`` = a positive & b negative, ``c`` = a negative & b positive; n = pairs."""

    b: int
    c: int
    statistic: float
    p: float
    n: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def mcnemar_test(a: object, b: object) -> McNemarResult:
    """McNemar's test with continuity correction on paired binary outcomes.

    Parameters
    ----------
    a, b : (n,) 0/1 outcomes of the same n subjects (e.g. two models' calls, or
        whether each was correct).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    x = as_labels(a, "a").astype(bool)
    z = as_labels(b, "b").astype(bool)
    if x.shape != z.shape:
        raise InputError(f"a has {x.shape[0]} values but b has {z.shape[0]}")
    n10 = int(np.sum(x & ~z))
    n01 = int(np.sum(~x & z))
    if n10 + n01 == 0:
        return McNemarResult(n10, n01, 0.0, 1.0, int(x.shape[0]))
    table = [[int(np.sum(x & z)), n10], [n01, int(np.sum(~x & ~z))]]
    res = mcnemar(table, exact=False, correction=True)
    return McNemarResult(n10, n01, float(res.statistic), float(res.pvalue), int(x.shape[0]))


def mcnemar_sens_spec(y: object, call_a: object, call_b: object) -> dict[str, McNemarResult]:
    """McNemar for sensitivity (positives' calls), specificity (negatives' calls), accuracy.

    As in Hasei et al. 2025 (seed 000): sensitivities are compared on the
    positive cases, specificities on the negative cases, and accuracy on
    whether each call was correct.
    """
    t = as_labels(y, "y").astype(bool)
    a = as_labels(call_a, "call_a").astype(bool)
    b = as_labels(call_b, "call_b").astype(bool)
    return {
        "sensitivity": mcnemar_test(a[t], b[t]),
        "specificity": mcnemar_test(~a[~t], ~b[~t]),
        "accuracy": mcnemar_test(a == t, b == t),
    }


@dataclasses.dataclass(frozen=True)
class CochranQResult:
    statistic: float
    p: float
    df: int
    n: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def cochran_q(x: object) -> CochranQResult:
    """Cochran's Q on an (n subjects, k raters/models) 0/1 matrix (k >= 2).

    When no subject has discordant outcomes Q is 0/0: statistic 0, p = 1 is returned.
    """
    from statsmodels.stats.contingency_tables import cochrans_q

    arr = np.asarray(x, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(f"Cochran's Q needs an (n, k>=2) matrix, got shape {arr.shape}")
    if not np.isin(arr, (0.0, 1.0)).all():
        raise InputError("Cochran's Q needs 0/1 outcomes")
    k = arr.shape[1]
    rows = arr.sum(axis=1)
    if np.all((rows == 0) | (rows == k)):
        return CochranQResult(0.0, 1.0, k - 1, arr.shape[0])
    res = cochrans_q(arr)
    return CochranQResult(float(res.statistic), float(res.pvalue), int(res.df), arr.shape[0])


@dataclasses.dataclass(frozen=True)
class KappaResult:
    """Kappa with its asymptotic SE and Wald CI (or bootstrap CI for Fleiss)."""

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    method: str
    p: float = math.nan  # two-sided test of kappa == 0 (Cohen only)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _codes(*arrays: object) -> tuple[list[np.ndarray], np.ndarray]:
    """Encode category arrays jointly as integer codes 0..C-1."""
    arrs = [np.asarray(a).astype(str) for a in arrays]
    n = {a.shape for a in arrs}
    if len(n) != 1:
        raise InputError(f"rating arrays differ in length: {[a.shape[0] for a in arrs]}")
    cats, inv = np.unique(np.concatenate(arrs), return_inverse=True)
    inv = inv.reshape(len(arrs), -1)
    return [inv[i] for i in range(len(arrs))], cats


def cohen_kappa(
    a: object, b: object, *, weights: str | None = None, level: float = 0.95
) -> KappaResult:
    """Cohen's kappa of two raters' categorical calls on the same n subjects.

    Parameters
    ----------
    a, b : (n,) categories (any hashable; compared as strings).
    weights : None (simple kappa) or ``"linear"``/``"quadratic"`` (weighted; the
        categories' sorted order is their order). For two categories all agree.
    level : confidence level of the Wald CI ``kappa +/- z * ASE``.

    Returns NaN kappa when chance agreement is 1 (both raters use one category).
    """
    from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

    (ca, cb), cats = _codes(a, b)
    k = max(len(cats), 2)
    table = np.zeros((k, k))
    np.add.at(table, (ca, cb), 1)
    n = int(table.sum())
    pa, pb = table.sum(axis=1) / n, table.sum(axis=0) / n
    if np.isclose(float(pa @ pb), 1.0):
        return KappaResult(math.nan, math.nan, math.nan, math.nan, n, "cohen")
    kw: dict = {}
    if weights is not None:
        if weights not in ("linear", "quadratic"):
            raise InputError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
        kw.update(weights=np.arange(k), wt=weights)
    res = sm_kappa(table, **kw)
    # statsmodels fixes its CI at 95 %; the same Wald interval at any level:
    zq = float(stats.norm.ppf(0.5 + level / 2.0))
    return KappaResult(
        kappa=float(res.kappa),
        se=float(res.std_kappa),
        ci_low=float(res.kappa - zq * res.std_kappa),
        ci_high=float(res.kappa + zq * res.std_kappa),
        n=n,
        method="cohen" if weights is None else f"cohen-{weights}",
        p=float(res.pvalue_two_sided),
    )


def _fleiss_from_counts(counts: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Fleiss' kappa from (n, C) category counts, for (B, n) subject weights ``w``."""
    r = counts.sum(axis=1)
    if not np.all(r == r[0]):
        raise InputError("Fleiss' kappa needs the same number of ratings for every subject")
    r = float(r[0])
    p_i = (np.sum(counts**2, axis=1) - r) / (r * (r - 1))
    if w is None:
        w = np.ones((1, counts.shape[0]))
    tot = w.sum(axis=1)
    p_bar = (w @ p_i) / tot
    p_j = (w @ counts) / (tot[:, None] * r)
    pe = np.sum(p_j**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isclose(pe, 1.0), np.nan, (p_bar - pe) / (1 - pe))


def fleiss_kappa(
    ratings: object,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> KappaResult:
    """Fleiss' kappa of m >= 2 raters with a percentile bootstrap CI over subjects.

    Parameters
    ----------
    ratings : (n subjects, m raters) categories, one column per rater (no missing).
    n_boot : bootstrap resamples of subjects for the CI (0 -> no CI).
    seed : seed of the resampling generator.

    The point estimate is ``statsmodels.stats.inter_rater.fleiss_kappa`` on the
    ``aggregate_raters`` table; ``se`` is the bootstrap standard deviation.
    """
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    arr = np.asarray(ratings)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(f"Fleiss' kappa needs (n subjects, m>=2 raters), got shape {arr.shape}")
    codes, _ = _codes(*arr.T)
    table, _ = aggregate_raters(np.stack(codes, axis=1))
    n = table.shape[0]
    if np.isclose(_fleiss_from_counts(table)[0], np.nan, equal_nan=True):
        return KappaResult(math.nan, math.nan, math.nan, math.nan, n, "fleiss")
    kappa = float(sm_fleiss(table, method="fleiss"))
    if n_boot <= 0:
        return KappaResult(kappa, math.nan, math.nan, math.nan, n, "fleiss")
    from multibone.stats import Bootstrap, percentile_ci

    bs = Bootstrap(np.zeros(n), n_boot=n_boot, stratified=False, seed=seed)
    samples = np.concatenate(
        [_fleiss_from_counts(table.astype(float), w.astype(float)) for w in bs.weights()]
    )
    ci = percentile_ci(samples, kappa, level)
    return KappaResult(
        kappa, float(np.nanstd(samples, ddof=1)), ci.ci_low, ci.ci_high, n, "fleiss (bootstrap CI)"
    )


def fleiss_kappa_table(table: object) -> float:
    """Fleiss' kappa from a ready (n subjects, C categories) count table (statsmodels)."""
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    return float(sm_fleiss(np.asarray(table), method="fleiss"))


@dataclasses.dataclass(frozen=True)
class KappaDifferenceResult:
    """``kappa_a - kappa_b`` (each vs the same truth) with a permutation p-value."""

    kappa_a: float
    kappa_b: float
    diff: float
    p: float
    n_perm: int
    n: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _kappa_rows(truth: np.ndarray, calls: np.ndarray, n_cat: int) -> np.ndarray:
    """Simple Cohen kappa of ``truth`` (n,) against each row of ``calls`` (P, n)."""
    n = truth.shape[0]
    po = np.mean(calls == truth[None, :], axis=1)
    pt = np.bincount(truth, minlength=n_cat) / n
    pc = np.stack([(calls == c).sum(axis=1) / n for c in range(n_cat)], axis=1)
    pe = pc @ pt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isclose(pe, 1.0), np.nan, (po - pe) / (1 - pe))


def kappa_difference_test(
    truth: object,
    calls_a: object,
    calls_b: object,
    *,
    n_perm: int = 10_000,
    seed: int = 0,
) -> KappaDifferenceResult:
    """Paired permutation test of ``kappa(truth, a) - kappa(truth, b)`` (seed 003).

    Parameters
    ----------
    truth, calls_a, calls_b : (n,) categories of the same n subjects.
    n_perm : permutations (seed 003 used 10,000). seed : generator seed.
    """
    (t, a, b), cats = _codes(truth, calls_a, calls_b)
    k = max(len(cats), 2)
    obs = _kappa_rows(t, np.stack([a, b]), k)
    diff = float(obs[0] - obs[1])
    rng = np.random.default_rng(seed)
    n = t.shape[0]
    hits = 0
    valid = 0
    chunk = max(1, 2_000_000 // max(n, 1))
    done = 0
    while done < n_perm:
        m = min(chunk, n_perm - done)
        swap = rng.random((m, n)) < 0.5
        pa = np.where(swap, b, a)
        pb = np.where(swap, a, b)
        d = _kappa_rows(t, pa, k) - _kappa_rows(t, pb, k)
        ok = np.isfinite(d)
        valid += int(ok.sum())
        hits += int(np.sum(np.abs(d[ok]) >= abs(diff) - 1e-12))
        done += m
    p = (1 + hits) / (1 + valid) if np.isfinite(diff) else math.nan
    return KappaDifferenceResult(float(obs[0]), float(obs[1]), diff, float(p), int(n_perm), n)
