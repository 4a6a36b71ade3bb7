"""Issue #11: a clinical-only cohort end to end, and predict asking only for what the model uses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from stacking_sim import CLINICAL_ONLY_CONFIG, simulate

from multibone.cli import main

CONFIG = CLINICAL_ONLY_CONFIG


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A clinical table with no image column, no site and no CRP: stack --run -> bundle."""
    d = tmp_path_factory.mktemp("clin")
    X, y, ids = simulate(n=80, seed=11, backbones=())
    pd.DataFrame(
        {
            "patient_id": ids,
            "diagnosis": np.where(y == 1, "infection", "tumor"),
            "age": X["age"].round(1),
            "sex": np.where(X["sex_male"] == 1, "M", "F"),
            "esr": X["esr_abnormal"].map({1.0: "abnormal", 0.0: "normal"}).fillna(""),
            "split": np.where(np.arange(80) < 64, "dev", "test"),
        }
    ).to_csv(d / "manifest.csv", index=False)
    (d / "config.yaml").write_text(CONFIG)
    out = d / "run"
    argv = ["stack", "--run", str(out), "--manifest", str(d / "manifest.csv"),
            "--config", str(d / "config.yaml")]
    assert main(argv) == 0
    return out


def test_bundle_lists_only_the_features_the_model_uses(run):
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    assert meta["backbones"] == []
    assert meta["feature_schema"]["features"] == ["age", "sex_male", "esr_abnormal"]
    summary = (run / "summary.md").read_text()
    # the dropped features are named, and no blank "centres:" is printed
    assert "location_axial" in summary and "crp_abnormal" in summary
    assert "centres: \n" not in summary and "centres: ," not in summary


def test_predict_needs_no_image_and_only_the_used_fields(run, capsys):
    bundle = str(run / "bundle")
    assert main(["predict", "--bundle", bundle, "--age", "40", "--sex", "F",
                 "--esr", "abnormal"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["features"]) == {"age", "sex_male", "esr_abnormal"}
    assert out["features"]["esr_abnormal"] == 1.0
    assert 0 <= out["probability"] <= 1 and out["image_scores"] == {}
    assert out["ignored_fields"] == []
    assert out["provenance"]["synthetic"] is False and out["provenance"]["patients"] == 80
    # a field the model does not use is accepted, ignored and named (even an unknown site)
    assert main(["predict", "--bundle", bundle, "--age", "40", "--sex", "F", "--esr", "abnormal",
                 "--site", "elbow of nowhere", "--crp", "50"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["probability"] == out["probability"]
    assert again["ignored_fields"] == ["site", "crp"]
    assert any(w.startswith("ignored: site, crp") for w in again["warnings"])
    # a field it uses is still checked
    assert main(["predict", "--bundle", bundle, "--age", "400", "--sex", "F"]) == 2
    assert "--age" in capsys.readouterr().err


def test_batch_predict_without_image_column(run, tmp_path):
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": ["a", "b"], "age": [30, 70], "sex": ["F", "M"],
                  "esr": ["normal", ""]}).to_csv(cases, index=False)
    assert main(["predict", "--bundle", str(run / "bundle"), "--cases", str(cases),
                 "--out", str(tmp_path / "p.csv")]) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert list(out["patient_id"]) == ["a", "b"] and out["probability"].between(0, 1).all()
    assert out["trained_on"].str.contains("trained on real data: 80 patients").all()
