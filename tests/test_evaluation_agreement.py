"""McNemar, Cochran's Q, Cohen's and Fleiss' kappa, kappa-difference permutation test.

References:
* Cohen's kappa: SAS PROC FREQ printout copied in statsmodels'
  stats/tests/test_inter_rater.py (table10): kappa 0.4842, ASE 0.1380, CI 0.2137-0.7547.
* Fleiss' kappa: R irr::kappam.fleiss(diagnoses) = 0.4302445 (Fleiss 1971 data,
  ../shared/refdata/irr_diagnoses.csv); Wikipedia's worked example = 0.210
  (../shared/refdata/statsmodels_fleiss_wikipedia_table.csv).
* Cochran's Q: Conover (1999) p. 253 / NIST Dataplot example, Q = 2.8, p = 0.246597;
  SAS example Q = 8.4706, p = 0.0145 (both as in statsmodels' test_nonparametric.py);
  and the tables in ../shared/refdata against Cochran's (1950) closed form.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multibone.errors import InputError
from multibone.evaluation import (
    cochran_q,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_table,
    kappa_difference_test,
    mcnemar_sens_spec,
    mcnemar_test,
)


def _expand(table):
    a, b = [], []
    for i, row in enumerate(table):
        for j, n in enumerate(row):
            a += [i] * n
            b += [j] * n
    return a, b


def test_cohen_kappa_matches_sas():
    a, b = _expand([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    k = cohen_kappa(a, b)
    assert k.kappa == pytest.approx(0.4842, abs=5e-5)
    assert k.se == pytest.approx(0.1380, abs=5e-5)
    assert k.ci_low == pytest.approx(0.2137, abs=5e-5)
    assert k.ci_high == pytest.approx(0.7547, abs=5e-5)
    assert k.p == pytest.approx(0.0011, abs=5e-5)


def test_weighted_kappa_matches_sas():
    a, b = _expand([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    k = cohen_kappa(a, b, weights="linear")
    assert k.kappa == pytest.approx(0.4701, abs=5e-5)
    assert k.se == pytest.approx(0.1457, abs=5e-5)


def test_cohen_kappa_of_labels_strings():
    k = cohen_kappa(["tumor", "infection", "tumor"], ["tumor", "infection", "infection"])
    assert -1 <= k.kappa <= 1


def test_fleiss_kappa_matches_irr(refdata):
    d = pd.read_csv(refdata("irr_diagnoses.csv"))
    k = fleiss_kappa(d.to_numpy(), n_boot=300, seed=1)
    assert k.kappa == pytest.approx(0.4302445, abs=1e-7)
    assert k.ci_low < k.kappa < k.ci_high


def test_fleiss_kappa_wikipedia_table(refdata):
    d = pd.read_csv(refdata("statsmodels_fleiss_wikipedia_table.csv"))
    table = d[[f"cat{i}" for i in range(1, 6)]].to_numpy()
    assert fleiss_kappa_table(table) == pytest.approx(0.210, abs=5e-4)
    # the per-subject agreement P_i as printed on the page
    r = table.sum(axis=1)[0]
    p_i = (np.sum(table**2, axis=1) - r) / (r * (r - 1))
    np.testing.assert_allclose(p_i, d["P_i_as_printed"], atol=5e-4)


def _cochran_closed_form(x):
    x = np.asarray(x, float)
    k = x.shape[1]
    c, r, n = x.sum(axis=0), x.sum(axis=1), x.sum()
    q = (k - 1) * (k * np.sum(c**2) - n**2) / (k * n - np.sum(r**2))
    return q, stats.chi2.sf(q, k - 1)


def test_cochran_q_published_examples():
    conover = [
        [1, 1, 1],
        [1, 1, 1],
        [0, 1, 0],
        [1, 1, 0],
        [0, 0, 0],
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 0],
        [0, 0, 1],
        [0, 1, 0],
        [1, 1, 1],
        [1, 1, 1],
    ]
    r = cochran_q(conover)
    assert (r.statistic, r.p) == (pytest.approx(2.8), pytest.approx(0.246597, abs=1e-6))
    cases = np.array(
        [[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]]
    )
    sas = np.repeat(cases, [6, 2, 16, 4, 2, 6, 4, 6], axis=0)
    r = cochran_q(sas)
    assert r.statistic == pytest.approx(8.4706, abs=5e-5)
    assert r.p == pytest.approx(0.0145, abs=5e-5)


@pytest.mark.parametrize(
    "name", ["statsmodels_cochranq_table1.csv", "statsmodels_cochranq_table2.csv"]
)
def test_cochran_q_refdata_tables(refdata, name):
    x = pd.read_csv(refdata(name)).to_numpy()
    q, p = _cochran_closed_form(x)
    r = cochran_q(x)
    assert r.statistic == pytest.approx(q) and r.p == pytest.approx(p)
    assert r.df == x.shape[1] - 1


def test_cochran_q_equals_uncorrected_mcnemar_for_two():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (50, 2))
    b = int(np.sum((x[:, 0] == 1) & (x[:, 1] == 0)))
    c = int(np.sum((x[:, 0] == 0) & (x[:, 1] == 1)))
    assert cochran_q(x).statistic == pytest.approx((b - c) ** 2 / (b + c))


def test_mcnemar_continuity_correction():
    a = [1] * 10 + [0] * 3 + [1] * 5 + [0] * 7
    b = [0] * 10 + [1] * 3 + [1] * 5 + [0] * 7
    r = mcnemar_test(a, b)
    assert (r.b, r.c) == (10, 3)
    assert r.statistic == pytest.approx((abs(10 - 3) - 1) ** 2 / 13)
    assert r.p == pytest.approx(stats.chi2.sf(36 / 13, 1))


def test_mcnemar_no_discordant_pairs():
    r = mcnemar_test([1, 0, 1], [1, 0, 1])
    assert r.statistic == 0 and r.p == 1


def test_mcnemar_sens_spec_split():
    y = [1, 1, 1, 0, 0, 0]
    r = mcnemar_sens_spec(y, [1, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 1])
    assert r["sensitivity"].n == 3 and r["specificity"].n == 3 and r["accuracy"].n == 6
    assert (r["sensitivity"].b, r["sensitivity"].c) == (1, 0)


def test_kappa_difference_permutation():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 200)
    good = np.where(rng.random(200) < 0.92, t, 1 - t)
    poor = np.where(rng.random(200) < 0.70, t, 1 - t)
    r = kappa_difference_test(t, good, poor, n_perm=2000, seed=1)
    assert r.diff > 0 and r.p < 0.01
    same = kappa_difference_test(t, good, good, n_perm=200, seed=1)
    assert same.diff == 0 and same.p == 1
    # reproducible with a seed
    assert (
        kappa_difference_test(t, good, poor, n_perm=500, seed=3).p
        == kappa_difference_test(t, good, poor, n_perm=500, seed=3).p
    )


@pytest.mark.parametrize(
    ("call", "args", "match"),
    [
        (cochran_q, ([[0, 1, 2], [1, 0, 1]],), "0/1"),
        (cochran_q, ([0, 1, 1],), "matrix"),
        (mcnemar_test, ([0, 1], [0, 1, 1]), "a has 2 values but b has 3"),
        (fleiss_kappa, ([1, 2, 3],), "n subjects, m>=2 raters"),
        (cohen_kappa, ([1, 2], [1, 2, 3]), "differ in length"),
    ],
)
def test_bad_input(call, args, match):
    with pytest.raises(InputError, match=match):
        call(*args)
