"""Pretraining arms: same recipe, different initial weights, compared (issue #16 item 3).

The two weight files are made here (two differently seeded e3_tiny models, one
as safetensors, one as a PyTorch state dict wrapped as DataParallel saves it, so
its keys need remapping); no hub download.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from imaging_cohort import load_tiny, tiny_config
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from multibone.errors import ConfigError, WeightsError
from multibone.evaluation.arms import compare_arms, write_arm_comparison
from multibone.imaging import ImagingConfig, create_backbone, train_images
from multibone.imaging.arms import arm_weights, check_arms, train_arms


@pytest.fixture
def weight_files(tmp_path):
    a = create_backbone("e3_tiny", img_size=32, seed=1).state_dict()
    save_file({k: v.contiguous() for k, v in a.items()}, tmp_path / "medical_a.safetensors")
    b = create_backbone("e3_tiny", img_size=32, seed=2).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in b.items()}}, tmp_path / "medical_b.pt")
    wrong = create_backbone("vit_tiny", img_size=32, seed=3).state_dict()
    torch.save(wrong, tmp_path / "vit.pt")
    return tmp_path / "medical_a.safetensors", tmp_path / "medical_b.pt", tmp_path / "vit.pt"


def test_arm_names_are_checked():
    with pytest.raises(ConfigError, match="main"):
        ImagingConfig(arms={"main": "none"})
    with pytest.raises(ConfigError, match="arm name"):
        ImagingConfig(arms={"a b": "none"})


def test_a_file_for_another_architecture_fails_before_training(weight_files, tmp_path):
    _, _, wrong = weight_files
    cfg = tiny_config(arms={"bad": str(wrong)})
    with pytest.raises(WeightsError, match=r"imaging\.arms\.bad .*vit\.pt.*e3_tiny"):
        check_arms(cfg)
    cohort, splits = load_tiny(tmp_path / "c", n_patients=12)
    with pytest.raises(WeightsError):
        train_arms(cohort, splits, cfg, tmp_path / "imaging")
    assert not (tmp_path / "imaging" / "arms").exists()
    with pytest.raises(WeightsError, match="not found"):
        check_arms(tiny_config(arms={"gone": str(tmp_path / "missing.pt")}))


def test_two_arms_trained_and_compared(weight_files, tmp_path, one_torch_thread):
    a, b, _ = weight_files
    cohort, splits = load_tiny(tmp_path / "c", n_patients=24, external=6, n_folds=2)
    cfg = tiny_config(weights=str(a), arms={"b": str(b)}, epochs=2)
    imaging = tmp_path / "imaging"
    check_arms(cfg)
    train_images(cohort, splits, cfg, imaging, progress=False)
    folders = train_arms(cohort, splits, cfg, imaging, progress=False)
    assert set(folders) == {"main", "b"}
    sa = pd.read_csv(imaging / "patient_scores.csv")
    sb = pd.read_csv(imaging / "arms" / "b" / "patient_scores.csv")
    # same patients, folds and labels; different starting weights give different scores
    pd.testing.assert_frame_equal(sa[["patient_id", "split", "fold"]], sb[["patient_id", "split", "fold"]])
    assert not np.allclose(sa["e3_tiny"], sb["e3_tiny"])
    per_arm, pairs = write_arm_comparison(folders, imaging, arm_weights(cfg))
    assert (imaging / "arm_comparison.csv").is_file() and (imaging / "arm_pairs.csv").is_file()
    assert set(per_arm["arm"]) == {"main", "b"} and set(per_arm["set"]) == {"dev", "external"}
    row = per_arm[(per_arm["arm"] == "b") & (per_arm["set"] == "dev")].iloc[0]
    dev = sb[sb["split"] == "dev"]
    assert row["auc"] == pytest.approx(roc_auc_score(dev["label"], dev["e3_tiny"]))
    assert row["weights"].endswith("medical_b.pt")
    for col in ("auc_ci_low", "youden_sensitivity", "spec90_specificity_ci_low", "cal_slope",
                "brier"):
        assert col in per_arm, col
    pr = pairs[pairs["set"] == "dev"].iloc[0]
    assert 0 <= pr["delong_p"] <= 1
    assert pr["auc_diff"] == pytest.approx(pr["auc_a"] - pr["auc_b"])
    assert "mcnemar_youden_sensitivity_p" in pairs


def test_compare_arms_statistics_on_known_scores():
    rng = np.random.default_rng(0)
    n = 120
    y = (rng.random(n) < 0.5).astype(int)
    base = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)],
                         "split": np.where(np.arange(n) < 80, "dev", "external"),
                         "fold": 0, "label": y})
    good = base.assign(e3=1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(0, 1, n)))))
    weak = base.assign(e3=1 / (1 + np.exp(-(0.3 * (2 * y - 1) + rng.normal(0, 1, n)))))
    per_arm, pairs = compare_arms({"imagenet": good, "scratch": weak})
    d = pairs[pairs["set"] == "dev"].iloc[0]
    assert d["auc_diff"] > 0.2 and d["delong_p"] < 0.001
    ext = per_arm[(per_arm["set"] == "external") & (per_arm["arm"] == "imagenet")].iloc[0]
    assert ext["auc"] == pytest.approx(roc_auc_score(y[80:], good["e3"][80:]))
    # operating points are fixed on dev and applied unchanged: sens90 on dev is >= 0.90
    dev = per_arm[(per_arm["set"] == "dev")]
    assert (dev["sens90_sensitivity"] >= 0.9).all()


def test_paper_config_starts_from_imagenet_with_a_scratch_arm(tmp_path, monkeypatch, capsys):
    from importlib import resources

    from multibone.cli import main
    from multibone.imaging import registry
    from multibone.runconfig import load_run_config

    path = resources.files("multibone").joinpath("configs", "paper.yaml")
    cfg = load_run_config(str(path))
    assert cfg.imaging.weights == "imagenet" and cfg.imaging.arms == {"scratch": "none"}
    # offline (no hub cache flag, hub unreachable): fails at once, says how to use a local file
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "_offline_env", lambda: False)
    monkeypatch.setattr(registry, "_hub_reachable", lambda: False)
    out = tmp_path / "imaging"
    rc = main(["train-images", "--config", str(path), "--manifest", str(tmp_path / "none.csv"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no network" in err and "local file path" in err
    assert not out.exists()


def test_train_images_cli_with_two_arms(weight_files, tmp_path, one_torch_thread):
    """A run config with arms: train-images trains both and writes their comparison."""
    import yaml
    from imaging_cohort import make_cohort_files

    from multibone.cli import main

    a, b, _ = weight_files
    manifest = make_cohort_files(tmp_path / "c", 24, external=6)
    cfg = {
        "splits": {"n_folds": 2, "external_centers": ["B"], "seed": 0},
        "imaging": {"backbones": ["e3_tiny"], "img_size": 32, "epochs": 2, "batch_size": 8,
                    "lr": 0.05, "lr_step": 10, "val_fraction": 0.25, "num_workers": 0,
                    "num_threads": 1, "crop_margin": 0.0,
                    "weights": str(a), "arms": {"medical_b": str(b)}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run" / "imaging"
    assert main(["train-images", "--config", str(tmp_path / "c.yaml"), "--manifest",
                 str(manifest), "--out", str(out), "--no-progress"]) == 0
    per_arm = pd.read_csv(out / "arm_comparison.csv")
    pairs = pd.read_csv(out / "arm_pairs.csv")
    assert set(per_arm["arm"]) == {"main", "medical_b"}
    assert per_arm["auc_ci_low"].notna().all() and per_arm["brier"].notna().all()
    assert ((pairs["arm_a"] == "main") & (pairs["arm_b"] == "medical_b")).all()
    assert pairs["delong_p"].between(0, 1).all()
    assert (out / "arms" / "medical_b" / "patient_scores.csv").is_file()


def test_report_shows_the_arm_comparison(tmp_path):
    from test_evaluation_report import make_predictions, write_run

    from multibone.evaluation.report import evaluate_run

    rng = np.random.default_rng(1)
    n = 90
    y = (np.arange(n) % 2).astype(int)
    base = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)],
                         "split": np.where(np.arange(n) < 60, "dev", "external"),
                         "fold": np.arange(n) % 3, "label": y})
    arms = {"main": base.assign(e3=np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, n), 0, 1)),
            "scratch": base.assign(e3=rng.random(n))}
    run = write_run(tmp_path / "run", make_predictions(n_dev=80, n_test=0, n_ext={"B": 30}))
    folders = {}
    for name, df in arms.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        df.to_csv(folders[name] / "patient_scores.csv", index=False)
    (run / "imaging").mkdir()
    write_arm_comparison(folders, run / "imaging", {"main": "imagenet", "scratch": "none"})
    evaluate_run(run, n_boot=0, progress=False, figures=False)
    html = (run / "evaluation" / "report.html").read_text()
    assert "Pretraining arms: each arm" in html and "Pretraining arms head to head" in html
    assert (run / "evaluation" / "tables" / "arm_pairs.csv").is_file()
