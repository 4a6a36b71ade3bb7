"""Combining gain (paired DeLong vs the better single-source model) and conformal coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from multibone.evaluation.gain import combining_gain, conformal_coverage
from multibone.stats import delong_paired


def _preds(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    img = rng.normal(y, 1.0)
    clin = rng.normal(y, 1.2)
    return pd.DataFrame({
        "label": y.astype(float),
        "p_image_only": expit(img),
        "p_clinical_only": expit(clin),
        "p_stacker": expit(img + clin),  # uses both: should win
        "split": "external",
    })


def test_gain_picks_the_better_rival_and_reports_its_delong_test():
    df = _preds()
    sets = [("external", "external", np.ones(len(df), bool))]
    g = combining_gain(df, sets).iloc[0]
    assert g["rival"] == "image_only"  # the stronger single source on these data
    ref = delong_paired(df["label"], df["p_stacker"], df["p_image_only"])
    assert g["diff"] == pytest.approx(ref.diff) and g["p"] == pytest.approx(ref.p)
    assert g["verdict"] == "stacker better" and g["p"] < 0.05


def test_gain_says_no_difference_when_the_stacker_is_the_rival():
    df = _preds()
    df["p_stacker"] = df["p_image_only"]
    g = combining_gain(df, [("x", "x", np.ones(len(df), bool))]).iloc[0]
    assert g["verdict"] == "no significant difference" and g["p"] == 1.0


def test_coverage_counts_true_class_membership_and_referrals():
    df = pd.DataFrame({
        "label": [1, 1, 0, 0, 1.0],
        "in_set_0": [0, 1, 1, 0, 0],
        "in_set_1": [1, 1, 0, 1, 0],
    })
    c = conformal_coverage(df, [("s", "s", np.ones(5, bool))], 0.9).iloc[0]
    # covered: yes, yes, yes, no (0 not in set), no (empty set)
    assert c["coverage"] == pytest.approx(3 / 5)
    assert c["coverage_pos"] == pytest.approx(2 / 3) and c["coverage_neg"] == pytest.approx(1 / 2)
    assert c["referred"] == pytest.approx(2 / 5)  # both classes (row 2) and none (row 5)
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(3, 5, method="wilson")
    assert (c["coverage_ci_low"], c["coverage_ci_high"]) == pytest.approx((lo, hi))
    assert not c["within_ci"]  # 0.9 lies above the Wilson interval of 3/5
