"""Cross-fitted training and scoring on a tiny real cohort (PNG files through multibone.io).

The key property (DESIGN.md, step 1 of the two-step CV): no development patient
is scored by a model that saw it. Checked here against the per-fold patient ids
that training records, and by re-scoring each patient with the fold models.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from imaging_cohort import load_tiny, tiny_config
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from multibone.imaging import (
    ImageScorer,
    aggregate,
    get_spec,
    load_backbone_meta,
    load_backbone_models,
    preprocess,
    train_images,
)

BACKBONES = ["e3_tiny", "vit_tiny"]


# One torch thread for every test here (fixture in conftest.py; the machine is shared).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("imaging")
    cohort, splits = load_tiny(root / "cohort", 22, external=4, n_folds=3)
    out = root / "run"
    summary = train_images(cohort, splits, tiny_config(backbones=BACKBONES), out, progress=False)
    return cohort, splits, out, summary


def test_outputs_follow_the_contract(run):
    cohort, splits, out, summary = run
    images = pd.read_csv(out / "image_scores.csv", dtype={"patient_id": str})
    patients = pd.read_csv(out / "patient_scores.csv", dtype={"patient_id": str})
    assert list(images.columns) == [
        "patient_id",
        "image_path",
        "split",
        "fold",
        "label",
        *BACKBONES,
    ]
    assert list(patients.columns) == ["patient_id", "split", "fold", "label", *BACKBONES]
    assert len(images) == len(cohort.images)
    assert sorted(patients["patient_id"]) == sorted(splits["patient_id"])
    assert set(patients["split"]) == {"dev", "external"}
    for b in BACKBONES:
        assert images[b].notna().all()
        assert patients[b].between(0, 1).all()
        for k in range(3):
            assert (out / "weights" / b / f"fold{k}.safetensors").is_file()
            meta = json.loads((out / "weights" / b / f"fold{k}.json").read_text())
            assert meta["img_size"] == 32 and meta["in_chans"] == 3
            assert meta["arch"] == get_spec(b).timm_name and meta["family"] == b[:-5]
            assert meta["grey_policy"] == "replicate_to_3_channels"
            assert len(meta["norm_mean"]) == 3 and meta["norm_std"][0] > 0
    assert (out / "imaging_config.yaml").is_file()
    saved = json.loads((out / "imaging_summary.json").read_text())
    assert set(saved["backbones"]) == set(BACKBONES)
    assert not (out / "checkpoints").exists()  # removed once every fold is done


def test_patient_probability_is_sigmoid_of_mean_logit(run):
    _, _, out, _ = run
    images = pd.read_csv(out / "image_scores.csv", dtype={"patient_id": str})
    patients = pd.read_csv(out / "patient_scores.csv", dtype={"patient_id": str}).set_index(
        "patient_id"
    )
    for pid, grp in images.groupby("patient_id"):
        expected = torch.sigmoid(torch.tensor(grp["e3_tiny"].mean(), dtype=torch.float64)).item()
        assert patients.loc[pid, "e3_tiny"] == pytest.approx(expected, rel=1e-6)


def test_oof_auc_in_summary_matches_sklearn(run):
    _, _, out, summary = run
    patients = pd.read_csv(out / "patient_scores.csv")
    dev = patients[patients["split"] == "dev"]
    for b in BACKBONES:
        assert summary["backbones"][b]["oof_auc"] == pytest.approx(
            roc_auc_score(dev["label"], dev[b])
        )


def test_no_dev_patient_is_scored_by_a_model_that_saw_it(run):
    cohort, splits, out, _ = run
    images = pd.read_csv(out / "image_scores.csv", dtype={"patient_id": str})
    dev = images[images["split"] == "dev"]
    for b in BACKBONES:
        models = load_backbone_models(out / "weights", b)
        assert len(models) == 3
        for k, model in enumerate(models):
            log = json.loads((out / "logs" / b / f"fold{k}.json").read_text())
            seen = set(log["train_patient_ids"]) | set(log["val_patient_ids"])
            scored_here = set(dev.loc[dev["fold"] == k, "patient_id"])
            assert scored_here == set(log["heldout_patient_ids"])
            assert not seen & scored_here, f"{b} fold {k} scored patients it trained on"
            # The held-out scores are exactly this model's output, not another fold's.
            rows = dev[dev["fold"] == k]
            crops = _crops(cohort, rows["image_path"], model.multibone_meta)
            with torch.no_grad():
                logits = model(preprocess(crops, model.multibone_meta)).reshape(-1).numpy()
            np.testing.assert_allclose(logits, rows[b].to_numpy(), rtol=1e-4, atol=1e-5)
        # Each dev patient is unseen by exactly one fold model (its own), seen by the others.
        logs = [json.loads((out / "logs" / b / f"fold{k}.json").read_text()) for k in range(3)]
        seen_by = [set(g["train_patient_ids"]) | set(g["val_patient_ids"]) for g in logs]
        for pid in dev["patient_id"].unique():
            assert sum(pid not in s for s in seen_by) == 1


def _crops(cohort, paths, meta):
    from multibone.io import crop_roi, read_radiograph

    imgs = cohort.images.set_index("image_path")
    out = []
    for p in paths:
        r = imgs.loc[p]
        roi = (r["roi_x0"], r["roi_y0"], r["roi_x1"], r["roi_y1"])
        out.append(crop_roi(read_radiograph(p).pixels, roi, margin=meta["crop_margin"]))
    return out


def test_external_scores_are_mean_of_fold_models_and_match_image_scorer(run):
    cohort, _, out, _ = run
    images = pd.read_csv(out / "image_scores.csv", dtype={"patient_id": str})
    ext = images[images["split"] == "external"]
    scorer = ImageScorer.from_dir(out / "weights", BACKBONES)
    assert scorer.backbones == BACKBONES and scorer.aggregation == "mean_logit"
    crops = _crops(cohort, ext["image_path"], scorer.meta("e3_tiny"))
    got = scorer.score(crops)
    for b in BACKBONES:
        np.testing.assert_allclose(got[b], ext[b].to_numpy(), rtol=1e-4, atol=1e-5)
    metas = load_backbone_meta(out / "weights", "e3_tiny")
    assert [m["fold"] for m in metas] == [0, 1, 2]
    assert [m["fold"] for _, m in scorer.folds("vit_tiny")] == [0, 1, 2]
    # Per-patient probability through the scorer equals the written patient score.
    pid = ext["patient_id"].iloc[0]
    rows = ext[ext["patient_id"] == pid]
    prob = scorer.score_patient(_crops(cohort, rows["image_path"], scorer.meta("e3_tiny")))
    patients = pd.read_csv(out / "patient_scores.csv", dtype={"patient_id": str}).set_index(
        "patient_id"
    )
    assert prob["e3_tiny"] == pytest.approx(patients.loc[pid, "e3_tiny"], rel=1e-4)


def test_saved_weights_are_safetensors_of_the_model(run):
    _, _, out, _ = run
    sd = load_file(str(out / "weights" / "e3_tiny" / "fold0.safetensors"))
    model = load_backbone_models(out / "weights", "e3_tiny")[0]
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "rule, expected",
    [("mean_logit", 0.5), ("max", 3.0), ("all_positive", -2.0)],
)
def test_aggregation_rules(rule, expected):
    assert aggregate(np.array([-2.0, 0.5, 3.0]), rule) == pytest.approx(expected)


def test_scorer_rejects_wrong_pixels(run):
    from multibone.errors import InputError

    _, _, out, _ = run
    scorer = ImageScorer.from_dir(out / "weights", ["e3_tiny"])
    for bad, match in [
        (np.full((8, 8), 255.0, dtype=np.float32), r"expected \[0, 1\]"),
        (np.zeros((8, 8), dtype=np.uint8), "expected float pixels"),
        (np.zeros((2, 8, 8), dtype=np.float32), r"shape \(H, W\)"),
    ]:
        with pytest.raises(InputError, match=match):
            scorer.score([bad])


@pytest.mark.slow
def test_tiny_backbones_learn_above_chance(tmp_path):
    """Done-when (a), small version: every tiny backbone's OOF AUC is clearly above 0.5."""
    cohort, splits = load_tiny(tmp_path / "c", 40, n_folds=3)
    cfg = tiny_config(
        backbones=["e3_tiny", "e4_tiny", "vit_tiny", "swin_tiny"], epochs=6, img_size=32
    )
    summary = train_images(cohort, splits, cfg, tmp_path / "run", progress=False)
    for b, entry in summary["backbones"].items():
        assert entry["oof_auc"] > 0.7, (b, entry["oof_auc"])


@pytest.mark.slow
def test_demo_config_on_synthetic_cohort(tmp_path):
    """Done-when (a), full version (~1.5 min on 2 cores): the demo config on the 200-patient
    synthetic cohort; every tiny backbone's out-of-fold and external AUC clearly above chance."""
    from pathlib import Path

    from multibone.cohort import SplitConfig, assign_splits, load_cohort
    from multibone.runconfig import load_run_config
    from multibone.synthetic import make_synthetic_cohort

    manifest = make_synthetic_cohort(tmp_path / "cohort", n_patients=200, seed=0, progress=False)
    cohort = load_cohort(manifest, progress=False)
    splits = assign_splits(cohort.patients, SplitConfig(n_folds=5, external_centers=["B", "C"]))
    config = load_run_config(Path(__file__).parents[1] / "configs" / "demo.yaml").imaging
    summary = train_images(cohort, splits, config, tmp_path / "run", progress=False)
    for b, entry in summary["backbones"].items():
        assert entry["oof_auc"] > 0.7, (b, entry["oof_auc"])
        assert entry["external_auc"] > 0.65, (b, entry["external_auc"])
