"""The vectorised bootstrap gives the same numbers as the obvious loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from multibone.errors import InputError
from multibone.evaluation.metrics import binary_metrics
from multibone.stats import (
    Bootstrap,
    bootstrap,
    bootstrap_auc,
    bootstrap_auc_difference,
    bootstrap_metrics,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # ties on purpose
    return y, s


def test_vectorised_auc_equals_sklearn_per_resample(data):
    y, s = data
    bs = Bootstrap(y, n_boot=40, seed=5)
    fast = bs.auc_samples(s)
    slow = [roc_auc_score(y[i], s[i]) for i in bs.indices()]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_stratified_keeps_class_sizes(data):
    y, _ = data
    for w in Bootstrap(y, n_boot=20, seed=1).weights():
        assert (w @ y == y.sum()).all() and (w.sum(axis=1) == len(y)).all()


def test_clustered_resamples_whole_patients():
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(60), 3)  # 3 images per patient
    y = (patients % 2).astype(int)
    s = rng.normal(size=180) + y
    bs = Bootstrap(y, n_boot=30, groups=patients, seed=2)
    assert bs.stratified
    for w in bs.weights():
        # all images of a patient share the patient's count
        assert (w.reshape(w.shape[0], 60, 3).std(axis=2) == 0).all()
    fast = bs.auc_samples(s)
    slow = [roc_auc_score(y[i], s[i]) for i in bs.indices()]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_metric_samples_equal_loop(data):
    y, s = data
    bs = Bootstrap(y, n_boot=15, seed=3)
    fast = bs.metric_samples(s, 0.5)
    for b, i in enumerate(bs.indices()):
        m = binary_metrics(y[i], s[i], 0.5)
        assert fast["sensitivity"][b] == pytest.approx(m.sensitivity.value)
        assert fast["ppv"][b] == pytest.approx(m.ppv.value)
        assert fast["f1"][b] == pytest.approx(m.f1)


def test_percentile_ci_and_seed(data):
    y, s = data
    a = bootstrap_auc(y, s, n_boot=500, seed=7)
    b = bootstrap_auc(y, s, n_boot=500, seed=7)
    assert a == b
    assert a.ci_low < a.estimate < a.ci_high
    assert a.estimate == pytest.approx(roc_auc_score(y, s))
    generic = bootstrap(y, roc_auc_score, s, n_boot=500, seed=7)
    assert generic.ci_low == pytest.approx(a.ci_low) and generic.ci_high == pytest.approx(a.ci_high)


def test_paired_difference_and_metrics(data):
    y, s = data
    d = bootstrap_auc_difference(y, s, s, n_boot=100)
    assert d.estimate == 0 and d.ci_low == 0 and d.ci_high == 0
    m = bootstrap_metrics(y, s, 0.5, n_boot=200)
    assert m["sensitivity"].ci_low <= m["sensitivity"].estimate <= m["sensitivity"].ci_high


def test_roc_band_brackets_curve(data):
    y, s = data
    grid, lo, hi = Bootstrap(y, n_boot=200, seed=0).roc_band(s)
    assert grid.shape == lo.shape == hi.shape == (101,)
    assert (lo <= hi).all() and lo[-1] == 1.0


def test_bad_n_boot(data):
    with pytest.raises(InputError, match="n_boot"):
        Bootstrap(data[0], n_boot=0)
