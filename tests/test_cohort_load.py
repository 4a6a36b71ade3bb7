"""Cohort tables from a manifest: load_cohort, load_cases, case_to_cohort."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from multibone.cohort import (
    IMAGE_COLUMNS,
    PATIENT_COLUMNS,
    SITE_LOCATION,
    case_to_cohort,
    load_cases,
    load_cohort,
    location_for_site,
)
from multibone.errors import CohortValidationError, InputError

W, H = 64, 48


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(seed).random((H, W)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


ROWS = [
    # patient, image, roi, center, diagnosis, age, sex, site, location, crp, esr
    ("P1", "i/a.png", (5, 6, 40, 30), "A", "tumor", "14", "M", "Distal Femur", "", "12", "normal"),
    ("P1", "i/b.png", None, "A", "tumour", "14.0", "m", "distal femur", "", "12", "normal"),
    ("P2", "i/c.png", None, "B", "infection", "52", "F", "L4 vertebra", "", "", "65"),
    ("P3", "i/d.png", None, "A", "tumor", "30", "F", "scapula", "axial", "10", "20"),
    ("P4", "i/e.png", None, "C", "infection", "61.5", "M", "", "", "abnormal", ""),
]


def _write(folder: Path, rows=ROWS, extra_header: tuple[str, ...] = ()) -> Path:
    header = [
        "patient_id",
        "image_path",
        "roi_x0",
        "roi_y0",
        "roi_x1",
        "roi_y1",
        "center",
        "diagnosis",
        "age",
        "sex",
        "site",
        "location",
        "crp",
        "esr",
        *extra_header,
    ]
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, (pid, img, roi, center, diag, age, sex, site, loc, crp, esr) in enumerate(rows):
            _png(folder / img, i)
            box = list(roi) if roi else ["", "", "", ""]
            w.writerow(
                [
                    pid,
                    img,
                    *box,
                    center,
                    diag,
                    age,
                    sex,
                    site,
                    loc,
                    crp,
                    esr,
                    *(f"note{i}" for _ in extra_header),
                ]
            )
    return path


def test_load_cohort_tables(tmp_path):
    cohort = load_cohort(_write(tmp_path, extra_header=("notes",)))
    p, im = cohort.patients, cohort.images
    assert list(p.columns) == list(PATIENT_COLUMNS)
    assert list(im.columns) == [*IMAGE_COLUMNS, "notes"]
    assert isinstance(p.index, pd.RangeIndex)
    assert p["patient_id"].tolist() == ["P1", "P2", "P3", "P4"]
    assert p["diagnosis"].tolist() == ["tumor", "infection", "tumor", "infection"]
    assert p["label"].tolist() == [0.0, 1.0, 0.0, 1.0]  # positive class: infection
    assert p["age"].tolist() == [14.0, 52.0, 30.0, 61.5]
    assert p["sex"].tolist() == ["M", "F", "F", "M"]
    assert p["site"].tolist() == ["distal femur", "l4 vertebra", "scapula", ""]
    # derived from site; an explicit location wins (P3); no site and no location -> ""
    assert p["location"].tolist() == ["appendicular", "axial", "axial", ""]
    # CRP: numeric > 10 mg/L abnormal, exactly 10 normal, words map to 1/0 with NaN value
    assert p["crp"].tolist()[0] == 12.0 and math.isnan(p["crp"][1]) and p["crp"][2] == 10.0
    assert p["crp_abnormal"].tolist()[0] == 1.0 and p["crp_abnormal"][2] == 0.0
    assert math.isnan(p["crp_abnormal"][1]) and p["crp_abnormal"][3] == 1.0
    assert math.isnan(p["crp"][3])
    assert p["esr_abnormal"].tolist()[:3] == [0.0, 1.0, 0.0] and math.isnan(p["esr_abnormal"][3])
    assert p["center"].tolist() == ["A", "B", "A", "C"]
    assert p["split"].tolist() == ["", "", "", ""]
    for col in ("label", "age", "crp", "crp_abnormal", "esr", "esr_abnormal"):
        assert p[col].dtype == np.float64

    assert im["patient_id"].tolist() == ["P1", "P1", "P2", "P3", "P4"]
    assert all(Path(x).is_absolute() and Path(x).is_file() for x in im["image_path"])
    assert im["row"].tolist() == [2, 3, 4, 5, 6]
    assert im["roi_x0"].dtype == np.float64 and math.isnan(im["roi_x0"][1])
    assert im["notes"].tolist()[0] == "note0"
    assert cohort.image_rois() == [(5, 6, 40, 30), None, None, None, None]
    assert cohort.root == tmp_path.resolve()


def test_positive_class_tumor(tmp_path):
    cohort = load_cohort(_write(tmp_path), positive_class="tumor")
    assert cohort.patients["label"].tolist() == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(InputError, match="positive_class: 'cancer' is not a diagnosis"):
        load_cohort(tmp_path / "manifest.csv", positive_class="cancer")


def test_load_cohort_requires_diagnosis_load_cases_does_not(tmp_path):
    rows = [(*r[:4], "", *r[5:]) if r[0] == "P2" else r for r in ROWS]
    path = _write(tmp_path, rows)
    with pytest.raises(
        CohortValidationError, match="row 4, column diagnosis: empty for patient P2"
    ):
        load_cohort(path)
    cases = load_cases(path)
    assert math.isnan(cases.patients["label"][1])


def test_load_cohort_raises_with_every_problem(tmp_path):
    rows = list(ROWS)
    rows[2] = (*rows[2][:5], "abc", *rows[2][6:])
    rows[3] = (*rows[3][:6], "X", *rows[3][7:])
    with pytest.raises(CohortValidationError) as info:
        load_cohort(_write(tmp_path, rows))
    assert [p.split(":")[0] for p in info.value.problems] == [
        "row 4, column age",
        "row 5, column sex",
    ]


def test_load_cases_from_dataframe(tmp_path):
    _png(tmp_path / "x.png", 0)
    df = pd.DataFrame(
        {
            "patient_id": ["C1"],
            "image_path": ["x.png"],
            "age": [40.0],
            "sex": ["F"],
            "crp": [np.nan],
            "roi_x0": [1.0],
            "roi_y0": [2.0],
            "roi_x1": [30.0],
            "roi_y1": [40.0],
        }
    )
    cases = load_cases(df, root=tmp_path)
    assert cases.patients["age"].tolist() == [40.0]
    assert math.isnan(cases.patients["crp_abnormal"][0])
    assert cases.image_rois() == [(1, 2, 30, 40)]
    df.loc[0, "roi_x1"] = 100.0
    with pytest.raises(CohortValidationError, match="row 2, column roi_x1: the lesion box reaches"):
        load_cases(df, root=tmp_path)


def test_case_to_cohort(tmp_path):
    _png(tmp_path / "a.png", 0)
    case = {
        "age": "34",
        "sex": "female",
        "site": "Proximal tibia",
        "crp": 25,
        "esr": None,
        "images": [{"path": "a.png", "roi": [1, 2, 30, 40], "view": "ap"}],
    }
    cohort = case_to_cohort(case, root=tmp_path)
    p = cohort.patients.iloc[0]
    assert (p["age"], p["sex"], p["location"], p["crp_abnormal"]) == (
        34.0,
        "F",
        "appendicular",
        1.0,
    )
    assert math.isnan(p["esr_abnormal"])
    assert cohort.images["view"].tolist() == ["AP"]
    case["images"][0]["roi"] = [1, 2, 300, 40]
    with pytest.raises(CohortValidationError, match="case image 1, field roi_x1: the lesion box"):
        case_to_cohort(case, root=tmp_path)
    with pytest.raises(InputError, match="case field age: age must be a number of years"):
        case_to_cohort({**case, "age": 130}, root=tmp_path)


def test_select_subset(tmp_path):
    cohort = load_cohort(_write(tmp_path))
    sub = cohort.select(["P2", "P1"])
    assert sub.patients["patient_id"].tolist() == ["P1", "P2"]
    assert sub.images["patient_id"].tolist() == ["P1", "P1", "P2"]
    with pytest.raises(InputError, match="not in the cohort: P9"):
        cohort.select(["P9"])


@pytest.mark.parametrize(
    ("site", "location"),
    [
        ("femur", "appendicular"),
        ("Distal femur", "appendicular"),
        ("left tibia", "appendicular"),
        ("proximal humerus", "appendicular"),
        ("metatarsals", "appendicular"),
        ("scapula", "appendicular"),
        ("clavicle", "appendicular"),
        ("lumbar spine", "axial"),
        ("L4 vertebra", "axial"),
        ("pelvis", "axial"),
        ("iliac wing", "axial"),
        ("sacrum", "axial"),
        ("rib", "axial"),
        ("skull", "axial"),
        ("hip", ""),
        ("femur and pelvis", ""),
        ("", ""),
        ("wing", ""),
    ],
)
def test_site_to_location(site, location):
    assert location_for_site(site) == location


def test_site_map_values():
    assert set(SITE_LOCATION.values()) == {"axial", "appendicular"}
    assert all(k == k.lower() for k in SITE_LOCATION)
