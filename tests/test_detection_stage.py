"""The detector as a run stage (issue #12): folds shared with the classifiers, the
statistics of ``detection_metrics.json`` against independent computations, the bundle
copy, and auto-ROI in ``predict`` (``roi_source``)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from multibone.cohort.splits import SplitConfig
from multibone.detection.stage import (
    bundle_copy,
    detection_folds,
    evaluate_boxes,
    run_detection,
    summary_lines,
)
from multibone.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_folds_keep_the_classifiers_and_place_normals():
    patients = pd.DataFrame({
        "patient_id": [f"L{i}" for i in range(6)] + [f"N{i}" for i in range(8)],
        "diagnosis": ["tumor", "infection"] * 3 + ["normal"] * 8,
        "center": ["A", "A", "A", "A", "B", "C"] + ["A"] * 6 + ["B", "C"],
        "split": [""] * 14,
    })
    splits = pd.DataFrame({"patient_id": [f"L{i}" for i in range(6)],
                           "split": ["dev"] * 4 + ["external"] * 2, "fold": [0, 1, 1, 0, -1, -1]})
    cfg = SplitConfig(n_folds=2, external_centers=["B", "C"], seed=0)
    f = detection_folds(SimpleNamespace(patients=patients), splits, cfg).set_index("patient_id")
    assert f.loc[[f"L{i}" for i in range(6)], "fold"].tolist() == [0, 1, 1, 0, -1, -1]
    assert f.loc[["N6", "N7"], "split"].tolist() == ["external", "external"]
    assert (f.loc[["N6", "N7"], "fold"] == -1).all()
    dev_normals = f.loc[[f"N{i}" for i in range(6)], "fold"]
    assert sorted(dev_normals.value_counts().tolist()) == [3, 3]
    again = detection_folds(SimpleNamespace(patients=patients), splits, cfg).set_index("patient_id")
    pd.testing.assert_frame_equal(f, again)


def _row(pid, fold, lesion, ref, boxes, scores, center="A"):
    has = ref is not None
    x0, y0, x1, y1 = ref if has else (np.nan,) * 4
    return {"image_path": f"/x/{pid}.png", "patient_id": pid, "view": "AP", "fold": fold,
            "lesion": lesion, "has_box": has, "roi_x0": x0, "roi_y0": y0, "roi_x1": x1,
            "roi_y1": y1, "score": scores[0] if scores else 0.0, "n_boxes": len(scores),
            "boxes": json.dumps(boxes), "scores": json.dumps(scores), "center": center,
            "split": "dev" if fold >= 0 else "external"}


def test_statistics_by_hand_and_against_sklearn():
    ref = [0, 0, 10, 10]
    rows = [
        # dev: 3 lesion images, 3 normals
        _row("a", 0, 1, ref, [[0, 0, 10, 10]], [0.9]),  # IoU 1
        _row("b", 1, 1, ref, [[5, 0, 15, 10]], [0.6]),  # IoU 1/3: hit at 0.2, not 0.5
        _row("c", 0, 1, ref, [[50, 50, 60, 60]], [0.3]),  # IoU 0: missed, 1 FP
        _row("d", 1, 0, None, [[0, 0, 5, 5]], [0.4]),  # FP on a normal
        _row("e", 0, 0, None, [], []),
        _row("f", 1, 0, None, [[1, 1, 4, 4]], [0.1]),  # below box_thresh: not a detection
        # held out: centres B and C
        _row("g", -1, 1, ref, [[0, 0, 9, 10]], [0.8], "B"),
        _row("h", -1, 0, None, [[0, 0, 9, 10]], [0.7], "B"),
        _row("i", -1, 1, ref, [[0, 0, 10, 10]], [0.2], "C"),  # only box below threshold
        _row("j", -1, 0, None, [], [], "C"),
    ]
    m = evaluate_boxes(pd.DataFrame(rows), box_thresh=0.25)
    dev = m["sets"]["dev"]
    assert dev["n_lesions"] == 3 and dev["rate_iou>0.2"] == pytest.approx(2 / 3)
    assert dev["rate_iou>0.5"] == pytest.approx(1 / 3) and dev["missed"] == 1
    assert dev["fp_boxes"] == 2 and dev["fp_per_image"] == pytest.approx(2 / 6)
    y = [1, 1, 1, 0, 0, 0]
    s = [0.9, 0.6, 0.3, 0.4, 0.0, 0.1]
    assert dev["image_auc"]["auc"] == pytest.approx(roc_auc_score(y, s))
    assert dev["image_auc"]["ci_low"] <= dev["image_auc"]["auc"] <= dev["image_auc"]["ci_high"]
    assert dev["n_proposal_hits"] == 2 and dev["proposal_hit_rate"] == pytest.approx(2 / 3)
    # thresholds fixed on dev and applied unchanged to the held-out images
    from multibone.stats import choose_operating_points

    chosen = choose_operating_points(np.array(y), np.array(s), ("youden", "sens90", "spec90"))
    assert m["operating_points"] == {k: pytest.approx(v.threshold) for k, v in chosen.items()}
    held = m["sets"]["held_out"]
    t = m["operating_points"]["youden"]
    calls = np.array([0.8, 0.7, 0.2, 0.0]) >= t
    sens = calls[[0, 2]].mean()
    assert held["at_operating_points"]["youden"]["sensitivity"] == pytest.approx(sens)
    assert held["image_auc"]["auc"] == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.8, 0.7, 0.2, 0]))
    assert m["sets"]["held_out C"]["rate_iou>0.2"] == 0.0  # box below threshold is no hit
    assert m["sets"]["held_out C"]["n_proposed"] == 0
    assert set(m["sets"]) == {"dev", "held_out", "held_out B", "held_out C"}
    # patient level: one image per patient here, so both rules give the image AUC
    assert dev["patient_auc_all_views"]["auc"] == pytest.approx(dev["image_auc"]["auc"])


TINY = {"detector": "fcos_tiny", "img_size": 64, "cycles": 1, "epochs_per_cycle": 2,
        "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "ema_decay": 0.9, "device": "cpu",
        "num_threads": 1, "tta": []}


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    from multibone.pipeline import load_run_cohort, make_splits
    from multibone.runconfig import run_config_from_dict
    from multibone.synthetic import make_synthetic_cohort

    root = tmp_path_factory.mktemp("stage")
    manifest = make_synthetic_cohort(root / "cohort", n_patients=40, seed=5, progress=False,
                                     normals=0.25)
    cfg = run_config_from_dict({"splits": {"n_folds": 2, "external_centers": ["B", "C"]},
                                "imaging": {"backbones": []}, "detection": TINY})
    whole = load_run_cohort(manifest, cfg, progress=False, keep_normals=True)
    splits = make_splits(whole, cfg)
    m = run_detection(root / "run", whole, splits, cfg.detection, cfg.splits, progress=False)
    return root, whole, splits, cfg, m


def test_stage_writes_metrics_examples_and_a_bundle_copy(staged):
    root, whole, splits, cfg, m = staged
    det = root / "run" / "detection"
    assert m["n_normal_patients"] == 10 and m["n_images"] == len(whole.images)
    assert json.loads((det / "detection_metrics.json").read_text())["sets"].keys() == m["sets"].keys()
    assert {"dev", "held_out"} <= set(m["sets"])
    boxes = pd.read_csv(det / "boxes.csv", dtype={"patient_id": str})
    fold_of = splits.set_index("patient_id")["fold"]
    lesion_rows = boxes[boxes["lesion"] == 1]
    assert (lesion_rows["fold"].to_numpy() == lesion_rows["patient_id"].map(fold_of).to_numpy()).all()
    assert m["examples"] and all((det / e["file"]).is_file() for e in m["examples"])
    assert any(line.startswith("| held_out |") for line in summary_lines(root / "run"))
    copy = bundle_copy(det)
    metas = [json.loads(p.read_text()) for p in (copy / "weights").glob("*.json")]
    assert len(metas) == 2 and all("train_patients" not in x and x["n_train_patients"] > 0
                                   for x in metas)
    from multibone.detection.run import load_detectors

    models, conf = load_detectors(copy)
    assert len(models) == 2 and conf.img_size == 64
    with pytest.raises(InputError, match="already exists"):
        run_detection(root / "run", whole, splits, cfg.detection, cfg.splits, progress=False)


def test_report_section_reads_the_stage_files(staged, tmp_path):
    from multibone._html import render
    from multibone.evaluation.detection_section import detection_context

    root, _, _, _, m = staged
    ctx = detection_context(root / "run")
    assert [r[0] for r in ctx["sets"]["rows"]] == list(m["sets"])
    col = ctx["sets"]["columns"].index("image AUC")
    auc = m["sets"]["held_out"]["image_auc"]["auc"]
    assert ctx["sets"]["rows"][1][col] == f"{auc:.3f}"
    assert len(ctx["examples"]) == len(m["examples"])
    assert all(uri.startswith("data:image/png;base64,") for uri, _ in ctx["examples"])
    assert detection_context(tmp_path) is None  # a run without a detector: no section
    html = render("report.html", title="t", heading="h", synthetic=True, models=["stacker"],
                  positive_class="infection", negative_class="tumor", n_boot=10, seed=0,
                  warnings=[], thresholds={"columns": [], "rows": []},
                  summary={"columns": [], "rows": []}, sets=[], extras=[], detection=ctx,
                  generated_by="test")
    assert 'id="detection"' in html and html.count("<figure>") == len(ctx["examples"])


def test_classifiers_can_take_the_detector_boxes(staged):
    from multibone.detection.stage import with_detector_boxes
    from multibone.io import read_image_size

    root, whole, splits, cfg, m = staged
    cohort = whole.without_normals()
    thresh = cfg.detection.box_thresh
    new, share = with_detector_boxes(cohort, root / "run" / "detection" / "boxes.csv", thresh)
    assert new.patients is cohort.patients and len(new.images) == len(cohort.images)
    boxes = pd.read_csv(root / "run" / "detection" / "boxes.csv").set_index("image_path")
    got = new.images.set_index("image_path")
    for path, r in got.iterrows():
        scores = json.loads(boxes.loc[path, "scores"])
        if scores and scores[0] >= thresh:
            x0, y0, x1, y1 = json.loads(boxes.loc[path, "boxes"])[0]
            h, w = read_image_size(path)  # floor/ceil to whole pixels, cut to the image
            assert [r["roi_x0"], r["roi_y0"], r["roi_x1"], r["roi_y1"]] == [
                max(0, math.floor(x0)), max(0, math.floor(y0)),
                min(w, math.ceil(x1)), min(h, math.ceil(y1))]
        else:
            assert np.isnan(r["roi_x0"])
    assert share == pytest.approx(float(got["roi_x0"].notna().mean()))
    assert cohort.images["roi_x0"].notna().all()  # the cohort given is left as it was


def test_predict_fills_the_box_from_the_detector(monkeypatch, tmp_path):
    from multibone import case as case_api
    from multibone.case import Case, CaseImage, fill_rois

    pix = np.zeros((40, 50), np.float32)
    bundle = SimpleNamespace(path=tmp_path, hash="h")
    given = CaseImage(pix, (1, 2, 10, 12), "image 1")
    found = CaseImage(pix, None, "image 2")
    nothing = CaseImage(pix, None, "image 3")
    answers = iter([((3, 4, 20, 30), 0.83), None])
    monkeypatch.setattr(case_api, "propose_box", lambda b, p: next(answers))
    # no detector in the bundle: the whole image, and no warning
    plain = Case(images=[CaseImage(pix, None, "image 1")], age=30, sex="F")
    recs, warns = fill_rois(bundle, plain)
    assert recs[0]["roi_source"] == "whole_image" and recs[0]["box"] is None and not warns
    (tmp_path / "detection").mkdir()
    c = Case(images=[given, found, nothing], age=30, sex="F")
    recs, warns = fill_rois(bundle, c)
    assert [r["roi_source"] for r in recs] == ["given", "detector", "whole_image"]
    assert recs[1]["box"] == [3, 4, 20, 30] and recs[1]["score"] == pytest.approx(0.83)
    assert found.roi == (3, 4, 20, 30) and given.roi == (1, 2, 10, 12) and nothing.roi is None
    assert len(warns) == 1 and warns[0].startswith("image 3: no lesion box given")
    # resolved once: scoring the same case again (explain after predict) asks no more
    assert fill_rois(bundle, c)[0] == recs


@pytest.mark.slow
def test_run_pipeline_with_a_detector_end_to_end(tmp_path):
    """run_pipeline: normal controls train the detector only; the bundle carries it in the
    layout detect/load_detectors read; summary.md and the report have its section."""
    from multibone.cli import main
    from multibone.pipeline import run_pipeline
    from multibone.runconfig import run_config_from_dict
    from multibone.synthetic import make_synthetic_cohort

    manifest = make_synthetic_cohort(tmp_path / "cohort", n_patients=50, seed=3, progress=False,
                                     normals=0.2)
    cfg = run_config_from_dict({
        "splits": {"n_folds": 3, "external_centers": ["B", "C"]},
        "imaging": {"backbones": []},
        "stacking": {"family": "lr", "n_iter": 2, "inner_folds": 3, "bootstrap": 50},
        "radiomics": {"enabled": False},
        "detection": TINY,
    })
    run = run_pipeline(manifest, tmp_path / "run", cfg, progress=False, n_boot=50)
    preds = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    assert preds["patient_id"].nunique() == 40
    normals = pd.read_csv(manifest, dtype={"patient_id": str}).query("diagnosis == 'normal'")
    assert not set(normals["patient_id"]) & set(preds["patient_id"])
    assert "## Lesion detector" in (run / "summary.md").read_text()
    assert 'id="detection"' in (run / "evaluation" / "report.html").read_text()
    assert sorted(p.name for p in (run / "bundle" / "detection" / "weights").iterdir()) == [
        f"fold{k}.{ext}" for k in range(3) for ext in ("json", "safetensors")]
    image = next(iter(normals["image_path"]))
    assert main(["detect", "--bundle", str(run / "bundle"), "--image",
                 str(manifest.parent / image)]) == 0
