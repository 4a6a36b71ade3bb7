"""Results out (issue 13): ``multibone explain`` writes the PDF case report, and with
``--dicom-out`` a DICOM Secondary Capture + Comprehensive SR that highdicom/pydicom read
back, referencing the source radiograph. Bad requests exit 2 with nothing written."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multibone.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dashboard_support as support  # noqa: E402

hd = pytest.importorskip("highdicom")
pypdf = pytest.importorskip("pypdf", reason="pypdf not installed: pip install -e '.[dev]'")


def _case_args(mini_run, suffix: str):
    m = pd.read_csv(mini_run / "cohort" / "manifest.csv")
    r = m[m["image_path"].str.lower().str.endswith(suffix)].iloc[0]
    image = mini_run / "cohort" / r.image_path
    roi = (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1))
    args = ["--bundle", str(mini_run / "bundle"), "--image", str(image),
            "--roi", ",".join(map(str, roi)), "--age", "30", "--sex", "F", "--site", "femur"]
    return image, roi, args


def test_explain_dicom_out_reads_back(mini_run, tmp_path):
    import pydicom
    from pydicom.uid import ComprehensiveSRStorage

    image, roi, args = _case_args(mini_run, ".dcm")
    source = pydicom.dcmread(image, stop_before_pixels=True)
    out, dcm = tmp_path / "explain", tmp_path / "pacs"
    code = main(["explain", *args, "--operating-point", "spec90", "--out", str(out),
                 "--dicom-out", str(dcm)])
    assert code == 0
    expl = json.loads((out / "explanation.json").read_text())
    p = expl["prediction"]["probability"]
    decision = expl["prediction"]["decisions"]["spec90"]

    sr = hd.sr.srread(dcm / "multibone_result_sr.dcm")
    assert sr.SOPClassUID == ComprehensiveSRStorage
    # evidence: the source's study, series and instance
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert sr.StudyInstanceUID == ev.StudyInstanceUID == source.StudyInstanceUID
    series = ev.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    items = {it.name.meaning: it for it in sr.ContentSequence}
    assert items["Probability of infection"].value == pytest.approx(p, abs=1e-6)
    assert decision["call"] in items["Decision"].value
    assert "high specificity" in items["Operating point"].value
    region = items["Image Region"]
    x0, y0, x1, y1 = roi
    assert np.array_equal(region.value, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    ref = region.ContentSequence[0]
    assert ref.relationship_type.value == "SELECTED FROM"
    assert ref.referenced_sop_instance_uid == source.SOPInstanceUID

    sc = pydicom.dcmread(dcm / "multibone_cam_sc.dcm")
    assert sc.SOPClassUID.name == "Secondary Capture Image Storage"
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert (sc.Rows, sc.Columns) == (int(source.Rows), int(source.Columns))
    assert sc.PatientID == source.PatientID  # the patient module, for PACS filing

    # the PDF beside: the chosen operating point, the disclaimer, no DICOM identifier
    pdf = (out / "case_report.pdf").read_bytes()
    text = " ".join(" ".join(pg.extract_text() for pg in pypdf.PdfReader(io.BytesIO(pdf)).pages).split())
    assert f"{p:.1%}" in text and "high specificity" in text
    assert "Decision support, not a diagnosis" in text
    for value in support.dicom_identifiers(image) + [source.StudyInstanceUID]:
        assert value not in text, value


def test_dicom_out_without_a_dicom_image_exits_2_and_writes_nothing(mini_run, tmp_path, capsys):
    _, _, args = _case_args(mini_run, ".png")
    out, dcm = tmp_path / "explain", tmp_path / "pacs"
    assert main(["explain", *args, "--out", str(out), "--dicom-out", str(dcm)]) == 2
    assert "needs at least one DICOM --image" in capsys.readouterr().err
    assert not out.exists() and not dcm.exists()


def test_unknown_operating_point_exits_2(mini_run, tmp_path, capsys):
    _, _, args = _case_args(mini_run, ".dcm")
    out = tmp_path / "explain"
    assert main(["explain", *args, "--operating-point", "nope", "--out", str(out)]) == 2
    assert "operating point 'nope'" in capsys.readouterr().err
    assert not out.exists()


def test_existing_dicom_out_is_refused(mini_run, tmp_path, capsys):
    _, _, args = _case_args(mini_run, ".dcm")
    dcm = tmp_path / "pacs"
    dcm.mkdir()
    assert main(["explain", *args, "--out", str(tmp_path / "e"), "--dicom-out", str(dcm)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
