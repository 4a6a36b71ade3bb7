"""Error analysis by subgroup (multibone.evaluation.subgroups), on synthetic numbers drawn here.

Reference values come from implementations nobody here wrote: scikit-learn's
``roc_auc_score`` and statsmodels' ``proportion_confint(method="wilson")``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportion_confint
from test_evaluation_report import make_predictions, write_run

from multibone.evaluation.report import evaluate_run
from multibone.evaluation.subgroups import (
    SIZE_VARIABLE,
    flagged,
    size_cuts,
    subgroup_levels,
    subgroup_table,
)


def _frame(seed: int = 3, n: int = 400) -> pd.DataFrame:
    """The stacker separates the classes well on the limbs and not at all on the axial skeleton."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    axial = rng.random(n) < 0.3
    z = np.where(axial, rng.normal(0, 1, n), 2.5 * (2 * y - 1) + rng.normal(0, 1, n))
    return pd.DataFrame(
        {
            "label": y,
            "p_stacker": 1 / (1 + np.exp(-z)),
            "location": np.where(axial, "axial", "appendicular"),
            "center": rng.choice(["A", "B"], n),
            "age": rng.integers(3, 80, n).astype(float),
            "lesion_area": rng.lognormal(8, 0.5, n),
        }
    )


def test_figures_match_independent_implementations():
    d = _frame()
    t = 0.5
    sg = subgroup_table(d, ["stacker"], {"stacker": {"youden": t}})
    row = sg[(sg["variable"] == "location") & (sg["level"] == "appendicular")].iloc[0]
    m = (d["location"] == "appendicular").to_numpy()
    y, p = d["label"].to_numpy()[m], d["p_stacker"].to_numpy()[m]
    assert row["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    called = (p >= t).astype(int)
    for name, k, n in (
        ("accuracy", int((called == y).sum()), len(y)),
        ("sensitivity", int(called[y == 1].sum()), int(y.sum())),
        ("specificity", int((1 - called[y == 0]).sum()), int((1 - y).sum())),
    ):
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert row[name] == pytest.approx(k / n)
        assert (row[f"{name}_ci_low"], row[f"{name}_ci_high"]) == pytest.approx((lo, hi), abs=1e-9)


def test_flags_the_failing_subgroup_only():
    d = _frame()
    sg = subgroup_table(d, ["stacker"], {"stacker": {"youden": 0.5}})
    ax = sg[(sg["variable"] == "location") & (sg["level"] == "axial")].iloc[0]
    limb = sg[(sg["variable"] == "location") & (sg["level"] == "appendicular")].iloc[0]
    assert ax["near_chance"] and "auc" in ax["below_overall"]
    assert "accuracy" in ax["below_overall"]
    assert not limb["near_chance"] and limb["below_overall"] == ""
    fl = flagged(sg)
    assert ((fl["variable"] == "location") & (fl["level"] == "axial")).any()
    assert not ((fl["variable"] == "location") & (fl["level"] == "appendicular")).any()


def test_size_unit_is_mm2_when_spacing_known_else_px2():
    d = _frame()
    levels = subgroup_levels(d)[SIZE_VARIABLE]
    assert levels.str.contains("px\\^2").all() and levels.nunique() == 3
    d["lesion_area_mm2"] = d["lesion_area"] * 0.01
    cuts = size_cuts(d)
    assert cuts is not None and cuts[1] == "mm^2"
    levels = subgroup_levels(d, cuts)[SIZE_VARIABLE]
    assert levels.str.contains("mm\\^2").all()
    # tertiles: about a third of the patients in each
    assert levels.value_counts().min() >= len(d) // 3 - 2


def test_centre_only_when_several_and_age_groups():
    d = _frame()
    assert "centre" in subgroup_levels(d)
    assert "centre" not in subgroup_levels(d[d["center"] == "A"])
    assert set(subgroup_levels(d)["age"]) == {"<18", ">=18"}


def test_report_has_error_analysis_for_every_set(tmp_path):
    df = make_predictions(n_dev=120, n_test=50, n_ext={"B": 40, "C": 30})
    run = write_run(tmp_path / "run", df)
    m = evaluate_run(run, n_boot=0, progress=False, figures=False)
    sg = pd.read_csv(run / "evaluation" / "tables" / "subgroups.csv")
    assert set(sg["set"]) == set(m["sets"])
    assert {"subtype", "location", SIZE_VARIABLE, "age"} <= set(sg["variable"])
    for k in ("auc", "accuracy", "sensitivity", "specificity"):
        assert f"{k}_ci_low" in sg and f"{k}_ci_high" in sg
    # tertile ranges are shared by every set
    ranges = sg[sg["variable"] == SIZE_VARIABLE].groupby("set")["level"].apply(set)
    assert all(r <= ranges["dev"] | {"unknown"} for r in ranges)
    html = (run / "evaluation" / "report.html").read_text()
    assert "Error analysis by subgroup" in html
