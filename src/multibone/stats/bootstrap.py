"""The one bootstrap of multibone: plain, stratified, patient-clustered; vectorised.

A resample is a matrix of counts ``W`` (how many times each row was drawn),
never a copy of the data:

* plain (``stratified=False``): draw n rows (or clusters) from all of them;
* stratified (default): within each class, draw as many rows (or clusters) as
  the class has, with replacement; the class sizes are those of the data, as in
  Hasei et al. 2025 (seed 000, "case-level stratified bootstrapping");
* clustered (``groups`` given, e.g. patient ids for image-level rows): draw
  clusters with replacement and keep all their rows (a cluster drawn twice
  counts twice). Clusters are stratified by label when every cluster has one
  label; otherwise they are drawn without stratification (class sizes then vary
  and a resample with an empty class gives NaN, counted in ``n_failed``).

Statistics are computed from ``W`` for many resamples at once:

* AUC: Mann-Whitney with weights. Scores are sorted once and tied scores
  pooled, so ``AUC_b = sum_g Wneg_bg (P_b(>g) + Wpos_bg / 2) / (P_b N_b)``
  (ties count 1/2), O(B n) after one O(n log n) sort;
* threshold metrics: TP/FP/TN/FN as ``W @ indicator``;
* ROC band: TPR at a fixed FPR grid from weighted cumulative counts.

Percentile intervals (Efron & Tibshirani 1993, ch. 13): the ``(1-level)/2`` and
``(1+level)/2`` quantiles of the resampled statistic (``numpy.nanquantile``,
linear interpolation). Resamples are reproducible from ``seed``
(``numpy.random.default_rng``); two calls with the same seed and data see the
same resamples, so differences between models are paired.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import numpy as np

from multibone.errors import InputError
from multibone.stats._checks import as_labels, as_scores
from multibone.stats.auc import auc_score

# Elements of the (chunk, n) weight matrix built at once: bounds memory (~32 MB int64).
_CHUNK_ELEMENTS = 4_000_000


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
    """Point estimate on the full data and a percentile interval over resamples."""

    estimate: float
    ci_low: float
    ci_high: float
    n_boot: int
    n_failed: int
    level: float = 0.95
    method: str = "percentile"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def percentile_ci(samples: np.ndarray, estimate: float, level: float = 0.95) -> BootstrapCI:
    """Percentile CI of ``samples`` (B,) ignoring NaN (failed) resamples."""
    samples = np.asarray(samples, dtype=float)
    ok = np.isfinite(samples)
    n_failed = int((~ok).sum())
    if ok.sum() < 2:
        return BootstrapCI(float(estimate), math.nan, math.nan, samples.shape[0], n_failed, level)
    lo, hi = np.quantile(samples[ok], [(1 - level) / 2, (1 + level) / 2])
    return BootstrapCI(float(estimate), float(lo), float(hi), samples.shape[0], n_failed, level)


def _metrics_of_counts(c: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold metrics of count rows ``c`` (k, 4) = TP, FP, TN, FN; NaN where a denominator is 0."""
    tp, fp, tn, fn = c.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (tp + tn) / c.sum(axis=1),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }


class Bootstrap:
    """Resampling plan shared by several statistics (so comparisons are paired).

    Parameters
    ----------
    y : (n,) 0/1 labels of the rows.
    n_boot : number of resamples B (default 5,000).
    groups : optional (n,) cluster ids (e.g. patient_id); clusters are resampled whole.
    stratified : resample within each class (of rows, or of single-label clusters).
    seed : seed of ``numpy.random.default_rng``; same seed -> same resamples.
    """

    def __init__(
        self,
        y: object,
        *,
        n_boot: int = 5000,
        groups: object | None = None,
        stratified: bool = True,
        seed: int = 0,
    ) -> None:
        self.y = as_labels(y, "y")
        if int(n_boot) < 1:
            raise InputError(f"n_boot must be >= 1, got {n_boot}")
        self.n_boot = int(n_boot)
        self.seed = int(seed)
        n = self.y.shape[0]
        if n == 0:
            raise InputError("cannot bootstrap an empty set")
        if groups is None:
            self._unit_of_row = np.arange(n)
            unit_label = self.y.astype(float)
        else:
            g = np.asarray(groups)
            if g.shape != (n,):
                raise InputError(f"groups has shape {g.shape}, expected ({n},)")
            _, self._unit_of_row = np.unique(g, return_inverse=True)
            n_units = int(self._unit_of_row.max()) + 1
            s = np.bincount(self._unit_of_row, weights=self.y, minlength=n_units)
            c = np.bincount(self._unit_of_row, minlength=n_units)
            unit_label = s / c
        self.n_units = int(self._unit_of_row.max()) + 1
        pure = np.all((unit_label == 0) | (unit_label == 1))
        if stratified and pure:
            self._strata = [np.flatnonzero(unit_label == v) for v in (0.0, 1.0)]
            self._strata = [s for s in self._strata if s.size]
        else:
            self._strata = [np.arange(self.n_units)]
        self.stratified = bool(stratified and pure)
        self.chunk = max(1, min(self.n_boot, _CHUNK_ELEMENTS // max(n, self.n_units)))

    # -- resamples --------------------------------------------------------------------
    def weights(self) -> Iterator[np.ndarray]:
        """Yield count matrices (chunk, n) int64 covering all B resamples, in order."""
        rng = np.random.default_rng(self.seed)
        done = 0
        while done < self.n_boot:
            b = min(self.chunk, self.n_boot - done)
            unit_w = np.zeros((b, self.n_units), dtype=np.int64)
            for idx in self._strata:
                k = idx.size
                draws = rng.integers(0, k, size=(b, k))
                flat = (draws + (np.arange(b) * k)[:, None]).ravel()
                counts = np.bincount(flat, minlength=b * k).reshape(b, k)
                unit_w[:, idx] = counts
            yield unit_w[:, self._unit_of_row]
            done += b

    def indices(self) -> Iterator[np.ndarray]:
        """Yield each resample as row indices (slow path for arbitrary statistics)."""
        rows = np.arange(self.y.shape[0])
        for w in self.weights():
            for wb in w:
                yield np.repeat(rows, wb)

    # -- statistics ---------------------------------------------------------------------
    def auc_samples(self, score: object) -> np.ndarray:
        """AUC of each resample, (B,) float; NaN where a class is empty."""
        s = as_scores(score, self.y.shape[0], "score")
        order = np.argsort(s, kind="stable")
        s_sorted = s[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        ypos = self.y[order].astype(bool)
        out = np.empty(self.n_boot)
        i = 0
        for w in self.weights():
            w = w[:, order]
            wp = np.where(ypos, w, 0)
            wn = w - wp
            gp = np.add.reduceat(wp, starts, axis=1).astype(float)
            gn = np.add.reduceat(wn, starts, axis=1).astype(float)
            cum_p = np.cumsum(gp, axis=1)
            p_tot = cum_p[:, -1]
            n_tot = gn.sum(axis=1)
            above = p_tot[:, None] - cum_p  # positives with a strictly higher score
            num = np.sum(gn * (above + 0.5 * gp), axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i : i + w.shape[0]] = np.where(
                    (p_tot > 0) & (n_tot > 0), num / (p_tot * n_tot), np.nan
                )
            i += w.shape[0]
        return out

    def metric_samples(self, score: object, threshold: float) -> dict[str, np.ndarray]:
        """Accuracy, sensitivity, specificity, PPV, NPV, F1 of ``score >= threshold``.

        Returns ``{name: (B,) float}``; NaN where a denominator is 0.
        """
        c = np.vstack([self.counts(score, threshold, w) for w in self.weights()])
        return _metrics_of_counts(c)

    def counts(self, score: object, threshold: float, w: np.ndarray) -> np.ndarray:
        """TP, FP, TN, FN (k, 4) float of ``score >= threshold`` under count weights ``w`` (k, n)."""
        s = as_scores(score, self.y.shape[0], "score")
        call = s >= threshold
        pos = self.y.astype(bool)
        ind = np.stack([pos & call, ~pos & call, ~pos & ~call, pos & ~call], axis=1).astype(float)
        return w @ ind

    def roc_band(
        self, score: object, fpr_grid: np.ndarray | None = None, level: float = 0.95
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pointwise percentile band of the ROC curve.

        For each resample, TPR at each grid FPR x is the largest TPR among
        thresholds whose FPR <= x. Returns ``(fpr_grid, tpr_low, tpr_high)``.
        """
        grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else np.asarray(fpr_grid, float)
        s = as_scores(score, self.y.shape[0], "score")
        order = np.argsort(-s, kind="stable")
        s_sorted = s[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        ypos = self.y[order].astype(bool)
        curves = np.empty((self.n_boot, grid.size))
        i = 0
        for w in self.weights():
            w = w[:, order]
            wp = np.where(ypos, w, 0)
            tp = np.cumsum(np.add.reduceat(wp, starts, axis=1), axis=1).astype(float)
            fp = np.cumsum(np.add.reduceat(w - wp, starts, axis=1), axis=1).astype(float)
            for tpb, fpb in zip(tp, fp, strict=True):
                if tpb[-1] == 0 or fpb[-1] == 0:
                    curves[i] = np.nan
                else:
                    tpr = np.r_[0.0, tpb / tpb[-1]]
                    fpr = np.r_[0.0, fpb / fpb[-1]]
                    j = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
                    curves[i] = tpr[j]
                i += 1
        ok = np.isfinite(curves).all(axis=1)
        if ok.sum() < 2:
            nan = np.full(grid.size, np.nan)
            return grid, nan, nan
        lo, hi = np.quantile(curves[ok], [(1 - level) / 2, (1 + level) / 2], axis=0)
        return grid, lo, hi

    def generic_samples(
        self, statistic: Callable[[np.ndarray, np.ndarray], float], *arrays: object
    ) -> np.ndarray:
        """Any ``statistic(y_b, *arrays_b)`` on each resample (a Python loop; slow path).

        A resample where the statistic raises a :class:`~multibone.errors.MultiboneError`
        or ``ValueError`` gives NaN.
        """
        arrs = [np.asarray(a) for a in arrays]
        out = np.empty(self.n_boot)
        for b, idx in enumerate(self.indices()):
            try:
                out[b] = statistic(self.y[idx], *(a[idx] for a in arrs))
            except ValueError:
                out[b] = np.nan
        return out


def bootstrap_auc(
    y: object,
    score: object,
    *,
    n_boot: int = 5000,
    groups: object | None = None,
    stratified: bool = True,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI of the AUC (vectorised, rank-based).

    Parameters as :class:`Bootstrap`; ``score`` (n,) float. The estimate is the
    AUC of the full data.
    """
    bs = Bootstrap(y, n_boot=n_boot, groups=groups, stratified=stratified, seed=seed)
    return percentile_ci(bs.auc_samples(score), auc_score(bs.y, score), level)


def bootstrap_auc_difference(
    y: object,
    score_a: object,
    score_b: object,
    *,
    n_boot: int = 5000,
    groups: object | None = None,
    stratified: bool = True,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Paired percentile CI of ``AUC_a - AUC_b`` (both scores on the same resamples)."""
    bs = Bootstrap(y, n_boot=n_boot, groups=groups, stratified=stratified, seed=seed)
    d = bs.auc_samples(score_a) - bs.auc_samples(score_b)
    return percentile_ci(d, auc_score(bs.y, score_a) - auc_score(bs.y, score_b), level)


def bootstrap_metrics(
    y: object,
    score: object,
    threshold: float,
    *,
    n_boot: int = 5000,
    groups: object | None = None,
    stratified: bool = True,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapCI]:
    """Percentile CIs of accuracy, sensitivity, specificity, PPV, NPV and F1 at a fixed threshold."""
    bs = Bootstrap(y, n_boot=n_boot, groups=groups, stratified=stratified, seed=seed)
    # The full data is the resample that draws every row once.
    est = {
        k: float(v[0])
        for k, v in _metrics_of_counts(
            bs.counts(score, threshold, np.ones((1, bs.y.shape[0]), np.int64))
        ).items()
    }
    samples = bs.metric_samples(score, threshold)
    return {k: percentile_ci(samples[k], est[k], level) for k in est}


def bootstrap(
    y: object,
    statistic: Callable[..., float],
    *arrays: object,
    n_boot: int = 5000,
    groups: object | None = None,
    stratified: bool = True,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile CI of any ``statistic(y, *arrays) -> float`` (loops over resamples).

    Prefer :func:`bootstrap_auc` / :func:`bootstrap_metrics` (vectorised) where they apply.
    """
    bs = Bootstrap(y, n_boot=n_boot, groups=groups, stratified=stratified, seed=seed)
    est = statistic(bs.y, *(np.asarray(a) for a in arrays))
    return percentile_ci(bs.generic_samples(statistic, *arrays), est, level)
