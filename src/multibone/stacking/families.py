"""The eight stacker model families of seed 004 as scikit-learn pipelines.

:func:`make_estimator` is the factory (``make_estimator("rf", max_depth=3)``
-> an unfitted ``Pipeline`` whose model step is named ``model``). Each family
is a :class:`FamilySpec`: how to build its model, a small tuning grid (kept
small so all eight tune in seconds on a laptop CPU), whether the model takes
missing values natively, and which SHAP explainer fits it. :func:`family_of`
finds the family back from a (fitted) pipeline.

Missing values (CRP/ESR are often missing):

* native NaN (the tree learns where missing values go): RF (scikit-learn >= 1.4),
  DT, LightGBM, XGBoost;
* imputed inside the pipeline, so the median is learned on training folds only,
  plus a 0/1 missing-indicator column per feature that had missing values in
  training (``missing_indicator``): LR, KNN, AdaBoost and GBDT.

GBDT is scikit-learn's classic ``GradientBoostingClassifier`` (seed 004's
"GBDT"), which does not accept NaN, hence the imputer. The histogram variant
would duplicate LightGBM/XGBoost, which already cover native-NaN boosting.
LR and KNN also get a ``StandardScaler`` (their penalties/distances are scale
dependent). All models run single-threaded (``n_jobs=1``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sklearn.ensemble import AdaBoostClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from multibone.errors import InputError
from multibone.stacking.config import FAMILIES


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """One model family.

    Attributes
    ----------
    name: short name (``rf``, ...). label: display name.
    native_nan: the model accepts NaN itself (no imputer in the pipeline).
    scale: a StandardScaler precedes the model.
    explainer: ``tree`` (shap.TreeExplainer, exact), ``linear``
        (shap.LinearExplainer, exact in log-odds) or ``agnostic``
        (model-agnostic shap explainer: no exact tree algorithm for it).
    grid: tuning grid of the model's own parameters (no pipeline prefix).
    make: ``make(random_state) -> unfitted model`` with fixed settings.
    """

    name: str
    label: str
    native_nan: bool
    scale: bool
    explainer: str
    grid: dict[str, list[Any]]
    make: Callable[[int], Any]


def restrict_grid(grid: dict[str, list[Any]], n_train: int) -> dict[str, list[Any]]:
    """``grid`` without the values invalid with ``n_train`` training rows: any
    ``n_neighbors`` (bare or ``model__n_neighbors``) must stay below n_train."""
    out = {k: list(v) for k, v in grid.items()}
    for key, values in out.items():
        if key.split("__")[-1] == "n_neighbors":
            ok = [k for k in values if k <= max(1, n_train - 1)]
            out[key] = ok or [max(1, min(values[0], n_train - 1))]
    return out


def make_estimator(
    family: str,
    *,
    missing_indicator: bool = True,
    random_state: int = 0,
    **params: Any,
) -> Pipeline:
    """Unfitted pipeline of a family: [impute (+ indicator)] -> [scale] -> ``model``.

    Parameters
    ----------
    family: one of :data:`FAMILIES`.
    missing_indicator: imputing families also get a 0/1 missing-indicator
        column per feature that had missing values in training.
    random_state: seed of the model.
    params: the model's own parameters (``max_depth=3``; AdaBoost's weak
        learner as ``estimator__max_depth=2``). In the pipeline they are
        ``model__<name>``, so a :class:`~multibone.stacking.Stacker` exposes
        them as ``estimator__model__<name>``.
    """
    spec = get_family(family)
    steps: list[tuple[str, Any]] = []
    if not spec.native_nan:
        # keep_empty_features keeps the column count fixed even if a fold sees
        # a feature with no values at all (imputed as 0 there).
        steps.append(
            (
                "impute",
                SimpleImputer(
                    strategy="median", add_indicator=missing_indicator, keep_empty_features=True
                ),
            )
        )
    if spec.scale:
        steps.append(("scale", StandardScaler()))
    model = spec.make(random_state)
    if params:
        valid = sorted(model.get_params(deep=True))
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise InputError(
                f"family {spec.name}: unknown parameter(s) {', '.join(unknown)}; tunable "
                f"ones are {', '.join(spec.grid)}"
            )
        model.set_params(**params)
    steps.append(("model", model))
    return Pipeline(steps)


def family_of(estimator: Any) -> FamilySpec | None:
    """The family whose model is ``estimator``'s last step (or ``estimator``
    itself), None for a model outside the registry. Matched by class, so it
    works on fitted and unfitted pipelines alike."""
    model = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    name = _MODEL_CLASSES.get(type(model).__name__)
    return None if name is None else _SPECS[name]


# class name of each family's model (names, so lightgbm/xgboost are not imported)
_MODEL_CLASSES = {
    "RandomForestClassifier": "rf",
    "AdaBoostClassifier": "adaboost",
    "GradientBoostingClassifier": "gbdt",
    "LGBMClassifier": "lightgbm",
    "DecisionTreeClassifier": "dt",
    "LogisticRegression": "lr",
    "XGBClassifier": "xgboost",
    "KNeighborsClassifier": "knn",
}


def _rf(rs: int) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=rs)


def _ada(rs: int) -> AdaBoostClassifier:
    return AdaBoostClassifier(estimator=DecisionTreeClassifier(max_depth=1), random_state=rs)


def _gbdt(rs: int) -> GradientBoostingClassifier:
    return GradientBoostingClassifier(random_state=rs)


def _lgbm(rs: int) -> Any:
    from lightgbm import LGBMClassifier

    # subsample_freq=1 makes `subsample` take effect (LightGBM ignores it at 0).
    return LGBMClassifier(
        n_jobs=1, random_state=rs, verbose=-1, subsample_freq=1, min_child_samples=10
    )


def _dt(rs: int) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=rs)


def _lr(rs: int) -> LogisticRegression:
    # newton-cholesky: same objective as lbfgs, ~10x faster on few features, and
    # free of the BLAS-thread stalls lbfgs shows on a busy machine.
    return LogisticRegression(solver="newton-cholesky", max_iter=1000, random_state=rs)


def _xgb(rs: int) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_jobs=1, random_state=rs, tree_method="hist", eval_metric="logloss", verbosity=0
    )


def _knn(rs: int) -> KNeighborsClassifier:
    return KNeighborsClassifier(n_jobs=1)


_SPECS: dict[str, FamilySpec] = {
    s.name: s
    for s in (
        FamilySpec(
            "rf",
            "Random forest",
            native_nan=True,
            scale=False,
            explainer="tree",
            # depth capped: faster, and SHAP additivity stays within float error
            grid={
                "max_depth": [3, 5, 8],
                "min_samples_leaf": [1, 3, 5],
                "max_features": ["sqrt", 0.5],
            },
            make=_rf,
        ),
        FamilySpec(
            "adaboost",
            "AdaBoost",
            native_nan=False,
            scale=False,
            explainer="agnostic",
            grid={
                "n_estimators": [25, 50, 100],
                "learning_rate": [0.1, 0.5, 1.0],
                "estimator__max_depth": [1, 2],
            },
            make=_ada,
        ),
        FamilySpec(
            "gbdt",
            "Gradient boosted decision trees",
            native_nan=False,
            scale=False,
            explainer="tree",
            grid={
                "n_estimators": [50, 100],
                "learning_rate": [0.05, 0.1],
                "max_depth": [2, 3],
                "subsample": [0.8, 1.0],
            },
            make=_gbdt,
        ),
        FamilySpec(
            "lightgbm",
            "LightGBM",
            native_nan=True,
            scale=False,
            explainer="tree",
            grid={
                "n_estimators": [50, 100],
                "learning_rate": [0.05, 0.1],
                "num_leaves": [4, 8, 15],
                "subsample": [0.8, 1.0],
            },
            make=_lgbm,
        ),
        FamilySpec(
            "dt",
            "Decision tree",
            native_nan=True,
            scale=False,
            explainer="tree",
            grid={
                "max_depth": [2, 3, 4, 6],
                "min_samples_leaf": [1, 5, 10],
                "criterion": ["gini", "entropy"],
            },
            make=_dt,
        ),
        FamilySpec(
            "lr",
            "Logistic regression",
            native_nan=False,
            scale=True,
            explainer="linear",
            grid={"C": [0.01, 0.1, 1.0, 10.0]},
            make=_lr,
        ),
        FamilySpec(
            "xgboost",
            "XGBoost",
            native_nan=True,
            scale=False,
            explainer="tree",
            grid={
                "n_estimators": [50, 100],
                "max_depth": [2, 3, 4],
                "learning_rate": [0.05, 0.1],
                "subsample": [0.8, 1.0],
            },
            make=_xgb,
        ),
        FamilySpec(
            "knn",
            "K-nearest neighbours",
            native_nan=False,
            scale=True,
            explainer="agnostic",
            grid={"n_neighbors": [5, 11, 21, 31], "weights": ["uniform", "distance"]},
            make=_knn,
        ),
    )
}
assert tuple(_SPECS) == FAMILIES == tuple(_MODEL_CLASSES.values())


def get_family(name: str) -> FamilySpec:
    """The :class:`FamilySpec` of ``name``; InputError listing the valid names."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown model family {name!r}; valid families are {', '.join(FAMILIES)}"
        ) from None
