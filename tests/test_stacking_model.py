"""The Stacker estimator: contract, missing values, calibration options."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_predict
from stacking_sim import simulate

from multibone.errors import InputError
from multibone.stacking import FAMILIES, MissingAtPredictWarning, ScoreBaseline, Stacker


@pytest.fixture(scope="module")
def data():
    return simulate(n=90, seed=3)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_fits_with_missing_labs(data, family):
    X, y, g = data
    assert X["crp_abnormal"].isna().any()
    stk = Stacker(family, calibration="none").fit(X, y, g)
    proba = stk.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(stk.feature_names_in_) == list(X.columns)
    names = list(stk.get_feature_names_out())
    assert stk.explain_transform(X).shape == (len(X), len(names))
    if family in ("lr", "knn", "adaboost", "gbdt"):  # imputed + indicator (learned on train only)
        assert "missingindicator_crp_abnormal" in names
        assert not np.isnan(stk.explain_transform(X)).any()
    else:  # the tree takes NaN itself
        assert names == list(X.columns)


def test_estimator_contract(data):
    X, y, g = data
    est = Stacker("lr", params={"C": 0.5}, calibration="sigmoid", cv=3)
    assert est.get_params()["params"] == {"C": 0.5}
    assert not hasattr(est, "pipeline_")  # constructor only stores
    fitted = est.fit(X, y, g)
    assert fitted is est
    other = clone(est)
    assert not hasattr(other, "pipeline_") and other.get_params() == est.get_params()
    np.testing.assert_array_equal(est.classes_, [0, 1])
    assert est.predict(X).shape == (len(X),)
    # columns are matched by name, not position
    np.testing.assert_allclose(
        est.predict_proba(X[X.columns[::-1]]), est.predict_proba(X), atol=1e-12
    )


def test_zero_backbones_clinical_only(data):
    X, y, g = data
    clin = X.drop(columns=["e3", "vit"])
    stk = Stacker("rf", calibration="sigmoid", cv=3).fit(clin, y, g)
    assert stk.predict_proba(clin).shape == (len(clin), 2)


@pytest.mark.parametrize(
    ("kwargs", "fit_args", "match"),
    [
        ({"family": "svm"}, {}, "rf, adaboost, gbdt, lightgbm, dt, lr, xgboost, knn"),
        ({"calibration": "platt"}, {}, "none, sigmoid, isotonic"),
        ({}, {"y": "ones"}, "only one class"),
        ({}, {"y": "nan"}, "missing label"),
        ({"cv": 50}, {}, "fewer than the 50 folds"),
        ({"params": {"depth": 3}}, {}, "family rf: unknown parameter.*depth"),
    ],
)
def test_bad_input(data, kwargs, fit_args, match):
    X, y, g = data
    if fit_args.get("y") == "ones":
        y = np.ones_like(y)
    elif fit_args.get("y") == "nan":
        y = y.astype(float)
        y[0] = np.nan
    with pytest.raises(InputError, match=match):
        Stacker(**kwargs).fit(X, y, g)


def test_predict_needs_the_training_columns(data):
    X, y, g = data
    stk = Stacker("dt", calibration="none").fit(X, y, g)
    with pytest.raises(InputError, match="missing feature column.*vit"):
        stk.predict_proba(X.drop(columns=["vit"]))
    bad = X.copy()
    bad["age"] = "old"
    with pytest.raises(InputError, match="column age: not numeric"):
        stk.predict_proba(bad)


@pytest.mark.parametrize("family", ["rf", "lr"])
def test_warns_when_a_feature_is_missing_only_at_prediction(data, family):
    X, y, g = data
    X = X.copy()
    X["age"] = X["age"].fillna(40.0)
    stk = Stacker(family, calibration="none").fit(X, y, g)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingAtPredictWarning)
        stk.predict_proba(X)  # CRP was missing in training too: no warning
    Z = X.iloc[:3].copy()
    Z.loc[Z.index[0], "age"] = np.nan
    with pytest.warns(MissingAtPredictWarning, match="age had no missing values in training"):
        p = stk.predict_proba(Z)
    assert np.isfinite(p).all()


@pytest.mark.parametrize("method", ["none", "sigmoid", "isotonic"])
def test_calibration_options(data, method):
    X, y, g = data
    stk = Stacker("rf", params={"max_depth": 3}, calibration=method, cv=4).fit(X, y, g)
    p = stk.predict_proba(X)[:, 1]
    u = stk.predict_proba_uncalibrated(X)[:, 1]
    assert ((p >= 0) & (p <= 1)).all()
    if method == "none":
        assert stk.calibrated_ is None
        np.testing.assert_array_equal(p, u)
        return
    # calibration is a monotone map of the uncalibrated score
    order = np.argsort(u, kind="stable")
    assert (np.diff(p[order]) >= -1e-12).all()
    assert not np.allclose(p, u)
    # fitted on out-of-fold scores of patient-grouped folds, none shared across a split
    for tr, te in stk.cv_splits_:
        assert not set(g[tr]) & set(g[te])
    oof = cross_val_predict(
        clone(stk.pipeline_), X.to_numpy(), y, cv=stk.cv_splits_, method="predict_proba"
    )[:, 1]
    cal = stk.calibrated_.calibrated_classifiers_[0].calibrators[0]
    if method == "isotonic":
        # isotonic regression preserves the mean: calibrated OOF mean = prevalence
        assert cal.predict(oof).mean() == pytest.approx(y.mean(), abs=1e-9)
    else:  # Platt scaling: increasing logistic map fitted on those OOF scores
        assert cal.a_ < 0  # sklearn's parametrisation 1 / (1 + exp(a f + b))


def test_score_baseline_mean_of_backbones(data):
    X, y, _ = data
    base = ScoreBaseline(["e3", "vit"]).fit(X)
    np.testing.assert_allclose(base.predict_proba(X)[:, 1], (X["e3"] + X["vit"]) / 2)
    one = ScoreBaseline(["e3"]).fit(X)
    np.testing.assert_allclose(one.predict_proba(X)[:, 1], X["e3"])
    with pytest.raises(InputError, match="swin"):
        ScoreBaseline(["swin"]).fit(X)
