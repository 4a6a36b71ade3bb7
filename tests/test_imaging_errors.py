"""Bad input to the imaging layer: each gets a specific error whose message names the fix."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from imaging_cohort import load_tiny, tiny_config

from multibone._config import from_dict
from multibone.errors import ConfigError, InputError, MultiboneError
from multibone.imaging import ImagingConfig, train_images
from multibone.imaging import train as train_module

# One torch thread for every test here (fixture in conftest.py; the machine is shared).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("errors") / "cohort", 12, n_folds=2)


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({"epochz": 3}, r"unknown key epochz \(did you mean 'epochs'\?\); valid keys are .*backbones"),
        (
            {"backbones": ["e3", "resnet18"]},
            "unknown backbone 'resnet18'; valid backbones are e3, e3_tiny, e4",
        ),
        ({"tiny": True}, r"imaging\.tiny: this key was removed; .*\[e3_tiny, e4_tiny"),
        ({"aggregation": "median"}, "'median' is not one of 'mean_logit', 'max', 'all_positive'"),
        ({"epochs": "ten"}, "epochs: expected an integer"),
        ({"batch_size": 1}, "batch_size: must be >= 2"),
        ({"val_fraction": 0.7}, r"val_fraction: must be in \[0, 0.5\)"),
        ({"flips": ["diagonal"]}, "'diagonal' is not one of horizontal, vertical"),
        ({"device": "tpu"}, "device: 'tpu' is not one of auto, cpu, cuda"),
        ({"weights_per_backbone": {"e9": "x.pt"}}, "weights_per_backbone: unknown backbone 'e9'"),
    ],
)
def test_bad_config(mapping, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(ImagingConfig, mapping, "imaging")


def test_run_config_rejects_unknown_imaging_key(tmp_path):
    from multibone.runconfig import load_run_config

    path = tmp_path / "c.yaml"
    path.write_text("imaging:\n  backbones: [e3]\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: imaging: unknown key learning_rate"):
        load_run_config(path)


def test_default_config_is_the_paper_recipe():
    c = ImagingConfig()
    assert (c.img_size, c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay) == (
        224,
        100,
        128,
        0.1,
        0.9,
        1e-4,
    )
    assert (c.lr_step, c.lr_gamma, c.backbones) == (30, 0.1, ["e3", "e4", "vit", "swin"])
    assert c.flips == ["horizontal", "vertical"] and c.aggregation == "mean_logit"


def _single_class_fold(splits: pd.DataFrame, cohort) -> pd.DataFrame:
    """Put every negative dev patient in fold 1: fold 0 then holds one class only."""
    lab = cohort.patients.set_index("patient_id")["label"]
    s = splits.copy()
    s["fold"] = [1 if lab[p] == 0 else (i % 2) for i, p in enumerate(s["patient_id"])]
    s.loc[s["patient_id"].map(lab) == 1, "fold"] = 0
    return s


def _missing_fold_column(splits: pd.DataFrame, cohort) -> pd.DataFrame:
    return splits.drop(columns="fold")


def _stranger(splits: pd.DataFrame, cohort) -> pd.DataFrame:
    extra = pd.DataFrame({"patient_id": ["NOBODY"], "split": ["dev"], "fold": [0]})
    return pd.concat([splits, extra], ignore_index=True)


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            _single_class_fold,
            r"fold 0: the held-out patients are all of one class.*use fewer folds",
        ),
        (_missing_fold_column, "column 'fold' is missing"),
        (_stranger, "1 patient.* not in the cohort: NOBODY"),
    ],
    ids=["single-class-fold", "no-fold-column", "unknown-patient"],
)
def test_bad_splits(tmp_path, data, edit, match):
    cohort, splits = data
    with pytest.raises(InputError, match=match):
        train_images(cohort, edit(splits, cohort), tiny_config(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before writing anything


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"backbones": ["e3"], "weights": "imagenet", "img_size": 224}, "there is no network"),
        (
            {"weights": "imagenet"},
            "'e3_tiny': this scratch-only entry .* has no ImageNet weights.* full entry 'e3'",
        ),
        (
            {"weights_per_backbone": {"e3_tiny": "/nonexistent/radimagenet.pt"}},
            "radimagenet.pt: weights file for backbone 'e3_tiny' not found",
        ),
    ],
    ids=["imagenet-offline", "imagenet-tiny", "missing-file"],
)
def test_weight_sources_checked_before_anything_is_written(
    tmp_path, data, monkeypatch, changes, match
):
    from multibone.errors import WeightsError
    from multibone.imaging import registry

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "_hub_reachable", lambda timeout=2.0: False)
    cohort, splits = data
    with pytest.raises(WeightsError, match=match):
        train_images(cohort, splits, tiny_config(**changes), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_no_backbones_to_train(tmp_path, data):
    cohort, splits = data
    with pytest.raises(InputError, match="imaging.backbones is empty"):
        train_images(cohort, splits, tiny_config(backbones=[]), tmp_path / "run", progress=False)


def test_too_few_patients_for_inner_validation(tmp_path, data):
    """Fold 0's training pool (= fold 1) holds a single negative patient: no stratified
    validation split is possible."""
    cohort, splits = data
    lab = cohort.patients.set_index("patient_id")["label"]
    neg = [p for p in splits["patient_id"] if lab[p] == 0]
    pos = [p for p in splits["patient_id"] if lab[p] == 1]
    fold = {**{p: 0 for p in neg[:-1] + pos[:1]}, **{p: 1 for p in neg[-1:] + pos[1:]}}
    s = splits.assign(fold=splits["patient_id"].map(fold))
    with pytest.raises(
        InputError, match=r"fold 0: too few patients .*inner validation.*val_fraction: 0"
    ):
        train_images(cohort, s, tiny_config(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cuda_out_of_memory_becomes_a_clear_error(tmp_path, data, monkeypatch):
    cohort, splits = data

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "_train_step", oom)
    with pytest.raises(
        MultiboneError,
        match=r"out of GPU memory .* batch_size 8; set imaging.batch_size smaller \(e.g. 4\)",
    ):
        train_images(cohort, splits, tiny_config(), tmp_path / "run", progress=False)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_diverging_loss_is_reported(tmp_path, data, monkeypatch):
    cohort, splits = data
    monkeypatch.setattr(train_module, "_train_step", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(MultiboneError, match="training loss became nan.*lower imaging.lr"):
        train_images(cohort, splits, tiny_config(), tmp_path / "run", progress=False)


def test_cli_reports_unknown_backbone(tmp_path, capsys):
    from multibone.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("imaging:\n  backbones: [e3_tiny]\n")
    code = main(
        [
            "train-images",
            "--config",
            str(cfg),
            "--manifest",
            str(tmp_path / "m.csv"),
            "--out",
            str(tmp_path / "o"),
            "--backbones",
            "e3,densenet",
        ]
    )
    assert code == 2
    assert "unknown backbone 'densenet'; valid backbones are e3" in capsys.readouterr().err
