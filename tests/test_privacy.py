"""Privacy audit (issue #17 item 4): no identifying DICOM value leaves multibone.

The synthetic DICOMs carry fake but realistic identifiers (patient name and id, birth
date, accession number, institution, referring physician, study/series/instance UIDs,
study date). Everything a run and a case produce is searched for every one of them:
the files of the mini run (outside its input cohort), the output of ``predict``,
``explain`` (PNGs, JSON, HTML and PDF reports) and ``inspect``, the ``-v`` (debug) logs
of every command, and the dashboard's page and case report. Zero hits are allowed.

``--dicom-out`` (a DICOM result that joins the patient's study) is the one output meant
to carry identifiers, and is not searched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from multibone.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: identifying elements read from each synthetic DICOM (whole values of >= 4 characters)
TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "StudyDate",
)


def _identifiers(dicoms: list[Path]) -> dict[str, str]:
    """value -> the tag it came from (plus the name with '^' as spaces)."""
    import pydicom

    found: dict[str, str] = {}
    for path in dicoms:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for tag in TAGS:
            value = ds.get(tag)
            if value is None:
                continue
            items = (
                value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
            )
            for item in items:
                text = str(item).strip()
                if len(text) >= 4:
                    found[text] = tag
                    if "^" in text:
                        found[text.replace("^", " ").strip()] = tag
    return found


def _hits(blobs: dict[str, bytes], identifiers: dict[str, str]) -> list[str]:
    """``where: tag value`` for every identifier found in any output.

    Whole-value match: a digits-only value (date, id, UID) must not be part of a longer
    number or UID (``bytes.find``, then the neighbours are checked).
    """
    found = []
    for value, tag in identifiers.items():
        needle = value.encode()
        numeric = value.replace(".", "").isdigit()
        for where, data in blobs.items():
            start = data.find(needle)
            while start >= 0:
                end = start + len(needle)
                before, after = data[start - 1 : start], data[end : end + 2]
                inside = numeric and (
                    before.isdigit()
                    or before == b"."
                    or after[:1].isdigit()
                    or (after[:1] == b"." and after[1:2].isdigit())
                )
                if not inside:
                    found.append(f"{where}: {tag} {value!r}")
                    break
                start = data.find(needle, start + 1)
    return found


def _files(folder: Path, skip: str | None = None) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (skip and skip in p.relative_to(folder).parts)
    }


@pytest.fixture(scope="module")
def cohort(mini_run):
    m = pd.read_csv(mini_run / "cohort" / "manifest.csv", dtype=str, keep_default_na=False)
    dicoms = m[m["image_path"].str.lower().str.endswith(".dcm")]
    assert len(dicoms) >= 5, "the mini cohort holds too few DICOMs to audit"
    paths = [mini_run / "cohort" / p for p in m["image_path"] if p.lower().endswith(".dcm")]
    ids = _identifiers(paths)
    assert len(ids) >= 8 * len(dicoms) // 2, ids  # enough fakes to make the audit mean something
    return dicoms.iloc[0], paths, ids


def test_no_identifier_in_run_outputs_or_prediction(mini_run, cohort, tmp_path, caplog, capsys):
    """Fast form: the run's files and an in-process ``predict`` with every log record
    (DEBUG) captured. The slow test below runs every command as a real process."""
    row, _, ids = cohort
    image = mini_run / "cohort" / row.image_path
    blobs = _files(mini_run, skip="cohort")
    caplog.set_level("DEBUG")
    argv = [
        "predict",
        "--bundle",
        str(mini_run / "bundle"),
        "--image",
        str(image),
        "--age",
        row.age,
        "--sex",
        row.sex,
        "--site",
        row.site,
        "--crp",
        row.crp,
        "--esr",
        row.esr,
    ]
    assert main(argv) == 0
    assert main(["inspect", str(image), "--png", str(tmp_path / "inspect.png")]) == 0
    out = capsys.readouterr()
    blobs.update(
        {
            "stdout": out.out.encode(),
            "stderr": out.err.encode(),
            "log records": caplog.text.encode(),
        }
    )
    blobs.update(_files(tmp_path))
    hits = _hits(blobs, ids)
    assert not hits, "identifying DICOM values found:\n" + "\n".join(hits[:20])


@pytest.mark.slow
def test_no_identifier_in_run_outputs_case_outputs_or_logs(mini_run, cohort, tmp_path):
    row, _, ids = cohort
    image = mini_run / "cohort" / row.image_path
    case = [
        "--image",
        str(image),
        "--roi",
        f"{row.roi_x0},{row.roi_y0},{row.roi_x1},{row.roi_y1}",
        "--age",
        row.age,
        "--sex",
        row.sex,
        "--site",
        row.site,
        "--crp",
        row.crp,
        "--esr",
        row.esr,
    ]
    blobs = _files(mini_run, skip="cohort")
    assert len(blobs) > 20

    commands = {
        "predict": ["-v", "predict", "--bundle", str(mini_run / "bundle"), *case],
        "explain": [
            "-v",
            "explain",
            "--bundle",
            str(mini_run / "bundle"),
            *case,
            "--out",
            str(tmp_path / "explain"),
        ],
        "inspect": ["-v", "inspect", str(image), "--png", str(tmp_path / "inspect.png")],
        "validate": ["-v", "validate", str(mini_run / "cohort" / "manifest.csv")],
    }
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src")
    )
    for name, argv in commands.items():  # real processes: the CLI's own log handler and format
        proc = subprocess.run(
            [sys.executable, "-m", "multibone", *argv], env=env, capture_output=True, timeout=600
        )
        assert proc.returncode == 0, (name, proc.stderr.decode()[-2000:])
        blobs[f"{name} stdout"] = proc.stdout
        blobs[f"{name} -v log"] = proc.stderr
    assert b"DEBUG" in blobs["inspect -v log"], blobs["inspect -v log"]  # -v logs were captured
    blobs.update(_files(tmp_path))
    assert any(k.endswith(".pdf") or k.endswith(".html") for k in blobs), sorted(blobs)

    hits = _hits(blobs, ids)
    assert not hits, "identifying DICOM values found:\n" + "\n".join(hits[:20])
    _record("run + predict/explain/inspect/validate (-v)", len(ids), len(blobs), len(hits))


def test_no_identifier_on_the_dashboard(mini_run, cohort, tmp_path, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    import _dashboard_support as support
    from test_dashboard_apptest import compute, fill_valid_form, page_text, upload

    row, _, ids = cohort
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTIBONE_BUNDLE", str(mini_run / "bundle"))
    at = AppTest.from_file(str(support.APP), default_timeout=180)
    at.run()
    data = (mini_run / "cohort" / row.image_path).read_bytes()
    upload(at, [("upload.dcm", data, "application/dicom")])
    fill_valid_form(at)
    compute(at)
    # (the page may show warnings as st.error, e.g. synthetic training data; a result is what counts)
    assert not at.exception and at.session_state["mb_result"]["result"] is not None, [
        e.value for e in at.error
    ]
    out = at.session_state["mb_result"]
    blobs = {
        "dashboard page": page_text(at).encode(),
        "dashboard case report": out["report"].encode(),
    }
    blobs.update(_files(tmp_path))
    hits = _hits(blobs, ids)
    assert not hits, "identifying DICOM values found:\n" + "\n".join(hits[:20])
    _record("dashboard page + report", len(ids), len(blobs), len(hits))


def test_burned_in_annotation_warns(mini_run, cohort, tmp_path, caplog):
    import pydicom

    from multibone.io import read_radiograph

    row, _, _ = cohort
    path = tmp_path / "burned.dcm"
    ds = pydicom.dcmread(mini_run / "cohort" / row.image_path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    with caplog.at_level("WARNING", logger="multibone.io.radiograph"):
        assert read_radiograph(path).burned_in_annotation
        assert not read_radiograph(mini_run / "cohort" / row.image_path).burned_in_annotation
    warned = [r.getMessage() for r in caplog.records if "BurnedInAnnotation" in r.getMessage()]
    assert warned == [
        "burned.dcm: BurnedInAnnotation = YES: the pixels may show identifying text (name, id, "
        "date); it appears in crops, overlays and reports made from this image"
    ]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "multibone", "inspect", str(path)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr.count("BurnedInAnnotation = YES") == 1, proc.stderr


@pytest.mark.slow
def test_no_identifier_in_verbose_pipeline_logs(mini_run, cohort, tmp_path, capfd):
    """``multibone -v stack --run`` (stages 4-7, the debug logs of every layer) on a copy
    of the mini run: its logs and every file it rewrites hold no identifier."""
    _, _, ids = cohort
    run = tmp_path / "run"
    shutil.copytree(mini_run, run)
    argv = [
        "-v",
        "stack",
        "--run",
        str(run),
        "--manifest",
        str(run / "cohort" / "manifest.csv"),
        "--config",
        str(run / "config.yaml"),
        "--force",
        "--bootstrap",
        "20",
    ]
    assert main(argv) == 0
    out = capfd.readouterr()
    blobs = {
        "stack -v log": out.err.encode(),
        "stack stdout": out.out.encode(),
        **_files(run, skip="cohort"),
    }
    hits = _hits(blobs, ids)
    assert not hits, "identifying DICOM values found:\n" + "\n".join(hits[:20])


def _record(what: str, n_ids: int, n_places: int, n_hits: int) -> None:
    """Counts for benchmarks/RELIABILITY.md (printed with -s)."""
    print(
        f"\nprivacy audit [{what}]: {n_ids} identifier values x {n_places} outputs, {n_hits} hits"
    )
