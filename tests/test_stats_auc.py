"""The one AUC: value against scikit-learn (with ties) and the documented NaN rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from multibone.errors import InputError
from multibone.stats import SingleClassError, auc_or_nan, auc_score, roc_points


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    assert auc_score(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc_or_nan(y.astype(float), s) == auc_score(y, s)


def test_auc_or_nan_leaves_out_unlabelled_rows():
    y = np.array([0, 1, np.nan, 0, 1, np.nan])
    s = np.array([0.1, 0.9, 0.95, 0.4, 0.3, np.nan])  # a NaN score of an unlabelled row is fine
    assert auc_or_nan(y, s) == pytest.approx(roc_auc_score([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.3]))


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0, np.nan], [np.nan, np.nan, np.nan]])
def test_auc_or_nan_is_nan_when_a_class_is_empty(y):
    assert math.isnan(auc_or_nan(y, [0.1, 0.2, 0.3]))


@pytest.mark.parametrize(
    ("fn", "y", "s", "exc", "match"),
    [
        (auc_score, [1, 1, 1], [0.1, 0.2, 0.3], SingleClassError, "0 negative"),
        (auc_score, [0, np.nan, 1], [0.1, 0.2, 0.3], InputError, "0/1"),
        (auc_score, [0, 1, 1], [0.1, np.nan, 0.3], InputError, "NaN"),
        (auc_or_nan, [0, 1, 1], [0.1, np.inf, 0.3], InputError, "NaN or infinite"),
        (auc_or_nan, [0, 1, 2], [0.1, 0.2, 0.3], InputError, "0/1"),
        (auc_or_nan, [0, 1], [0.1, 0.2, 0.3], InputError, "3 values but the labels have 2"),
    ],
)
def test_bad_input(fn, y, s, exc, match):
    with pytest.raises(exc, match=match):
        fn(y, s)


def test_roc_points_start_at_origin():
    fpr, tpr, thr = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
