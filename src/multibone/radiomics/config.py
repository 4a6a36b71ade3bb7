"""The ``radiomics:`` section of a run config (:class:`RadiomicsConfig`).

Every field has a default, so ``RadiomicsConfig()`` is a complete, valid config.
"""

from __future__ import annotations

import dataclasses

from multibone.errors import ConfigError


@dataclasses.dataclass
class RadiomicsConfig:
    """Settings of the radiomics baseline (seed 001's comparison model).

    Attributes
    ----------
    enabled:
        Compute the baseline when the cohort has lesion boxes (``p_radiomics``
        in ``predictions.csv``, a row in the report and ``summary.md``).
    l1_ratios:
        ElasticNet mixing values tried (0 = ridge, 1 = lasso).
    Cs:
        Inverse regularisation strengths tried.
    inner_folds:
        K of the inner patient-grouped, stratified CV that picks ``(C, l1_ratio)``.
    grey_levels:
        Grey levels the ROI is quantised to before texture matrices are counted.
    min_roi:
        Smallest box side, in pixels, texture features are computed on; a smaller
        box is an error naming the image.
    as_stacker_input:
        Reserved switch: give the stacker the radiomics score as one more input
        (not implemented yet; ``true`` is refused).
    seed:
        Seed of the inner folds and of the solver.
    """

    enabled: bool = True
    l1_ratios: list[float] = dataclasses.field(default_factory=lambda: [0.1, 0.5, 0.9])
    Cs: list[float] = dataclasses.field(default_factory=lambda: [0.01, 0.1, 1.0])
    inner_folds: int = 5
    grey_levels: int = 32
    min_roi: int = 8
    as_stacker_input: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.l1_ratios or any(not 0 <= r <= 1 for r in self.l1_ratios):
            raise ConfigError(f"radiomics.l1_ratios: values in [0, 1] needed, got {self.l1_ratios}")
        if not self.Cs or any(c <= 0 for c in self.Cs):
            raise ConfigError(f"radiomics.Cs: positive values needed, got {self.Cs}")
        if self.inner_folds < 2:
            raise ConfigError(f"radiomics.inner_folds: need at least 2, got {self.inner_folds}")
        if not 2 <= self.grey_levels <= 256:
            raise ConfigError(f"radiomics.grey_levels: need 2-256, got {self.grey_levels}")
        if self.min_roi < 2:
            raise ConfigError(f"radiomics.min_roi: need at least 2 pixels, got {self.min_roi}")
        if self.as_stacker_input:
            raise ConfigError(
                "radiomics.as_stacker_input: not implemented yet; the radiomics score is "
                "reported as a baseline beside the stacker (set it to false)"
            )
