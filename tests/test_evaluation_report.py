"""End-to-end tests of ``multibone evaluate`` on a synthetic predictions.csv fixture.

The fixture numbers are synthetic (drawn here), not data of any patient.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multibone.cli import main
from multibone.disclaimer import DISCLAIMER, SYNTHETIC_WARNING
from multibone.errors import InputError
from multibone.evaluation.report import evaluate_run

MODELS = ("e3", "clinical_only", "stacker")
SUBTYPES = {1: ["tuberculosis", "osteomyelitis"], 0: ["osteochondroma", "osteosarcoma", "gct"]}


def make_predictions(
    n_dev: int = 160,
    n_test: int = 60,
    n_ext: dict[str, int] | None = None,
    seed: int = 0,
    informative_missing: bool = False,
) -> pd.DataFrame:
    """A synthetic predictions table with the columns of the run contract.

    Each model's probability is a noisy sigmoid of the label with model-specific
    separation, so the stacker is usually the best model.
    """
    rng = np.random.default_rng(seed)
    n_ext = {"B": 50, "C": 40} if n_ext is None else n_ext
    parts = [("dev", "A", n_dev), ("test", "A", n_test)]
    parts += [("external", c, n) for c, n in n_ext.items()]
    rows = []
    pid = 0
    for split, centre, n in parts:
        for _ in range(n):
            pid += 1
            y = int(rng.random() < 0.45)
            row = {
                "patient_id": f"P{pid:04d}",
                "split": split,
                "center": centre,
                "label": y,
                "age": float(rng.integers(3, 80)),
                "sex": "F" if rng.random() < 0.45 else "M",
                "location": "axial" if rng.random() < 0.3 else "appendicular",
                "subtype": str(rng.choice(SUBTYPES[y])),
                "lesion_area": float(rng.lognormal(8, 0.6)) if rng.random() < 0.9 else np.nan,
            }
            miss_p = (0.6 if y == 0 else 0.1) if informative_missing else 0.2
            row["crp_missing"] = int(rng.random() < miss_p)
            row["esr_missing"] = int(rng.random() < 0.2)
            for model, sep in zip(MODELS, (1.2, 1.0, 2.2), strict=True):
                z = sep * (2 * y - 1) + rng.normal(0, 1.3)
                row[f"p_{model}"] = float(1 / (1 + np.exp(-z)))
            rows.append(row)
    return pd.DataFrame(rows)


def write_run(
    run: Path, df: pd.DataFrame, *, thresholds: dict | None = None, synthetic: bool = True
) -> Path:
    """Write predictions.csv (+ thresholds.json chosen on dev) into a run folder."""
    from multibone.stats import choose_operating_points

    run.mkdir(parents=True, exist_ok=True)
    df.to_csv(run / "predictions.csv", index=False)
    if thresholds is None:
        dev = df[df["split"] == "dev"]
        thresholds = {}
        for c in [c for c in df.columns if c.startswith("p_")]:
            ops = choose_operating_points(dev["label"], dev[c], ("youden", "sens90", "spec90"))
            thresholds[c[2:]] = {k: v.threshold for k, v in ops.items()}
    (run / "thresholds.json").write_text(json.dumps(thresholds))
    if synthetic:
        (run / "cohort").mkdir(exist_ok=True)
        (run / "cohort" / "SYNTHETIC_README.txt").write_text("simulated")
    return run


def test_evaluate_end_to_end(tmp_path):
    df = make_predictions(n_dev=120, n_test=50, n_ext={"B": 40, "C": 30}, informative_missing=True)
    run = write_run(tmp_path / "run", df)
    (run / "stacking").mkdir()
    pd.DataFrame({"family": ["rf", "lr"], "cv_auc": [0.9, 0.85]}).to_csv(
        run / "stacking" / "family_comparison.csv", index=False
    )
    pd.DataFrame(
        {"backbone": ["e3", "e3"], "method": ["gradcam", "scorecam"], "energy_in_box": [0.6, 0.7]}
    ).to_csv(run / "lesion_focus.csv", index=False)
    (run / "imaging").mkdir()
    (run / "imaging" / "imaging_summary.json").write_text(
        json.dumps({"e3": {"oof_auc": 0.81, "n": 120}})
    )
    rc = main(["evaluate", str(run), "--bootstrap", "200"])
    assert rc == 0
    out = run / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["sets"]) == {"dev", "test", "external_B", "external_C", "external_pooled"}
    dev = metrics["sets"]["dev"]["models"]["stacker"]
    assert 0.5 < dev["auc"]["auc"]["auc"] <= 1
    assert dev["auc"]["bootstrap"]["n_boot"] == 200
    # thresholds are those of thresholds.json, never re-chosen on other sets
    t = json.loads((run / "thresholds.json").read_text())["stacker"]["youden"]
    ext = metrics["sets"]["external_B"]["models"]["stacker"]["operating_points"]["youden"]
    assert ext["threshold"] == pytest.approx(t)
    vs = metrics["sets"]["test"]["models"]["e3"]["vs_reference"]
    assert 0 <= vs["delong"]["p"] <= 1 and "youden" in vs["mcnemar"]
    html = (out / "report.html").read_text()
    assert html.count(DISCLAIMER) == 1 and html.count("not a diagnosis") == 1
    assert html.count(SYNTHETIC_WARNING) == 1 and "data:image/png;base64," in html
    assert "crp_missing alone separates the classes" in html
    assert "Stacker families compared" in html and "lesion box" in html
    assert "Imaging backbones" in html
    for f in (
        "summary",
        "operating_points",
        "vs_stacker",
        "subgroups",
        "subtype_accuracy",
        "calibration_deciles",
        "decision_curve",
        "family_comparison",
    ):
        assert (out / "tables" / f"{f}.csv").is_file(), f
    for f in (
        "roc_dev",
        "pr_test",
        "calibration_external_B",
        "dca_external_pooled",
        "confusion_external_C",
    ):
        assert (out / "figures" / f"{f}.png").is_file(), f
    sg = pd.read_csv(out / "tables" / "subgroups.csv")
    assert {"centre", "age", "sex", "location", "subtype", "lesion size tertile"} <= set(
        sg["variable"]
    )


def test_single_class_set_reports_the_rest(tmp_path):
    df = make_predictions(n_dev=80, n_test=0, n_ext={"B": 12}, seed=1)
    df.loc[df["split"] == "external", "label"] = 1
    run = write_run(tmp_path / "run", df)
    m = evaluate_run(run, n_boot=50, progress=False, figures=False)
    ext = m["sets"]["external_B"]["models"]["stacker"]
    assert ext["auc"]["auc"] is None and "undefined" in ext["auc"]["note"]
    assert ext["operating_points"]["youden"]["sensitivity"] is not None
    assert any("only one class" in w for w in m["warnings"])
    assert any("unstable" in w or "only one class" in w for w in m["warnings"])


def test_missing_thresholds_are_chosen_on_dev(tmp_path):
    run = write_run(
        tmp_path / "run",
        make_predictions(n_dev=60, n_test=30, n_ext={}),
        thresholds={"stacker": {"youden": 0.5}},
    )
    m = evaluate_run(run, n_boot=0, progress=False, figures=False)
    # a second run replaces the earlier evaluation atomically
    assert main(["evaluate", str(run), "--bootstrap", "0", "--no-figures"]) == 0
    assert (run / "evaluation" / "metrics.json").is_file()
    assert not list((run / "evaluation" / "figures").glob("*.png"))
    assert m["threshold_source"]["stacker"].startswith("thresholds.json")
    assert "chosen here" in m["threshold_source"]["e3"]
    assert any("no thresholds for e3" in w for w in m["warnings"])


def _bad_nan(df):
    df.loc[3, "p_clinical_only"] = np.nan
    return df


def _bad_range(df):
    df.loc[5, "p_e3"] = 2.5
    return df


BAD_CASES = [
    ("missing_column", lambda df: df.drop(columns=["label"]), r"missing column\(s\) label"),
    ("no_model", lambda df: df.drop(columns=[c for c in df if c.startswith("p_")]), r"p_<model>"),
    ("nan_score", _bad_nan, r"column p_clinical_only has NaN .*rows 5"),
    ("out_of_range", _bad_range, r"p_e3 must hold probabilities in \[0, 1\]: rows 7.*logits"),
    ("bad_label", lambda df: df.assign(label=df["label"].replace({0: 2})), r"label must be 0 or 1"),
    ("bad_split", lambda df: df.assign(split="train"), r"split must be one of"),
    ("duplicate", lambda df: pd.concat([df, df.iloc[[0]]]), r"more than once.*P0001"),
]


@pytest.mark.parametrize(("name", "mutate", "match"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_predictions(tmp_path, capsys, name, mutate, match):
    df = mutate(make_predictions(n_dev=30, n_test=0, n_ext={}))
    run = write_run(tmp_path / "run", df, thresholds={})
    with pytest.raises(InputError, match=match):
        evaluate_run(run, n_boot=0, progress=False)
    assert main(["evaluate", str(run), "--bootstrap", "0"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (run / "evaluation").exists()


def test_refuses_foreign_output_folder(tmp_path):
    run = write_run(tmp_path / "run", make_predictions(n_dev=40, n_test=0, n_ext={}))
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="refusing to replace"):
        evaluate_run(run, other, n_boot=0, progress=False)
    assert (other / "keep.txt").is_file()


def test_missing_run(tmp_path):
    with pytest.raises(InputError, match="predictions.csv"):
        evaluate_run(tmp_path, n_boot=0, progress=False)


def test_report_escapes_names_and_warns_only_on_synthetic_data(tmp_path):
    """A model named like markup is shown as text; a real cohort gets no synthetic warning."""
    evil = "<script>alert(1)</script>"
    df = make_predictions(n_dev=60, n_test=30, n_ext={}).rename(columns={"p_e3": f"p_{evil}"})
    run = write_run(tmp_path / "run", df, synthetic=False)
    evaluate_run(run, n_boot=0, progress=False, figures=False)
    html = (run / "evaluation" / "report.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count(DISCLAIMER) == 1 and SYNTHETIC_WARNING not in html
