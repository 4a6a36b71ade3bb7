"""Step 2: group-aware tuning, family comparison, nested out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from stacking_sim import simulate

from multibone.errors import InputError, LeakageError
from multibone.stacking import (
    FAMILIES,
    StackingConfig,
    TunedStacker,
    compare_families,
    fit_stacker,
    make_estimator,
    make_group_folds,
    oof_predict,
    tune_family,
)

FAST = StackingConfig(inner_folds=3, n_iter=2, bootstrap=50, calibration="none")


def _duplicated_patients(n_patients=40, copies=3, seed=0):
    """Random labels; each patient appears ``copies`` times with identical features.
    Any patient on both sides of a split lets a nearest-neighbour model 'recognise'
    it, inflating the AUC of pure noise."""
    rng = np.random.default_rng(seed)
    y_p = np.tile([0, 1], n_patients // 2)
    feats = rng.normal(size=(n_patients, 3))
    X = pd.DataFrame(np.repeat(feats, copies, axis=0), columns=["e3", "age", "sex_male"])
    y = np.repeat(y_p, copies)
    groups = np.repeat([f"P{i}" for i in range(n_patients)], copies)
    return X, y, groups


def test_tuning_uses_patient_grouped_folds():
    X, y, groups = _duplicated_patients()
    cfg = StackingConfig(inner_folds=4, n_iter=8, calibration="none", bootstrap=0)
    res = tune_family(X, y, groups, cfg, "knn", return_oof=True)
    assert len(res.splits) == 4
    for tr, te in res.splits:  # no patient in both inner train and inner validation
        assert not set(groups[tr]) & set(groups[te])
    assert sorted(np.concatenate([te for _, te in res.splits])) == list(range(len(y)))
    # noise stays noise under grouped folds ...
    assert roc_auc_score(y, res.oof) < 0.75
    # ... while row-wise folds (the leak this guards against) look impressive
    leaky = cross_val_predict(
        make_estimator("knn", n_neighbors=5),
        X.to_numpy(),
        y,
        cv=StratifiedKFold(4, shuffle=True, random_state=0),
        method="predict_proba",
    )[:, 1]
    assert roc_auc_score(y, leaky) > 0.8
    stk = fit_stacker(X, y, groups, cfg, "knn")
    for tr, te in stk.tuning_["splits"]:
        assert not set(groups[tr]) & set(groups[te])


def test_compare_all_eight_families():
    X, y, g = simulate(n=80, seed=1)
    table = compare_families(X, y, g, FAST, progress=False)
    assert list(table["family"]) == list(FAMILIES)
    assert {"cv_auc", "ci_low", "ci_high", "best_params", "ci_method"} <= set(table.columns)
    assert ((table["ci_low"] <= table["cv_auc"]) & (table["cv_auc"] <= table["ci_high"])).all()
    assert (table["cv_auc"] > 0.6).all()
    assert all(isinstance(p, dict) for p in table["best_params"])


def test_stacker_beats_each_input_alone():
    """Image score and clinical features carry independent evidence: combined > each."""
    X, y, g = simulate(n=300, seed=7, backbones=("e3",), image_effect=0.8, clinical_effect=1.2)
    cfg = StackingConfig(inner_folds=3, calibration="sigmoid", bootstrap=0)
    clin = X.drop(columns=["e3"])
    rf = {"max_depth": 3, "min_samples_leaf": 5, "n_estimators": 40}
    for family, params in [("lr", {"C": 1.0}), ("rf", rf)]:
        p_stack = oof_predict(X, y, g, cfg, family, params=params)
        p_clin = oof_predict(clin, y, g, cfg, family, params=params)
        a_stack = roc_auc_score(y, p_stack)
        assert a_stack > roc_auc_score(y, X["e3"]) + 0.03, family
        assert a_stack > roc_auc_score(y, p_clin) + 0.03, family


def test_oof_predict_nested_uses_given_folds():
    X, y, g = simulate(n=60, seed=2)
    folds = np.arange(60) % 3
    p = oof_predict(X, y, g, FAST, "dt", folds=folds)
    assert p.shape == (60,) and np.isfinite(p).all()


@pytest.mark.parametrize(("family", "params"), [("dt", None), ("lr", {"C": 0.1})])
def test_oof_predict_equals_a_refit_per_outer_fold(family, params):
    """cross_val_predict over a TunedStacker (or a fixed Stacker) gives exactly
    what tuning + calibrating on each outer training part by hand gives."""
    X, y, g = simulate(n=72, seed=4)
    cfg = StackingConfig(inner_folds=3, n_iter=3, calibration="sigmoid", bootstrap=0)
    folds = np.arange(72) % 3
    p = oof_predict(X, y, g, cfg, family, folds=folds, params=params)
    by_hand = np.full(72, np.nan)
    for k in range(3):
        tr, te = folds != k, folds == k
        stk = fit_stacker(X[tr], y[tr], g[tr], cfg, family, params=params)
        by_hand[te] = stk.predict_proba(X[te])[:, 1]
    np.testing.assert_array_equal(p, by_hand)


def test_tuned_stacker_is_an_estimator():
    from sklearn.base import clone

    from multibone.stacking import Stacker
    from multibone.stacking.selection import family_grid

    X, y, g = simulate(n=60, seed=5)
    tuned = TunedStacker(Stacker(make_estimator("dt"), cv=3), family_grid("dt"), n_iter=3)
    assert clone(tuned).get_params()["stacker__estimator__model__random_state"] == 0
    tuned.fit(X, np.where(y == 1, "tumor", "infection"), g)
    assert tuned.n_candidates_ == 3 and set(tuned.best_params_) <= set(family_grid("dt"))
    fitted = tuned.stacker_.explain_model_
    for k, v in tuned.best_params_.items():
        assert getattr(fitted, k.removeprefix("model__")) == v
    np.testing.assert_array_equal(tuned.classes_, ["infection", "tumor"])
    assert tuned.predict_proba(X).shape == (60, 2)


def test_oof_predict_refuses_rows_without_a_fold():
    X, y, g = simulate(n=60, seed=2)
    folds = np.arange(60) % 3
    folds[0] = -1
    with pytest.raises(InputError, match="1 row.*no fold"):
        oof_predict(X, y, g, FAST, "dt", folds=folds, params={})


def test_oof_predict_refuses_patient_in_two_folds():
    X, y, g = simulate(n=60, seed=2)
    g = g.copy()
    g[1] = g[0]  # same patient ...
    folds = np.arange(60) % 3  # ... rows 0 and 1 in folds 0 and 1
    with pytest.raises(LeakageError, match="P0000"):
        oof_predict(X, y, g, FAST, "dt", folds=folds)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda X, y, g: fit_stacker(X, y, g, FAST, "svm"), "valid families are rf, adaboost"),
        (lambda X, y, g: compare_families(X, y, g, FAST, ["rf", "nb"]), "'nb'"),
        (lambda X, y, g: fit_stacker(X, np.zeros_like(y), g, FAST), "only one class"),
        (lambda X, y, g: make_group_folds(y, g, 40, 0), "lower stacking.inner_folds"),
        (lambda X, y, g: fit_stacker(X, y[:-1], g, FAST), "labels for 60 rows"),
    ],
)
def test_selection_bad_input(call, match):
    X, y, g = simulate(n=60, seed=2)
    with pytest.raises(InputError, match=match):
        call(X, y, g)


def test_config_rejects_unknown_family():
    from multibone._config import from_dict
    from multibone.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model family 'svm'.*rf, adaboost"):
        from_dict(StackingConfig, {"compare": ["rf", "svm"]}, "stacking")
    with pytest.raises(ConfigError, match="calibration"):
        from_dict(StackingConfig, {"calibration": "platt"}, "stacking")
