"""Calibrated backbone scores (cross-fitted Platt) and "refer when unsure" conformal sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from multibone.errors import InputError
from multibone.stacking.conformal import ConformalReferral, coverage_table
from multibone.stacking.score_calibration import (
    P_FLOOR,
    ScoreCalibrator,
    crossfit_calibrate,
    to_logit,
)


def _table(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    z = rng.normal(8 * (2 * y - 1), 12)  # over-confident: saturated probabilities
    p = expit(z)
    p[:5] = np.where(y[:5] == 1, 1.0, 0.0)  # exactly 0/1
    X = pd.DataFrame({"e3": p, "age": rng.normal(40, 10, n)},
                     index=pd.Index([f"P{i}" for i in range(n)], name="patient_id"))
    split = np.where(np.arange(n) < 110, "dev", "external")
    fold = np.where(split == "dev", np.arange(n) % 5, -1)
    meta = pd.DataFrame({"split": split, "fold": fold, "label": y}, index=X.index)
    return X, meta


def test_calibrated_scores_are_never_0_or_1_and_other_columns_untouched():
    X, meta = _table()
    out, cal = crossfit_calibrate(X, meta, ["e3"])
    assert ((out["e3"] >= P_FLOOR) & (out["e3"] <= 1 - P_FLOOR)).all()
    assert ((out["e3"] > 0) & (out["e3"] < 1)).all()
    pd.testing.assert_series_equal(out["age"], X["age"])
    # over-confident inputs: the fitted slope on the logit shrinks them
    assert 0 < cal.params_["e3"]["b"] < 1


def test_no_dev_patient_calibrates_its_own_score():
    X, meta = _table()
    out1, _ = crossfit_calibrate(X, meta, ["e3"])
    flipped = meta.copy()
    flipped.iloc[0, flipped.columns.get_loc("label")] = 1 - meta["label"].iloc[0]
    out2, _ = crossfit_calibrate(X, flipped, ["e3"])
    # patient 0's own label does not move its own calibrated score ...
    assert out2["e3"].iloc[0] == out1["e3"].iloc[0]
    # ... but moves those of patients in other folds (whose maps it helped fit)
    other = (meta["split"] == "dev") & (meta["fold"] != meta["fold"].iloc[0])
    assert not np.allclose(out2.loc[other, "e3"], out1.loc[other, "e3"])


def test_platt_map_matches_an_unpenalised_statsmodels_fit_when_c_is_large():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    z = rng.normal(2 * y - 1, 1.5)
    X = pd.DataFrame({"b": expit(z)})
    cal = ScoreCalibrator(C=1e8).fit(X, y, ["b"])
    glm = sm.GLM(y, sm.add_constant(to_logit(X["b"].to_numpy())), family=sm.families.Binomial()).fit()
    assert cal.params_["b"]["a"] == pytest.approx(glm.params[0], abs=1e-4)
    assert cal.params_["b"]["b"] == pytest.approx(glm.params[1], abs=1e-4)
    back = ScoreCalibrator.from_json(cal.to_json())
    np.testing.assert_allclose(back.transform(X)["b"], cal.transform(X)["b"])


def _sim(n, rng):
    y = rng.integers(0, 2, n)
    p = expit(rng.normal(1.5 * (2 * y - 1), 1.5))
    return y, p


def test_conformal_p_values_are_the_textbook_mondrian_ones():
    rng = np.random.default_rng(2)
    y, p = _sim(200, rng)
    c = ConformalReferral(0.1).fit(y, p)
    for q in (0.05, 0.3, 0.5, 0.9):
        pv = c.p_values([q])[0]
        a1 = np.where(y == 1, 1 - p, p)[y == 1]  # nonconformity of class-1 calibration cases
        a0 = np.where(y == 1, 1 - p, p)[y == 0]
        assert pv[1] == pytest.approx((np.sum(a1 >= 1 - q) + 1) / (len(a1) + 1))
        assert pv[0] == pytest.approx((np.sum(a0 >= q) + 1) / (len(a0) + 1))


def test_conformal_coverage_holds_per_class_on_exchangeable_cases():
    rng = np.random.default_rng(3)
    y, p = _sim(500, rng)
    c = ConformalReferral(0.1).fit(y, p)
    yt, pt = _sim(20000, rng)
    tab = coverage_table(c, pd.DataFrame({"label": yt, "p_stacker": pt, "set": "new"}))
    row = tab.iloc[0]
    # class-conditional guarantee >= 90 % in expectation; 500 calibration cases
    # give about +-2.5 % of finite-sample spread around it
    assert row["coverage_0"] > 0.87 and row["coverage_1"] > 0.87
    assert row["coverage"] == pytest.approx(0.9, abs=0.035)
    assert 0 < row["referred"] < 1


def test_conformal_describe_and_refusal_with_few_cases():
    rng = np.random.default_rng(4)
    y, p = _sim(200, rng)
    c = ConformalReferral.from_json(ConformalReferral(0.1).fit(y, p).to_json())
    sure = c.describe(0.995, "infection", "tumor")
    assert sure["set"] == ["infection"] and not sure["refer"]
    unsure = c.describe(0.5, "infection", "tumor")
    assert unsure["refer"] and unsure["text"].startswith("uncertain: refer")
    with pytest.raises(InputError, match="need at least 10 of each"):
        ConformalReferral().fit([0] * 30 + [1] * 5, np.linspace(0, 1, 35))
    with pytest.raises(InputError, match="error rate"):
        ConformalReferral(0.7)


def test_a_backbone_that_ranks_backwards_is_not_turned_around():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 200)
    X = pd.DataFrame({"bad": expit(rng.normal(-(2 * y - 1), 1.0))})  # anti-predictive
    cal = ScoreCalibrator().fit(X, y, ["bad"])
    assert cal.params_["bad"]["b"] == 0.0 and "prevalence" in cal.params_["bad"]["note"]
    np.testing.assert_allclose(cal.transform(X)["bad"], y.mean())

