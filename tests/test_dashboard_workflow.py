"""The surgeon's workflow in the dashboard (issue 13), with Streamlit's app tester.

Proposal shown / accepted / box redrawn / export asked too early / PDF and DICOM out /
burned-in annotation. The real bundle and pipeline run; two things a browser or a trained
detector would supply are STUBBED and labelled so:

* ``multibone.case.propose_box`` (the bundle's detector) returns a fixed box and
  confidence (a bundle carrying a detector is the detection issue's work);
* ``multibone.app.canvas.draw`` (the mouse on the drawing component, which AppTest cannot
  drive) returns the Fabric.js JSON a browser sends after a drag.

The real component under the mouse is tested in tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dashboard_support as support  # noqa: E402

AppTest = pytest.importorskip("streamlit.testing.v1", reason="streamlit not installed").AppTest
pypdf = pytest.importorskip("pypdf", reason="pypdf not installed: pip install -e '.[dev]'")

TIMEOUT = 120
PROPOSED = (20, 16, 60, 52)  # STUB detector output on a 96 x 80 image
STUB_SCORE = 0.87


def _app(bundle_path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTIBONE_BUNDLE", str(bundle_path))
    at = AppTest.from_file(str(support.APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def app(bundle_path, monkeypatch, tmp_path):
    return _app(bundle_path, monkeypatch, tmp_path)


@pytest.fixture
def proposing_app(bundle_path, monkeypatch, tmp_path):
    """The app with a STUB detector: every image gets PROPOSED at confidence 0.87."""
    import multibone.case

    monkeypatch.setattr(multibone.case, "propose_box", lambda bundle, pixels: (PROPOSED, STUB_SCORE))
    return _app(bundle_path, monkeypatch, tmp_path)


def _upload_png(at):
    at.file_uploader[0].set_value([("a.png", support.png_bytes(96, 80), "image/png")]).run()
    assert not at.exception, at.exception


def _fill(at):
    at.number_input(key="mb_age").set_value(47.0)
    at.selectbox(key="mb_sex").set_value("F")
    at.selectbox(key="mb_site").set_value("femur")
    at.run()


def _box(at) -> tuple:
    keys = [w.key for w in at.number_input if w.key and w.key.startswith("mb_box_")]
    return tuple(at.number_input(key=next(k for k in keys if k.endswith(f"_{n}"))).value
                 for n in ("x0", "y0", "x1", "y1"))


def _compute(at):
    at.button(key="mb_compute").click().run()
    assert not at.exception, at.exception


def _texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def _problems(at) -> list[str]:
    """Error messages, less the result's own warnings (e.g. a synthetic-data bundle's)."""
    out = at.session_state["mb_result"] if "mb_result" in at.session_state else None
    expected = set(getattr(out["result"], "warnings", None) or []) if out else set()
    return [t for t in _texts(at, "error") if t not in expected]


def _error_after(at, key: str) -> str | None:
    """The st.error right below the widget with ``key`` (same block), or None."""
    def blocks(node):
        kids = getattr(node, "children", None)
        if kids:
            yield node
            for c in kids.values():
                yield from blocks(c)

    for block in blocks(at._tree):
        kids = list(block.children.values())
        for i, el in enumerate(kids):
            if getattr(el, "key", None) == key and i + 1 < len(kids):
                nxt = kids[i + 1]
                return nxt.value if type(nxt).__name__ == "Error" else None
    raise AssertionError(f"no widget {key}")


def test_no_detector_says_how_to_box(app):
    _upload_png(app)
    assert any("Box the lesion: press the mouse" in t for t in _texts(app, "info"))
    assert not any("PROPOSAL" in t for t in _texts(app, "warning"))


def test_proposal_shown_then_accepted(proposing_app):
    at = proposing_app
    _upload_png(at)
    warnings = _texts(at, "warning")
    assert any("PROPOSAL" in t and "0.87" in t for t in warnings), warnings
    assert _box(at) == PROPOSED  # the number fields open on the proposal
    _fill(at)
    _compute(at)  # not yet confirmed: nothing computed
    assert any("accept the proposed lesion box" in e for e in _texts(at, "error"))
    assert "mb_result" not in at.session_state
    accept = next(b for b in at.button if b.key and b.key.startswith("mb_accept_"))
    accept.click().run()
    assert any("Proposed box accepted" in t for t in _texts(at, "success"))
    _compute(at)
    assert not _problems(at), _problems(at)
    assert at.session_state["mb_result"]["case"].images[0].roi == PROPOSED


def test_box_redrawn_with_the_mouse_replaces_the_proposal(proposing_app, monkeypatch):
    """STUB canvas: the browser would send this rectangle after a drag from canvas pixel
    (30, 10) to (70, 50); the image is not downscaled (96 x 80), so the box is the same."""
    import multibone.app.canvas as canvas

    drawn = {"objects": [{"type": "LabeledRect", "left": 30, "top": 10, "width": 40,
                          "height": 40, "scaleX": 1, "scaleY": 1}]}
    monkeypatch.setattr(canvas, "available", lambda: True)
    monkeypatch.setattr(canvas, "draw", lambda *a, **k: drawn)
    at = proposing_app
    _upload_png(at)
    assert not at.exception, at.exception
    assert _box(at) == (30, 10, 70, 50)  # the number fields followed the drawing
    assert not any("PROPOSAL" in t for t in _texts(at, "warning"))
    assert any("the detector proposed" in t for t in _texts(at, "caption"))
    _fill(at)
    _compute(at)
    assert not _problems(at), _problems(at)
    assert at.session_state["mb_result"]["case"].images[0].roi == (30, 10, 70, 50)


def test_proposal_typed_over_counts_as_redrawn(proposing_app):
    at = proposing_app
    _upload_png(at)
    key = next(w.key for w in at.number_input if w.key and w.key.endswith("_x1"))
    at.number_input(key=key).set_value(70).run()
    assert not any("PROPOSAL" in t for t in _texts(at, "warning"))
    _fill(at)
    _compute(at)
    assert at.session_state["mb_result"]["case"].images[0].roi == (20, 16, 70, 52)


def test_drawing_outside_the_image_is_reported(app, monkeypatch):
    import multibone.app.canvas as canvas

    monkeypatch.setattr(canvas, "available", lambda: True)
    monkeypatch.setattr(canvas, "draw", lambda *a, **k: {"objects": [
        {"type": "rect", "left": 200, "top": 10, "width": 30, "height": 30}]})
    _upload_png(app)
    assert any("outside the image" in e for e in _texts(app, "error"))
    _fill(app)
    _compute(app)
    assert any("correct the lesion boxes" in e for e in _texts(app, "error"))


def test_export_asked_too_early(app, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    for key in ("mb_export_pdf", "mb_export_dicom"):
        app.button(key=key).click().run()
        assert not app.exception, app.exception
        assert "no result to export yet" in (_error_after(app, key) or "")
    _upload_png(app)
    _fill(app)
    _compute(app)
    app.number_input(key="mb_age").set_value(48.0).run()  # the result is now stale
    app.button(key="mb_export_pdf").click().run()
    assert "no result to export yet" in (_error_after(app, "mb_export_pdf") or "")
    assert "mb_pdf" not in app.session_state and "mb_dicom" not in app.session_state
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    # the page keeps working
    _compute(app)
    assert not _problems(app), _problems(app)


def test_pdf_and_dicom_out_from_an_uploaded_dicom(app, dicom_case):
    import highdicom as hd
    import pydicom

    path, identifiers, _ = dicom_case
    source = pydicom.dcmread(path, stop_before_pixels=True)
    app.file_uploader[0].set_value([("SMITH^JOHN.dcm", path.read_bytes(), "application/dicom")]).run()
    _fill(app)
    _compute(app)
    assert not _problems(app), _problems(app)
    out = app.session_state["mb_result"]
    app.button(key="mb_export_pdf").click().run()
    assert not app.exception, app.exception
    fp, op, pdf = app.session_state["mb_pdf"]
    assert op == "youden" and pdf.startswith(b"%PDF")
    text = "\n".join(pg.extract_text() for pg in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    flat = " ".join(text.split())
    assert f"{out['result'].probability:.1%}" in flat
    assert "balanced (Youden)" in flat
    assert "Decision support, not a diagnosis" in flat
    for value in [*identifiers, "SMITH", source.StudyInstanceUID, source.SOPInstanceUID]:
        assert value not in text and value.encode() not in pdf, value

    app.button(key="mb_export_dicom").click().run()
    assert not app.exception, app.exception
    _, _, zipped = app.session_state["mb_dicom"]
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        sr = hd.sr.srread(io.BytesIO(z.read("multibone_result_sr.dcm")))
        sc = pydicom.dcmread(io.BytesIO(z.read("multibone_cam_sc.dcm")))
    assert sr.StudyInstanceUID == source.StudyInstanceUID == sc.StudyInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert str(sc.PatientID) == str(source.PatientID)  # the patient module, for PACS filing


def test_dicom_out_needs_a_dicom_image(app):
    _upload_png(app)
    _fill(app)
    _compute(app)
    app.button(key="mb_export_dicom").click().run()
    assert "needs a DICOM radiograph" in (_error_after(app, "mb_export_dicom") or "")
    assert "mb_dicom" not in app.session_state


def test_burned_in_annotation_is_warned(app, dicom_case, tmp_path):
    import pydicom

    path, _, _ = dicom_case
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    buf = io.BytesIO()
    ds.save_as(buf)
    app.file_uploader[0].set_value([("x.dcm", buf.getvalue(), "application/dicom")]).run()
    assert any("burned-in annotation" in t for t in _texts(app, "warning"))
