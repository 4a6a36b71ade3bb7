"""DeLong AUC, variance, CI and paired test against R's pROC on its aSAH data.

Reference values: pROC (xrobin/pROC) tests/testthat, as listed in
../shared/refdata/README.md. pROC's direction "auto" picks controls < cases with
Poor as the case level for all three markers.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multibone.errors import InputError
from multibone.stats import SingleClassError, auc_score, delong_auc, delong_paired


@pytest.fixture(scope="module")
def asah(refdata):
    d = pd.read_csv(refdata("aSAH.csv"))
    return (d["outcome"] == "Poor").astype(int).to_numpy(), d


# pROC tests/testthat/test-auc.R and var/roc.test results
PROC_AUC = {"wfns": 0.823678861788618, "ndka": 0.611957994579946, "s100b": 0.7313685636856369}
PROC_VAR = {"wfns": 0.00146991470882363, "s100b": 0.00266868245717244}


@pytest.mark.parametrize("marker", sorted(PROC_AUC))
def test_auc_matches_proc(asah, marker):
    y, d = asah
    r = delong_auc(y, d[marker], direction="auto")
    assert r.direction == "<"
    assert r.auc == pytest.approx(PROC_AUC[marker], abs=1e-12)
    assert (r.n_pos, r.n_neg) == (41, 72)


@pytest.mark.parametrize("marker", sorted(PROC_VAR))
def test_delong_variance_and_ci_match_proc(asah, marker):
    y, d = asah
    r = delong_auc(y, d[marker])
    assert r.variance == pytest.approx(PROC_VAR[marker], rel=1e-10)
    # pROC's ci.auc(method="delong"): normal interval on the AUC scale
    half = stats.norm.ppf(0.975) * np.sqrt(PROC_VAR[marker])
    assert r.ci_low == pytest.approx(PROC_AUC[marker] - half, abs=1e-10)
    assert r.ci_high == pytest.approx(PROC_AUC[marker] + half, abs=1e-10)


def test_paired_delong_matches_proc(asah):
    y, d = asah
    r = delong_paired(y, d["wfns"], d["s100b"])
    assert r.z == pytest.approx(2.20898359144091, abs=1e-10)
    assert r.p == pytest.approx(0.0271757822291882, abs=1e-12)
    # the sign of z follows the order of the arguments; p is a real probability
    r2 = delong_paired(y, d["s100b"], d["wfns"])
    assert r2.z == pytest.approx(-r.z) and r2.p == pytest.approx(r.p)
    assert 0 < r.p < 1


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # many ties
    assert delong_auc(y, s).auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc_score(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_ties_count_half():
    # every positive tied with every negative: AUC exactly 0.5
    assert delong_auc([0, 0, 1, 1], [0.3, 0.3, 0.3, 0.3]).auc == 0.5
    # one tied pair out of four: (3 + 0.5) / 4
    assert delong_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]).auc == pytest.approx(0.875)


def test_ci_clipped_to_unit_interval():
    r = delong_auc([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert r.auc == 1.0 and r.ci_high == 1.0 and 0 <= r.ci_low <= 1


def test_identical_scores_paired():
    r = delong_paired(
        [0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    )
    assert r.z == 0 and r.p == 1


@pytest.mark.parametrize(
    ("y", "s", "exc", "match"),
    [
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], SingleClassError, "0 negative"),
        ([0, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], SingleClassError, "at least 2 cases of each"),
        ([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], InputError, "NaN"),
        ([0, 1, 0, 2], [0.1, 0.2, 0.3, 0.4], InputError, "0/1"),
        ([0, 1, 0], [0.1, 0.2, 0.3, 0.4], InputError, "4 values but the labels have 3"),
    ],
)
def test_bad_input(y, s, exc, match):
    with pytest.raises(exc, match=match):
        delong_auc(y, s)


def test_fast_on_100k_cases():
    rng = np.random.default_rng(1)
    n = 100_000
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + y
    t = time.perf_counter()
    delong_auc(y, s)
    # well under a second on a quiet machine; generous for a loaded CI box
    assert time.perf_counter() - t < 3.0
