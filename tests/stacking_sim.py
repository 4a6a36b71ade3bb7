"""Tiny simulated stacking tables for the stacking and SHAP tests (numpy only).

Image scores and clinical features are drawn independently given the label,
so each carries its own evidence (as in DESIGN.md's synthetic cohort).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate(
    n: int = 120,
    seed: int = 0,
    backbones: tuple[str, ...] = ("e3", "vit"),
    image_effect: float = 1.0,
    clinical_effect: float = 1.0,
    missing: float = 0.2,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(X indexed by patient id, y 0/1, groups = patient ids).

    X: backbone probabilities (logit-normal, shifted by ``image_effect`` per
    class), then age (years), sex_male, location_axial, crp_abnormal,
    esr_abnormal with roughly the class differences of seed 004's Table 1
    (scaled by ``clinical_effect``); a ``missing`` share of CRP/ESR is NaN.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    s = 2 * y - 1
    cols: dict[str, np.ndarray] = {}
    for b in backbones:
        cols[b] = 1.0 / (1.0 + np.exp(-rng.normal(image_effect * s, 1.0)))
    c = clinical_effect
    age = np.clip(rng.normal(35 + 10 * c * s, 18.0), 1, 95)
    sex = (rng.random(n) < 0.6).astype(float)
    loc = (rng.random(n) < 0.35 + 0.22 * c * s).astype(float)
    crp = (rng.random(n) < 0.5 + 0.15 * c * s).astype(float)
    esr = (rng.random(n) < 0.8 + 0.05 * c * s).astype(float)
    crp[rng.random(n) < missing] = np.nan
    esr[rng.random(n) < missing] = np.nan
    ids = np.array([f"P{i:04d}" for i in range(n)])
    X = pd.DataFrame(
        {
            **cols,
            "age": age,
            "sex_male": sex,
            "location_axial": loc,
            "crp_abnormal": crp,
            "esr_abnormal": esr,
        },
        index=pd.Index(ids, name="patient_id"),
    )
    return X, y, ids


#: A run config for fast clinical-only runs (no backbones, one cheap family).
CLINICAL_ONLY_CONFIG = """
imaging:
  backbones: []
splits:
  n_folds: 3
stacking:
  family: lr
  compare: [lr]
  inner_folds: 3
  n_iter: 1
  bootstrap: 20
  nested: false
"""
