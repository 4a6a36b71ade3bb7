"""The radiomics baseline: per-patient features -> ElasticNet logistic regression, cross-fitted.

* Per patient: the mean of each feature over the patient's boxed images (the
  backbone scores are aggregated per patient too; features, unlike
  probabilities, are averaged on their own scale).
* Model: median imputation, standardisation, then scikit-learn's
  ``LogisticRegression(penalty="elasticnet", solver="saga")``; ``C`` and
  ``l1_ratio`` picked by inner stratified, patient-grouped CV
  (:func:`multibone.stacking.folds.make_group_folds`) on ROC AUC.
* Cross-fitting on the run's own folds: a development patient's probability
  comes from a model (tuned and fitted) without its fold; test and external
  patients are scored by the model tuned and fitted on all development patients.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from multibone.errors import InputError
from multibone.radiomics.config import RadiomicsConfig

FEATURE_PREFIX = "rad_"


def patient_features(image_feats: pd.DataFrame) -> pd.DataFrame:
    """Mean of each feature per patient; index ``patient_id``; columns prefixed ``rad_``."""
    cols = [c for c in image_feats.columns if c not in ("patient_id", "row")]
    per = image_feats.groupby(image_feats["patient_id"].astype(str))[cols].mean()
    per.columns = [f"{FEATURE_PREFIX}{c}" for c in cols]
    per.index.name = "patient_id"
    return per


def _elasticnet() -> dict:
    """``penalty="elasticnet"`` where scikit-learn needs it (< 1.8; later it is implied by l1_ratio
    and naming it warns)."""
    import sklearn

    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return {} if (major, minor) >= (1, 8) else {"penalty": "elasticnet"}


def _estimator(cfg: RadiomicsConfig, inner_splits):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(solver="saga", max_iter=500, tol=1e-3, random_state=cfg.seed,
                           **_elasticnet()),
    )
    grid = {"logisticregression__C": list(cfg.Cs), "logisticregression__l1_ratio": list(cfg.l1_ratios)}
    return GridSearchCV(pipe, grid, scoring="roc_auc", cv=inner_splits, refit=True, n_jobs=1)


def _fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, cfg: RadiomicsConfig):
    from sklearn.exceptions import ConvergenceWarning

    from multibone.stacking.folds import make_group_folds

    for cls in (0, 1):
        if (y == cls).sum() < cfg.inner_folds:
            raise InputError(
                f"radiomics inner CV: only {(y == cls).sum()} training patient(s) with label "
                f"{cls}, fewer than radiomics.inner_folds={cfg.inner_folds}; lower it (or add "
                "patients)"
            )
    inner = make_group_folds(y, groups, cfg.inner_folds, cfg.seed, what="radiomics inner CV")
    est = _estimator(cfg, inner)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        X = np.where(np.isfinite(X), X, np.nan)
        est.fit(X, y)
    return est


def crossfit(
    feats: pd.DataFrame, splits: pd.DataFrame, labels: pd.Series, cfg: RadiomicsConfig
) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold (dev) and held-out (test/external) radiomics probabilities.

    ``feats``: :func:`patient_features`; ``splits``: ``patient_id, split, fold``;
    ``labels``: 0/1 by patient id. Patients without a boxed image get no row.
    Returns (``patient_id, split, fold, label, p_radiomics``, summary dict).
    """
    s = splits.assign(patient_id=splits["patient_id"].astype(str))
    s = s[s["patient_id"].isin(feats.index)].reset_index(drop=True)
    s["label"] = s["patient_id"].map(labels.rename(index=str)).astype(int)
    X = feats.loc[s["patient_id"]].to_numpy(dtype=float)
    y = s["label"].to_numpy()
    pid = s["patient_id"].to_numpy()
    dev = (s["split"] == "dev").to_numpy()
    if dev.sum() == 0:
        raise InputError("radiomics: no development patient has a lesion box; nothing to fit on")
    p = np.full(len(s), np.nan)
    folds = sorted(int(f) for f in s.loc[dev, "fold"].unique())
    chosen = []
    for k in folds:
        tr = dev & (s["fold"].to_numpy() != k)
        te = dev & (s["fold"].to_numpy() == k)
        est = _fit(X[tr], y[tr], pid[tr], cfg)
        p[te] = est.predict_proba(np.where(np.isfinite(X[te]), X[te], np.nan))[:, 1]
        chosen.append(est.best_params_)
    full = _fit(X[dev], y[dev], pid[dev], cfg)
    held = ~dev
    if held.any():
        p[held] = full.predict_proba(np.where(np.isfinite(X[held]), X[held], np.nan))[:, 1]
    coef = full.best_estimator_[-1].coef_.ravel()
    names = list(feats.columns)
    order = np.argsort(-np.abs(coef))
    summary = {
        "n_patients": int(len(s)),
        "n_features": int(X.shape[1]),
        "n_nonzero": int((coef != 0).sum()),
        "best_params_all_dev": {k.split("__")[-1]: v for k, v in full.best_params_.items()},
        "best_params_per_fold": [
            {k.split("__")[-1]: v for k, v in bp.items()} for bp in chosen
        ],
        "inner_cv_auc_all_dev": float(full.best_score_),
        "top_coefficients": {
            names[i][len(FEATURE_PREFIX):]: float(coef[i]) for i in order[:10] if coef[i] != 0
        },
    }
    out = s[["patient_id", "split", "fold", "label"]].copy()
    out["p_radiomics"] = p
    return out, summary
