"""Step 2: the stacker over backbone scores and clinical features.

Public API::

    clinical_features, build_stacking_table, FEATURE_LABELS   (features)
    StackingConfig, FAMILIES, CLINICAL_FEATURES               (config)
    make_estimator, family_of, get_family, FamilySpec          (families)
    Stacker, ScoreBaseline, MissingAtPredictWarning            (model)
    make_group_folds                                           (folds)
    TunedStacker, compare_families, fit_stacker, oof_predict,  (selection)
    tune_family
    run_stacking                                               (run: the `stack` command)

AUC, bootstrap CIs and operating points come from :mod:`multibone.stats`.
"""

from multibone.stacking.config import CLINICAL_FEATURES, FAMILIES, StackingConfig
from multibone.stacking.families import FamilySpec, family_of, get_family, make_estimator
from multibone.stacking.features import (
    FEATURE_LABELS,
    build_stacking_table,
    clinical_features,
    describe_value,
    feature_label,
)
from multibone.stacking.folds import make_group_folds
from multibone.stacking.model import MissingAtPredictWarning, ScoreBaseline, Stacker
from multibone.stacking.run import run_stacking
from multibone.stacking.selection import (
    TunedStacker,
    compare_families,
    fit_stacker,
    oof_predict,
    tune_family,
)

__all__ = [
    "CLINICAL_FEATURES",
    "FAMILIES",
    "FEATURE_LABELS",
    "FamilySpec",
    "MissingAtPredictWarning",
    "ScoreBaseline",
    "Stacker",
    "StackingConfig",
    "TunedStacker",
    "build_stacking_table",
    "clinical_features",
    "compare_families",
    "describe_value",
    "feature_label",
    "fit_stacker",
    "family_of",
    "get_family",
    "make_estimator",
    "make_group_folds",
    "oof_predict",
    "run_stacking",
    "tune_family",
]
