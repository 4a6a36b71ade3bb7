"""Operating points of the statistics core: definitions, the one tie rule, and one
source of truth for the bundle (stacking path) and the report (evaluation path)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, recall_score
from stacking_sim import simulate

from multibone.errors import InputError
from multibone.stats import (
    DECISION_POINTS,
    LABELS,
    OPERATING_POINTS,
    PLAIN_LABELS,
    SingleClassError,
    apply_threshold,
    choose_operating_points,
)


def _brute(y, p):
    """Every candidate threshold (observed scores, and one above the maximum) with
    sensitivity, specificity and F1 from scikit-learn (positive if p >= t)."""
    rows = []
    for t in [*np.unique(p), np.nextafter(p.max(), np.inf)]:
        pred = (p >= t).astype(int)
        rows.append((t, recall_score(y, pred), recall_score(1 - y, 1 - pred), f1_score(y, pred)))
    return rows


def _best(rows, key):
    """The tie rule written plainly: best criterion, then the highest threshold."""
    return max(rows, key=lambda r: (round(key(r), 12), r[0]))[0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_points_match_definitions_and_tie_rule(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(80) < 0.4).astype(int)
    p = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), 1)  # many ties on purpose
    ops = choose_operating_points(y, p)
    rows = _brute(y, p)
    assert ops["youden"].threshold == _best(rows, lambda r: r[1] + r[2])
    # sens90: best specificity, ties to the higher sensitivity, then the highest threshold
    sens_ok = [r for r in rows if r[1] >= 0.9]
    assert ops["sens90"].threshold == max(
        sens_ok, key=lambda r: (round(r[2], 12), round(r[1], 12), r[0]))[0]
    assert ops["spec90"].threshold == _best([r for r in rows if r[2] >= 0.9], lambda r: r[1])
    assert ops["maxf1"].threshold == _best(rows, lambda r: r[3])
    for op in ops.values():  # reported rates are those at the threshold (p >= t)
        pred = apply_threshold(p, op.threshold)
        assert op.sensitivity == pytest.approx(recall_score(y, pred))
        assert op.specificity == pytest.approx(recall_score(1 - y, 1 - pred))
        assert op.f1 == pytest.approx(f1_score(y, pred))


def test_issue_10_example_spec90_ties_go_to_the_highest_threshold():
    # 10 positives, 10 negatives. At 0.70 and at 0.64 sensitivity is 0.70; one
    # negative scores 0.64, so specificity is 1.00 at 0.70 and 0.90 at 0.64.
    pos = [0.95, 0.9, 0.85, 0.8, 0.75, 0.72, 0.70, 0.40, 0.35, 0.30]
    neg = [0.64, 0.45, 0.30, 0.25, 0.2, 0.15, 0.1, 0.08, 0.05, 0.02]
    y = np.r_[np.ones(10), np.zeros(10)].astype(int)
    p = np.r_[pos, neg]
    spec90 = choose_operating_points(y, p, ("spec90",))["spec90"]
    # The old stacking rule ("lowest threshold with specificity >= 0.90") gave 0.64
    # with 0.70 / 0.90; the one rule gives 0.70 with 0.70 / 1.00.
    assert (spec90.threshold, spec90.sensitivity, spec90.specificity) == (0.70, 0.7, 1.0)


def test_all_tied_scores_call_nobody_or_everybody():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.5, 0.5, 0.5, 0.5])
    ops = choose_operating_points(y, p)
    # Youden is 0 both at "nobody" and "everybody": the highest threshold (nobody) wins.
    assert ops["youden"].threshold > 0.5 and ops["youden"].sensitivity == 0.0
    assert ops["sens90"].threshold == 0.5 and ops["sens90"].specificity == 0.0
    assert ops["spec90"].threshold > 0.5 and ops["spec90"].specificity == 1.0


def test_threshold_is_inclusive_and_nan_is_negative():
    np.testing.assert_array_equal(apply_threshold([0.2, 0.5, 0.7, np.nan], 0.5), [0, 1, 1, 0])


def test_perfect_separation():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    ops = choose_operating_points(y, p, DECISION_POINTS)
    assert list(ops) == list(DECISION_POINTS)
    assert ops["youden"].rates() == {"threshold": 0.6, "sensitivity": 1.0, "specificity": 1.0}
    # every point is the perfect one: no "sens90" at sensitivity 0.90 beside a 1.0 / 1.0
    # threshold (issue #11), checked on a larger set where 0.90 is reachable
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    p = np.r_[np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    for op in choose_operating_points(y, p, DECISION_POINTS).values():
        assert (op.sensitivity, op.specificity) == (1.0, 1.0) and op.threshold == 0.6
        pred = apply_threshold(p, op.threshold)
        assert recall_score(y, pred) == 1.0 and recall_score(1 - y, 1 - pred) == 1.0


def test_names_defined_once():
    assert set(DECISION_POINTS) <= set(OPERATING_POINTS) == set(LABELS)
    assert set(PLAIN_LABELS) == set(DECISION_POINTS)


@pytest.mark.parametrize(
    ("y", "p", "which", "exc", "match"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], OPERATING_POINTS, SingleClassError, "0 negative"),
        ([0, 1, 1], [0.1, np.nan, 0.3], OPERATING_POINTS, InputError, "NaN"),
        ([0, 1], [0.1, 0.2, 0.3], OPERATING_POINTS, InputError, "3 values but the labels have 2"),
        ([0, 2, 1], [0.1, 0.2, 0.3], OPERATING_POINTS, InputError, "0/1"),
        ([0, 1], [0.1, 0.9], ("best",), InputError, "unknown operating point"),
    ],
)
def test_bad_input(y, p, which, exc, match):
    with pytest.raises(exc, match=match):
        choose_operating_points(y, p, which)


def test_bundle_thresholds_equal_report_operating_points(tmp_path):
    """run_stacking's thresholds (what the bundle and dashboard use) are the numbers
    the evaluation layer (report, compare, readers) chooses on the same dev (y, p)."""
    from multibone.evaluation import choose_operating_points as evaluation_choose
    from multibone.stacking import StackingConfig, run_stacking

    X, y, ids = simulate(n=60, seed=0, backbones=("e3",))
    X["e3"] = X["e3"].round(2)  # ties where the old stacking rule chose another spec90
    dev = np.arange(60) < 48
    meta = pd.DataFrame(
        {
            "split": np.where(dev, "dev", "test"),
            "fold": np.where(dev, np.arange(60) % 3, -1),
            "label": y.astype(float),
        },
        index=X.index,
    )
    config = StackingConfig(
        family="dt", compare=["dt"], inner_folds=3, n_iter=1, bootstrap=0, nested=False
    )
    out = tmp_path / "stacking"
    run_stacking(X, meta, config, out, progress=False)
    thresholds = json.loads((out / "thresholds.json").read_text())
    points = json.loads((out / "operating_points.json").read_text())
    preds = pd.read_csv(out / "predictions.csv")
    d = preds[preds["split"] == "dev"]
    assert {"stacker", "e3"} <= set(thresholds)
    # The data exercise the tie rule: for some model the old stacking rule ("lowest
    # threshold with specificity >= 0.90") picks a lower threshold than the one rule.
    old_rule_differs = []
    for model in thresholds:
        rows = _brute(d["label"].to_numpy(), d[f"p_{model}"].to_numpy())
        old = min(t for t, _, c, _ in rows if c >= 0.9)
        old_rule_differs.append(old < thresholds[model]["spec90"])
    assert any(old_rule_differs)
    for model, stored in thresholds.items():
        chosen = evaluation_choose(d["label"], d[f"p_{model}"], DECISION_POINTS)
        assert stored == {k: op.threshold for k, op in chosen.items()}, model
        assert points[model] == {k: op.rates() for k, op in chosen.items()}, model


def test_pr_curve_max_f1_follows_the_same_tie_rule():
    from multibone.evaluation import pr_curve

    # F1 is 2/3 both at 0.9 (TP 1, FN 1) and at 0.5 (TP 2, FP 2): the highest threshold wins.
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.5, 0.5, 0.2])
    maxf1 = choose_operating_points(y, p, ("maxf1",))["maxf1"]
    pr = pr_curve(y, p)
    assert (maxf1.threshold, maxf1.f1) == (0.9, pytest.approx(2 / 3))
    assert (pr.max_f1_threshold, pr.max_f1) == (maxf1.threshold, maxf1.f1)
