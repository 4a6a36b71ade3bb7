"""End to end: the tiny run, predict / explain on a case, clinical-only stacking."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from multibone.cli import main


def _first_image(run):
    m = pd.read_csv(run / "cohort" / "manifest.csv")
    r = m.iloc[0]
    roi = f"{int(r.roi_x0)},{int(r.roi_y0)},{int(r.roi_x1)},{int(r.roi_y1)}"
    return run / "cohort" / r.image_path, roi


def test_run_folder_holds_every_stage(mini_run):
    for rel in (
        "splits.csv",
        "config.yaml",
        "imaging/patient_scores.csv",
        "stacking/stacker.skops",
        "predictions.csv",
        "thresholds.json",
        "evaluation/report.html",
        "bundle/bundle.json",
        "summary.md",
    ):
        assert (mini_run / rel).is_file(), rel
    preds = pd.read_csv(mini_run / "predictions.csv")
    assert {"p_stacker", "p_clinical_only", "p_image_only", "p_e3_tiny", "center"} <= set(preds.columns)
    assert set(preds["split"]) == {"dev", "external"}
    meta = json.loads((mini_run / "bundle" / "bundle.json").read_text())
    assert meta["training_data"]["synthetic"] is True
    assert set(meta["thresholds"]) == {"youden", "sens90", "spec90"}
    assert "Synthetic data" in (mini_run / "summary.md").read_text()
    # lesion focus of the CAMs reaches the report, beside its chance level
    focus = pd.read_csv(mini_run / "lesion_focus.csv")
    assert set(focus["method"]) == {"scorecam", "gradcam"}
    assert focus["mean_energy_in_box"].between(0, 1).all()
    assert "chance_level (box area share)" in (mini_run / "evaluation" / "report.html").read_text()


def test_no_dicom_identifier_reaches_outputs(mini_run):
    import pydicom

    names = set()
    for p in (mini_run / "cohort" / "images").glob("*.dcm"):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        names |= {str(ds.PatientName), str(ds.PatientID)}
    assert names
    for sub in ("bundle", "evaluation", "stacking", "imaging"):
        for f in (mini_run / sub).rglob("*"):
            if f.is_file() and f.suffix in (".json", ".csv", ".html", ".md", ".yaml", ".txt"):
                text = f.read_text(errors="ignore")
                assert not any(n in text for n in names), f


def test_predict_prints_the_promised_json(mini_run, capsys):
    image, roi = _first_image(mini_run)
    code = main(
        [
            "predict",
            "--bundle",
            str(mini_run / "bundle"),
            "--image",
            str(image),
            "--roi",
            roi,
            "--age",
            "45",
            "--sex",
            "M",
            "--site",
            "tibia",
            "--crp",
            "25",
            "--esr",
            "normal",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert 0.0 <= out["probability"] <= 1.0
    assert set(out["decisions"]) == {"youden", "sens90", "spec90"}
    for d in out["decisions"].values():
        assert d["call"] == ("infection" if out["probability"] >= d["threshold"] else "tumor")
    assert set(out["backbone_scores"]) == {"e3_tiny"}
    assert out["features"]["crp_abnormal"] == 1.0 and out["features"]["esr_abnormal"] == 0.0
    from multibone.bundle import BUNDLE_FORMAT_VERSION

    assert f"bundle format {BUNDLE_FORMAT_VERSION}" in out["bundle_version"]


def test_predict_agrees_with_the_cross_fitted_test_scores(mini_run):
    """A patient scored alone through the bundle gets the run's external prediction."""
    from multibone.bundle import load_bundle
    from multibone.case import Case, CaseImage, _lab_field, predict_case
    from multibone.cohort import load_cohort
    from multibone.io import read_radiograph

    cohort = load_cohort(mini_run / "cohort" / "manifest.csv", progress=False)
    preds = pd.read_csv(mini_run / "predictions.csv", dtype={"patient_id": str})
    ext = preds[preds["split"] == "external"].iloc[0]
    p = cohort.patients[cohort.patients["patient_id"] == ext.patient_id].iloc[0]
    ims = cohort.images[cohort.images["patient_id"] == ext.patient_id]
    images = [
        CaseImage(
            read_radiograph(r.image_path).pixels,
            (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1)),
        )
        for r in ims.itertuples()
    ]
    case = Case(
        images,
        p.age,
        p.sex,
        p.site,
        p.location,
        _lab_field(p.crp, p.crp_abnormal),
        _lab_field(p.esr, p.esr_abnormal),
    )
    res = predict_case(load_bundle(mini_run / "bundle"), case)
    assert res.backbone_scores["e3_tiny"] == pytest.approx(ext.p_e3_tiny, abs=1e-4)
    assert res.probability == pytest.approx(ext.p_stacker, abs=1e-4)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--age", "200", "--sex", "F", "--site", "femur"], "--age"),
        (["--age", "30", "--sex", "X", "--site", "femur"], "--sex"),
        (["--age", "30", "--sex", "F", "--site", "elbowish"], "--site"),
        (["--age", "30", "--sex", "F", "--site", "femur", "--crp", "12 mg/dl"], "--crp"),
        (["--age", "30", "--sex", "F", "--site", "femur", "--roi", "0,0,99999,5"], "lesion box"),
    ],
)
def test_predict_bad_case_input(mini_run, capsys, args, match):
    image, _ = _first_image(mini_run)
    code = main(["predict", "--bundle", str(mini_run / "bundle"), "--image", str(image), *args])
    assert code == 2
    assert match in capsys.readouterr().err


def test_predict_unreadable_image(mini_run, tmp_path, capsys):
    bad = tmp_path / "scan.dcm"
    bad.write_text("not a dicom")
    code = main(
        [
            "predict",
            "--bundle",
            str(mini_run / "bundle"),
            "--image",
            str(bad),
            "--age",
            "30",
            "--sex",
            "F",
            "--site",
            "femur",
        ]
    )
    assert code == 2 and "scan.dcm" in capsys.readouterr().err


def test_predict_many_cases_to_csv(mini_run, tmp_path, capsys):
    m = pd.read_csv(mini_run / "cohort" / "manifest.csv")
    cases = m.drop(columns=["diagnosis"]).head(5)
    cases["image_path"] = [str(mini_run / "cohort" / p) for p in cases["image_path"]]
    cases.to_csv(tmp_path / "cases.csv", index=False)
    out = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--bundle",
                str(mini_run / "bundle"),
                "--cases",
                str(tmp_path / "cases.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    got = pd.read_csv(out)
    assert list(got["patient_id"]) == list(dict.fromkeys(cases["patient_id"]))
    assert got["probability"].between(0, 1).all()
    assert (
        main(
            [
                "predict",
                "--bundle",
                str(mini_run / "bundle"),
                "--cases",
                str(tmp_path / "cases.csv"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err


def test_explain_writes_pngs_json_and_a_clean_report(mini_run, tmp_path):
    import pydicom

    m = pd.read_csv(mini_run / "cohort" / "manifest.csv")
    r = m[m["image_path"].str.endswith(".dcm")].iloc[0]
    image = mini_run / "cohort" / r.image_path
    ds = pydicom.dcmread(image, stop_before_pixels=True)
    out = tmp_path / "explain"
    code = main(
        [
            "explain",
            "--bundle",
            str(mini_run / "bundle"),
            "--image",
            str(image),
            "--roi",
            f"{int(r.roi_x0)},{int(r.roi_y0)},{int(r.roi_x1)},{int(r.roi_y1)}",
            "--age",
            "30",
            "--sex",
            "F",
            "--site",
            "femur",
            "--method",
            "scorecam",
            "--method",
            "gradcam",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads((out / "explanation.json").read_text())
    shap = data["shap"]
    total = shap["base_value"] + sum(shap["values"].values())
    assert 0.0 <= total <= 1.0 and shap["output_space"] == "probability"
    assert {(c["backbone"], c["method"]) for c in data["cams"]} == {
        ("e3_tiny", "scorecam"),
        ("e3_tiny", "gradcam"),
    }
    for c in data["cams"]:
        assert (out / c["file"]).stat().st_size > 100
    report = (out / "case_report.html").read_text()
    assert "Decision support, not a diagnosis" in report
    assert str(ds.PatientName) not in report and str(ds.PatientID) not in report


def test_clinical_only_run_on_a_table_without_images(tmp_path):
    """The stacker also serves cohorts that have only tables (zero backbones)."""
    from multibone.cohort import load_cohort
    from multibone.pipeline import finish_run, make_splits
    from multibone.runconfig import run_config_from_dict
    from multibone.synthetic import synthetic_patients

    pts = synthetic_patients(120, seed=3)
    # image_path is part of the contract; here it names files that do not exist and are
    # never opened (check_images=False): the run must not need them.
    rows = pts.assign(image_path=[f"none/{pid}.png" for pid in pts["patient_id"]])
    rows = rows[
        [
            c
            for c in rows.columns
            if c
            in (
                "patient_id",
                "image_path",
                "center",
                "diagnosis",
                "age",
                "sex",
                "site",
                "crp",
                "esr",
            )
        ]
    ]
    rows.to_csv(tmp_path / "manifest.csv", index=False)
    config = run_config_from_dict(
        {
            "imaging": {"backbones": []},
            "splits": {"n_folds": 3, "external_centers": ["B", "C"]},
            "stacking": {"compare": ["rf", "lr"], "n_iter": 1, "nested": False, "bootstrap": 50},
        }
    )
    cohort = load_cohort(tmp_path / "manifest.csv", check_images=False, progress=False)
    splits = make_splits(cohort, config)
    run = finish_run(tmp_path / "run", cohort, splits, config, progress=False, n_boot=50)
    preds = pd.read_csv(run / "predictions.csv")
    assert "p_image_only" not in preds and preds["p_stacker"].between(0, 1).all()
    assert json.loads((run / "bundle" / "bundle.json").read_text())["backbones"] == []


def test_analyst_flow_train_images_then_stack_run(mini_run, tmp_path, capsys):
    """train-images --out RUN/imaging, then stack --run RUN builds the rest of the run."""
    import shutil

    import yaml
    from conftest import MINI_CONFIG

    cfg = tmp_path / "mini.yaml"
    cfg.write_text(yaml.safe_dump(MINI_CONFIG))
    run = tmp_path / "run"
    shutil.copytree(mini_run / "imaging", run / "imaging")  # as train-images leaves it
    manifest = mini_run / "cohort" / "manifest.csv"
    code = main(
        [
            "stack",
            "--run",
            str(run),
            "--manifest",
            str(manifest),
            "--config",
            str(cfg),
            "--family",
            "lr",
            "--bootstrap",
            "50",
        ]
    )
    assert code == 0
    assert "AUC by set" in capsys.readouterr().out
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    assert meta["stacker"]["family"] == "lr"
    # the folds of the imaging stage are reused, never re-drawn
    scores = pd.read_csv(run / "imaging" / "patient_scores.csv", dtype={"patient_id": str})
    splits = pd.read_csv(run / "splits.csv", dtype={"patient_id": str})
    pd.testing.assert_frame_equal(_by_patient(scores), _by_patient(splits))
    # a second time without --force refuses and leaves the bundle alone
    before = (run / "bundle" / "bundle.json").read_bytes()
    assert (
        main(["stack", "--run", str(run), "--manifest", str(manifest), "--config", str(cfg)]) == 2
    )
    assert (run / "bundle" / "bundle.json").read_bytes() == before


def _by_patient(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["patient_id", "split", "fold"]].astype({"patient_id": str, "split": str, "fold": int})
    return out.sort_values("patient_id").reset_index(drop=True)


def _config_file(tmp_path, **splits):
    import yaml
    from conftest import MINI_CONFIG

    cfg = tmp_path / "mini.yaml"
    cfg.write_text(yaml.safe_dump({**MINI_CONFIG, "splits": {**MINI_CONFIG["splits"], **splits}}))
    return cfg


def test_every_entry_point_draws_the_same_folds(mini_run, tmp_path, monkeypatch):
    """demo (run_pipeline), train-images, stack --run and clinical-only stack --out: one cohort
    and config give one set of splits and folds."""
    import multibone.imaging

    cfg = _config_file(tmp_path)
    manifest = str(mini_run / "cohort" / "manifest.csv")
    reference = _by_patient(pd.read_csv(mini_run / "splits.csv", dtype={"patient_id": str}))
    assert set(reference["split"]) == {"dev", "external"} and set(reference["fold"]) == {-1, 0, 1, 2}
    imaging_scores = pd.read_csv(mini_run / "imaging" / "patient_scores.csv")
    pd.testing.assert_frame_equal(_by_patient(imaging_scores), reference)

    seen = {}

    def fake_train_images(cohort, splits, config, out_dir, **kwargs):
        seen["splits"] = splits  # what train-images would cross-fit on; training itself skipped

    monkeypatch.setattr(multibone.imaging, "train_images", fake_train_images)
    argv = ["--manifest", manifest, "--config", str(cfg)]
    assert main(["train-images", *argv, "--out", str(tmp_path / "imaging"), "--no-progress"]) == 0
    pd.testing.assert_frame_equal(_by_patient(seen["splits"]), reference)

    # clinical-only whole run (no RUN/imaging) and clinical-only stacking step
    clin, step = tmp_path / "clin", tmp_path / "step"
    assert main(["stack", *argv, "--run", str(clin), "--family", "lr", "--bootstrap", "20"]) == 0
    assert main(["stack", *argv, "--out", str(step), "--family", "lr"]) == 0
    for table in (clin / "splits.csv", clin / "predictions.csv", step / "predictions.csv"):
        got = pd.read_csv(table, dtype={"patient_id": str})
        pd.testing.assert_frame_equal(_by_patient(got), reference, obj=str(table))


def test_stack_run_refuses_scores_cross_fitted_on_other_splits(mini_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mini_run / "imaging", run / "imaging")
    cfg = _config_file(tmp_path, seed=1)  # other folds than the imaging stage was fitted on
    manifest = str(mini_run / "cohort" / "manifest.csv")
    code = main(["stack", "--run", str(run), "--manifest", manifest, "--config", str(cfg)])
    assert code == 2
    assert "cross-fitted on other splits" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["imaging"]  # nothing written
