"""``multibone stack`` and run_stacking: outputs, baselines, clinical-only, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stacking_sim import simulate

from multibone.cli import main
from multibone.cohort import assign_splits
from multibone.io.modelfile import load_model

FAST_YAML = """
stacking:
  family: dt
  compare: [dt, lr]
  inner_folds: 3
  n_iter: 1
  bootstrap: 20
  nested: false
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    """A 60-patient manifest (no image files: stack never opens images) + scores."""
    d = tmp_path_factory.mktemp("stack")
    X, y, ids = simulate(n=60, seed=5, backbones=("e3",))
    split = np.where(np.arange(60) < 48, "dev", "test")
    manifest = pd.DataFrame(
        {
            "patient_id": ids,
            "image_path": [f"images/{i}.png" for i in ids],
            "diagnosis": np.where(y == 1, "infection", "tumor"),
            "age": X["age"].round(1),
            "sex": np.where(X["sex_male"] == 1, "M", "F"),
            "location": np.where(X["location_axial"] == 1, "axial", "appendicular"),
            "crp": X["crp_abnormal"].map({1.0: "abnormal", 0.0: "normal"}).fillna(""),
            "esr": X["esr_abnormal"].map({1.0: "abnormal", 0.0: "normal"}).fillna(""),
            "split": split,
        }
    )
    manifest.to_csv(d / "manifest.csv", index=False)
    # the folds train-images would have cross-fitted on (the config's default splits section)
    folds = assign_splits(pd.DataFrame({"patient_id": ids, "label": y, "split": split}))["fold"]
    scores = pd.DataFrame(
        {
            "patient_id": ids,
            "split": split,
            "fold": folds.to_numpy(),
            "label": y.astype(float),
            "e3": X["e3"].to_numpy(),
        }
    )
    scores.to_csv(d / "patient_scores.csv", index=False)
    scores.drop(columns=["e3"]).to_csv(d / "tables_only.csv", index=False)
    scores.assign(patient_id=[*ids[:-2], "X1", "X2"]).to_csv(d / "wrong_ids.csv", index=False)
    (d / "fast.yaml").write_text(FAST_YAML)
    return {"dir": d, "manifest": d / "manifest.csv", "config": d / "fast.yaml"}


def _stack(cohort, out: Path, scores: str | None, *extra: str) -> int:
    argv = ["stack", "--manifest", str(cohort["manifest"]), "--config", str(cohort["config"])]
    if scores:
        argv += ["--scores", str(cohort["dir"] / scores)]
    return main([*argv, "--out", str(out), *extra])


def test_stack_writes_stacker_baselines_and_thresholds(cohort, tmp_path, capsys):
    out = tmp_path / "stacking"
    assert _stack(cohort, out, "patient_scores.csv") == 0
    printed = capsys.readouterr().out
    assert "dt *" in printed and "bootstrap percentile" in printed
    comparison = pd.read_csv(out / "family_comparison.csv")
    assert list(comparison["family"]) == ["dt", "lr"]
    assert json.loads(comparison["best_params"][0])  # JSON text
    preds = pd.read_csv(out / "predictions.csv")
    assert {"p_stacker", "p_clinical_only", "p_image_only", "p_e3"} <= set(preds.columns)
    assert preds["p_stacker"].between(0, 1).all() and len(preds) == 60
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert set(thresholds) == {"stacker", "clinical_only", "image_only", "e3"}
    assert set(thresholds["stacker"]) == {"youden", "sens90", "spec90"}
    stacker = load_model(out / "stacker.skops")
    baselines = load_model(out / "baselines.skops")
    assert set(baselines) == {"e3", "image_only", "clinical_only"}
    X = pd.DataFrame({c: [0.5] for c in stacker.feature_names_in_})
    assert stacker.predict_proba(X).shape == (1, 2)
    # an existing output is never overwritten without --force (nothing fitted first)
    assert _stack(cohort, out, "patient_scores.csv") == 2
    assert "already exists; pass --force" in capsys.readouterr().err


@pytest.mark.parametrize("scores", ["tables_only.csv", None])
def test_clinical_only_stacking_without_images(cohort, tmp_path, scores):
    out = tmp_path / "clin"
    assert _stack(cohort, out, scores, "--family", "lr") == 0
    preds = pd.read_csv(out / "predictions.csv")
    # no backbones: the stacker is the clinical model, listed once (no clinical_only twin)
    assert "p_image_only" not in preds.columns and "p_clinical_only" not in preds.columns
    assert set(json.loads((out / "thresholds.json").read_text())) == {"stacker"}
    assert load_model(out / "baselines.skops") == {}
    stacker = load_model(out / "stacker.skops")
    assert list(stacker.feature_names_in_) == [
        "age",
        "sex_male",
        "location_axial",
        "crp_abnormal",
        "esr_abnormal",
    ]
    summary = json.loads((out / "stacking_summary.json").read_text())
    assert summary["family"] == "lr" and summary["backbones"] == []


def test_scores_from_another_cohort_is_refused(cohort, tmp_path, capsys):
    assert _stack(cohort, tmp_path / "x", "wrong_ids.csv") == 2
    err = capsys.readouterr().err
    assert "X1, X2" in err and "P0058, P0059" in err
    assert not (tmp_path / "x").exists()


def test_unknown_family_in_config(cohort, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stacking:\n  family: svm\n")
    argv = ["stack", "--manifest", str(cohort["manifest"]), "--config", str(bad)]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "valid families are rf, adaboost, gbdt, lightgbm, dt, lr, xgboost, knn" in (
        capsys.readouterr().err
    )


def test_scores_cross_fitted_on_other_folds_are_refused(cohort, tmp_path, capsys):
    scores = pd.read_csv(cohort["dir"] / "patient_scores.csv", dtype={"patient_id": str})
    dev = scores["split"] == "dev"
    scores.loc[dev, "fold"] = (scores.loc[dev, "fold"] + 1) % 5  # not the config's folds
    scores.to_csv(tmp_path / "other_folds.csv", index=False)
    argv = ["stack", "--manifest", str(cohort["manifest"]), "--config", str(cohort["config"])]
    code = main([*argv, "--scores", str(tmp_path / "other_folds.csv"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "cross-fitted on other splits" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_clinical_table_without_an_image_column_runs_to_a_bundle(cohort, tmp_path):
    """A clinical table (no image_path column) + ``backbones: []``: stack --run gives a bundle."""
    table = pd.read_csv(cohort["manifest"]).drop(columns=["image_path"])
    manifest = tmp_path / "clinical.csv"
    table.to_csv(manifest, index=False)
    config = tmp_path / "clinical.yaml"
    config.write_text(FAST_YAML + "imaging:\n  backbones: []\n")
    run = tmp_path / "run"
    args = ["stack", "--run", str(run), "--manifest", str(manifest), "--config", str(config)]
    assert main(args) == 0
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    assert meta["backbones"] == []
    preds = pd.read_csv(run / "predictions.csv")
    assert len(preds) == len(table) and preds["p_stacker"].between(0, 1).all()
