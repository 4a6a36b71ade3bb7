"""Step 2 of the two-step CV: tune, compare and fit stackers on out-of-fold scores.

* :func:`tune_family` - scikit-learn's grid/random search over one family's
  grid, scored by ROC AUC on patient-grouped stratified inner folds (computed
  once, passed as explicit splits).
* :func:`compare_families` - the comparison table of seed 004 (Supp. Fig. 7):
  per family, the pooled out-of-fold AUC of its tuned configuration over the
  inner folds, with a patient-level stratified bootstrap percentile 95 % CI.
  The AUC is the one the tuning selected on, so it is mildly optimistic
  (selection over ``n_iter`` candidates); it ranks families, while
  :func:`oof_predict` gives honest (nested) predictions for the chosen one.
* :class:`TunedStacker` - the estimator "tune on inner folds, then fit a
  calibrated :class:`Stacker`"; :func:`fit_stacker` fits one.
* :func:`oof_predict` - nested CV: ``cross_val_predict`` of a TunedStacker
  over outer folds (tuning and calibration on each training part's own folds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import (
    GridSearchCV,
    ParameterGrid,
    RandomizedSearchCV,
    cross_val_predict,
)
from sklearn.utils.validation import check_is_fitted

from multibone.errors import InputError
from multibone.stacking.config import StackingConfig
from multibone.stacking.families import get_family, make_estimator, restrict_grid
from multibone.stacking.folds import (
    Split,
    check_binary_labels,
    encode_binary_labels,
    make_group_folds,
    splits_from_fold_ids,
)
from multibone.stacking.model import Stacker, _as_frame
from multibone.stats import auc_score, bootstrap_auc

CI_METHOD = "bootstrap percentile 95% CI (patients resampled within class)"


@dataclass
class TuningResult:
    """Outcome of :func:`tune_family`.

    best_params: model parameters (no pipeline prefix). mean_fold_auc: mean
    inner-fold AUC of the best candidate. oof: (n,) out-of-fold P(positive) of
    the best candidate over ``splits`` (None unless asked). n_candidates,
    seconds: budget used.
    """

    family: str
    best_params: dict[str, Any]
    mean_fold_auc: float
    splits: list[Split]
    n_candidates: int
    seconds: float
    oof: np.ndarray | None = None


def _prepare(X: Any, y: Any, groups: Any) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = _as_frame(X)
    y = check_binary_labels(y, "y")
    if y.shape[0] != frame.shape[0]:
        raise InputError(f"y has {y.shape[0]} labels for {frame.shape[0]} rows of X")
    groups = np.arange(y.shape[0]) if groups is None else np.asarray(groups)
    if groups.shape[0] != y.shape[0]:
        raise InputError(f"groups has {groups.shape[0]} entries for {y.shape[0]} rows of X")
    return frame, y, groups


def _search(
    estimator: Any, grid: dict[str, list[Any]], splits: list[Split], n_iter: int, seed: int
):
    """scikit-learn's search over ``grid`` scored by ROC AUC on explicit splits:
    the whole grid (GridSearchCV) when it has at most ``n_iter`` points, else
    ``n_iter`` points sampled without replacement (RandomizedSearchCV, seeded)."""
    common = dict(scoring="roc_auc", cv=splits, n_jobs=1, refit=False, error_score="raise")
    if len(ParameterGrid(grid)) <= n_iter:
        return GridSearchCV(estimator, grid, **common)
    return RandomizedSearchCV(estimator, grid, n_iter=n_iter, random_state=seed, **common)


def family_grid(family: str) -> dict[str, list[Any]]:
    """Tuning grid of a family as parameters of :func:`make_estimator`'s
    pipeline (``model__max_depth``); ``estimator__`` + these on a Stacker."""
    return {f"model__{k}": list(v) for k, v in get_family(family).grid.items()}


class TunedStacker(ClassifierMixin, BaseEstimator):
    """A :class:`Stacker` whose estimator is tuned at ``fit``, then calibrated.

    ``fit`` makes the Stacker's patient-grouped folds (``stacker.cv``,
    ``stacker.random_state``), searches ``param_grid`` over the uncalibrated
    estimator on them by ROC AUC (calibration is monotone, so it ranks
    candidates alike), then fits a clone of the Stacker with the best
    parameters; tuning and calibration share those folds. Being an estimator,
    it nests in ``cross_val_predict`` (nested CV: each outer training part is
    tuned on its own inner folds).

    Parameters
    ----------
    stacker: unfitted :class:`Stacker` (its ``estimator`` is what is tuned).
    param_grid: grid over the estimator's parameters (``model__max_depth``);
        ``n_neighbors`` values are capped below the inner training size.
    n_iter: candidates tried at most (the whole grid if smaller).

    Fitted attributes
    -----------------
    stacker_ (the fitted Stacker), classes_, best_params_ (estimator
    parameters), best_score_ (mean inner-fold AUC), n_candidates_,
    cv_splits_ (the inner folds).
    """

    def __init__(
        self, stacker: Stacker | None = None, param_grid: dict | None = None, *, n_iter: int = 6
    ):
        self.stacker = stacker
        self.param_grid = param_grid
        self.n_iter = n_iter

    def fit(self, X: Any, y: Any, groups: Any = None) -> TunedStacker:
        """X (n, f) float (NaN = missing), y (n,) two labels, groups (n,) patient ids."""
        stacker = Stacker() if self.stacker is None else self.stacker
        frame = _as_frame(X)
        _, y01 = encode_binary_labels(y, "y")
        if y01.shape[0] != frame.shape[0]:
            raise InputError(f"y has {y01.shape[0]} labels for {frame.shape[0]} rows of X")
        g = np.arange(y01.shape[0]) if groups is None else np.asarray(groups)
        if g.shape[0] != y01.shape[0]:
            raise InputError(f"groups has {g.shape[0]} entries for {y01.shape[0]} rows of X")
        A = frame.to_numpy()
        splits = stacker._calibration_splits(A, y01, g, what="inner CV")
        grid = restrict_grid(self.param_grid or {}, min(len(tr) for tr, _ in splits))
        self.cv_splits_ = splits
        self.best_params_, self.best_score_, self.n_candidates_ = {}, float("nan"), 0
        if grid:
            estimator = stacker._make_estimator()
            search = _search(estimator, grid, splits, self.n_iter, stacker.random_state)
            search.fit(A, y01)
            self.best_params_ = dict(search.best_params_)
            self.best_score_ = float(search.best_score_)
            self.n_candidates_ = len(search.cv_results_["params"])
        best = {f"estimator__{k}": v for k, v in self.best_params_.items()}
        self.stacker_ = clone(stacker).set_params(**best).fit(frame, y, groups)
        self.classes_ = self.stacker_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """The fitted Stacker's calibrated probabilities, (n, 2) in ``classes_`` order."""
        check_is_fitted(self, "stacker_")
        return self.stacker_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "stacker_")
        return self.stacker_.predict(X)


def _family_stacker(config: StackingConfig, family: str, params: dict | None = None) -> Stacker:
    """Unfitted Stacker of a family as configured (``params``: model parameters)."""
    estimator = make_estimator(
        family,
        missing_indicator=config.missing_indicator,
        random_state=config.seed,
        **(params or {}),
    )
    return Stacker(
        estimator, calibration=config.calibration, cv=config.inner_folds, random_state=config.seed
    )


def tune_family(
    X: Any,
    y: Any,
    groups: Any,
    config: StackingConfig,
    family: str,
    *,
    splits: list[Split] | None = None,
    return_oof: bool = False,
) -> TuningResult:
    """Tune one family's uncalibrated pipeline by inner patient-grouped CV on AUC.

    The whole grid is searched when it has at most ``config.n_iter`` points,
    else ``n_iter`` points are sampled (without replacement, seeded). Calibration
    is monotone, so tuning the uncalibrated pipeline selects on the same ranking.

    Parameters
    ----------
    X: DataFrame (n, f) float (NaN = missing). y: (n,) 0/1. groups: (n,) patient ids.
    splits: explicit inner splits; default ``make_group_folds(y, groups,
        config.inner_folds, config.seed)`` (the folds the Stacker calibrates on).
    return_oof: also compute the best candidate's out-of-fold predictions.
    """
    get_family(family)
    frame, y, groups = _prepare(X, y, groups)
    if splits is None:
        splits = make_group_folds(y, groups, config.inner_folds, config.seed, what="inner CV")
    A = frame.to_numpy()
    grid = restrict_grid(family_grid(family), min(len(tr) for tr, _ in splits))
    pipe = make_estimator(
        family, missing_indicator=config.missing_indicator, random_state=config.seed
    )
    t0 = time.perf_counter()
    search = _search(pipe, grid, splits, config.n_iter, config.seed).fit(A, y)
    oof = None
    if return_oof:
        best_pipe = clone(pipe).set_params(**search.best_params_)
        oof = cross_val_predict(best_pipe, A, y, cv=splits, method="predict_proba", n_jobs=1)[:, 1]
    return TuningResult(
        family=family,
        best_params={k.removeprefix("model__"): v for k, v in search.best_params_.items()},
        mean_fold_auc=float(search.best_score_),
        splits=splits,
        n_candidates=len(search.cv_results_["params"]),
        seconds=time.perf_counter() - t0,
        oof=oof,
    )


def compare_families(
    X: Any,
    y: Any,
    groups: Any,
    config: StackingConfig,
    families: Sequence[str] | None = None,
    *,
    progress: bool = True,
) -> pd.DataFrame:
    """Tune every family on the same inner folds and tabulate their CV AUC.

    Returns
    -------
    DataFrame, one row per family in the order given (``config.compare`` by
    default): ``family, label, cv_auc`` (pooled out-of-fold AUC of the tuned
    configuration over the inner folds), ``ci_low, ci_high`` (bootstrap
    percentile 95 % CI, ``config.bootstrap`` resamples), ``ci_method``,
    ``mean_fold_auc``, ``best_params`` (dict), ``n_candidates``, ``seconds``.
    """
    from tqdm.auto import tqdm

    families = list(config.compare if families is None else families)
    for f in families:
        get_family(f)
    frame, y, groups = _prepare(X, y, groups)
    splits = make_group_folds(y, groups, config.inner_folds, config.seed, what="inner CV")
    rows = []
    for f in tqdm(families, desc="stacker families", disable=not progress or None):
        res = tune_family(frame, y, groups, config, f, splits=splits, return_oof=True)
        lo = hi = float("nan")
        if config.bootstrap > 0:
            ci = bootstrap_auc(y, res.oof, groups=groups, n_boot=config.bootstrap, seed=config.seed)
            lo, hi = ci.ci_low, ci.ci_high
        rows.append(
            {
                "family": f,
                "label": get_family(f).label,
                "cv_auc": auc_score(y, res.oof),
                "ci_low": lo,
                "ci_high": hi,
                "ci_method": CI_METHOD,
                "mean_fold_auc": res.mean_fold_auc,
                "best_params": res.best_params,
                "n_candidates": res.n_candidates,
                "seconds": res.seconds,
            }
        )
    return pd.DataFrame(rows)


def fit_stacker(
    X: Any,
    y: Any,
    groups: Any,
    config: StackingConfig,
    family: str | None = None,
    *,
    params: dict[str, Any] | None = None,
) -> Stacker:
    """Tune (unless ``params`` is given) and fit a :class:`Stacker`.

    Tuning and calibration share the inner folds ``make_group_folds(y, groups,
    config.inner_folds, config.seed)`` (:class:`TunedStacker`). The returned
    stacker carries ``tuning_``: None when ``params`` was given, else a dict
    with ``best_params`` (model parameters, no prefix), ``mean_fold_auc``,
    ``n_candidates``, ``seconds`` and the inner ``splits`` (list of
    (train_idx, test_idx)) the search used.

    Parameters
    ----------
    X: DataFrame (n, f): backbone probability columns then clinical features
       (float, NaN = missing); zero backbone columns is fine.
    y: (n,) 0/1 (1 = positive class). groups: (n,) patient ids or None.
    family: default ``config.family``.
    """
    family = config.family if family is None else family
    get_family(family)
    frame, y, groups = _prepare(X, y, groups)
    if params is not None:
        stacker = _family_stacker(config, family, params).fit(frame, y, groups)
        stacker.tuning_ = None
        return stacker
    t0 = time.perf_counter()
    tuned = TunedStacker(_family_stacker(config, family), family_grid(family), n_iter=config.n_iter)
    tuned.fit(frame, y, groups)
    stacker = tuned.stacker_
    stacker.tuning_ = {
        "best_params": {k.removeprefix("model__"): v for k, v in tuned.best_params_.items()},
        "mean_fold_auc": tuned.best_score_,
        "n_candidates": tuned.n_candidates_,
        "seconds": time.perf_counter() - t0,
        "splits": tuned.cv_splits_,
    }
    return stacker


def oof_predict(
    X: Any,
    y: Any,
    groups: Any,
    config: StackingConfig,
    family: str | None = None,
    *,
    folds: Any = None,
    params: dict[str, Any] | None = None,
) -> np.ndarray:
    """Out-of-fold calibrated P(positive) of a family by nested CV.

    ``cross_val_predict`` over outer folds: ``folds`` (a per-row fold id, e.g.
    the ``fold`` column of ``patient_scores.csv``; every row needs one >= 0),
    else ``make_group_folds(..., config.inner_folds, config.seed + 1)``. Each
    outer training part is tuned (:class:`TunedStacker`, unless ``params`` is
    given) and calibrated on its own inner folds (patient ids routed to ``fit``
    as ``groups``), so no prediction comes from a model, a hyper-parameter
    choice or a calibrator that saw the patient.

    Returns
    -------
    float64 (n,) probabilities in [0, 1].
    """
    family = config.family if family is None else family
    get_family(family)
    frame, y, groups = _prepare(X, y, groups)
    if folds is None:
        outer = make_group_folds(y, groups, config.inner_folds, config.seed + 1, what="outer CV")
    else:
        outer = splits_from_fold_ids(folds, groups, y, what="outer CV")
        untested = np.setdiff1d(np.arange(y.shape[0]), np.concatenate([te for _, te in outer]))
        if untested.size:
            raise InputError(f"outer CV: {untested.size} row(s) have no fold (fold < 0)")
    if params is None:
        est = TunedStacker(
            _family_stacker(config, family), family_grid(family), n_iter=config.n_iter
        )
    else:
        est = _family_stacker(config, family, params)
    # without metadata routing, `params` go to est.fit, sliced to each training part
    proba = cross_val_predict(
        est, frame, y, cv=outer, params={"groups": groups}, method="predict_proba", n_jobs=1
    )
    return np.asarray(proba[:, 1], dtype="float64")
