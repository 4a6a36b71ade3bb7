"""Wilson interval of the statistics core against R's binom package and statsmodels.

Reference: R package binom (``binom.confint(method="wilson")``), rows of
../shared/refdata/R_binom_confint_via_statsmodels.csv (copied into statsmodels'
test suite).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from multibone.errors import InputError
from multibone.stats import wilson


def test_wilson_matches_r_binom(refdata):
    d = pd.read_csv(refdata("R_binom_confint_via_statsmodels.csv"))
    rows = d[d["method_R_binom"] == "wilson"].to_dict("records")
    assert rows
    for row in rows:
        w = wilson(int(row["x"]), int(row["n"]))
        # R's table holds 8 significant digits for some rows
        assert w.ci_low == pytest.approx(row["lower"], abs=1e-7), row
        assert w.ci_high == pytest.approx(row["upper"], abs=1e-7), row


@pytest.mark.parametrize(("k", "n", "level"), [(0, 7, 0.95), (3, 10, 0.9), (50, 50, 0.99)])
def test_wilson_matches_statsmodels(k, n, level):
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    w = wilson(k, n, level=level)
    assert (w.ci_low, w.ci_high) == pytest.approx((lo, hi), abs=1e-14)
    assert w.value == k / n


def test_wilson_empty():
    w = wilson(0, 0)
    assert math.isnan(w.value) and math.isnan(w.ci_low) and math.isnan(w.ci_high)


def test_wilson_refuses_k_above_n():
    with pytest.raises(InputError, match="0 <= k <= n"):
        wilson(5, 4)
