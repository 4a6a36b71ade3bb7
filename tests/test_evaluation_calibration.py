"""Calibration against R predRupdate (SYNPM) and decision curves against dcurves.

* predRupdate::pred_validate on SYNPM$ValidationData, existing model 1:
  calibration intercept (LP as offset) 0.7323, slope 0.6484, Brier 0.1249
  (../shared/refdata/README.md).
* dcurves (R tests), outcome ``cancer``, predictor ``cancerpredmarker``,
  threshold 0.25: treat-all -0.1466667, treat-none 0, model 0.064.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from multibone.errors import InputError
from multibone.evaluation import calibration, calibration_table, net_benefit, pr_curve


@pytest.fixture(scope="module")
def synpm(refdata):
    data = pd.read_csv(refdata("predRupdate_SYNPM_ValidationData.csv"))
    models = pd.read_csv(refdata("predRupdate_SYNPM_Existing_logistic_models.csv"))
    coef = models[models["model"] == 1].iloc[0]
    lp = coef["Intercept"] + sum(
        coef[c] * data[c] for c in ("Age", "SexM", "Smoking_Status", "Diabetes", "Creatinine")
    )
    return data["Y"].to_numpy(), lp.to_numpy()


def test_calibration_matches_predrupdate(synpm):
    y, lp = synpm
    for r in (calibration(y, lp=lp), calibration(y, expit(lp))):
        assert r.intercept == pytest.approx(0.7323, abs=5e-5)
        assert r.slope == pytest.approx(0.6484, abs=5e-5)
        assert r.brier == pytest.approx(0.1249, abs=5e-5)
        assert r.oe_ratio == pytest.approx(y.sum() / expit(lp).sum())


def test_calibration_table_deciles(synpm):
    y, lp = synpm
    t = calibration_table(y, expit(lp))
    assert len(t) == 10 and t["n"].sum() == len(y)
    assert (t["observed_ci_low"] <= t["observed"]).all()
    assert t["mean_predicted"].is_monotonic_increasing


def test_calibration_single_class_reports_brier():
    r = calibration([1, 1, 1], [0.2, 0.7, 0.9])
    assert np.isnan(r.slope) and "undefined" in r.note
    assert r.brier == pytest.approx(np.mean((np.array([0.2, 0.7, 0.9]) - 1) ** 2))


def test_net_benefit_matches_dcurves(refdata):
    d = pd.read_csv(refdata("dcurves_df_binary.csv"))
    y = d["cancer"].astype(str).str.upper().eq("TRUE").astype(int)
    nb = net_benefit(y, d["cancerpredmarker"], [0.25]).iloc[0]
    assert nb["treat_all"] == pytest.approx(-0.1466667, abs=1e-7)
    assert nb["treat_none"] == 0
    assert nb["net_benefit"] == pytest.approx(0.064, abs=1e-9)


def test_pr_curve_matches_sklearn():
    from sklearn.metrics import average_precision_score, f1_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) * 0.6 + 0.4 * y
    r = pr_curve(y, s)
    assert r.average_precision == pytest.approx(average_precision_score(y, s))
    assert r.max_f1 == pytest.approx(f1_score(y, s >= r.max_f1_threshold))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 1], [0.2, 1.3]), r"probabilities in \[0, 1\].*logits"),
        (([0, 1], [0.2, np.nan]), "NaN"),
    ],
)
def test_bad_probabilities(args, match):
    with pytest.raises(InputError, match=match):
        calibration(*args)


def test_bad_dca_thresholds():
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        net_benefit([0, 1], [0.2, 0.8], [0.0, 0.5])


def test_saturated_probabilities_give_a_finite_intercept_and_say_so():
    # Probabilities of exactly 0/1, a fifth of them confidently wrong: an IRLS
    # fit of the intercept overflowed here (-9.0e14 in a demo report).
    from scipy.optimize import minimize_scalar

    from multibone.evaluation.calibration import EPS

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.8, y, 1 - y).astype(float)
    p[:40] = rng.uniform(0.05, 0.95, 40)  # some unsaturated cases too
    r = calibration(y, p)
    assert np.isfinite([r.intercept, r.intercept_ci_low, r.intercept_ci_high]).all()
    assert "clipped" in r.note and f"{EPS:g}" in r.note
    # the intercept is the maximum-likelihood one for LP clipped at EPS: check it
    # against a direct minimisation of the negative log-likelihood (scipy).
    q = np.clip(p, EPS, 1 - EPS)
    lp = np.log(q / (1 - q))

    def nll(a):
        z = a + lp
        return float(np.sum(np.logaddexp(0, z) - y * z))

    ref = minimize_scalar(nll, bounds=(-30, 30), method="bounded", options={"xatol": 1e-10})
    assert r.intercept == pytest.approx(ref.x, abs=1e-5)
    assert np.isfinite(r.slope) and 0 < r.slope < 1  # saturated scores are too extreme


def test_intercept_agrees_with_statsmodels_glm_offset_when_it_converges():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    lp = rng.normal(0, 2, 300)
    y = (rng.random(300) < expit(0.4 + 0.7 * lp)).astype(int)
    glm = sm.GLM(y, np.ones((300, 1)), family=sm.families.Binomial(), offset=lp).fit()
    r = calibration(y, lp=lp)
    assert r.intercept == pytest.approx(float(glm.params[0]), abs=1e-8)
    lo, hi = glm.conf_int()[0]
    assert (r.intercept_ci_low, r.intercept_ci_high) == pytest.approx((lo, hi), abs=1e-6)
    assert r.note == ""
