"""Stacker inputs: clinical feature encoding and the patient-level feature table.

The stacker sees, per patient, one column per backbone (the patient-level
out-of-fold probability from ``train-images``, in [0, 1]) followed by the
clinical features below. Zero backbones is allowed (clinical-only stacking).

Clinical encoding (all float64, NaN = missing):

=================  ==========================================================
``age``            years (0-120), as recorded
``sex_male``       1.0 male, 0.0 female
``location_axial`` 1.0 axial skeleton, 0.0 appendicular
``crp_mg_l``       CRP in mg/L when the manifest gives a number, else NaN
``crp_abnormal``   1.0 abnormal, 0.0 normal; numeric CRP > 10 mg/L is abnormal
``esr_mm_h``       ESR in mm/h when the manifest gives a number, else NaN
``esr_abnormal``   1.0 abnormal, 0.0 normal; numeric ESR > 20 mm/h is abnormal
=================  ==========================================================

Each lab enters twice. The value (mg/L, mm/h) keeps what a flag loses: a CRP
of 180 mg/L and one of 12 mg/L are both "abnormal", but not the same evidence.
The flag stays because cohorts (seed 004 among them) often record only the
category: a row with the word ``abnormal`` has a flag and no value. A lab
that was not measured is NaN in both columns. Nothing is imputed here: the
families that need complete inputs impute inside their pipeline, with the
median of the training folds only, and add a "was missing" column (see
:mod:`multibone.stacking.families`), so no held-out value ever fills a gap and
the report's shortcut check still sees missingness that predicts the label.
The cut-offs match ``multibone.cohort``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from multibone.errors import InputError
from multibone.stacking.config import CLINICAL_FEATURES

#: Upper limit of normal used when only a numeric lab value is given.
CRP_ABNORMAL_MG_L = 10.0
ESR_ABNORMAL_MM_H = 20.0

#: Readable names of the clinical features (for tables, SHAP plots, reports).
FEATURE_LABELS: dict[str, str] = {
    "age": "age",
    "sex_male": "sex",
    "location_axial": "location",
    "crp_mg_l": "CRP (mg/L)",
    "crp_abnormal": "CRP",
    "esr_mm_h": "ESR (mm/h)",
    "esr_abnormal": "ESR",
}

#: Numeric lab feature -> (lab column of the patient table, unit).
LAB_VALUE_FEATURES: dict[str, tuple[str, str]] = {
    "crp_mg_l": ("crp", "mg/L"),
    "esr_mm_h": ("esr", "mm/h"),
}

#: Prefix scikit-learn's MissingIndicator gives its output columns.
MISSING_PREFIX = "missingindicator_"

SCORE_TABLE_COLUMNS: tuple[str, ...] = ("patient_id", "split", "fold", "label")


def _few(ids: Sequence[object], n: int = 5) -> str:
    ids = [str(i) for i in ids]
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def _binary(series: pd.Series, mapping: dict[str, float], column: str) -> pd.Series:
    """Map text categories (case-insensitive) to 1/0, empty/NaN to NaN."""
    out = pd.Series(np.nan, index=series.index, dtype="float64")
    bad = []
    for idx, value in series.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, (int, float, np.integer, np.floating)) and float(value) in (0.0, 1.0):
            out[idx] = float(value)
            continue
        key = str(value).strip().lower()
        if key == "" or key == "nan":
            continue
        if key not in mapping:
            bad.append((idx, value))
            continue
        out[idx] = mapping[key]
    if bad:
        rows = ", ".join(f"row {i}: {v!r}" for i, v in bad[:5])
        raise InputError(
            f"column {column}: unrecognised value(s) ({rows}); expected one of "
            f"{', '.join(sorted(mapping))} or empty for missing"
        )
    return out


def _lab_flag(df: pd.DataFrame, lab: str, cutoff: float) -> pd.Series:
    """Abnormal flag of one lab: the ``<lab>_abnormal`` column when given, else
    derived from ``<lab>`` (numeric > cutoff, or the words normal/abnormal)."""
    flag_col = f"{lab}_abnormal"
    if flag_col in df.columns:
        return _binary(df[flag_col], {"abnormal": 1.0, "normal": 0.0}, flag_col)
    if lab not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    raw = df[lab]
    numeric = pd.to_numeric(raw, errors="coerce")
    words = raw.where(numeric.isna())
    out = _binary(words, {"abnormal": 1.0, "normal": 0.0}, lab)
    has_num = numeric.notna()
    out[has_num] = (numeric[has_num] > cutoff).astype("float64")
    return out


def _lab_value(df: pd.DataFrame, lab: str) -> pd.Series:
    """Numeric value of one lab (mg/L, mm/h): numbers in ``<lab>``, NaN for the
    words normal/abnormal, empty cells or an absent column."""
    if lab not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    values = pd.to_numeric(df[lab], errors="coerce").astype("float64")
    negative = values < 0
    if negative.any():
        raise InputError(
            f"column {lab}: negative value in row(s) {_few(list(df.index[negative]))}; "
            "give the measured value (mg/L for CRP, mm/h for ESR) or normal/abnormal"
        )
    return values


def clinical_features(patients_df: pd.DataFrame) -> pd.DataFrame:
    """Encode the clinical columns of a patient table for the stacker.

    Parameters
    ----------
    patients_df:
        One row per patient, e.g. ``Cohort.patients``. Needs ``age`` (years),
        ``sex`` (F/M), ``location`` (axial/appendicular/empty); uses
        ``crp_abnormal``/``esr_abnormal`` (1/0/NaN) when present, else derives
        them from ``crp`` (mg/L or normal/abnormal) and ``esr`` (mm/h or
        normal/abnormal); absent labs are all-missing.

    Returns
    -------
    DataFrame with the same index and columns ``age, sex_male, location_axial,
    crp_mg_l, crp_abnormal, esr_mm_h, esr_abnormal`` (float64; NaN for
    missing; see module doc).
    """
    if not isinstance(patients_df, pd.DataFrame):
        raise InputError("clinical_features: expected a pandas DataFrame of patients")
    missing = [c for c in ("age", "sex", "location") if c not in patients_df.columns]
    if missing:
        raise InputError(
            f"patient table: missing column(s) {', '.join(missing)}; the stacker needs age, "
            "sex and location (axial/appendicular) for every patient"
        )
    age = pd.to_numeric(patients_df["age"], errors="coerce").astype("float64")
    bad_age = (
        patients_df["age"].notna() & age.isna() & (patients_df["age"].astype(str).str.strip() != "")
    )
    if bad_age.any():
        raise InputError(
            f"column age: not a number in row(s) {_few(list(patients_df.index[bad_age]))}; "
            "give age in years"
        )
    out = pd.DataFrame(
        {
            "age": age,
            "sex_male": _binary(
                patients_df["sex"], {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}, "sex"
            ),
            "location_axial": _binary(
                patients_df["location"], {"axial": 1.0, "appendicular": 0.0}, "location"
            ),
            "crp_mg_l": _lab_value(patients_df, "crp"),
            "crp_abnormal": _lab_flag(patients_df, "crp", CRP_ABNORMAL_MG_L),
            "esr_mm_h": _lab_value(patients_df, "esr"),
            "esr_abnormal": _lab_flag(patients_df, "esr", ESR_ABNORMAL_MM_H),
        },
        index=patients_df.index,
    )
    return out[list(CLINICAL_FEATURES)]


def backbone_columns(scores_df: pd.DataFrame) -> list[str]:
    """Backbone score columns of a ``patient_scores.csv`` table, in table order:
    every column other than ``patient_id, split, fold, label``."""
    return [c for c in scores_df.columns if c not in SCORE_TABLE_COLUMNS]


def build_stacking_table(
    scores_df: pd.DataFrame,
    patients_df: pd.DataFrame,
    *,
    clinical: Sequence[str] = CLINICAL_FEATURES,
    source: str = "patient_scores.csv",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join backbone scores and clinical features into the stacker's table.

    Parameters
    ----------
    scores_df:
        ``patient_scores.csv`` from ``train-images``: ``patient_id, split, fold,
        label`` and one probability column (in [0, 1]) per backbone; a table
        with no backbone columns gives clinical-only stacking.
    patients_df:
        Patient table (``Cohort.patients``) with ``patient_id``, ``label``
        (1.0/0.0/NaN) and the clinical columns of :func:`clinical_features`.
    clinical:
        Clinical features to keep, in order.
    source:
        Name used in error messages for ``scores_df``.

    Returns
    -------
    ``(X, meta)``: X indexed by ``patient_id`` (str) in ``scores_df`` order with
    backbone columns first, then ``clinical``; meta with the same index and
    columns ``split`` (str), ``fold`` (int, -1 outside dev), ``label`` (float
    1.0/0.0/NaN; from ``patients_df`` when it has one).
    """
    missing = [c for c in SCORE_TABLE_COLUMNS if c not in scores_df.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)}; expected patient_id, split, "
            "fold, label and one probability column per backbone (as written by train-images)"
        )
    if "patient_id" not in patients_df.columns:
        raise InputError("patient table: missing column patient_id")
    scores = scores_df.copy()
    scores["patient_id"] = scores["patient_id"].astype(str)
    dup = scores["patient_id"][scores["patient_id"].duplicated()].unique().tolist()
    if dup:
        raise InputError(
            f"{source}: patient_id repeated ({_few(dup)}); one row per patient expected"
        )
    patients = patients_df.copy()
    patients["patient_id"] = patients["patient_id"].astype(str)
    score_ids = set(scores["patient_id"])
    patient_ids = set(patients["patient_id"])
    extra = sorted(score_ids - patient_ids)
    absent = sorted(patient_ids - score_ids)
    if extra or absent:
        parts = []
        if extra:
            parts.append(
                f"{len(extra)} patient(s) in {source} are not in the manifest ({_few(extra)})"
            )
        if absent:
            parts.append(f"{len(absent)} manifest patient(s) have no scores ({_few(absent)})")
        raise InputError(
            "; ".join(parts) + f"; make {source} from this manifest (multibone train-images)"
        )

    backbones = backbone_columns(scores)
    clash = [c for c in backbones if c in CLINICAL_FEATURES]
    if clash:
        raise InputError(f"{source}: column {clash[0]!r} clashes with a clinical feature name")
    for col in backbones:
        values = pd.to_numeric(scores[col], errors="coerce")
        bad = scores.loc[values.isna() & scores[col].notna(), "patient_id"].tolist()
        out_of_range = scores.loc[(values < 0) | (values > 1), "patient_id"].tolist()
        if bad or out_of_range:
            raise InputError(
                f"{source}, column {col}: backbone scores must be probabilities in [0, 1]; "
                f"bad value for patient(s) {_few(bad + out_of_range)}"
            )
        scores[col] = values.astype("float64")

    clin = clinical_features(patients)
    clin.index = patients["patient_id"].to_numpy()
    clin = clin.loc[scores["patient_id"].to_numpy(), list(clinical)]
    X = pd.concat(
        [scores.set_index("patient_id")[backbones], clin],
        axis=1,
    )
    X.index.name = "patient_id"

    fold = pd.to_numeric(scores["fold"], errors="coerce").fillna(-1).astype(int).to_numpy()
    label = pd.to_numeric(scores["label"], errors="coerce").astype("float64").to_numpy()
    if "label" in patients.columns:
        plabel = pd.to_numeric(
            patients.set_index("patient_id").loc[scores["patient_id"].to_numpy(), "label"],
            errors="coerce",
        ).to_numpy(dtype="float64")
        both = ~np.isnan(label) & ~np.isnan(plabel)
        differ = scores["patient_id"].to_numpy()[both & (label != plabel)]
        if len(differ):
            raise InputError(
                f"{source}: label disagrees with the manifest for patient(s) {_few(list(differ))}; "
                "was it made with another positive_class?"
            )
        label = np.where(np.isnan(plabel), label, plabel)
    meta = pd.DataFrame(
        {"split": scores["split"].astype(object).fillna("").astype(str).to_numpy(), "fold": fold, "label": label},
        index=X.index,
    )
    return X, meta


def describe_value(feature: str, value: float) -> str:
    """Readable ``feature: value`` text for plots and sentences.

    ``age = 62 y``, ``sex: male``, ``location: axial``, ``CRP: abnormal``,
    ``CRP = 180 mg/L``, ``CRP: missing`` (value NaN), ``CRP missing: yes`` (a missing-indicator column),
    backbone columns ``e3 score = 0.81``.
    """
    if feature.startswith(MISSING_PREFIX):
        base = feature[len(MISSING_PREFIX) :]
        label = FEATURE_LABELS.get(base, base)
        return f"{label} missing: {'yes' if value >= 0.5 else 'no'}"
    label = FEATURE_LABELS.get(feature, feature)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{label}: missing"
    if feature == "age":
        return f"age = {value:.0f} y"
    if feature == "sex_male":
        return f"sex: {'male' if value >= 0.5 else 'female'}"
    if feature == "location_axial":
        return f"location: {'axial' if value >= 0.5 else 'appendicular'}"
    if feature in LAB_VALUE_FEATURES:
        return f"{label.split(' (')[0]} = {value:.4g} {LAB_VALUE_FEATURES[feature][1]}"
    if feature in ("crp_abnormal", "esr_abnormal"):
        return f"{label}: {'abnormal' if value >= 0.5 else 'normal'}"
    return f"{feature} score = {value:.2f}"


def feature_label(feature: str) -> str:
    """Readable name of a (possibly transformed) feature column."""
    if feature.startswith(MISSING_PREFIX):
        base = feature[len(MISSING_PREFIX) :]
        return f"{FEATURE_LABELS.get(base, base)} missing"
    if feature in FEATURE_LABELS:
        return FEATURE_LABELS[feature]
    return f"{feature} score"
