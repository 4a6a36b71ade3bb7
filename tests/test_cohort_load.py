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
from multibone.errors import CohortValidationError, ConfigError, InputError

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
        ("hip", "appendicular"),  # the joint; the hip bone is pelvis (test_cohort_sites.py)
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


# ---- clinical-only cohorts (a run without backbones) --------------------------------------


def _clinical_csv(folder: Path, rows: list[list[str]], header: list[str]) -> Path:
    path = folder / "clinical.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


CLINICAL = [
    ["P1", "A", "tumor", "14", "M", "distal femur", "12"],
    ["P2", "B", "infection", "52", "F", "L4 vertebra", ""],
    ["P3", "A", "tumor", "30", "F", "hip bone", "abnormal"],
]
CLINICAL_HEADER = ["patient_id", "center", "diagnosis", "age", "sex", "site", "crp"]


def test_clinical_only_manifest_without_image_column(tmp_path):
    path = _clinical_csv(tmp_path, CLINICAL, CLINICAL_HEADER)
    cohort = load_cohort(path, require_images=False, check_images=False)
    assert cohort.patients["patient_id"].tolist() == ["P1", "P2", "P3"]
    assert cohort.patients["location"].tolist() == ["appendicular", "axial", "axial"]
    assert cohort.n_images == 0 and list(cohort.images.columns) == list(IMAGE_COLUMNS)
    assert cohort.summary()["patients"] == 3
    # The same table is refused for a run with images, and the message says why and what to do.
    with pytest.raises(CohortValidationError) as exc:
        load_cohort(path)
    (line,) = exc.value.problems
    assert line.startswith("row 1, column image_path: required column is missing from the header")
    assert "This run needs patient_id, image_path, age, sex; columns found: patient_id," in line
    assert line.endswith(
        "a run without backbones needs no images (multibone validate --clinical-only)"
    )


def test_clinical_only_empty_image_cells_and_mixed_rows(tmp_path):
    _png(tmp_path / "i" / "a.png", 0)
    header = [*CLINICAL_HEADER, "image_path", "roi_x0", "roi_y0", "roi_x1", "roi_y1"]
    rows = [
        [*CLINICAL[0], "i/a.png", "1", "2", "30", "40"],
        [*CLINICAL[1], "", "", "", "", ""],
        [*CLINICAL[2], " ", "", "", "", ""],
    ]
    path = _clinical_csv(tmp_path, rows, header)
    cohort = load_cohort(path, require_images=False)
    assert cohort.n_patients == 3
    # Only the row with an image is an image; it was still checked (it exists and is read).
    assert cohort.images["patient_id"].tolist() == ["P1"]
    assert cohort.images["image_path"].tolist() == [str((tmp_path / "i" / "a.png").resolve())]
    assert cohort.image_rois() == [(1, 2, 30, 40)]
    # With images required, every empty image_path is named.
    with pytest.raises(CohortValidationError) as exc:
        load_cohort(path)
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "row 3, column image_path",
        "row 4, column image_path",
    ]
    # A lesion box on a row without an image points at nothing.
    rows[1][-4:] = ["1", "2", "3", "4"]
    path = _clinical_csv(tmp_path, rows, header)
    with pytest.raises(CohortValidationError, match="row 3, column roi_x0: a lesion box on a row"):
        load_cohort(path, require_images=False)


def test_clinical_only_cases(tmp_path):
    df = pd.DataFrame(CLINICAL, columns=CLINICAL_HEADER)
    cohort = load_cases(df, require_images=False)
    assert cohort.n_patients == 3 and cohort.n_images == 0
    with pytest.raises(CohortValidationError, match="row 1, column image_path"):
        load_cases(df)


def test_numeric_centre_names_in_the_config(tmp_path):
    from multibone.cohort import assign_splits
    from multibone.runconfig import run_config_from_dict

    # YAML reads `external_centers: [2, 3]` as numbers; the manifest's center is text.
    config = run_config_from_dict({"splits": {"external_centers": [2, 3], "n_folds": 2}})
    assert config.splits.external_centers == ["2", "3"]
    rows = [
        [f"P{i}", str(1 + i % 3), "tumor" if i % 2 else "infection", "40", "F", "femur", ""]
        for i in range(24)
    ]
    path = _clinical_csv(tmp_path, rows, CLINICAL_HEADER)
    cohort = load_cohort(path, require_images=False, check_images=False)
    out = assign_splits(cohort.patients, config.splits)
    external = out["split"] == "external"
    assert set(cohort.patients.loc[external, "center"]) == {"2", "3"}
    assert (out.loc[~external, "split"] == "dev").all() and external.sum() == 16
    with pytest.raises(ConfigError, match=r"splits.external_centers\[0\]: expected text, got True"):
        run_config_from_dict({"splits": {"external_centers": [True]}})


def test_case_without_images_for_a_bundle_without_backbones():
    case = {"age": 34, "sex": "F", "site": "left hip bone", "crp": "abnormal"}
    cohort = case_to_cohort(case, require_images=False)
    assert cohort.n_patients == 1 and cohort.n_images == 0
    p = cohort.patients.iloc[0]
    assert (p["location"], p["crp_abnormal"], p["sex"]) == ("axial", 1.0, "F")
    assert case_to_cohort({**case, "images": []}, require_images=False).n_images == 0
    # Other fields are still checked; and with images required the missing list is named.
    with pytest.raises(InputError, match="case field age: age must be a number of years"):
        case_to_cohort({**case, "age": 130}, require_images=False)
    with pytest.raises(InputError, match="case field images: required"):
        case_to_cohort(case)
