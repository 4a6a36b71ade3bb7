"""The dashboard's flows with Streamlit's own app tester (no browser).

A real bundle and the real pipeline: no bundle, a valid case (uploaded synthetic DICOM),
the demo-case button, the Model tab, and each bad input (a message right below the
field, and the app keeps working). The bundle is ``$MULTIBONE_TEST_BUNDLE`` when set,
else the tiny real run that tests/conftest.py builds once per session (``mini_bundle``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dashboard_support as support  # noqa: E402

from multibone.app import logic  # noqa: E402

AppTest = pytest.importorskip("streamlit.testing.v1", reason="streamlit not installed").AppTest

TIMEOUT = 120  # model loading and Score-CAM on a busy CPU


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def app(bundle_path, monkeypatch, tmp_path):
    """An AppTest of the dashboard on the test bundle, run in an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTIBONE_BUNDLE", str(bundle_path))
    at = AppTest.from_file(str(support.APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


# --------------------------------------------------------------------------- helpers


def _blocks(node):
    children = getattr(node, "children", None)
    if not children:
        return
    yield node
    for child in children.values():
        yield from _blocks(child)


def element_after(at, predicate):
    """The element that follows, in the same block, the first element matching predicate."""
    for block in _blocks(at._tree):
        kids = list(block.children.values())
        for i, el in enumerate(kids):
            if predicate(el) and i + 1 < len(kids):
                return kids[i + 1]
    raise AssertionError("no element matched")


def error_below(at, key: str) -> str | None:
    """The text of the st.error right below the widget with ``key``, or None."""
    nxt = element_after(at, lambda el: getattr(el, "key", None) == key)
    return nxt.value if type(nxt).__name__ == "Error" else None


def page_text(at) -> str:
    """All text the page shows (markdown, captions, metrics, messages, labels)."""
    parts = []
    for kind in (
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
        "title",
        "subheader",
    ):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += image_captions(at)
    return "\n".join(parts)


def image_captions(at) -> list[str]:
    return [c for img in at.image for c in img.captions]


def fill_valid_form(at, age: float = 47.0, sex: str = "F", site: str = "femur") -> None:
    at.number_input(key="mb_age").set_value(age)
    at.selectbox(key="mb_sex").set_value(sex)
    at.selectbox(key="mb_site").set_value(site)
    at.run()


def upload(at, files) -> None:
    at.file_uploader[0].set_value(files).run()
    assert not at.exception, at.exception


def compute(at) -> None:
    at.button(key="mb_compute").click().run()
    assert not at.exception, at.exception


# --------------------------------------------------------------------------- no bundle


@pytest.mark.parametrize("script", [support.APP, support.LAUNCHER], ids=["packaged", "launcher"])
def test_no_bundle_offers_to_build(monkeypatch, tmp_path, script):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MULTIBONE_BUNDLE", raising=False)
    at = AppTest.from_file(str(script), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert "No model bundle yet" in at.info[0].value
    assert at.button(key="mb_build_demo").label.startswith("Build the demo bundle")
    assert not at.file_uploader  # nothing to compute with


def test_no_bundle_at_typed_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MULTIBONE_BUNDLE", raising=False)
    at = AppTest.from_file(str(support.APP), default_timeout=TIMEOUT).run()
    at.text_input(key="mb_bundle_path").set_value(str(tmp_path / "missing")).run()
    assert not at.exception, at.exception
    assert "no bundle.json" in at.error[0].value
    assert "the path typed in the sidebar" in at.error[0].value


def test_damaged_bundle_is_refused(monkeypatch, tmp_path, bundle_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_path, copy)
    target = next(p for p in sorted(copy.rglob("*")) if p.is_file() and p.name != "bundle.json")
    target.write_bytes(target.read_bytes() + b"tampered")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTIBONE_BUNDLE", str(copy))
    at = AppTest.from_file(str(support.APP), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert "SHA-256" in at.error[0].value and target.name in at.error[0].value


def test_build_button_shows_progress_then_opens_the_bundle(monkeypatch, tmp_path, bundle_path):
    """The build button calls pipeline.build_demo with a progress callback, then the page
    opens the new bundle. build_demo itself (minutes) is replaced by a copy of the test bundle."""
    import shutil

    from multibone import pipeline

    calls = []

    def fake_build(out_dir, progress_callback=None, **kwargs):
        for f, msg in ((0.0, "making a synthetic cohort"), (0.5, "training"), (1.0, "done")):
            progress_callback(f, msg)
            calls.append(msg)
        shutil.copytree(bundle_path, Path(out_dir) / "bundle")
        return Path(out_dir)

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MULTIBONE_BUNDLE", raising=False)
    monkeypatch.setattr(pipeline, "build_demo", fake_build)
    at = AppTest.from_file(str(support.APP), default_timeout=TIMEOUT).run()
    at.button(key="mb_build_demo").click().run()
    assert not at.exception, at.exception
    assert calls == ["making a synthetic cohort", "training", "done"]
    assert (tmp_path / "runs" / "demo" / "bundle" / "bundle.json").is_file()
    assert at.file_uploader, "after building, the case page opens"


# --------------------------------------------------------------------------- a valid case


def test_valid_case_from_uploaded_dicom(app, dicom_case, bundle_path):
    from multibone.bundle import load_bundle

    path, identifiers, _ = dicom_case
    upload(app, [("SMITH^JOHN_knee.dcm", path.read_bytes(), "application/dicom")])
    assert "**image 1 (DICOM)**" in [m.value for m in app.markdown]
    fill_valid_form(app)
    compute(app)
    assert not app.error, [e.value for e in app.error]
    metrics = {m.label: m.value for m in app.metric}
    assert "Probability of infection" in metrics and metrics["Probability of infection"].endswith(
        "%"
    )
    text = page_text(app)
    assert "Decision at **balanced (Youden)**" in text
    assert "not a diagnosis" in text

    bundle = load_bundle(bundle_path)
    out = app.session_state["mb_result"]
    n_cams = len(out["case"].images) * len(bundle.backbones)
    assert len(out["explanation"].cams) == n_cams
    captions = image_captions(app)
    assert sum("Score-CAM" in c for c in captions) == n_cams
    assert any("SHAP waterfall" in c for c in captions)
    if bundle.backbones:
        assert set(app.dataframe[0].value["backbone"]) == set(bundle.backbones)

    # the operating point changes the decision shown, without recomputing
    before = out["seconds"]
    app.radio(key="mb_op").set_value("spec90").run()
    assert "high specificity" in page_text(app)
    assert app.session_state["mb_result"]["seconds"] is before

    # no DICOM identifier and no file name on the page or in the report
    report = out["report"]
    assert report.lstrip().lower().startswith(("<!doctype html", "<html"))
    for value in identifiers:
        assert value not in report, f"DICOM identifier {value!r} in the report"
        assert value not in page_text(app), f"DICOM identifier {value!r} on the page"
    assert "SMITH" not in report and "SMITH" not in page_text(app)
    assert app.download_button(key="mb_report").label.startswith("Download the case report")


def test_gradcam_on_request(app, dicom_case):
    path, _, _ = dicom_case
    upload(app, [("x.dcm", path.read_bytes(), "application/dicom")])
    fill_valid_form(app)
    app.checkbox(key="mb_gradcam").check().run()
    compute(app)
    captions = image_captions(app)
    assert any("Grad-CAM" in c for c in captions) and any("Score-CAM" in c for c in captions)


def test_demo_case_button_fills_everything(app):
    app.button(key="mb_demo_case").click().run()
    assert not app.exception, app.exception
    assert app.session_state["mb_age"] is not None
    assert app.session_state["mb_sex"] in ("F", "M")
    labels = [m.value for m in app.markdown if m.value.startswith("**image ")]
    assert labels and labels[0].startswith("**image 1 (")
    compute(app)
    assert not app.error, [e.value for e in app.error]
    assert any(m.label == "Probability of infection" for m in app.metric)


def test_demo_case_without_a_demo_run_makes_a_synthetic_one(monkeypatch, tmp_path, bundle_path):
    """A bundle with no RUN/cohort beside it: the button makes a tiny synthetic cohort."""
    import shutil

    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(bundle_path, copy)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTIBONE_BUNDLE", str(copy))
    at = AppTest.from_file(str(support.APP), default_timeout=TIMEOUT).run()
    at.button(key="mb_demo_case").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any(m.value.startswith("**image 1 (") for m in at.markdown)


def test_model_tab_shows_evaluation(app, bundle_path):
    from multibone.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    text = page_text(app)
    assert "Training data" in text and "Operating points" in text
    if bundle.training_data.get("synthetic"):
        assert any("SYNTHETIC cohort" in w.value for w in app.warning)
    ops = next(df.value for df in app.dataframe if "operating point" in df.value.columns)
    assert len(ops) == len(bundle.thresholds)
    if bundle.evaluation_dir is not None:
        captions = image_captions(app)
        assert any(c.lower().startswith("roc") for c in captions)


# --------------------------------------------------------------------------- bad input

BAD_FILES = [
    ("not an image", lambda: b"patient notes, not an image\n" * 20, "not a DICOM"),
    ("DICOM without pixels", support.dicom_without_pixels, "no pixel data"),
    ("30,000 x 30,000 image", support.huge_png_bytes, "MAX_PIXELS"),
    ("empty file", lambda: b"", "empty"),
]


@pytest.mark.parametrize(("what", "make", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_reported_below_it(app, what, make, message):
    good = support.png_bytes()
    upload(app, [("good.png", good, "image/png"), ("bad.dcm", make(), "application/octet-stream")])
    nxt = element_after(app, lambda el: getattr(el, "value", None) == "**image 2**")
    assert (
        type(nxt).__name__ == "Error" and message in nxt.value and nxt.value.startswith("image 2")
    )
    assert "bad.dcm" not in page_text(app)
    fill_valid_form(app)
    compute(app)
    assert any("remove the files that could not be read" in e.value for e in app.error)
    assert "mb_result" not in app.session_state
    # the app keeps working: drop the bad file and the good one is accepted
    upload(app, [("good.png", good, "image/png")])
    assert not app.error, [e.value for e in app.error]
    if what == "not an image":  # one full round trip is enough to show it
        compute(app)
        assert any(m.label == "Probability of infection" for m in app.metric)


BAD_FIELDS = [
    ("empty age", "mb_age", None, "age"),
    ("age 200", "mb_age", 200.0, "0 to 120"),
    ("negative age", "mb_age", -1.0, "0 to 120"),
]


@pytest.mark.parametrize(
    ("what", "key", "value", "message"), BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS]
)
def test_bad_field_is_reported_below_it(app, what, key, value, message):
    upload(app, [("a.png", support.png_bytes(), "image/png")])
    fill_valid_form(app)
    app.number_input(key=key).set_value(value).run()
    compute(app)
    below = error_below(app, key)
    assert below is not None and message in below, below
    assert "mb_result" not in app.session_state
    app.number_input(key=key).set_value(30.0).run()
    assert error_below(app, key) is None
    if what == "age 200":  # one full round trip is enough to show the app keeps working
        compute(app)
        assert any(m.label == "Probability of infection" for m in app.metric)


def test_empty_sex_and_lab_value_reported_below_them(app):
    upload(app, [("a.png", support.png_bytes(), "image/png")])
    app.number_input(key="mb_age").set_value(40.0).run()
    app.radio(key="mb_crp_mode").set_value("value").run()
    assert error_below(app, "mb_sex") is None, "required-field messages wait for the button"
    compute(app)
    assert error_below(app, "mb_sex") is not None
    assert "CRP" in error_below(app, "mb_crp")
    app.number_input(key="mb_crp").set_value(5000.0).run()
    assert "1000" in error_below(app, "mb_crp")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("x1", 500, "outside the image"), ("x0", -5, "outside the image"), ("y1", 0, "box is empty")],
)
def test_box_outside_image_is_reported_below_it(app, field, value, message):
    upload(app, [("a.png", support.png_bytes(width=96, height=80), "image/png")])
    fill_valid_form(app)
    key = next(w.key for w in app.number_input if w.key and w.key.endswith(f"_{field}"))
    app.number_input(key=key).set_value(value).run()
    assert not app.exception, app.exception
    if field == "y1":  # an empty box is a property of the whole box: shown below the four fields
        assert any(message in e.value for e in app.error)
    else:
        assert message in (error_below(app, key) or "")
    compute(app)
    assert any("correct the lesion boxes" in e.value for e in app.error)
    app.number_input(key=key).set_value({"x1": 60, "x0": 10, "y1": 70}[field]).run()
    assert not app.error, [e.value for e in app.error]
    if field == "x1":  # the corrected box reaches the case
        compute(app)
        assert app.session_state["mb_result"]["case"].images[0].roi == (0, 0, 60, 80)


# --------------------------------------------------------------------------- helpers without Streamlit


@pytest.mark.parametrize(
    ("typed", "env", "expected", "source"),
    [
        ("/x/typed", {"MULTIBONE_BUNDLE": "/x/env"}, "/x/typed", "typed"),
        ("", {"MULTIBONE_BUNDLE": "/x/env"}, "/x/env", "MULTIBONE_BUNDLE"),
        ("  ", {}, "CWD/runs/demo/bundle", "demo"),
        ("rel/bundle", {}, "CWD/rel/bundle", "typed"),
    ],
)
def test_bundle_location_order(tmp_path, typed, env, expected, source):
    loc = logic.locate_bundle(typed, env=env, cwd=tmp_path)
    assert str(loc.path) == expected.replace("CWD", str(tmp_path))
    assert source in loc.source and loc.exists is False


@pytest.mark.parametrize(
    ("typed", "argument", "expected", "source"),
    [
        ("/x/typed", "/x/arg", "/x/typed", "typed"),
        ("", "/x/arg", "/x/arg", "--bundle"),
        ("", "rel/arg", "CWD/rel/arg", "--bundle"),
    ],
)
def test_bundle_argument_between_typed_and_env(tmp_path, typed, argument, expected, source):
    env = {"MULTIBONE_BUNDLE": "/x/env"}
    loc = logic.locate_bundle(typed, env=env, cwd=tmp_path, argument=argument)
    assert str(loc.path) == expected.replace("CWD", str(tmp_path))
    assert source in loc.source


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ""),
        (["--bundle", "/b"], "/b"),
        (["--bundle=/b", "--other", "x"], "/b"),
        (["-q", "tests/x.py"], ""),  # e.g. pytest's own argv under AppTest
        (["--bun", "/b"], ""),  # no abbreviations: only the exact option counts
    ],
)
def test_bundle_argument(argv, expected):
    assert logic.bundle_argument(argv) == expected


@pytest.mark.parametrize(
    ("box", "field", "message"),
    [
        ({"x0": 0, "y0": 0, "x1": 96, "y1": 80}, None, None),
        ({"x0": None, "y0": 0, "x1": 96, "y1": 80}, "x0", "empty"),
        ({"x0": 0, "y0": 0, "x1": 97, "y1": 80}, "x1", "outside the image (0 to 96 px)"),
        ({"x0": 0, "y0": -1, "x1": 96, "y1": 80}, "y0", "outside the image (0 to 80 px)"),
        ({"x0": 0.5, "y0": 0, "x1": 96, "y1": 80}, "x0", "whole number"),
        ({"x0": 50, "y0": 0, "x1": 50, "y1": 80}, "box", "x1 (50) must be larger than x0 (50)"),
        ({"x0": 0, "y0": 9, "x1": 96, "y1": 3}, "box", "y1 (3) must be larger than y0 (9)"),
    ],
)
def test_box_errors(box, field, message):
    errors = logic.box_errors(box, height=80, width=96)
    if field is None:
        assert errors == {}
    else:
        assert list(errors) == [field] and message in errors[field]


def test_upload_labels_hide_file_names():
    cache: dict = {}
    ups = logic.read_uploads(
        [("DOE^JANE.png", support.png_bytes()), ("DOE^JANE.txt", b"not an image" * 20)], cache
    )
    assert [u.label for u in ups] == ["image 1 (PNG)", "image 2"]
    assert ups[1].error.startswith("image 2: ") and "DOE" not in ups[1].error
    assert "multibone-upload-" not in ups[1].error  # no temporary path either
    assert len(cache) == 2


@pytest.mark.parametrize(
    ("env", "cpus", "expected"),
    [
        ({}, 2, 1),
        ({}, 8, 4),
        ({}, 64, 4),
        ({}, 1, 1),
        ({"OMP_NUM_THREADS": "3"}, 8, None),
        ({"MULTIBONE_TORCH_THREADS": "6", "OMP_NUM_THREADS": "1"}, 2, 6),
    ],
)
def test_torch_threads(env, cpus, expected):
    assert logic.torch_threads(env, cpus) == expected


def test_torch_threads_rejects_text():
    from multibone.errors import MultiboneError

    with pytest.raises(MultiboneError, match="MULTIBONE_TORCH_THREADS='many'"):
        logic.torch_threads({"MULTIBONE_TORCH_THREADS": "many"}, 2)
