"""Threshold metrics, likelihood ratios, and a fixed operating point applied to another set.

Wilson intervals and the choice of operating points are tested with the
statistics core (``tests/test_stats_proportions.py``, ``tests/test_stats_operating.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from multibone.evaluation import apply_operating_point, binary_metrics, likelihood_ratios
from multibone.stats import choose_operating_points


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


def test_operating_point_applied_unchanged_elsewhere():
    y_dev = np.array([0, 0, 0, 1, 1, 1])
    p_dev = np.array([0.1, 0.2, 0.45, 0.4, 0.8, 0.9])
    t = choose_operating_points(y_dev, p_dev, ("youden",))["youden"]
    m = apply_operating_point([0, 1, 1], [0.39, 0.41, 0.2], t)
    assert m.threshold == t.threshold
    assert (m.TP, m.FN, m.TN) == (1, 1, 1)
