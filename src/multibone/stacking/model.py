"""The stacker: a scikit-learn meta-estimator over backbone scores + clinical features.

``Stacker(estimator)`` = ``estimator`` (from :func:`make_estimator`: [median
imputation (+ missing indicators), when the family needs it] -> [scaling,
LR/KNN] -> family model) -> [calibration]. Calibration
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
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from multibone.errors import InputError
from multibone.stacking.config import CALIBRATIONS
from multibone.stacking.families import family_of, make_estimator
from multibone.stacking.folds import encode_binary_labels, make_group_folds


class MissingAtPredictWarning(UserWarning):
    """A feature with no missing values in training is missing at prediction."""


def _as_frame(X: Any, names: list[str] | None = None, where: str = "X") -> pd.DataFrame:
    """X as a float64 DataFrame; arrays get names ``x0..`` (or ``names``)."""
    if sparse.issparse(X):
        raise InputError(f"{where}: sparse input is not supported; pass a dense table")
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
        if np.iscomplexobj(values.to_numpy()):
            raise InputError(f"{where}, column {col}: Complex data not supported")
        out[str(col)] = values.astype("float64").to_numpy()
    frame = pd.DataFrame(out, index=df.index)
    if np.isinf(frame.to_numpy()).any():
        bad = [c for c in frame.columns if np.isinf(frame[c].to_numpy()).any()]
        raise InputError(f"{where}, column {bad[0]}: infinite value; use NaN for missing")
    return frame


def _imputes(pipe: Any) -> bool:
    """Whether a pipeline fills missing values itself (has a SimpleImputer step)."""
    steps = pipe.steps if isinstance(pipe, Pipeline) else []
    return any(isinstance(step, SimpleImputer) for _, step in steps)


class Stacker(ClassifierMixin, BaseEstimator):
    """Step-2 stacker: one estimator (a pipeline), optional calibration.

    A scikit-learn meta-estimator in the manner of ``StackingClassifier``: the
    model is a parameter, so nested parameters work
    (``set_params(estimator__model__max_depth=3)``), ``clone`` round-trips and
    ``GridSearchCV`` can search it.

    Parameters
    ----------
    estimator: unfitted classifier or Pipeline, usually
        :func:`multibone.stacking.make_estimator` (``impute -> scale -> model``
        as the family needs); None = ``make_estimator("rf")``.
    calibration: ``none`` | ``sigmoid`` | ``isotonic``.
    cv: K of the patient-grouped stratified folds the calibrator is fitted on,
        a splitter (``split(X, y, groups)``), or an explicit list of
        ``(train_idx, test_idx)`` splits.
    random_state: seed of the calibration folds and of the SHAP background.
    n_background: rows of the transformed training matrix kept as the SHAP
        background (``background_``).

    Fitted attributes
    -----------------
    classes_ (the two labels, sorted; ``classes_[1]`` is the positive class),
    feature_names_in_, n_features_in_, estimator_ (uncalibrated estimator
    fitted on all rows, on labels encoded 0/1), explain_model_ (its final
    model), family_ (registry name of that model, "" if outside the registry),
    calibrated_ (``CalibratedClassifierCV`` or None), cv_splits_ (calibration
    folds), nan_free_features_ (features with no missing value in training),
    background_ (float64 (m, n_out)), explain_feature_names_ (names of the
    transformed columns).
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        calibration: str = "sigmoid",
        cv: Any = 5,
        random_state: int = 0,
        n_background: int = 100,
    ):
        self.estimator = estimator
        self.calibration = calibration
        self.cv = cv
        self.random_state = random_state
        self.n_background = n_background

    def __setstate__(self, state: dict) -> None:
        # stackers pickled before the estimator parameter (family + params
        # strings, ``pipeline_``) load as the equivalent new-style Stacker
        if "family" in state and "estimator" not in state:
            family, params = state.pop("family"), state.pop("params", None) or {}
            state["estimator"] = make_estimator(
                family,
                missing_indicator=state.pop("missing_indicator", True),
                random_state=state.get("random_state", 0),
                **params,
            )
            if "pipeline_" in state:
                state["estimator_"] = state.pop("pipeline_")
                state["family_"] = family
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN = missing (native or imputed)
        tags.classifier_tags.multi_class = False
        return tags

    # -- fitting ---------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None) -> Stacker:
        """Fit on X (DataFrame or array (n, f), float; NaN = missing), y (n,)
        two labels (0/1, strings, ...) and optional groups (n,) patient ids
        (rows of a patient share calibration folds; default one row = one patient,
        as in multibone's stacking tables). Under ``cross_val_predict`` pass them as
        ``params={"groups": g}`` (as ``oof_predict`` does); a search's ``groups``
        argument only reaches its splitter (no metadata routing), so inside
        ``GridSearchCV`` each row counts as one patient."""
        if self.calibration not in CALIBRATIONS:
            raise InputError(
                f"calibration {self.calibration!r} is not one of {', '.join(CALIBRATIONS)}"
            )
        estimator = self._make_estimator()
        frame = _as_frame(X)
        if frame.shape[1] == 0:
            # wording of scikit-learn's check_array, which its estimator checks expect
            raise InputError(
                f"X: 0 feature(s) (shape={frame.shape}) while a minimum of 1 is required."
            )
        classes, y01 = encode_binary_labels(y, "y")
        if y01.shape[0] != frame.shape[0]:
            raise InputError(f"y has {y01.shape[0]} labels for {frame.shape[0]} rows of X")
        groups = np.arange(y01.shape[0]) if groups is None else np.asarray(groups)
        if groups.shape[0] != y01.shape[0]:
            raise InputError(f"groups has {groups.shape[0]} entries for {y01.shape[0]} rows of X")

        A = frame.to_numpy()
        self.classes_ = classes
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = A.shape[1]
        self.nan_free_features_ = [c for c in frame.columns if not frame[c].isna().any()]
        if self.calibration == "none":
            self.calibrated_ = None
            self.cv_splits_ = None
            self.estimator_ = estimator.fit(A, y01)
        else:
            self.cv_splits_ = self._calibration_splits(A, y01, groups)
            # ensemble=False: calibrator on the pooled out-of-fold outputs, model
            # refitted on all rows -> a single uncalibrated model to explain.
            self.calibrated_ = CalibratedClassifierCV(
                estimator, method=self.calibration, cv=self.cv_splits_, ensemble=False
            ).fit(A, y01)
            self.estimator_ = self.calibrated_.calibrated_classifiers_[0].estimator
        is_pipe = isinstance(self.estimator_, Pipeline)
        self.explain_model_ = self.estimator_.steps[-1][1] if is_pipe else self.estimator_
        spec = family_of(self.estimator_)
        self.family_ = "" if spec is None else spec.name
        self.explain_feature_names_ = self._transformed_names()
        Z = self.explain_transform(frame)
        m = min(self.n_background, Z.shape[0])
        rng = np.random.default_rng(self.random_state)
        self.background_ = Z[np.sort(rng.choice(Z.shape[0], size=m, replace=False))]
        return self

    def _make_estimator(self) -> Any:
        """Unfitted clone of ``estimator`` (``make_estimator("rf")`` when None)."""
        if self.estimator is None:
            return make_estimator("rf", random_state=self.random_state)
        return clone(self.estimator)

    def _calibration_splits(
        self, A: np.ndarray, y01: np.ndarray, groups: np.ndarray, what: str = "calibration CV"
    ) -> list:
        """Explicit (train, test) splits of the calibration CV (``cv``)."""
        if isinstance(self.cv, (int, np.integer)):
            return make_group_folds(y01, groups, int(self.cv), self.random_state, what=what)
        if hasattr(self.cv, "split"):
            return [(np.asarray(tr), np.asarray(te)) for tr, te in self.cv.split(A, y01, groups)]
        return [(np.asarray(tr), np.asarray(te)) for tr, te in self.cv]

    def _transformed_names(self) -> list[str]:
        names = [str(c) for c in self.feature_names_in_]
        if not isinstance(self.estimator_, Pipeline) or len(self.estimator_.steps) == 1:
            return names
        return [str(n) for n in self.estimator_[:-1].get_feature_names_out(names)]

    # -- prediction -------------------------------------------------------------
    def _validate_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        names = list(self.feature_names_in_)
        if isinstance(X, pd.DataFrame):
            X = X.rename(columns=str)  # names were stored as str at fit
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise InputError(
                    f"X: missing feature column(s) {', '.join(missing)}; the stacker was "
                    f"trained on {', '.join(names)}"
                )
            frame = _as_frame(X[names])
        else:
            arr = np.asarray(X)
            if arr.ndim != 2:
                raise InputError(
                    f"X: expected a 2-D table (patients x features), got shape {arr.shape}; "
                    "Reshape your data (one row per patient)"
                )
            if arr.shape[1] != len(names):
                raise InputError(
                    f"X has {arr.shape[1]} features, but Stacker is expecting {len(names)} "
                    f"features as input ({', '.join(names)})"
                )
            frame = _as_frame(arr, names)
        new_nan = [c for c in self.nan_free_features_ if frame[c].isna().any()]
        if new_nan:
            how = (
                "they are imputed with the training median, with no missing-indicator"
                if _imputes(self.estimator_)
                else "each tree sends them down the branch that held most training patients"
            )
            warnings.warn(
                f"feature(s) {', '.join(new_nan)} had no missing values in training but are "
                f"missing here; {how}, which the model never learned from",
                MissingAtPredictWarning,
                stacklevel=3,
            )
        return frame.to_numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities, float64 (n, 2), columns in the order
        of ``classes_`` (column 1 = positive class)."""
        A = self._validate_predict(X)
        model = self.calibrated_ if self.calibrated_ is not None else self.estimator_
        return np.asarray(model.predict_proba(A), dtype="float64")

    def predict_proba_uncalibrated(self, X: Any) -> np.ndarray:
        """Probabilities of the uncalibrated estimator (what SHAP explains), (n, 2)."""
        A = self._validate_predict(X)
        return np.asarray(self.estimator_.predict_proba(A), dtype="float64")

    def predict(self, X: Any) -> np.ndarray:
        """``classes_[1]`` where calibrated P(positive) >= 0.5, else ``classes_[0]``
        (use the operating points for other thresholds); shape (n,)."""
        positive = self.predict_proba(X)[:, 1] >= 0.5
        return self.classes_[positive.astype(int)]

    def explain_transform(self, X: Any) -> np.ndarray:
        """The exact float64 matrix (n, n_out) ``explain_model_`` sees for X
        (imputed, indicator columns appended, scaled, as the family requires)."""
        A = self._validate_predict(X)
        if not isinstance(self.estimator_, Pipeline) or len(self.estimator_.steps) == 1:
            return A
        return np.asarray(self.estimator_[:-1].transform(A), dtype="float64")

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns the fitted model sees (``explain_transform``),
        e.g. ``e3, age, ..., missingindicator_crp_abnormal``."""
        check_is_fitted(self, "estimator_")
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
