"""Step 2 of the two-step CV: tune, compare and fit stackers on out-of-fold scores.

* :func:`tune_family` - small random/grid search over one family's grid,
  scored by ROC AUC on patient-grouped stratified inner folds (computed once,
  passed as explicit splits).
* :func:`compare_families` - the comparison table of seed 004 (Supp. Fig. 7):
  per family, the pooled out-of-fold AUC of its tuned configuration over the
  inner folds, with a patient-level stratified bootstrap percentile 95 % CI.
  The AUC is the one the tuning selected on, so it is mildly optimistic
  (selection over ``n_iter`` candidates); it ranks families, while
  :func:`oof_predict` gives honest (nested) predictions for the chosen one.
* :func:`fit_stacker` - tune then fit a calibrated :class:`Stacker`.
* :func:`oof_predict` - nested CV: outer folds; within each outer training
  part, tuning and calibration on its own inner folds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GridSearchCV,
    ParameterGrid,
    RandomizedSearchCV,
    cross_val_predict,
)

from multibone.errors import InputError
from multibone.stacking.config import StackingConfig
from multibone.stacking.families import get_family
from multibone.stacking.folds import (
    Split,
    check_binary_labels,
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
    spec = get_family(family)
    frame, y, groups = _prepare(X, y, groups)
    if splits is None:
        splits = make_group_folds(y, groups, config.inner_folds, config.seed, what="inner CV")
    A = frame.to_numpy()
    n_train = min(len(tr) for tr, _ in splits)
    grid = {f"model__{k}": v for k, v in spec.grid_for(n_train).items()}
    pipe = spec.pipeline(missing_indicator=config.missing_indicator, random_state=config.seed)
    n_grid = len(ParameterGrid(grid))
    t0 = time.perf_counter()
    common = dict(scoring="roc_auc", cv=splits, n_jobs=1, refit=False, error_score="raise")
    if n_grid <= config.n_iter:
        search = GridSearchCV(pipe, grid, **common)
    else:
        search = RandomizedSearchCV(
            pipe, grid, n_iter=config.n_iter, random_state=config.seed, **common
        )
    search.fit(A, y)
    best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
    oof = None
    if return_oof:
        best_pipe = spec.pipeline(
            best, missing_indicator=config.missing_indicator, random_state=config.seed
        )
        oof = cross_val_predict(best_pipe, A, y, cv=splits, method="predict_proba", n_jobs=1)[:, 1]
    return TuningResult(
        family=family,
        best_params=best,
        mean_fold_auc=float(search.best_score_),
        splits=splits,
        n_candidates=min(n_grid, config.n_iter),
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
    config.inner_folds, config.seed)``. The returned stacker carries
    ``tuning_``: None when ``params`` was given, else a dict with
    ``best_params``, ``mean_fold_auc``, ``n_candidates``, ``seconds`` and the
    inner ``splits`` (list of (train_idx, test_idx)) the search used.

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
    tuning = None
    if params is None:
        tuning = tune_family(frame, y, groups, config, family)
        params = tuning.best_params
    stacker = Stacker(
        family=family,
        params=dict(params),
        calibration=config.calibration,
        cv=config.inner_folds,
        missing_indicator=config.missing_indicator,
        random_state=config.seed,
    ).fit(frame, y, groups)
    stacker.tuning_ = (
        None
        if tuning is None
        else {
            "best_params": tuning.best_params,
            "mean_fold_auc": tuning.mean_fold_auc,
            "n_candidates": tuning.n_candidates,
            "seconds": tuning.seconds,
            "splits": tuning.splits,
        }
    )
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
    progress: bool = False,
) -> np.ndarray:
    """Out-of-fold calibrated P(positive) of a family by nested CV.

    Outer folds: ``folds`` (a per-row fold id, e.g. the ``fold`` column of
    ``patient_scores.csv``), else ``make_group_folds(..., config.inner_folds,
    config.seed + 1)``. Each outer training part is tuned (unless ``params`` is
    given) and calibrated on its own inner folds, so no prediction comes from a
    model, a hyper-parameter choice or a calibrator that saw the patient.

    Returns
    -------
    float64 (n,) probabilities in [0, 1].
    """
    from tqdm.auto import tqdm

    family = config.family if family is None else family
    get_family(family)
    frame, y, groups = _prepare(X, y, groups)
    if folds is None:
        outer = make_group_folds(y, groups, config.inner_folds, config.seed + 1, what="outer CV")
    else:
        outer = splits_from_fold_ids(folds, groups, y, what="outer CV")
    p = np.full(y.shape[0], np.nan)
    for tr, te in tqdm(outer, desc=f"{family} outer folds", disable=not progress or None):
        stk = fit_stacker(frame.iloc[tr], y[tr], groups[tr], config, family, params=params)
        p[te] = stk.predict_proba(frame.iloc[te])[:, 1]
    return p
