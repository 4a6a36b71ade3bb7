"""make_synthetic_cohort / ``multibone synth``: files, determinism, DICOM, refusal."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from multibone.cli import main
from multibone.errors import InputError
from multibone.synthetic import MANIFEST_COLUMNS, make_synthetic_cohort
from multibone.synthetic.writer import ImagePlan, to_stored_12bit, write_dicom

N = 8  # >= 8 images, so the format cycle (3 DICOM in 10) gives at least 2 DICOMs


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    manifest = make_synthetic_cohort(out, n_patients=N, seed=3, progress=False)
    assert manifest == out / "manifest.csv"
    return out


def test_layout_and_manifest(cohort):
    assert {p.name for p in cohort.iterdir()} == {
        "manifest.csv",
        "images",
        "lesion_truth.csv",
        "synthetic.json",
        "SYNTHETIC_README.txt",
    }
    rows = _rows(cohort / "manifest.csv")
    assert list(rows[0]) == MANIFEST_COLUMNS
    assert len({r["patient_id"] for r in rows}) == N
    assert len(rows) >= N
    for r in rows:
        path = cohort / r["image_path"]
        assert not Path(r["image_path"]).is_absolute() and path.is_file()
        assert r["view"] in {"AP", "lateral", "oblique"}
        assert r["diagnosis"] in {"tumor", "infection"} and r["sex"] in {"F", "M"}
        if path.suffix == ".dcm":
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            h, w = int(ds.Rows), int(ds.Columns)
        else:
            with Image.open(path) as im:
                w, h = im.size
        x0, y0, x1, y1 = (int(r[k]) for k in ("roi_x0", "roi_y0", "roi_x1", "roi_y1"))
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, r["image_path"]
    readme = (cohort / "SYNTHETIC_README.txt").read_text()
    assert "SIMULATED" in readme and "Table 1" in readme


def test_png_kinds(cohort):
    modes = set()
    for p in (cohort / "images").glob("*.png"):
        with Image.open(p) as im:
            modes.add(im.mode)
            assert not {"tIME", "date:create"} & set(im.info), im.info
    assert "L" in modes  # 8-bit grey
    assert modes <= {"L", "I;16", "I"}


def test_dicom_files(cohort):
    files = sorted((cohort / "images").glob("*.dcm"))
    assert len(files) >= 2
    photometrics = set()
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID in {"1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"}
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16,
            12,
            11,
            0,
        )
        assert str(ds.PatientName).startswith("SYNTHETIC^PATIENT^")
        assert ds.PatientID and ds.PatientBirthDate and ds.InstitutionName
        assert "WindowCenter" in ds and "WindowWidth" in ds
        assert "RescaleSlope" in ds and "RescaleIntercept" in ds
        px = ds.pixel_array
        assert px.shape == (ds.Rows, ds.Columns) and px.max() <= 4095
        photometrics.add(ds.PhotometricInterpretation)
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_dicom_identifiers_are_not_in_the_tables(cohort):
    tables = "".join(
        (cohort / n).read_text() for n in ("manifest.csv", "lesion_truth.csv", "synthetic.json")
    )
    for f in (cohort / "images").glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for value in (str(ds.PatientName), ds.PatientID, ds.AccessionNumber, ds.PatientBirthDate):
            assert value not in tables


def test_monochrome1_is_inverted_so_bone_stays_bright(tmp_path):
    # A horizontal ramp written both ways; pydicom decodes, the modality LUT and a
    # MONOCHROME1 inversion (what any reader does) must give the same picture back.
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))
    patient = {"patient_id": "P0001", "center": "A", "age": 30, "sex": "F", "site": "femur"}
    decoded = {}
    for pi in ("MONOCHROME1", "MONOCHROME2"):
        path = tmp_path / f"{pi}.dcm"
        plan = ImagePlan(view="AP", file_name="x", kind="dicom", photometric=pi, intercept=-1024.0)
        write_dicom(path, ramp, plan=plan, patient=patient, patient_number=1, seed=0)
        ds = pydicom.dcmread(path)
        v = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds).astype(float)
        lo, hi = -1024.0, 4095 - 1024.0
        x = (v - lo) / (hi - lo)
        decoded[pi] = 1.0 - x if ds.PhotometricInterpretation == "MONOCHROME1" else x
    np.testing.assert_allclose(decoded["MONOCHROME1"], ramp, atol=1 / 4095)
    np.testing.assert_allclose(decoded["MONOCHROME2"], ramp, atol=1 / 4095)
    assert np.array_equal(
        to_stored_12bit(ramp, "MONOCHROME1"), 4095 - to_stored_12bit(ramp, "MONOCHROME2")
    )


def test_same_seed_same_bytes_other_seed_differs(cohort, tmp_path):
    again = make_synthetic_cohort(
        tmp_path / "again", n_patients=N, seed=3, progress=False, workers=2
    )
    assert _digest(again.parent) == _digest(cohort)
    other = make_synthetic_cohort(tmp_path / "other", n_patients=N, seed=4, progress=False)
    a, b = _digest(cohort), _digest(other.parent)
    assert a["manifest.csv"] != b["manifest.csv"]
    assert not set(a.items()) & set(b.items()) - {
        ("SYNTHETIC_README.txt", a["SYNTHETIC_README.txt"])
    }


def test_validates_against_the_data_contract(cohort):
    cohort_mod = pytest.importorskip("multibone.cohort")
    assert cohort_mod.validate_manifest(cohort / "manifest.csv") == []
    loaded = cohort_mod.load_cohort(cohort / "manifest.csv")
    assert len(loaded.patients) == N
    assert set(loaded.patients.location) <= {"axial", "appendicular"}


def test_images_read_back_with_the_io_layer(cohort):
    io = pytest.importorskip("multibone.io")
    for r in _rows(cohort / "manifest.csv"):
        rad = io.read_radiograph(cohort / r["image_path"])
        assert rad.pixels.dtype == np.float32 and 0.0 <= rad.pixels.min() <= rad.pixels.max() <= 1.0
        assert rad.pixels.shape == io.read_image_size(cohort / r["image_path"])


def test_refuses_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="already exists and is not empty; pass --force"):
        make_synthetic_cohort(out, n_patients=2, progress=False)
    assert (out / "keep.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary folder left behind
    make_synthetic_cohort(out, n_patients=2, progress=False, force=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.csv").is_file()


def test_an_empty_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert make_synthetic_cohort(out, n_patients=1, progress=False).is_file()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_patients": 0}, "n_patients must be a whole number >= 1"),
        ({"seed": -2}, "seed must be a whole number >= 0"),
        ({"difficulty": 1.2}, "difficulty must be a number from 0 to 1"),
        ({"difficulty": "hard"}, "difficulty must be a number from 0 to 1"),
        ({"workers": 0}, "workers must be a whole number >= 1"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        make_synthetic_cohort(tmp_path / "x", **{"n_patients": 2, "progress": False, **kwargs})
    assert not any(tmp_path.iterdir())


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--patients", "2", "--seed", "5", "--no-progress"]
    assert main(args) == 0
    assert "simulated" in capsys.readouterr().out
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pass --force" in err
    assert main([*args, "--force"]) == 0
    assert (
        main(["synth", "--out", str(tmp_path / "bad"), "--difficulty", "3", "--no-progress"]) == 2
    )
    assert "difficulty must be a number from 0 to 1" in capsys.readouterr().err
