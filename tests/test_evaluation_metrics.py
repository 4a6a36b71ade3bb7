"""Wilson intervals, threshold metrics, likelihood ratios and operating points.

Wilson reference: R package binom (binom.confint(method="wilson")), rows of
../shared/refdata/R_binom_confint_via_statsmodels.csv (copied into statsmodels'
test suite).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multibone.errors import InputError
from multibone.evaluation import (
    apply_operating_point,
    binary_metrics,
    choose_operating_points,
    likelihood_ratios,
    wilson,
)

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"


def _wilson_rows():
    path = REFDATA / "R_binom_confint_via_statsmodels.csv"
    if not path.is_file():
        return []
    d = pd.read_csv(path)
    return d[d["method_R_binom"] == "wilson"].to_dict("records")


@pytest.mark.parametrize("row", _wilson_rows() or [None])
def test_wilson_matches_r_binom(row):
    if row is None:
        pytest.skip(f"reference data not found in {REFDATA}")
    w = wilson(int(row["x"]), int(row["n"]))
    # R's table holds 8 significant digits for some rows
    assert w.ci_low == pytest.approx(row["lower"], abs=1e-7)
    assert w.ci_high == pytest.approx(row["upper"], abs=1e-7)


def test_wilson_empty():
    assert math.isnan(wilson(0, 0).value)


def test_binary_metrics_counts_and_definitions():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.4, 0.3, 0.2, 0.1, 0.05])
    m = binary_metrics(y, p, 0.6)  # score >= threshold is positive
    assert (m.TP, m.FN, m.FP, m.TN) == (3, 1, 1, 5)
    assert m.sensitivity.value == 0.75 and m.specificity.value == pytest.approx(5 / 6)
    assert m.ppv.value == 0.75 and m.npv.value == pytest.approx(5 / 6)
    assert m.accuracy.value == 0.8
    assert m.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m.lr_pos == pytest.approx(0.75 / (1 / 6))
    assert m.lr_neg == pytest.approx(0.25 / (5 / 6))
    # Simel et al. (1991) log-method CI
    se = math.sqrt(1 / 3 - 1 / 4 + 1 / 1 - 1 / 6)
    assert m.lr_pos_ci_low == pytest.approx(m.lr_pos * math.exp(-1.959963984540054 * se))


def test_likelihood_ratio_zero_false_positives():
    lr = likelihood_ratios(tp=5, fp=0, tn=10, fn=1)
    assert lr["lr_pos"] == math.inf and math.isnan(lr["lr_pos_ci_low"])


def test_operating_points_rules():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.2, 400))))
    ops = choose_operating_points(y, p)
    assert set(ops) == {"youden", "sens90", "spec90", "maxf1"}
    assert ops["sens90"].sensitivity >= 0.9
    assert ops["spec90"].specificity >= 0.9
    # brute force over all observed thresholds
    ts = np.unique(p)
    sens = np.array([np.mean(p[y == 1] >= t) for t in ts])
    spec = np.array([np.mean(p[y == 0] < t) for t in ts])
    assert ops["youden"].sensitivity + ops["youden"].specificity == pytest.approx(
        np.max(sens + spec)
    )
    assert ops["sens90"].specificity == pytest.approx(spec[sens >= 0.9].max())
    assert ops["spec90"].sensitivity == pytest.approx(sens[spec >= 0.9].max())
    f1 = [binary_metrics(y, p, t).f1 for t in ts]
    assert ops["maxf1"].f1 == pytest.approx(max(f1))


def test_operating_point_applied_unchanged_elsewhere():
    y_dev = np.array([0, 0, 0, 1, 1, 1])
    p_dev = np.array([0.1, 0.2, 0.45, 0.4, 0.8, 0.9])
    t = choose_operating_points(y_dev, p_dev, ("youden",))["youden"]
    m = apply_operating_point([0, 1, 1], [0.39, 0.41, 0.2], t)
    assert m.threshold == t.threshold
    assert (m.TP, m.FN, m.TN) == (1, 1, 1)


def test_unknown_operating_point():
    with pytest.raises(InputError, match="unknown operating point"):
        choose_operating_points([0, 1], [0.1, 0.9], ("best",))
