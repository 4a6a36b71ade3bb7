"""Never-observed and constant clinical features are dropped before fitting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multibone.errors import InputError
from multibone.stacking import StackingConfig
from multibone.stacking.prune import case_fields, prune_features
from multibone.stacking.run import run_stacking

CLIN = ["age", "sex_male", "location_axial", "crp_abnormal", "esr_abnormal"]


def _table(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = np.tile([0.0, 1.0], n // 2)
    X = pd.DataFrame(
        {
            "e3": np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, n), 0, 1),
            "age": rng.uniform(5, 80, n),
            "sex_male": rng.integers(0, 2, n).astype(float),
            "location_axial": np.nan,  # never recorded (no site column)
            "crp_abnormal": 1.0,  # the same for everyone, never missing
            "esr_abnormal": np.where(rng.random(n) < 0.5, 1.0, np.nan),  # constant where seen
        },
        index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id"),
    )
    split = np.where(np.arange(n) < 48, "dev", "test")
    meta = pd.DataFrame({"split": split, "fold": -1, "label": y}, index=X.index)
    return X, meta


def test_prune_names_never_observed_and_constant_features():
    X, meta = _table()
    dev = (meta["split"] == "dev").to_numpy()
    res = prune_features(X, dev, CLIN)
    assert res.kept == ["e3", "age", "sex_male", "esr_abnormal"]
    assert set(res.dropped) == {"location_axial", "crp_abnormal"}
    assert "missing for every development patient" in res.dropped["location_axial"]
    assert "same value (1)" in res.dropped["crp_abnormal"]
    line = res.sentence()
    assert "location_axial" in line and "crp_abnormal" in line
    # judged on development rows only: a value seen only on test rows does not count
    X.loc[~dev, "location_axial"] = 1.0
    assert "location_axial" in prune_features(X, dev, CLIN).dropped
    # nothing to drop: an empty sentence
    assert prune_features(X[["e3", "age"]], dev, CLIN).sentence() == ""


def test_case_fields_follow_the_features():
    assert case_fields(["age", "sex_male"]) == ["age", "sex"]
    assert case_fields(["location_axial", "esr_abnormal"]) == ["site", "esr"]
    assert case_fields([]) == []
    # an unknown feature: every field is asked for rather than guessing
    assert case_fields(["age", "mystery"]) == ["age", "sex", "site", "crp", "esr"]


def test_run_stacking_fits_without_the_dropped_features(tmp_path):
    X, meta = _table()
    cfg = StackingConfig(family="lr", compare=["lr"], n_iter=1, nested=False, bootstrap=20,
                         inner_folds=3)
    summary = run_stacking(X, meta, cfg, tmp_path / "s", progress=False)
    assert summary["features"] == ["e3", "age", "sex_male", "esr_abnormal"]
    assert summary["clinical"] == ["age", "sex_male", "esr_abnormal"]
    assert set(summary["dropped_features"]) == {"location_axial", "crp_abnormal"}
    from multibone.io.modelfile import load_model

    stacker = load_model(tmp_path / "s" / "stacker.skops")
    assert list(stacker.feature_names_in_) == summary["features"]


def test_nothing_left_is_a_clear_error(tmp_path):
    X, meta = _table()
    X = X[["location_axial", "crp_abnormal"]]
    with pytest.raises(InputError, match="no usable feature left.*location_axial"):
        run_stacking(X, meta, StackingConfig(family="lr", compare=["lr"]), tmp_path / "s",
                     progress=False)
    assert not (tmp_path / "s").exists()
