"""Radiomics baseline: Nyxus features of lesion boxes, ElasticNet LR cross-fitted on the run's folds.

Feature values are checked against Nyxus's own output on the bare crop and
first-order values against numpy; the images are synthetic (drawn here).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

nyxus = pytest.importorskip(
    "nyxus", reason='radiomics tests need Nyxus: pip install "multibone[radiomics]"'
)

from imaging_cohort import load_tiny  # noqa: E402

from multibone.errors import ConfigError, InputError  # noqa: E402
from multibone.radiomics import RadiomicsConfig, crossfit, roi_features  # noqa: E402
from multibone.radiomics.features import (  # noqa: E402
    FEATURE_GROUPS,
    feature_columns,
    image_features,
    to_intensity,
)
from multibone.radiomics.run import add_radiomics  # noqa: E402
from multibone.stats import auc_score  # noqa: E402


def _crop(seed: int, shape=(30, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.clip(0.4 + 0.2 * np.sin(xx / 2.0) + rng.normal(0, 0.05, shape), 0, 1)


def test_features_of_one_image_match_nyxus_on_the_bare_crop():
    crops = [_crop(0), _crop(1, (45, 22)), _crop(2, (12, 60))]
    ours = roi_features(crops, grey_levels=32)
    assert len(ours) == 3
    nyx = nyxus.Nyxus(list(FEATURE_GROUPS), n_feature_calc_threads=1, coarse_gray_depth=32)
    for i, c in enumerate(crops):
        img = to_intensity(c)[None]
        ref = nyx.featurize(img, np.ones_like(img), intensity_names=["a"], label_names=["a"])
        cols = feature_columns(ref)
        np.testing.assert_allclose(
            ours.loc[i, cols].to_numpy(float), ref[cols].iloc[0].to_numpy(float),
            rtol=1e-9, atol=1e-9, equal_nan=True,
        )
    # every family the issue names is there; position features are not
    fams = {c.split("_")[0] for c in ours.columns}
    assert {"GLCM", "GLRLM", "GLSZM", "MEAN", "ENTROPY", "AREA"} <= fams
    assert not [c for c in ours.columns if c.startswith(("BBOX_", "CENTROID_"))]


def test_first_order_matches_numpy():
    c = _crop(3)
    f = roi_features([c]).iloc[0]
    v = to_intensity(c).astype(float)
    assert f["MEAN"] == pytest.approx(v.mean(), rel=1e-6)
    assert f["MEDIAN"] == pytest.approx(np.median(v), rel=1e-6)
    assert f["AREA_PIXELS_COUNT"] == v.size


def test_small_roi_is_named():
    with pytest.raises(InputError, match="manifest row 7.*smaller than the 8 px"):
        roi_features([_crop(0), _crop(1, (5, 30))], names=["a", "manifest row 7"], min_roi=8)


def test_config_checks():
    with pytest.raises(ConfigError, match="l1_ratios"):
        RadiomicsConfig(l1_ratios=[1.5])
    with pytest.raises(ConfigError, match="as_stacker_input"):
        RadiomicsConfig(as_stacker_input=True)


def test_crossfit_is_out_of_fold_and_reproducible():
    rng = np.random.default_rng(0)
    n = 80
    y = np.arange(n) % 2
    feats = pd.DataFrame(
        {f"rad_f{j}": rng.normal(0, 1, n) + (1.5 * y if j < 2 else 0) for j in range(10)},
        index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id"),
    )
    splits = pd.DataFrame(
        {
            "patient_id": feats.index,
            "split": ["dev"] * 60 + ["external"] * 20,
            "fold": [i % 3 for i in range(60)] + [-1] * 20,
        }
    )
    labels = pd.Series(y, index=feats.index)
    cfg = RadiomicsConfig(inner_folds=3, Cs=[0.1, 1.0], l1_ratios=[0.5])
    s1, summ = crossfit(feats, splits, labels, cfg)
    s2, _ = crossfit(feats, splits, labels, cfg)
    pd.testing.assert_frame_equal(s1, s2)
    assert s1["p_radiomics"].between(0, 1).all()
    assert auc_score(s1["label"], s1["p_radiomics"]) > 0.8
    assert len(summ["best_params_per_fold"]) == 3
    # out of fold: flipping fold 0's labels cannot move fold 0's own predictions (its model
    # never saw them) but moves the other folds' and the external patients' predictions
    fold0 = ((splits["split"] == "dev") & (splits["fold"] == 0)).to_numpy()
    flipped = labels.copy()
    flipped[fold0] = 1 - flipped[fold0]
    s3, _ = crossfit(feats, splits, flipped, cfg)
    np.testing.assert_allclose(s3["p_radiomics"][fold0], s1["p_radiomics"][fold0])
    assert not np.allclose(s3["p_radiomics"][~fold0], s1["p_radiomics"][~fold0])


def test_pipeline_step_adds_p_radiomics_and_thresholds(tmp_path):
    cohort, splits = load_tiny(tmp_path / "c", n_patients=30, external=6, n_folds=3)
    feats = image_features(cohort.images)
    assert len(feats) == len(cohort.images) and "patient_id" in feats
    assert "image_path" not in feats
    run = tmp_path / "run"
    run.mkdir()
    (run / "thresholds.json").write_text(json.dumps({"stacker": {"youden": 0.5, "sens90": 0.3}}))
    preds = splits[["patient_id", "split"]].assign(p_stacker=0.5)
    cfg = RadiomicsConfig(inner_folds=2, Cs=[1.0], l1_ratios=[0.5])
    out = add_radiomics(run, cohort, splits, cfg, preds)
    assert out["p_radiomics"].notna().all()
    th = json.loads((run / "thresholds.json").read_text())
    assert set(th["radiomics"]) == {"youden", "sens90"}
    for f in ("image_features.csv", "patient_scores.csv", "radiomics_summary.json"):
        assert (run / "radiomics" / f).is_file()
    # the tiny cohort's lesions differ in texture: the baseline finds it out of fold
    dev = pd.read_csv(run / "radiomics" / "patient_scores.csv").query("split == 'dev'")
    assert auc_score(dev["label"], dev["p_radiomics"]) > 0.75
    # disabled: untouched
    assert "p_radiomics" not in add_radiomics(
        run, cohort, splits, RadiomicsConfig(enabled=False), preds
    )


def test_small_boxes_are_refused_before_any_work(tmp_path):
    from multibone.radiomics.features import check_roi_sizes

    cohort, _ = load_tiny(tmp_path / "c", n_patients=6)
    im = cohort.images.copy()
    check_roi_sizes(im, 8)
    im.loc[im.index[2], "roi_x1"] = im.loc[im.index[2], "roi_x0"] + 4
    with pytest.raises(InputError, match=f"manifest rows {int(im['row'].iloc[2])}: lesion box smaller"):
        check_roi_sizes(im, 8)


def test_too_few_patients_skip_the_baseline_with_a_reason(tmp_path, caplog):
    cohort, splits = load_tiny(tmp_path / "c", n_patients=12, n_folds=2)
    run = tmp_path / "run"
    run.mkdir()
    preds = splits[["patient_id", "split"]].assign(p_stacker=0.5)
    with caplog.at_level("WARNING"):
        out = add_radiomics(run, cohort, splits, RadiomicsConfig(inner_folds=5), preds)
    assert "p_radiomics" not in out
    assert "fewer than radiomics.inner_folds=5" in caplog.text
    assert not (run / "radiomics").exists()
