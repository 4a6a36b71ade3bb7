"""Box-perturbation robustness (multibone.robustness, ``multibone robustness``)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from multibone.cli import main
from multibone.errors import InputError
from multibone.robustness import box_robustness, perturb_boxes


def _random_boxes(rng, n=2000):
    h = rng.integers(3, 300, n)
    w = rng.integers(3, 300, n)
    x0 = rng.integers(0, w - 1)
    y0 = rng.integers(0, h - 1)
    x1 = np.minimum(w, x0 + rng.integers(1, 200, n))
    y1 = np.minimum(h, y0 + rng.integers(1, 200, n))
    return np.c_[x0, y0, x1, y1], np.c_[h, w]


@pytest.mark.parametrize("shift,scale", [(0.1, (0.8, 1.2)), (0.5, (0.3, 3.0)), (1.0, (2.0, 4.0))])
def test_perturbed_boxes_stay_inside_the_image(shift, scale):
    rng = np.random.default_rng(0)
    boxes, shapes = _random_boxes(rng)
    out = perturb_boxes(boxes, shapes, np.random.default_rng(1), shift=shift, scale=scale)
    h, w = shapes[:, 0], shapes[:, 1]
    assert (out[:, 0] >= 0).all() and (out[:, 1] >= 0).all()
    assert (out[:, 2] <= w).all() and (out[:, 3] <= h).all()
    assert ((out[:, 2] - out[:, 0]) >= np.minimum(2, w)).all()
    assert ((out[:, 3] - out[:, 1]) >= np.minimum(2, h)).all()


def test_perturbation_is_seeded_and_sized_as_documented():
    boxes = np.array([[100, 100, 200, 150]] * 4000)
    shapes = np.array([[1000, 1000]] * 4000)
    a = perturb_boxes(boxes, shapes, np.random.default_rng(5))
    b = perturb_boxes(boxes, shapes, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    # no shift, no scaling: the boxes as drawn
    same = perturb_boxes(boxes, shapes, np.random.default_rng(5), shift=0.0, scale=(1.0, 1.0))
    np.testing.assert_array_equal(same, boxes)
    # centre moves at most shift x size (+ rounding); sizes within the scale range
    cx = (a[:, 0] + a[:, 2]) / 2
    cy = (a[:, 1] + a[:, 3]) / 2
    assert np.abs(cx - 150).max() <= 0.1 * 100 + 1 and np.abs(cy - 125).max() <= 0.1 * 50 + 1
    assert (a[:, 2] - a[:, 0]).min() >= 80 - 1 and (a[:, 2] - a[:, 0]).max() <= 120 + 1
    assert np.abs(cx - 150).max() > 5  # it does move


def test_box_robustness_on_the_mini_run(mini_run, tmp_path):
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    t1 = box_robustness(mini_run, draws=3, out_dir=out1, progress=False)
    box_robustness(mini_run, draws=3, out_dir=out2, progress=False)
    for f in ("robustness.csv", "per_draw_auc.csv", "per_patient_spread.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out1 / f), pd.read_csv(out2 / f))
    assert (out1 / "robustness.png").stat().st_size > 1000
    assert set(t1["model"]) == {"e3_tiny", "stacker"}
    assert {"external_B", "external_C", "external_pooled"} <= set(t1["set"])
    # as drawn, the bundle reproduces the run's own held-out probabilities
    preds = pd.read_csv(mini_run / "predictions.csv", dtype={"patient_id": str})
    spread = pd.read_csv(out1 / "per_patient_spread.csv", dtype={"patient_id": str})
    st = spread[spread["model"] == "stacker"].merge(preds, on="patient_id")
    np.testing.assert_allclose(st["p_as_drawn"], st["p_stacker"], atol=1e-5)
    assert (spread["p_min"] <= spread["p_max"]).all()
    # another seed, other draws
    t3 = box_robustness(mini_run, draws=3, seed=1, out_dir=tmp_path / "r3", progress=False)
    assert not np.allclose(t3["prob_sd_mean"], t1["prob_sd_mean"])


def test_cli_prints_the_table_and_refuses_bad_runs(mini_run, tmp_path, capsys):
    assert main(["robustness", str(mini_run), "--draws", "2", "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "auc_perturbed_mean" in text and "stacker" in text
    # no bundle: exit 2, nothing written
    run = tmp_path / "nobundle"
    run.mkdir()
    shutil.copy(mini_run / "predictions.csv", run / "predictions.csv")
    assert main(["robustness", str(run), "--draws", "2"]) == 2
    assert "no model bundle" in capsys.readouterr().err
    assert not (run / "robustness").exists()
    assert main(["robustness", str(mini_run), "--draws", "2", "--scale", "1.2,0.8",
                 "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_images_without_boxes_are_named(mini_run, tmp_path):
    m = pd.read_csv(mini_run / "cohort" / "manifest.csv")
    m["image_path"] = [str((mini_run / "cohort" / p).resolve()) for p in m["image_path"]]
    m[["roi_x0", "roi_y0", "roi_x1", "roi_y1"]] = np.nan
    m.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(InputError, match="without a lesion box"):
        box_robustness(mini_run, draws=2, manifest=tmp_path / "manifest.csv",
                       out_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_report_shows_the_robustness_section(mini_run, tmp_path):
    from multibone.evaluation.report import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(mini_run, run)
    box_robustness(run, draws=2, progress=False)
    evaluate_run(run, n_boot=0, progress=False, figures=False)
    html = (run / "evaluation" / "report.html").read_text()
    i = html.index("Box-perturbation robustness")
    assert "auc_perturbed_mean" in html[i:] and "data:image/png;base64," in html[i:]
