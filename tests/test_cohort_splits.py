"""Patient-grouped, label-stratified splits; external centres; the leakage guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multibone._config import from_dict
from multibone.cohort.splits import SplitConfig, assign_splits, check_no_leakage, iter_folds
from multibone.errors import ConfigError, InputError, LeakageError


def _patients(n_neg: int = 36, n_pos: int = 24, centers=("A",), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_neg + n_pos
    labels = np.array([0.0] * n_neg + [1.0] * n_pos)
    rng.shuffle(labels)
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "label": labels,
            "center": [centers[i % len(centers)] for i in range(n)],
            "split": [""] * n,
        }
    )


def test_folds_are_stratified_and_grouped():
    patients = _patients()
    out = assign_splits(patients, SplitConfig(n_folds=5, seed=3))
    assert list(out.columns) == ["patient_id", "split", "fold"]
    assert out["patient_id"].tolist() == patients["patient_id"].tolist()
    assert (out["split"] == "dev").all()
    assert sorted(out["fold"].unique()) == [0, 1, 2, 3, 4]
    merged = out.merge(patients, on="patient_id")
    overall = patients["label"].mean()
    for _, fold in merged.groupby("fold"):
        assert len(fold) == 12
        # 36/24 over 5 folds: each fold holds 7-8 negatives and 4-5 positives
        assert abs(fold["label"].mean() - overall) <= 1 / 12 + 1e-9
    # images of a patient never straddle folds
    images = pd.DataFrame(
        {"patient_id": np.repeat(patients["patient_id"].to_numpy(), 3), "image": range(180)}
    ).merge(out, on="patient_id")
    assert (images.groupby("patient_id")["fold"].nunique() == 1).all()
    ks = []
    for k, train, held in iter_folds(out):
        ks.append(k)
        assert not set(train) & set(held)
        assert len(train) + len(held) == 60
    assert ks == [0, 1, 2, 3, 4]


def test_deterministic_and_independent_of_row_order():
    patients = _patients()
    a = assign_splits(patients, SplitConfig(seed=7))
    b = assign_splits(patients, SplitConfig(seed=7))
    pd.testing.assert_frame_equal(a, b)
    shuffled = patients.sample(frac=1.0, random_state=1).reset_index(drop=True)
    c = assign_splits(shuffled, SplitConfig(seed=7))
    assert dict(zip(a["patient_id"], a["fold"], strict=True)) == dict(
        zip(c["patient_id"], c["fold"], strict=True)
    )
    d = assign_splits(patients, SplitConfig(seed=8))
    assert not a["fold"].equals(d["fold"])


def test_external_centres_held_out():
    patients = _patients(centers=("A", "B", "C"))
    out = assign_splits(patients, SplitConfig(n_folds=3, external_centers=["B", "C"]))
    ext = patients["center"].isin(["B", "C"])
    assert (out.loc[ext, "split"] == "external").all()
    assert (out.loc[ext, "fold"] == -1).all()
    assert (out.loc[~ext, "split"] == "dev").all()
    assert set(out.loc[~ext, "fold"]) == {0, 1, 2}


def test_unknown_external_centre_lists_centres_present():
    with pytest.raises(InputError, match=r"centre 'Z' not in the cohort; centres present: A, B, C"):
        assign_splits(_patients(centers=("A", "B", "C")), SplitConfig(external_centers=["Z"]))


def test_test_fraction_is_stratified():
    patients = _patients(n_neg=60, n_pos=40)
    out = assign_splits(patients, SplitConfig(n_folds=4, test_fraction=0.2, seed=1))
    test = out["split"] == "test"
    assert test.sum() == 20
    assert patients.loc[test, "label"].sum() == 8  # 40 % positives, as overall
    assert (out.loc[test, "fold"] == -1).all()
    assert set(out.loc[~test, "fold"]) == {0, 1, 2, 3}


def test_given_split_column_is_honoured():
    patients = _patients()
    patients.loc[:9, "split"] = "test"
    patients.loc[10:14, "split"] = "external"
    out = assign_splits(patients, SplitConfig(n_folds=3))
    assert out["split"].tolist()[:15] == ["test"] * 10 + ["external"] * 5
    assert (out["split"][15:] == "dev").all()


def test_given_split_contradicting_external_centres():
    patients = _patients(centers=("A", "B"))
    patients.loc[1, "split"] = "dev"  # P001 is centre B
    with pytest.raises(InputError, match="P001 whose manifest split says otherwise"):
        assign_splits(patients, SplitConfig(n_folds=3, external_centers=["B"]))


def test_single_class_fold_suggests_fewer_folds():
    patients = _patients(n_neg=20, n_pos=3)
    with pytest.raises(InputError, match=r"use fewer folds \(n_folds <= 3\)"):
        assign_splits(patients, SplitConfig(n_folds=5))
    assert set(assign_splits(patients, SplitConfig(n_folds=3))["fold"]) == {0, 1, 2}


def test_dev_needs_both_classes_and_labels():
    with pytest.raises(InputError, match="only one class"):
        assign_splits(_patients(n_neg=10, n_pos=0), SplitConfig(n_folds=2))
    patients = _patients()
    patients.loc[4, "label"] = np.nan
    with pytest.raises(InputError, match="need a diagnosis; missing for P004"):
        assign_splits(patients)


def test_leakage_guard():
    check_no_leakage(["P1", "P2"], ["P3"])
    with pytest.raises(LeakageError, match=r"fold 1: 2 patients are on both sides \(P2, P3\)"):
        check_no_leakage(["P1", "P2", "P3"], ["P3", "P2", "P4"], what="fold 1")


def test_split_config_from_yaml_mapping():
    cfg = from_dict(SplitConfig, {"n_folds": 3, "external_centers": ["B"]}, "splits")
    assert cfg == SplitConfig(n_folds=3, external_centers=["B"])
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(SplitConfig, {"folds": 3}, "splits")
    with pytest.raises(ConfigError, match="n_folds: must be an integer >= 2"):
        from_dict(SplitConfig, {"n_folds": 1}, "splits")
    with pytest.raises(ConfigError, match="test_fraction"):
        SplitConfig(test_fraction=1.0)
