"""The stacker: a scikit-learn estimator over backbone scores + clinical features.

``Stacker`` = [median imputation (+ missing indicators), when the family needs
it] -> [scaling, LR/KNN] -> family model -> [calibration]. Calibration
(``sigmoid`` or ``isotonic``) is fitted on out-of-fold outputs of
patient-grouped folds (``CalibratedClassifierCV(cv=<explicit splits>,
ensemble=False)``), so the calibrator never sees scores of rows the model was
trained on, and there is one uncalibrated model, refitted on all rows, that
SHAP explains (``explain_model_`` on ``explain_transform(X)``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.utils.validation import check_is_fitted

from multibone.errors import InputError
from multibone.stacking.config import CALIBRATIONS
from multibone.stacking.families import get_family
from multibone.stacking.folds import check_binary_labels, make_group_folds


class MissingAtPredictWarning(UserWarning):
    """A feature with no missing values in training is missing at prediction."""


def _as_frame(X: Any, names: list[str] | None = None, where: str = "X") -> pd.DataFrame:
    """X as a float64 DataFrame; arrays get names ``x0..`` (or ``names``)."""
    if isinstance(X, pd.DataFrame):
        df = X
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise InputError(
                f"{where}: expected a 2-D table (patients x features), got shape {arr.shape}"
            )
        cols = (
            names
            if names is not None and len(names) == arr.shape[1]
            else [f"x{i}" for i in range(arr.shape[1])]
        )
        df = pd.DataFrame(arr, columns=cols)
    out = {}
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce")
        if (values.isna() & df[col].notna()).any():
            raise InputError(f"{where}, column {col}: not numeric; encode features as numbers")
        out[str(col)] = values.astype("float64").to_numpy()
    frame = pd.DataFrame(out, index=df.index)
    if np.isinf(frame.to_numpy()).any():
        bad = [c for c in frame.columns if np.isinf(frame[c].to_numpy()).any()]
        raise InputError(f"{where}, column {bad[0]}: infinite value; use NaN for missing")
    return frame


class Stacker(ClassifierMixin, BaseEstimator):
    """Step-2 stacker: one model family, optional imputation, optional calibration.

    Parameters
    ----------
    family: one of ``rf, adaboost, gbdt, lightgbm, dt, lr, xgboost, knn``.
    params: hyper-parameters of the family's model (e.g. ``{"max_depth": 5}``),
        usually the tuned ones from :func:`multibone.stacking.fit_stacker`.
    calibration: ``none`` | ``sigmoid`` | ``isotonic``.
    cv: K of the patient-grouped stratified folds used to fit the calibrator,
        or an explicit list of ``(train_idx, test_idx)`` splits.
    missing_indicator: add 0/1 missing-indicator columns (imputing families only).
    random_state: seed of the folds and the model.
    n_background: rows of the transformed training matrix kept as the SHAP
        background (``background_``).

    Fitted attributes
    -----------------
    feature_names_in_, n_features_in_, classes_ (``[0, 1]``; 1 = positive class),
    pipeline_ (uncalibrated pipeline fitted on all rows), explain_model_ (its
    final model), calibrated_ (``CalibratedClassifierCV`` or None),
    cv_splits_ (calibration folds), nan_free_features_ (features with no
    missing value in training), background_ (float64 (m, n_out)),
    explain_feature_names_ (names of the transformed columns).
    """

    def __init__(
        self,
        family: str = "rf",
        params: dict | None = None,
        calibration: str = "sigmoid",
        cv: Any = 5,
        missing_indicator: bool = True,
        random_state: int = 0,
        n_background: int = 100,
    ):
        self.family = family
        self.params = params
        self.calibration = calibration
        self.cv = cv
        self.missing_indicator = missing_indicator
        self.random_state = random_state
        self.n_background = n_background

    # -- fitting ---------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None) -> Stacker:
        """Fit on X (DataFrame (n, f), float; NaN = missing), y (n,) 0/1 and
        optional groups (n,) patient ids (rows of a patient share folds)."""
        spec = get_family(self.family)
        if self.calibration not in CALIBRATIONS:
            raise InputError(
                f"calibration {self.calibration!r} is not one of {', '.join(CALIBRATIONS)}"
            )
        frame = _as_frame(X)
        if frame.shape[1] == 0:
            raise InputError("X: no feature columns")
        y = check_binary_labels(y, "y")
        if y.shape[0] != frame.shape[0]:
            raise InputError(f"y has {y.shape[0]} labels for {frame.shape[0]} rows of X")
        groups = np.arange(y.shape[0]) if groups is None else np.asarray(groups)
        if groups.shape[0] != y.shape[0]:
            raise InputError(f"groups has {groups.shape[0]} entries for {y.shape[0]} rows of X")

        A = frame.to_numpy()
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = A.shape[1]
        self.classes_ = np.array([0, 1])
        self.nan_free_features_ = [c for c in frame.columns if not frame[c].isna().any()]
        pipe = spec.pipeline(
            dict(self.params or {}),
            missing_indicator=self.missing_indicator,
            random_state=self.random_state,
        )
        if self.calibration == "none":
            self.calibrated_ = None
            self.cv_splits_ = None
            self.pipeline_ = pipe.fit(A, y)
        else:
            if isinstance(self.cv, (int, np.integer)):
                splits = make_group_folds(
                    y, groups, int(self.cv), self.random_state, what="calibration CV"
                )
            else:
                splits = [(np.asarray(tr), np.asarray(te)) for tr, te in self.cv]
            self.cv_splits_ = splits
            # ensemble=False: calibrator on the pooled out-of-fold outputs, model
            # refitted on all rows -> a single uncalibrated model to explain.
            self.calibrated_ = CalibratedClassifierCV(
                pipe, method=self.calibration, cv=splits, ensemble=False
            ).fit(A, y)
            self.pipeline_ = self.calibrated_.calibrated_classifiers_[0].estimator
        self.explain_model_ = self.pipeline_.steps[-1][1]
        self.explain_feature_names_ = self._transformed_names()
        Z = self.explain_transform(frame)
        m = min(self.n_background, Z.shape[0])
        rng = np.random.default_rng(self.random_state)
        self.background_ = Z[np.sort(rng.choice(Z.shape[0], size=m, replace=False))]
        return self

    def _transformed_names(self) -> list[str]:
        names = [str(c) for c in self.feature_names_in_]
        if len(self.pipeline_.steps) == 1:
            return names
        return [str(n) for n in self.pipeline_[:-1].get_feature_names_out(names)]

    # -- prediction -------------------------------------------------------------
    def _validate_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        names = list(self.feature_names_in_)
        if isinstance(X, pd.DataFrame):
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise InputError(
                    f"X: missing feature column(s) {', '.join(missing)}; the stacker was "
                    f"trained on {', '.join(names)}"
                )
            frame = _as_frame(X[names])
        else:
            arr = np.asarray(X)
            if arr.ndim != 2 or arr.shape[1] != len(names):
                raise InputError(
                    f"X: expected {len(names)} feature columns ({', '.join(names)}), "
                    f"got shape {arr.shape}"
                )
            frame = _as_frame(arr, names)
        new_nan = [c for c in self.nan_free_features_ if frame[c].isna().any()]
        if new_nan:
            how = (
                "each tree sends them down the branch that held most training patients"
                if get_family(self.family).native_nan
                else "they are imputed with the training median, with no missing-indicator"
            )
            warnings.warn(
                f"feature(s) {', '.join(new_nan)} had no missing values in training but are "
                f"missing here; {how}, which the model never learned from",
                MissingAtPredictWarning,
                stacklevel=3,
            )
        return frame.to_numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities, float64 (n, 2); column 1 = positive class."""
        A = self._validate_predict(X)
        model = self.calibrated_ if self.calibrated_ is not None else self.pipeline_
        return np.asarray(model.predict_proba(A), dtype="float64")

    def predict_proba_uncalibrated(self, X: Any) -> np.ndarray:
        """Probabilities of the uncalibrated pipeline (what SHAP explains), (n, 2)."""
        A = self._validate_predict(X)
        return np.asarray(self.pipeline_.predict_proba(A), dtype="float64")

    def predict(self, X: Any) -> np.ndarray:
        """0/1 at calibrated probability >= 0.5 (use operating_points for others)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def explain_transform(self, X: Any) -> np.ndarray:
        """The exact float64 matrix (n, n_out) ``explain_model_`` sees for X
        (imputed, indicator columns appended, scaled, as the family requires)."""
        A = self._validate_predict(X)
        if len(self.pipeline_.steps) == 1:
            return A
        return np.asarray(self.pipeline_[:-1].transform(A), dtype="float64")

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns the fitted model sees (``explain_transform``),
        e.g. ``e3, age, ..., missingindicator_crp_abnormal``."""
        check_is_fitted(self, "pipeline_")
        return np.asarray(self.explain_feature_names_, dtype=object)


class ScoreBaseline(ClassifierMixin, BaseEstimator):
    """Baseline that uses backbone probabilities directly as its score.

    One column: that backbone alone; several: their mean (the image-only
    baseline). Nothing is learned: the inputs already are out-of-fold
    probabilities, so refitting a 1-feature model would only re-calibrate them.

    Parameters
    ----------
    columns: backbone columns to average (NaN skipped; all missing -> NaN).
    """

    def __init__(self, columns: list[str] | tuple[str, ...] = ()):
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> ScoreBaseline:
        frame = _as_frame(X)
        missing = [c for c in self.columns if c not in frame.columns]
        if not self.columns or missing:
            raise InputError(f"ScoreBaseline: column(s) {', '.join(missing) or '(none)'} not in X")
        self.feature_names_in_ = np.asarray(list(self.columns), dtype=object)
        self.n_features_in_ = len(self.columns)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, 2): column 1 = mean of the backbone probabilities."""
        check_is_fitted(self, "feature_names_in_")
        frame = _as_frame(X)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InputError(f"X: missing backbone column(s) {', '.join(missing)}")
        values = frame[list(self.columns)].to_numpy()
        with warnings.catch_warnings():
            # all-missing rows give NaN on purpose ("Mean of empty slice").
            warnings.simplefilter("ignore", RuntimeWarning)
            p = np.nanmean(values, axis=1)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
