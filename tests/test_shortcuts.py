"""Issue #11: a clinical column (or its blankness) that gives the label away is warned first."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from stacking_sim import CLINICAL_ONLY_CONFIG, simulate

from multibone.cli import main
from multibone.evaluation.shortcuts import (
    perfect_model_warnings,
    shortcut_table,
    shortcut_warnings,
)

CONFIG = CLINICAL_ONLY_CONFIG


def _manifest(n: int = 80, seed: int = 4) -> pd.DataFrame:
    X, y, ids = simulate(n=n, seed=seed, backbones=())
    return pd.DataFrame(
        {
            "patient_id": ids,
            "diagnosis": np.where(y == 1, "infection", "tumor"),
            "age": X["age"].round(1),
            "sex": np.where(X["sex_male"] == 1, "M", "F"),
            "location": np.where(X["location_axial"] == 1, "axial", "appendicular"),
            "esr": np.where(np.arange(n) % 3 == 0, "abnormal", "normal"),
            "split": np.where(np.arange(n) < 64, "dev", "test"),
        }
    ), y


def test_table_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    age = rng.normal(40, 10, 60) + 5 * y
    crp = np.where(y == 1, 1.0, np.where(rng.random(60) < 0.5, np.nan, 0.0))
    X = pd.DataFrame({"age": age, "crp_abnormal": crp})
    t = shortcut_table(X, y, ["age", "crp_abnormal"], threshold=0.9).set_index(["feature", "indicator"])
    want = roc_auc_score(y, age)
    assert t.loc[("age", "value"), "auc"] == pytest.approx(max(want, 1 - want))
    seen = ~np.isnan(crp)
    assert t.loc[("crp_abnormal", "value"), "auc"] == pytest.approx(roc_auc_score(y[seen], crp[seen]))
    miss = roc_auc_score(y, np.isnan(crp).astype(float))
    assert t.loc[("crp_abnormal", "missing"), "auc"] == pytest.approx(max(miss, 1 - miss))
    assert np.isnan(t.loc[("age", "missing"), "auc"])  # never missing: undefined, not flagged
    assert t.loc[("crp_abnormal", "value"), "flagged"] and not t.loc[("age", "value"), "flagged"]
    warns = shortcut_warnings(t.reset_index())
    assert len(warns) == 1 and "value of crp_abnormal" in warns[0]
    assert "how the data were collected" in warns[0]


def test_perfect_model_warning():
    w = perfect_model_warnings({"development": {"stacker": 1.0, "e3": 0.8}, "test": {"e3": 0.9996}})
    assert len(w) == 2 and "AUC 1.000 for stacker" in w[0] and "e3" in w[1]
    assert perfect_model_warnings({"dev": {"stacker": 0.9994}}) == []


def _first_report_warning(run) -> str:
    text = (run / "evaluation" / "report.html").read_text()
    block = text[text.index('id="warnings"'):]
    return html.unescape(re.search(r"<li>(.*?)</li>", block, re.S).group(1))


@pytest.mark.parametrize(
    ("make", "column"),
    [
        # ESR recorded only for infections: its blankness equals the label
        (lambda m, y: m.assign(esr=np.where(y == 1, "abnormal", "")), "whether esr_abnormal is blank"),
        # sex separates the classes by its value
        (lambda m, y: m.assign(sex=np.where(y == 1, "M", "F")), "value of sex_male"),
    ],
)
def test_report_warns_first_about_the_shortcut(tmp_path, make, column):
    m, y = _manifest()
    make(m, y).to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "config.yaml").write_text(CONFIG)
    run = tmp_path / "run"
    assert main(["stack", "--run", str(run), "--manifest", str(tmp_path / "manifest.csv"),
                 "--config", str(tmp_path / "config.yaml")]) == 0
    first = _first_report_warning(run)
    assert first.startswith("Shortcut:") and column in first, first
    summary = (run / "summary.md").read_text()
    assert summary.index("Shortcut:") < summary.index("## AUC by set") and column in summary
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["top_warnings"][0] == metrics["warnings"][0] == first


def test_no_shortcut_no_warning(tmp_path):
    m, _ = _manifest()
    m.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "config.yaml").write_text(CONFIG + "evaluation:\n  shortcut_auc: 0.99\n")
    run = tmp_path / "run"
    assert main(["stack", "--run", str(run), "--manifest", str(tmp_path / "manifest.csv"),
                 "--config", str(tmp_path / "config.yaml")]) == 0
    assert not any(w.startswith("Shortcut:") for w in
                   json.loads((run / "evaluation" / "metrics.json").read_text())["warnings"])
    table = pd.read_csv(run / "stacking" / "shortcuts.csv")
    assert (table["threshold"] == 0.99).all()


def test_threshold_must_be_sensible(tmp_path, capsys):
    m, _ = _manifest()
    m.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "config.yaml").write_text(CONFIG + "evaluation:\n  shortcut_auc: 0.4\n")
    assert main(["stack", "--run", str(tmp_path / "run"), "--manifest",
                 str(tmp_path / "manifest.csv"), "--config", str(tmp_path / "config.yaml")]) == 2
    assert "evaluation.shortcut_auc" in capsys.readouterr().err
