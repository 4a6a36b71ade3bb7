"""Operating points chosen on development predictions: youden, sens90, spec90."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import recall_score

from multibone.errors import InputError
from multibone.stacking import apply_threshold, operating_points


def _brute(y, p):
    """Every candidate threshold (observed scores) with sensitivity/specificity
    from scikit-learn's recall_score (positive if p >= t)."""
    rows = []
    for t in np.unique(p):
        pred = (p >= t).astype(int)
        rows.append((t, recall_score(y, pred), recall_score(1 - y, 1 - pred)))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operating_points_match_definitions(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(60) < 0.4).astype(int)
    p = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), 2)  # ties on purpose
    ops = operating_points(y, p)
    rows = _brute(y, p)
    best_j = max(s + c - 1 for _, s, c in rows)
    assert ops["youden"]["sensitivity"] + ops["youden"]["specificity"] - 1 == pytest.approx(best_j)
    assert ops["sens90"]["threshold"] == max(t for t, s, _ in rows if s >= 0.9)
    assert ops["spec90"]["threshold"] == min(t for t, _, c in rows if c >= 0.9)
    for op in ops.values():  # reported rates are those at the threshold (p >= t)
        pred = apply_threshold(p, op["threshold"])
        assert op["sensitivity"] == pytest.approx(recall_score(y, pred))
        assert op["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred))
    assert ops["sens90"]["sensitivity"] >= 0.9
    assert ops["spec90"]["specificity"] >= 0.9


def test_threshold_is_inclusive():
    np.testing.assert_array_equal(apply_threshold([0.2, 0.5, 0.7], 0.5), [0, 1, 1])


def test_perfect_separation():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    ops = operating_points(y, p)
    assert ops["youden"] == {"threshold": 0.6, "sensitivity": 1.0, "specificity": 1.0}


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "one class"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN"),
        ([0, 1], [0.1, 0.2, 0.3], "3 scores for 2 labels"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1"),
    ],
)
def test_operating_points_bad_input(y, p, match):
    with pytest.raises(InputError, match=match):
        operating_points(y, p)
