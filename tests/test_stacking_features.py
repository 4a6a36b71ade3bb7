"""Clinical feature encoding and the stacker's input table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multibone.errors import InputError
from multibone.stacking import CLINICAL_FEATURES, build_stacking_table, clinical_features
from multibone.stacking.features import describe_value, feature_label


def _patients(**over) -> pd.DataFrame:
    base = {
        "patient_id": ["P1", "P2", "P3", "P4"],
        "label": [1.0, 0.0, 1.0, 0.0],
        "age": [62.0, 14.0, 45.5, 30.0],
        "sex": ["M", "F", "m", "F"],
        "location": ["axial", "appendicular", "", "appendicular"],
        "crp_abnormal": [1.0, 0.0, np.nan, 0.0],
        "esr_abnormal": [np.nan, 1.0, 1.0, 0.0],
    }
    base.update(over)
    return pd.DataFrame(base)


def test_clinical_features_encoding():
    got = clinical_features(_patients())
    assert list(got.columns) == list(CLINICAL_FEATURES)
    assert got.dtypes.eq("float64").all()
    np.testing.assert_array_equal(got["sex_male"], [1, 0, 1, 0])
    np.testing.assert_array_equal(got["location_axial"], [1, 0, np.nan, 0])
    np.testing.assert_array_equal(got["crp_abnormal"], [1, 0, np.nan, 0])
    np.testing.assert_array_equal(got["age"], [62, 14, 45.5, 30])


@pytest.mark.parametrize(
    ("crp", "expected"),
    [
        (["12", "10", "abnormal", ""], [1.0, 0.0, 1.0, np.nan]),  # > 10 mg/L is abnormal
        ([3.0, 10.5, np.nan, "Normal"], [0.0, 1.0, np.nan, 0.0]),
    ],
)
def test_lab_flag_derived_from_raw_values(crp, expected):
    df = _patients().drop(columns=["crp_abnormal"]).assign(crp=crp)
    np.testing.assert_array_equal(clinical_features(df)["crp_abnormal"], expected)


def test_lab_values_enter_as_numbers_with_the_flag_kept_for_words():
    # 180 and 12 mg/L are both "abnormal"; the value column tells them apart.
    df = _patients().drop(columns=["crp_abnormal"]).assign(crp=[180.0, 12, "abnormal", ""])
    got = clinical_features(df)
    np.testing.assert_array_equal(got["crp_mg_l"], [180.0, 12.0, np.nan, np.nan])
    np.testing.assert_array_equal(got["crp_abnormal"], [1.0, 1.0, 1.0, np.nan])
    # no esr column at all: value and flag both missing, nothing imputed
    assert got["esr_mm_h"].isna().all()


def test_negative_lab_value_is_refused_naming_the_column():
    df = _patients().assign(esr=[5, -3, 40, 10])
    with pytest.raises(InputError, match=r"column esr: negative value in row\(s\) 1"):
        clinical_features(df)


def test_absent_lab_is_all_missing():
    df = _patients().drop(columns=["esr_abnormal"])
    assert clinical_features(df)["esr_abnormal"].isna().all()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sex": ["M", "X", "F", "F"]}, "column sex"),
        ({"location": ["axial", "leg", "", ""]}, "column location"),
        ({"age": [1, "old", 3, 4]}, "column age"),
        ({"crp_abnormal": [1, "high", 0, 0]}, "column crp_abnormal"),
    ],
)
def test_clinical_features_bad_values(change, match):
    with pytest.raises(InputError, match=match):
        clinical_features(_patients(**change))


def test_clinical_features_missing_column():
    with pytest.raises(InputError, match="location"):
        clinical_features(_patients().drop(columns=["location"]))


def _scores(ids=("P1", "P2", "P3", "P4"), **cols) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "patient_id": list(ids),
            "split": ["dev", "dev", "dev", "test"],
            "fold": [0, 1, 0, -1],
            "label": [1.0, 0.0, 1.0, 0.0],
        }
    )
    for k, v in cols.items():
        df[k] = v
    return df


def test_build_table_backbones_first_then_clinical():
    X, meta = build_stacking_table(
        _scores(e3=[0.9, 0.1, 0.7, 0.3], vit=[0.8, 0.2, 0.6, 0.4]), _patients()
    )
    assert list(X.columns) == ["e3", "vit", *CLINICAL_FEATURES]
    assert list(X.index) == ["P1", "P2", "P3", "P4"]
    assert list(meta["split"]) == ["dev", "dev", "dev", "test"]
    assert list(meta["fold"]) == [0, 1, 0, -1]


def test_build_table_without_backbones_is_clinical_only():
    X, _ = build_stacking_table(_scores(), _patients(), clinical=["age", "crp_abnormal"])
    assert list(X.columns) == ["age", "crp_abnormal"]


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        (_scores(ids=("P1", "P2", "P9", "Q7")), r"not in the manifest \(P9, Q7\)"),
        (_scores(ids=("P1", "P2", "P3", "P3")), "patient_id repeated"),
        (_scores(e3=[0.1, 1.5, 0.2, 0.3]), r"column e3.*\[0, 1\].*P2"),
        (_scores(e3=[0.1, "x", 0.2, 0.3]), "column e3"),
        (_scores().drop(columns=["fold"]), "missing column.*fold"),
        (
            _scores(e3=[0.9, 0.1, 0.7, 0.3]).assign(label=[0.0, 0.0, 1.0, 0.0]),
            "label disagrees.*P1",
        ),
    ],
)
def test_build_table_bad_input(scores, match):
    with pytest.raises(InputError, match=match):
        build_stacking_table(scores, _patients())


def test_build_table_manifest_patient_without_scores():
    with pytest.raises(InputError, match=r"have no scores \(P4\)"):
        build_stacking_table(_scores().iloc[:3], _patients())


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("age", 62.4, "age = 62 y"),
        ("sex_male", 1.0, "sex: male"),
        ("location_axial", 0.0, "location: appendicular"),
        ("crp_abnormal", 1.0, "CRP: abnormal"),
        ("crp_abnormal", float("nan"), "CRP: missing"),
        ("crp_mg_l", 180.0, "CRP = 180 mg/L"),
        ("esr_mm_h", 35.0, "ESR = 35 mm/h"),
        ("missingindicator_esr_abnormal", 1.0, "ESR missing: yes"),
        ("e3", 0.8123, "e3 score = 0.81"),
    ],
)
def test_describe_value(feature, value, text):
    assert describe_value(feature, value) == text


def test_feature_label():
    assert feature_label("crp_abnormal") == "CRP"
    assert feature_label("missingindicator_crp_abnormal") == "CRP missing"
    assert feature_label("vit") == "vit score"
