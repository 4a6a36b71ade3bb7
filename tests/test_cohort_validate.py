"""Manifest validation through ``multibone validate``: every bad input named by row/column/patient.

Row numbers are spreadsheet rows: header = row 1, first data row = row 2.
Images are tiny real files (PNG/JPEG by Pillow, DICOM by pydicom) read by multibone.io.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multibone.cli import main
from multibone.cohort import validate_manifest

COLUMNS = [
    "patient_id",
    "image_path",
    "view",
    "roi_x0",
    "roi_y0",
    "roi_x1",
    "roi_y1",
    "center",
    "diagnosis",
    "subtype",
    "age",
    "sex",
    "site",
    "crp",
    "esr",
]
W, H = 64, 48  # every test PNG is 64 px wide, 48 px high


def _png(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((H, W)) * 255).astype(np.uint8)).save(path)


def _dicom(path: Path, *, with_pixels: bool = True) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = H, W
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if with_pixels:
        arr = np.random.default_rng(1).integers(0, 4096, size=(H, W), dtype=np.uint16)
        ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _base_rows() -> list[dict[str, str]]:
    """Valid cohort: P1 two images (rows 2, 3), P2 (row 4), P3 (row 5, DICOM)."""
    common = {"view": "AP", "roi_x0": "", "roi_y0": "", "roi_x1": "", "roi_y1": "", "subtype": ""}
    return [
        {
            **common,
            "patient_id": "P1",
            "image_path": "images/p1a.png",
            "center": "A",
            "diagnosis": "tumor",
            "age": "14",
            "sex": "M",
            "site": "distal femur",
            "crp": "4",
            "esr": "normal",
            "roi_x0": "5",
            "roi_y0": "6",
            "roi_x1": "40",
            "roi_y1": "30",
        },
        {
            **common,
            "patient_id": "P1",
            "image_path": "images/p1b.png",
            "view": "lateral",
            "center": "A",
            "diagnosis": "tumor",
            "age": "14",
            "sex": "M",
            "site": "distal femur",
            "crp": "4",
            "esr": "normal",
        },
        {
            **common,
            "patient_id": "P2",
            "image_path": "images/p2.png",
            "center": "B",
            "diagnosis": "infection",
            "age": "52",
            "sex": "F",
            "site": "L4 vertebra",
            "crp": "",
            "esr": "65",
        },
        {
            **common,
            "patient_id": "P3",
            "image_path": "images/p3.dcm",
            "center": "A",
            "diagnosis": "tumor",
            "age": "30",
            "sex": "F",
            "site": "humerus",
            "crp": "abnormal",
            "esr": "",
        },
    ]


def _write_images(folder: Path) -> None:
    _png(folder / "images" / "p1a.png", 1)
    _png(folder / "images" / "p1b.png", 2)
    _png(folder / "images" / "p2.png", 3)
    _dicom(folder / "images" / "p3.dcm")


def _write_manifest(
    folder: Path, rows: list[dict[str, str]], columns: list[str] | None = None
) -> Path:
    columns = columns or COLUMNS
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _run_validate(folder: Path, manifest: Path, capsys, monkeypatch, *extra: str):
    monkeypatch.chdir(folder)
    before = _snapshot(folder)
    rc = main(["validate", str(manifest), *extra])
    out = capsys.readouterr()
    assert _snapshot(folder) == before, "validate must write nothing"
    return rc, out.out, out.err


@pytest.fixture
def cohort_dir(tmp_path: Path) -> Path:
    _write_images(tmp_path)
    return tmp_path


# ---- the table of bad inputs -------------------------------------------------------------

Mutation = Callable[[list[dict[str, str]], Path], list[str] | None]


def _set(row: int, **cells: str) -> Mutation:
    """Set cells of spreadsheet row ``row`` (2 = first data row)."""

    def mutate(rows: list[dict[str, str]], folder: Path) -> None:
        rows[row - 2].update(cells)

    return mutate


def _drop_column(name: str) -> Mutation:
    def mutate(rows: list[dict[str, str]], folder: Path) -> list[str]:
        for r in rows:
            r.pop(name)
        return [c for c in COLUMNS if c != name]

    return mutate


def _file(row: int, name: str, write: Callable[[Path], None]) -> Mutation:
    def mutate(rows: list[dict[str, str]], folder: Path) -> None:
        write(folder / "images" / name)
        rows[row - 2]["image_path"] = f"images/{name}"

    return mutate


def _empty_file(p: Path) -> None:
    p.write_bytes(b"")


def _text_as_dcm(p: Path) -> None:
    p.write_text("patient_id,age\nthis is not an image\n", encoding="utf-8")


def _truncated_jpeg(p: Path) -> None:
    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((H, W)) * 255).astype(np.uint8)).save(p, format="JPEG", quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _dicom_no_pixels(p: Path) -> None:
    _dicom(p, with_pixels=False)


BAD_INPUTS = [
    pytest.param(
        _drop_column("age"),
        "row 1, column age: required column is missing from the header",
        id="missing-required-column",
    ),
    pytest.param(
        _set(4, age="abc"),
        "row 4, column age: age must be a number of years from 0 to 120; got 'abc'",
        id="age-not-a-number",
    ),
    pytest.param(
        _set(4, age="150"),
        "row 4, column age: age must be a number of years from 0 to 120; got '150'",
        id="age-out-of-range",
    ),
    pytest.param(
        _set(5, sex="X"), "row 5, column sex: sex must be F or M; got 'X'", id="sex-unknown"
    ),
    pytest.param(
        _set(4, crp="12 mg/dl"),
        "row 4, column crp: CRP must be a number in mg/L from 0 to 1000, or normal/abnormal, "
        "or empty when missing (convert mg/dL to mg/L by multiplying by 10); got '12 mg/dl'",
        id="crp-with-unit",
    ),
    pytest.param(
        _set(3, diagnosis="infection"),
        "patient P1: column diagnosis disagrees across rows 2, 3 ('tumor' vs 'infection')",
        id="diagnosis-conflict",
    ),
    pytest.param(
        _set(3, age="41"),
        "patient P1: column age disagrees across rows 2, 3 ('14' vs '41')",
        id="age-conflict",
    ),
    pytest.param(
        _set(4, image_path="images/p1a.png"),
        "row 4, column image_path: 'images/p1a.png' is listed twice (first on row 2)",
        id="duplicate-image-path",
    ),
    pytest.param(
        _set(4, image_path="images/nothere.png"),
        "row 4, column image_path: file not found: ",
        id="missing-file",
    ),
    pytest.param(
        _file(4, "empty.png", _empty_file),
        "row 4, column image_path: file is empty (0 bytes)",
        id="zero-byte-file",
    ),
    pytest.param(
        _file(5, "text.dcm", _text_as_dcm),
        "row 5, column image_path: cannot read the image",
        id="text-file-named-dcm",
    ),
    pytest.param(
        _file(4, "cut.jpg", _truncated_jpeg),
        "row 4, column image_path: cannot read the image",
        id="truncated-jpeg",
    ),
    pytest.param(
        _file(5, "nopix.dcm", _dicom_no_pixels),
        "row 5, column image_path: cannot read the image",
        id="dicom-without-pixel-data",
    ),
    pytest.param(
        _set(2, roi_x1="100"),
        f"row 2, column roi_x1: the lesion box reaches x = 100 but the image is {W} px wide",
        id="roi-outside-image-x",
    ),
    pytest.param(
        _set(3, roi_x0="0", roi_y0="10", roi_x1="20", roi_y1="49"),
        f"row 3, column roi_y1: the lesion box reaches y = 49 but the image is {H} px high",
        id="roi-outside-image-y",
    ),
    pytest.param(
        _set(2, roi_x0="10", roi_x1="10"),
        "row 2, column roi_x1: roi_x1 (10) must be greater than roi_x0 (10)",
        id="zero-area-roi",
    ),
    pytest.param(
        _set(3, roi_x0="3", roi_y0="4"),
        "row 3, column roi_x1: lesion box partly given (roi_x0, roi_y0 set; roi_x1, roi_y1 empty)",
        id="roi-partial",
    ),
    pytest.param(
        _set(2, roi_y0="-3"),
        "row 2, column roi_y0: roi_y0 must be a whole number of pixels >= 0",
        id="roi-negative",
    ),
    pytest.param(
        _set(4, site="wing"),
        "row 4, column site: unknown site 'wing' for patient P2: cannot tell axial from "
        "appendicular; give a location column (axial or appendicular)",
        id="unknown-site-without-location",
    ),
    pytest.param(
        _set(4, view="PA"),
        "row 4, column view: view must be one of AP, lateral, oblique, other",
        id="view-unknown",
    ),
    pytest.param(
        _set(2, patient_id=""),
        "row 2, column patient_id: required value is empty",
        id="patient-id-empty",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), BAD_INPUTS)
def test_bad_input_is_named_and_exits_2(cohort_dir, capsys, monkeypatch, mutate, expected):
    rows = _base_rows()
    columns = mutate(rows, cohort_dir)
    manifest = _write_manifest(cohort_dir, rows, columns)
    rc, out, err = _run_validate(cohort_dir, manifest, capsys, monkeypatch)
    assert rc == 2
    assert expected in err, err
    assert out == ""
    # The same problem comes back from the API.
    assert any(expected in p for p in validate_manifest(manifest))


def test_patient_in_two_splits(cohort_dir, capsys, monkeypatch):
    rows = _base_rows()
    for r in rows:
        r["split"] = "dev"
    rows[1]["split"] = "test"
    manifest = _write_manifest(cohort_dir, rows, [*COLUMNS, "split"])
    rc, _, err = _run_validate(cohort_dir, manifest, capsys, monkeypatch)
    assert rc == 2
    assert (
        "patient P1: column split disagrees across rows 2, 3 ('dev' vs 'test'); a patient "
        "must sit in one split only" in err
    )


def test_disagreement_names_the_odd_row(cohort_dir):
    rows = _base_rows()
    rows.append({**rows[1], "image_path": "images/p1c.png", "diagnosis": "infection"})
    _png(cohort_dir / "images" / "p1c.png", 7)
    manifest = _write_manifest(cohort_dir, rows)
    problems = validate_manifest(manifest)
    assert problems == [
        "patient P1: column diagnosis disagrees across rows 2, 3, 6 ('tumor' on rows 2, 3 vs "
        "'infection' on row 6); every image row of a patient must repeat the same value"
    ]


def test_all_problems_reported_at_once(cohort_dir, capsys, monkeypatch):
    rows = _base_rows()
    rows[0]["age"] = "abc"  # row 2
    rows[2]["sex"] = "X"  # row 4
    rows[3]["image_path"] = "images/gone.dcm"  # row 5
    manifest = _write_manifest(cohort_dir, rows)
    problems = validate_manifest(manifest)
    assert len(problems) == 3, problems
    assert problems[0].startswith("row 2, column age:")
    assert problems[1].startswith("row 4, column sex:")
    assert problems[2].startswith("row 5, column image_path: file not found")
    rc, _, err = _run_validate(cohort_dir, manifest, capsys, monkeypatch)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[:3] == problems
    assert lines[3].endswith("3 problems; nothing written")


def test_valid_manifest_exits_0_with_summary(cohort_dir, capsys, monkeypatch):
    manifest = _write_manifest(cohort_dir, _base_rows())
    assert validate_manifest(manifest) == []
    rc, out, err = _run_validate(cohort_dir, manifest, capsys, monkeypatch)
    assert rc == 0, err
    assert "valid" in out
    assert "patients: 3   images: 4" in out
    assert "tumor 2 / 3" in out and "infection 1 / 1" in out
    assert "A 2, B 1" in out
    assert "CRP 33 %" in out and "ESR 33 %" in out


def test_no_images_skips_files(cohort_dir, capsys, monkeypatch):
    rows = _base_rows()
    rows[2]["image_path"] = "images/nothere.png"
    manifest = _write_manifest(cohort_dir, rows)
    rc, out, _ = _run_validate(cohort_dir, manifest, capsys, monkeypatch, "--no-images")
    assert rc == 0
    assert "not opened" in out


def test_headers_only_misses_dicom_without_pixels_but_full_check_catches_it(cohort_dir):
    _dicom_no_pixels(cohort_dir / "images" / "p3.dcm")
    manifest = _write_manifest(cohort_dir, _base_rows())
    assert validate_manifest(manifest, decode_images=False) == []
    assert len(validate_manifest(manifest)) == 1


def test_row_numbers_count_records_not_lines(cohort_dir):
    # A quoted value spanning lines is one spreadsheet row.
    rows = _base_rows()
    rows[0]["subtype"] = rows[1]["subtype"] = "giant cell\ntumour"
    rows[2]["age"] = "abc"
    manifest = _write_manifest(cohort_dir, rows)
    assert validate_manifest(manifest) == [
        "row 4, column age: age must be a number of years from 0 to 120; got 'abc'"
    ]


def test_case_insensitive_enums_aliases_and_unknown_columns(cohort_dir):
    rows = _base_rows()
    rows[0].update(diagnosis="Tumour", sex="m", view="ap")
    rows[1].update(diagnosis="TUMOR", sex="M", view="Lateral")
    rows[0]["notes"] = "kept"
    manifest = _write_manifest(cohort_dir, rows, [*COLUMNS, "notes"])
    assert validate_manifest(manifest) == []


def test_semicolon_file_gets_a_hint(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("patient_id;image_path;age;sex\nP1;a.png;3;F\n", encoding="utf-8")
    [problem] = validate_manifest(path)
    assert problem.startswith("row 1: the header is one column")
    assert "separated by ';'" in problem


def test_missing_manifest_is_an_error(tmp_path, capsys):
    rc = main(["validate", str(tmp_path / "none.csv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "manifest not found" in err


def test_ragged_row_and_duplicate_header(cohort_dir):
    path = cohort_dir / "m.csv"
    path.write_text(
        "patient_id,image_path,age,sex,Age\nP1,images/p1a.png,14,M,14\nP2,images/p2.png,52,F,5,2\n",
        encoding="utf-8",
    )
    assert validate_manifest(path) == [
        "row 1, column age: the header has this column twice (columns 3 and 5); keep one",
        "row 3: 6 values but the header names 5 columns; a value containing a comma must be quoted",
    ]


def test_clinical_only_manifest(tmp_path, capsys, monkeypatch):
    # No image column at all: fine for a run without backbones, refused for one with images.
    columns = [c for c in COLUMNS if c != "image_path" and not c.startswith("roi_")]
    manifest = _write_manifest(tmp_path, _base_rows(), columns)
    rc, out, err = _run_validate(tmp_path, manifest, capsys, monkeypatch, "--clinical-only")
    assert rc == 0, err
    assert f"{manifest}: valid for a clinical-only run" in out
    assert "columns a clinical-only run needs: patient_id, age, sex" in out
    assert "images: 0 (not opened (--clinical-only))" in out
    rc, out, err = _run_validate(tmp_path, manifest, capsys, monkeypatch, "--require-diagnosis")
    assert rc == 2 and out == ""
    assert "row 1, column image_path: required column is missing" in err
    assert "This run needs patient_id, image_path, age, sex;" in err
    assert "(multibone validate --clinical-only)" in err
    assert validate_manifest(manifest, require_images=False) == []


def test_clinical_only_does_not_open_images(cohort_dir, capsys, monkeypatch):
    rows = _base_rows()
    rows[2]["image_path"] = "images/nothere.png"  # a path the clinical-only run never reads
    rows[3]["image_path"] = ""
    manifest = _write_manifest(cohort_dir, rows)
    rc, out, err = _run_validate(
        cohort_dir, manifest, capsys, monkeypatch, "--clinical-only", "--require-diagnosis"
    )
    assert rc == 0, err
    assert "columns a clinical-only run needs: patient_id, age, sex, diagnosis" in out
    assert "patients: 3   images: 3" in out
    rc, _, err = _run_validate(cohort_dir, manifest, capsys, monkeypatch)
    assert rc == 2
    assert "row 4, column image_path: file not found" in err
    assert "row 5, column image_path: required value is empty" in err
