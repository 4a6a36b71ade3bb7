"""The ``stacking:`` section of a run config (:class:`StackingConfig`).

Every field has a default, so ``StackingConfig()`` is a complete, valid config.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from multibone.errors import ConfigError

#: The eight model families of seed 004, in the paper's order. Short names are
#: what configs, the CLI and output tables use.
FAMILIES: tuple[str, ...] = ("rf", "adaboost", "gbdt", "lightgbm", "dt", "lr", "xgboost", "knn")

#: Clinical feature columns produced by :func:`multibone.stacking.clinical_features`.
CLINICAL_FEATURES: tuple[str, ...] = (
    "age",
    "sex_male",
    "location_axial",
    "crp_mg_l",
    "crp_abnormal",
    "esr_mm_h",
    "esr_abnormal",
)

CALIBRATIONS: tuple[str, ...] = ("none", "sigmoid", "isotonic")


@dataclasses.dataclass
class StackingConfig:
    """Settings of step 2 (the stacker), tuned by inner patient-grouped CV.

    Attributes
    ----------
    family:
        Family fitted as the stacker (one of :data:`FAMILIES`); RF as in seed 004.
    compare:
        Families compared (inner-CV AUC table); any subset of :data:`FAMILIES`.
    calibration:
        ``none`` | ``sigmoid`` (Platt) | ``isotonic``; fitted on out-of-fold
        scores of patient-grouped folds (never on the rows it was trained on).
    inner_folds:
        K of the inner StratifiedGroupKFold used for tuning and calibration.
    missing_indicator:
        Families that need imputation (LR, KNN, AdaBoost, GBDT) also get a 0/1
        "was missing" column for every feature that had missing values in training.
    seed:
        Seed of the fold assignment, the tuning search and the models.
    n_iter:
        Tuning budget: hyper-parameter candidates tried per family (sampled
        without replacement from the family's small grid; the whole grid when
        the grid is smaller).
    clinical:
        Clinical features given to the stacker (seed 004 used age, sex and
        location only; the default adds CRP and ESR, each as its value, mg/L or
        mm/h, and its abnormal flag).
    bootstrap:
        Resamples of the bootstrap CI of each family's cross-validated AUC.
    nested:
        Development-set predictions of fitted models (stacker, clinical-only)
        by nested CV: hyper-parameters re-tuned inside each outer fold (honest;
        about K times the tuning cost). ``false`` reuses the hyper-parameters
        tuned on all development patients (faster, slightly optimistic).
    conformal_error_rate:
        "Refer when unsure": the class-conditional conformal sets miss the true
        diagnosis for at most this share of each class (default 0.10: 90 %
        coverage); a case whose set is not one diagnosis is flagged "refer"
        (:mod:`multibone.stacking.conformal`).
    """

    family: str = "rf"
    compare: list[str] = dataclasses.field(default_factory=lambda: list(FAMILIES))
    calibration: Literal["none", "sigmoid", "isotonic"] = "sigmoid"
    inner_folds: int = 5
    missing_indicator: bool = True
    seed: int = 0
    n_iter: int = 6
    clinical: list[str] = dataclasses.field(default_factory=lambda: list(CLINICAL_FEATURES))
    bootstrap: int = 1000
    nested: bool = True
    conformal_error_rate: float = 0.10

    def __post_init__(self) -> None:
        for name in [self.family, *self.compare]:
            if name not in FAMILIES:
                raise ConfigError(
                    f"stacking: unknown model family {name!r}; valid families are "
                    f"{', '.join(FAMILIES)}"
                )
        if len(set(self.compare)) != len(self.compare):
            raise ConfigError("stacking.compare: a family is listed twice")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(
                f"stacking.calibration: {self.calibration!r} is not one of {', '.join(CALIBRATIONS)}"
            )
        if self.inner_folds < 2:
            raise ConfigError(f"stacking.inner_folds: need at least 2, got {self.inner_folds}")
        if self.n_iter < 1:
            raise ConfigError(f"stacking.n_iter: need at least 1, got {self.n_iter}")
        if not 0 < self.conformal_error_rate <= 0.5:
            raise ConfigError(
                f"stacking.conformal_error_rate: need 0 < rate <= 0.5, got {self.conformal_error_rate}"
            )
        if self.bootstrap < 0:
            raise ConfigError(f"stacking.bootstrap: need 0 or more, got {self.bootstrap}")
        unknown = [c for c in self.clinical if c not in CLINICAL_FEATURES]
        if unknown:
            raise ConfigError(
                f"stacking.clinical: unknown feature {', '.join(unknown)}; valid features are "
                f"{', '.join(CLINICAL_FEATURES)}"
            )
        if len(set(self.clinical)) != len(self.clinical):
            raise ConfigError("stacking.clinical: a feature is listed twice")
