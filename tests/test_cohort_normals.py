"""Normal controls in the manifest contract (issue #12): ``diagnosis`` ``normal`` is a
patient without a lesion; it has no box, is never the positive class, and the
tumour-vs-infection path leaves it out so cohorts without normals are unchanged."""

from __future__ import annotations

import pandas as pd
import pytest
from test_cohort_validate import _base_rows, _run_validate, _write_images, _write_manifest

from multibone.cohort import NORMAL, diagnoses, load_cohort, validate_manifest
from multibone.errors import InputError
from multibone.pipeline import load_run_cohort, make_splits
from multibone.runconfig import run_config_from_dict


def _normal_row(pid: str = "P4", image: str = "images/p1b.png", **cells) -> dict[str, str]:
    row = {**_base_rows()[2], "patient_id": pid, "image_path": image, "diagnosis": "normal",
           "center": "A", "crp": "", "esr": ""}
    row.update(cells)
    return row


def test_normal_is_a_diagnosis_but_not_a_class(tmp_path):
    assert diagnoses() == ["tumor", "infection"]
    _write_images(tmp_path)
    rows = _base_rows()[2:3] + [_normal_row(image="images/p1a.png")]
    m = _write_manifest(tmp_path, rows)
    assert validate_manifest(m, require_diagnosis=True) == []
    c = load_cohort(m, positive_class="infection")
    assert c.patients.set_index("patient_id").loc["P4", "diagnosis"] == NORMAL
    assert pd.isna(c.patients.set_index("patient_id").loc["P4", "label"])
    for pc in ("infection", "tumor"):
        assert load_cohort(m, positive_class=pc).n_normals == 1
    with pytest.raises(InputError, match="'normal' cannot be the positive class"):
        load_cohort(m, positive_class="normal")


def test_normal_with_a_box_is_named_by_row(tmp_path, capsys, monkeypatch):
    _write_images(tmp_path)
    rows = _base_rows()
    rows.append(_normal_row(image="images/p1b.png", roi_x0="1", roi_y0="2", roi_x1="9", roi_y1="9"))
    rows[1]["image_path"] = "images/p2.png"  # keep every image on one row
    rows[2]["image_path"] = "images/p3.dcm"
    del rows[3]
    m = _write_manifest(tmp_path, rows)
    rc, out, err = _run_validate(tmp_path, m, capsys, monkeypatch)
    assert rc == 2
    assert "row 5: a normal control (diagnosis normal) must have no lesion box" in out + err
    problems = validate_manifest(m)
    assert len([p for p in problems if "normal control" in p]) == 1


def test_bad_diagnosis_message_lists_normal(tmp_path):
    _write_images(tmp_path)
    rows = _base_rows()
    rows[2]["diagnosis"] = "healthy"
    problems = validate_manifest(_write_manifest(tmp_path, rows))
    assert any("row 4, column diagnosis" in p and "normal" in p for p in problems), problems


@pytest.fixture(scope="module")
def cohort_pair(tmp_path_factory):
    """The same 40 tumour/infection patients, alone and with 10 normal controls."""
    from multibone.synthetic import make_synthetic_cohort

    tmp_path = tmp_path_factory.mktemp("pair")
    plain = make_synthetic_cohort(tmp_path / "plain", n_patients=40, seed=3, progress=False)
    mixed = make_synthetic_cohort(tmp_path / "mixed", n_patients=50, seed=3, progress=False,
                                  normals=0.2)
    return plain, mixed


def test_tumour_vs_infection_path_drops_normals(cohort_pair):
    plain, mixed = cohort_pair
    cfg = run_config_from_dict({"splits": {"n_folds": 3, "external_centers": ["B", "C"]},
                                "imaging": {"backbones": ["e3_tiny"]}})
    a = load_run_cohort(plain, cfg, progress=False)
    b = load_run_cohort(mixed, cfg, progress=False)
    assert a.n_normals == 0 and b.n_normals == 0
    assert b.patients["patient_id"].tolist() == a.patients["patient_id"].tolist()
    pd.testing.assert_frame_equal(a.patients, b.patients)
    assert a.images["image_path"].map(lambda p: p.split("/")[-1]).tolist() == \
        b.images["image_path"].map(lambda p: p.split("/")[-1]).tolist()
    # the same folds whether the normal controls are in the manifest or not
    whole = load_run_cohort(mixed, cfg, progress=False, keep_normals=True)
    assert whole.n_normals == 10
    pd.testing.assert_frame_equal(make_splits(a, cfg), make_splits(whole, cfg))
    assert whole.without_normals() is not whole and a.without_normals() is a


def test_synthetic_images_of_lesion_patients_unchanged_by_normals(cohort_pair):
    plain, mixed = cohort_pair
    p = pd.read_csv(plain, dtype=str)
    m = pd.read_csv(mixed, dtype=str)
    head = m[m["diagnosis"] != "normal"].reset_index(drop=True)
    pd.testing.assert_frame_equal(p, head)
    for rel in p["image_path"]:
        assert (plain.parent / rel).read_bytes() == (mixed.parent / rel).read_bytes()
