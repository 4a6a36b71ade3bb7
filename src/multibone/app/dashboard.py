"""multibone clinician dashboard: one case in, a calibrated, explained call out.

Started by ``multibone dashboard [--bundle B]`` (it binds to localhost; see
:mod:`multibone.cli.dashboard`), or ``streamlit run apps/dashboard.py`` from the
repository. The page reads a model bundle (a folder typed in the sidebar, else
``--bundle``, else ``$MULTIBONE_BUNDLE``, else ``runs/demo/bundle``) and calls
:mod:`multibone.pipeline` for everything it shows; it holds no modelling logic.

Two tabs: "Case" (upload radiographs, set lesion boxes, type the clinical data, get the
probability, decision, per-backbone scores, SHAP and Score-CAM, and a report) and
"Model" (the bundle's evaluation and training data).

Tests can inject images without a browser with the "Load a demo case" button (a held-out
patient of the synthetic cohort), or through AppTest's file_uploader.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import streamlit as st

from multibone import case as case_api  # constants and model warm-up
from multibone import pipeline
from multibone.app import box as box_mod
from multibone.app import canvas, export_panel, logic, model_tab, views
from multibone.bundle import load_bundle
from multibone.errors import MultiboneError
from multibone.export.dicom import burned_in_annotation

log = logging.getLogger("multibone.dashboard")
DISCLAIMER = f"**{case_api.DISCLAIMER}** See the Model tab for the data it was trained on."
OPERATING_POINTS = case_api.OPERATING_POINTS
OTHER_SITE = "other/unknown"
LOCATIONS = {"": "unknown", "appendicular": "appendicular", "axial": "axial"}
LAB_LABELS = {
    "unknown": "unknown",
    "value": "value",
    "normal": "normal",
    "abnormal": "abnormal",
}

# Keys of the clinical form in st.session_state, with their empty values.
FORM_DEFAULTS: dict[str, object] = {
    "mb_age": None,
    "mb_sex": None,
    "mb_site": OTHER_SITE,
    "mb_location": "",
    "mb_crp_mode": "unknown",
    "mb_crp": None,
    "mb_esr_mode": "unknown",
    "mb_esr": None,
}


# --------------------------------------------------------------------------- bundle


@st.cache_resource(show_spinner="Loading the model bundle ...", max_entries=4)
def cached_bundle(path: str, manifest_sha: str):
    """Load (verify) a bundle once per process; the key is its path and bundle.json hash,
    so a rebuilt bundle at the same path is loaded afresh."""
    bundle = load_bundle(path)
    case_api.runtime(bundle)  # load backbones and stacker now, not at the first case
    warm_up(bundle)
    return bundle


def warm_up(bundle) -> None:
    """One throw-away case through the pipeline, so the first real case does not pay for
    torch's first-call set-up (measured: about 1 s of the first case's time)."""
    import numpy as np

    rng = np.random.default_rng(0)
    image = pipeline.CaseImage(
        pixels=rng.random((96, 96), dtype=np.float32), roi=None, label="warm-up"
    )
    fields = {"age": 50.0, "sex": "F", "site": "femur", "location": "", "crp": None, "esr": None}
    try:
        case = pipeline.case_from_fields(fields, [image])
        pipeline.explain_case(bundle, case, cam_methods=("scorecam",))
    except Exception:  # warm-up is an optimisation only; a real case reports real errors
        log.warning("warm-up case failed; the first case will be slower", exc_info=True)


@st.cache_resource
def configure_torch() -> int:
    """Set torch's thread count once per server process (see logic.torch_threads)."""
    import torch

    n = logic.torch_threads()
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def sidebar_bundle():
    """Sidebar: choose the bundle; return (location, bundle or None, error text or None)."""
    st.sidebar.header("Model bundle")
    typed = st.sidebar.text_input(
        "Bundle folder",
        key="mb_bundle_path",
        placeholder=str(pipeline.DEFAULT_DEMO_RUN / "bundle"),
        help=(
            "Leave empty for the bundle the app was started with (--bundle), else "
            "$MULTIBONE_BUNDLE, else the demo bundle runs/demo/bundle."
        ),
    )
    loc = logic.locate_bundle(
        typed, default_run=pipeline.DEFAULT_DEMO_RUN, argument=logic.bundle_argument()
    )
    if not loc.exists:
        st.sidebar.warning(f"No bundle at {loc.path} ({loc.source}).")
        return loc, None, None
    try:
        bundle = cached_bundle(str(loc.path.resolve()), logic.manifest_sha256(loc.path))
    except MultiboneError as exc:
        st.sidebar.error("The bundle could not be loaded.")
        return loc, None, str(exc)
    except Exception as exc:  # e.g. a bundle written by another version: say so, keep running
        log.exception("loading the bundle %s failed", loc.path)
        st.sidebar.error("The bundle could not be loaded.")
        return (
            loc,
            None,
            f"{type(exc).__name__}: {exc} (was it written by another multibone version?)",
        )
    st.sidebar.success(f"Using {loc.source}:\n\n`{loc.path}`")
    td = bundle.training_data
    if td.get("synthetic"):
        st.sidebar.warning(
            "This bundle was trained on SYNTHETIC data: for trying the software only."
        )
    st.sidebar.caption(
        f"Backbones: {', '.join(bundle.backbones) or 'none'} | "
        f"classes: {bundle.positive_class} vs {bundle.negative_class}"
    )
    return loc, bundle, None


def no_bundle_panel(loc: logic.BundleLocation, error: str | None) -> None:
    """What the page shows without a usable bundle: why, and how to get one."""
    if error:
        st.error(f"The model bundle could not be loaded: {error}")
    elif loc.source == "the demo bundle":
        st.info(
            f"No model bundle yet: the demo bundle `{loc.path}` does not exist. Build it here "
            "(a few minutes on a laptop CPU, synthetic data only), run `multibone demo` in a "
            "terminal, or type the folder of another bundle in the sidebar."
        )
    else:
        st.error(f"No bundle at `{loc.path}` ({loc.source}): the folder has no bundle.json.")
    demo_run = pipeline.DEFAULT_DEMO_RUN
    demo_bundle = demo_run / "bundle"
    if (demo_bundle / "bundle.json").is_file() and loc.path.resolve() != demo_bundle.resolve():
        st.button(
            f"Use the demo bundle {demo_bundle} instead",
            key="mb_use_demo",
            on_click=_set_bundle_path,
            args=(str(demo_bundle),),
        )
        return
    force = False
    if demo_run.is_dir() and any(demo_run.iterdir()):
        force = st.checkbox(
            f"Replace the existing folder {demo_run} (it holds no finished bundle)",
            key="mb_build_force",
        )
    if st.button(f"Build the demo bundle in {demo_run}", key="mb_build_demo"):
        bar = st.progress(0.0, text="Starting the demo run ...")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

        try:
            run_dir = pipeline.build_demo(demo_run, progress_callback=progress, force=force)
        except MultiboneError as exc:
            st.error(f"Building the demo failed: {exc}")
            return
        bar.progress(1.0, text="Done")
        st.success(f"Demo bundle built in {Path(run_dir) / 'bundle'}.")
        st.rerun()


# --------------------------------------------------------------------------- case inputs


def _set_bundle_path(path: str) -> None:
    st.session_state["mb_bundle_path"] = path


def _init_state() -> None:
    for key, value in FORM_DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("mb_extra", [])
    st.session_state.setdefault("mb_decoded", {})
    st.session_state.setdefault("mb_uploader_gen", 0)
    st.session_state.setdefault("mb_tried", False)
    st.session_state.setdefault("mb_demo_index", 0)
    st.session_state.setdefault("mb_op", "youden")
    st.session_state.setdefault("mb_gradcam", False)


def _set_tried() -> None:
    st.session_state["mb_tried"] = True


def _clear_images() -> None:
    st.session_state["mb_extra"] = []
    st.session_state["mb_uploader_gen"] += 1
    st.session_state.pop("mb_result", None)
    st.session_state["mb_tried"] = False


def _load_demo_case(bundle_path: str) -> None:
    """Button callback: fill images, boxes and form from a held-out synthetic patient."""
    try:
        manifest = logic.find_demo_manifest(Path(bundle_path))
        splits = logic.find_run_splits(Path(bundle_path)) if manifest else None
        demo = logic.demo_case_from_manifest(
            manifest or fallback_demo_manifest(), st.session_state["mb_demo_index"], splits
        )
    except (MultiboneError, OSError, KeyError, ValueError) as exc:
        st.session_state["mb_demo_error"] = f"No demo case available: {exc}"
        return
    st.session_state.pop("mb_demo_error", None)
    st.session_state["mb_demo_index"] += 1
    _clear_images()
    st.session_state["mb_extra"] = demo.images
    for (_, data), box in zip(demo.images, demo.boxes, strict=True):
        if box is None:
            continue
        key = f"{hashlib.sha1(data).hexdigest()[:12]}_0"  # same key as logic.read_uploads
        for name, value in zip(logic.BOX_FIELDS, box, strict=True):
            st.session_state[f"mb_box_{key}_{name}"] = int(value)
    f = demo.fields
    site = str(f["site"])
    st.session_state["mb_age"] = f["age"]
    st.session_state["mb_sex"] = f["sex"] if f["sex"] in ("F", "M") else None
    if site in pipeline_sites():
        st.session_state["mb_site"] = site
        st.session_state["mb_location"] = ""
    else:
        st.session_state["mb_site"] = OTHER_SITE
        st.session_state["mb_location"] = f["location"] if f["location"] in LOCATIONS else ""
    for lab in ("crp", "esr"):
        st.session_state[f"mb_{lab}_mode"] = f[f"{lab}_mode"]
        st.session_state[f"mb_{lab}"] = f[lab]


@st.cache_resource(show_spinner="Making a small synthetic cohort for the demo case ...")
def fallback_demo_manifest() -> Path:
    """A tiny synthetic cohort (once per process) when no demo run sits next to the bundle."""
    return logic.make_demo_manifest()


def pipeline_sites() -> list[str]:
    from multibone.cohort import SITE_LOCATION

    return sorted(SITE_LOCATION)


def images_section(
    bundle_path: str, bundle=None
) -> tuple[list[logic.Upload], dict[str, dict]]:
    """Uploads, each with its lesion box. Returns the uploads and per-upload box state
    {key: {"box": tuple | None, "errors": dict}}."""
    st.subheader("1. Radiographs")
    c1, c2, c3 = st.columns([4, 1, 1])
    with c1:
        files = st.file_uploader(
            "Radiographs of one patient (DICOM, PNG or JPEG; several views allowed)",
            accept_multiple_files=True,
            key=f"mb_uploads_{st.session_state['mb_uploader_gen']}",
        )
    with c2:
        st.button(
            "Load a demo case",
            key="mb_demo_case",
            on_click=_load_demo_case,
            args=(bundle_path,),
            help="A held-out patient of the synthetic cohort: images, boxes and clinical data.",
        )
    with c3:
        st.button("Clear images", key="mb_clear", on_click=_clear_images)
    if st.session_state.get("mb_demo_error"):
        st.error(st.session_state["mb_demo_error"])
    sources = [(f.name, f.getvalue()) for f in (files or [])]
    sources += list(st.session_state["mb_extra"])
    uploads = logic.read_uploads(sources, st.session_state["mb_decoded"])
    st.session_state["mb_source_bytes"] = [data for _, data in sources]  # DICOM out only
    if not uploads:
        st.caption(
            "No image yet. File names are never shown; images are called image 1, image 2, ..."
        )
    boxes: dict[str, dict] = {}
    for up, (_, data) in zip(uploads, sources, strict=True):
        with st.container(border=True):
            st.markdown(f"**{up.label}**")
            if up.error or up.image is None:
                st.error(up.error)
                continue
            if up.image.format == "DICOM" and burned_in_annotation(data):
                st.warning(
                    "This DICOM says its pixels carry burned-in annotation (text such as a "
                    "name or date written into the image). The page, the heatmaps, the PDF and "
                    "the DICOM objects show those pixels as they are: check before sharing."
                )
            boxes[up.key] = lesion_box(up, bundle)
    return uploads, boxes


def _proposal(bundle, up: logic.Upload) -> dict | None:
    """The detector's proposal for an upload, once per upload: {"box", "score", "status"}
    with status "proposed" (shown, not yet confirmed), "accepted" or "redrawn"; None when
    the bundle has no detector or it found nothing."""
    key = f"mb_prop_{up.key}"
    if key not in st.session_state:
        found = None
        if bundle is not None:
            try:
                found = case_api.propose_box(bundle, up.image.pixels)
            except MultiboneError as exc:
                log.warning("the lesion proposal failed: %s", exc)
        if found is None:
            st.session_state[key] = None
        else:
            box, score = found
            fields = [f"mb_box_{up.key}_{name}" for name in logic.BOX_FIELDS]
            if any(f in st.session_state for f in fields):  # a box is set already (demo case)
                st.session_state[key] = {"box": tuple(box), "score": score, "status": "redrawn"}
            else:
                for f, v in zip(fields, box, strict=True):
                    st.session_state[f] = int(v)
                st.session_state[key] = {"box": tuple(box), "score": score, "status": "proposed"}
    return st.session_state[key]


def _accept_proposal(key: str) -> None:
    prop = st.session_state.get(f"mb_prop_{key}")
    if prop:
        prop["status"] = "accepted"


def lesion_box(up: logic.Upload, bundle=None) -> dict:
    """The lesion box: drawn with the mouse on the image (or started from the detector's
    proposal), and four number fields in step with the drawing, with their errors and a
    live crop preview. Returns {"box", "errors", "proposal"}."""
    img = up.image
    assert img is not None
    defaults = {"x0": 0, "y0": 0, "x1": img.width, "y1": img.height}
    field_keys = {name: f"mb_box_{up.key}_{name}" for name in logic.BOX_FIELDS}
    prop = _proposal(bundle, up)
    for name, key in field_keys.items():
        st.session_state.setdefault(key, defaults[name])
    geo = box_mod.canvas_geometry(img.width, img.height)
    typed = {name: st.session_state.get(key) for name, key in field_keys.items()}
    current = None if logic.box_errors(typed, img.height, img.width) else logic.box_tuple(typed)
    left, right = st.columns([3, 2])
    drawn_error = ""
    with left:
        if canvas.available():
            seen_key = f"mb_canvas_seen_{up.key}"
            data = canvas.draw(
                img.display,
                geo,
                current,
                key=f"mb_canvas_{up.key}",
                proposal=bool(prop and prop["status"] == "proposed"),
            )
            upd = box_mod.read_drawing(data, geo, st.session_state.get(seen_key), current)
            st.session_state[seen_key] = upd.signature
            err_key = f"mb_canvas_error_{up.key}"
            if upd.signature != st.session_state.get(seen_key + "_prev"):
                # a new drawing: its error (or none) holds until the next drawing or a new box
                st.session_state[err_key] = (upd.error, current) if upd.error else None
            st.session_state[seen_key + "_prev"] = upd.signature
            held = st.session_state.get(err_key)
            if held and held[1] != current:  # the box was typed since: the error is old
                held = st.session_state[err_key] = None
            drawn_error = held[0] if held else ""
            if upd.box is not None:  # a new drawing: the number fields follow it
                for name, v in zip(logic.BOX_FIELDS, upd.box, strict=True):
                    st.session_state[field_keys[name]] = int(v)
                if prop and upd.box != prop["box"]:
                    prop["status"] = "redrawn"
                st.rerun()
            st.caption(
                f"{up.label}, shown at {geo.canvas_width} x {geo.canvas_height} "
                f"(original {img.width} x {img.height} px). Press and drag over the lesion to "
                "draw its box; draw again to replace it."
            )
    if prop and prop["status"] == "proposed" and current is not None and current != prop["box"]:
        prop["status"] = "redrawn"  # typed over the proposal
    values: dict[str, float | None] = {}
    with right:
        if prop is None:
            st.info(
                "Box the lesion: press the mouse at one corner of the lesion on the image "
                "and drag to the opposite corner, or type its pixel coordinates below. "
                "The image models were trained on lesion crops; the whole image (the "
                "default) gives a less meaningful score."
                if bundle is None or not (Path(bundle.path) / "detection").is_dir()
                else "The detector found no lesion on this image: box it by hand."
            )
        elif prop["status"] == "proposed":
            st.warning(
                f"PROPOSAL from the detector (confidence {prop['score']:.2f}), shown in blue: "
                "accept it, or draw or type your own box."
            )
            st.button(
                "Accept the proposed box",
                key=f"mb_accept_{up.key}",
                on_click=_accept_proposal,
                args=(up.key,),
            )
        elif prop["status"] == "accepted":
            st.success(f"Proposed box accepted (detector confidence {prop['score']:.2f}).")
        else:
            st.caption(
                f"Your box (the detector proposed {prop['box']}, confidence {prop['score']:.2f})."
            )
        st.caption(
            f"{img.width} x {img.height} px. Lesion box in original pixels (x1, y1 exclusive)."
        )
        cols = st.columns(4)
        slots = {}
        for col, name in zip(cols, logic.BOX_FIELDS, strict=True):
            with col:
                # value=None: clearing the field leaves it empty (an error), never a silent 0
                values[name] = st.number_input(
                    name, key=field_keys[name], value=None, step=1, format="%d"
                )
                slots[name] = st.empty()
        box_slot = st.empty()
    errors = logic.box_errors(values, img.height, img.width)
    if drawn_error:
        errors["box"] = drawn_error
    for name, msg in errors.items():
        (box_slot if name == "box" else slots[name]).error(msg)
    box = None if errors else logic.box_tuple(values)
    if not canvas.available():
        with left:
            if box is None:
                st.image(img.display, caption=up.label)
            else:
                st.image(logic.outline_box(img, box), caption=f"{up.label}, lesion box in orange")
    if box is not None:
        with right:
            st.image(logic.crop_preview(img, box), caption="what the models see (crop)", width=240)
    return {"box": box, "errors": errors, "proposal": prop}


def clinical_section(needed: list[str] | None = None) -> tuple[dict, dict[str, str]]:
    """The clinical form. Returns (fields for pipeline.case_field_errors, errors shown).

    ``needed``: the fields the bundle's model uses (``case.needed_fields``); the
    others are still shown but said to be optional and ignored.
    """
    st.subheader("2. Clinical data")
    unused = [f for f in ("site", "crp", "esr") if needed is not None and f not in needed]
    if unused:
        st.caption(
            f"This bundle's model does not use {', '.join(u.upper() if u != 'site' else u for u in unused)} "
            "(never recorded, or the same for everyone, in its training data): optional and ignored."
        )
    tried = st.session_state["mb_tried"]
    c1, c2, c3 = st.columns(3)
    with c1:
        age = st.number_input(
            "Age (years)", key="mb_age", value=None, step=1.0, format="%g", placeholder="required"
        )
        age_slot = st.empty()
        sex = st.selectbox(
            "Sex",
            ["F", "M"],
            key="mb_sex",
            format_func={"F": "female", "M": "male"}.get,
            placeholder="required",
        )
        sex_slot = st.empty()
    with c2:
        site_options = [OTHER_SITE, *pipeline_sites()]
        site = st.selectbox("Site", site_options, key="mb_site")
        site_slot = st.empty()
        if site == OTHER_SITE:
            location = st.radio(
                "Location",
                list(LOCATIONS),
                key="mb_location",
                format_func=LOCATIONS.get,
                horizontal=True,
            )
        else:
            location = ""
            from multibone.cohort import SITE_LOCATION

            st.caption(f"Location: {SITE_LOCATION[site]}")
        location_slot = st.empty()
    labs = {}
    lab_slots = {}
    empty_errors: dict[str, str] = {}
    with c3:
        for lab, name, unit in (("crp", "CRP", "mg/L"), ("esr", "ESR", "mm/h")):
            mode = st.radio(
                name,
                list(LAB_LABELS),
                key=f"mb_{lab}_mode",
                format_func=LAB_LABELS.get,
                horizontal=True,
            )
            number = None
            if mode == "value":
                number = st.number_input(
                    f"{name} ({unit})",
                    key=f"mb_{lab}",
                    value=None,
                    step=1.0,
                    format="%g",
                    placeholder=unit,
                )
            lab_slots[lab] = st.empty()
            labs[lab] = logic.lab_value(mode, number)
            msg = logic.lab_empty_error(name, unit, mode, number)
            if msg:
                empty_errors[lab] = msg
    fields = {
        "age": age,
        "sex": sex,
        "site": "" if site == OTHER_SITE else site,
        "location": location,
        "crp": labs["crp"],
        "esr": labs["esr"],
    }
    errors = dict(pipeline.case_field_errors(fields, needed=needed))
    for k, v in empty_errors.items():
        if k not in unused:
            errors.setdefault(k, v)
    slots = {
        "age": age_slot,
        "sex": sex_slot,
        "site": site_slot,
        "location": location_slot,
        **lab_slots,
    }
    shown: dict[str, str] = {}
    for name, msg in errors.items():
        if name == "site":
            empty = not fields["site"] and not fields["location"]
        else:
            empty = fields.get(name) in (None, "") or name in empty_errors
        if empty and not tried:  # "required" waits until the user presses the button
            continue
        slots.get(name, location_slot).error(msg)
        shown[name] = msg
    return fields, errors


# --------------------------------------------------------------------------- result


def build_case(uploads, boxes, fields, bundle=None):
    """The pipeline's Case from the page's inputs (raises InputError)."""
    images = [
        pipeline.CaseImage(pixels=up.image.pixels, roi=boxes[up.key]["box"], label=up.label)
        for up in uploads
    ]
    if bundle is None:
        return pipeline.case_from_fields(fields, images)
    return pipeline.case_from_fields(fields, images, needed=case_api.needed_fields(bundle),
                                     require_images=bool(bundle.backbones))


def compute_and_show(bundle, uploads, boxes, fields, cam_methods) -> dict:
    """Call the pipeline and draw as results arrive: the probability and decision first,
    then SHAP and the CAM overlays. Returns everything for later reruns of the page."""
    case = build_case(uploads, boxes, fields, bundle)
    t0 = time.perf_counter()
    with st.spinner("Computing the probability ..."):
        result = pipeline.predict_case(bundle, case)
    out = {"case": case, "result": result, "explanation": None, "report": None}
    out["aggregation"] = getattr(case_api.runtime(bundle).scorer, "aggregation", None)
    out["seconds"] = {"predict": time.perf_counter() - t0}
    result_head(out)
    with st.spinner("Computing SHAP and the heatmaps ..."):
        t1 = time.perf_counter()
        out["explanation"] = pipeline.explain_case(bundle, case, cam_methods=cam_methods)
        out["seconds"]["explain"] = time.perf_counter() - t1
        out["report"] = pipeline.case_report_html(case, result, out["explanation"])
        out["seconds"]["total"] = time.perf_counter() - t0
    result_tail(out)
    return out


def result_section(out: dict) -> None:
    result_head(out)
    result_tail(out)


def result_head(out: dict) -> None:
    """Probability, decision at the chosen operating point, per-backbone scores."""
    result = out["result"]
    pos, neg = result.positive_class, result.negative_class
    p = float(result.probability)
    st.subheader("3. Result")
    st.warning(DISCLAIMER)
    for w in getattr(result, "warnings", None) or []:  # synthetic training data, unlike images
        (st.info if w.startswith("ignored:") else st.warning)(w)
    prov = getattr(result, "provenance", None) or {}
    if prov.get("text"):
        st.caption(f"Model provenance: {prov['text']}.")
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.metric(f"Probability of {pos}", f"{100 * p:.0f} %")
    c2.metric(f"Probability of {neg}", f"{100 * (1 - p):.0f} %")
    with c3:
        ops = [o for o in OPERATING_POINTS if o in result.decisions]
        ops += [o for o in result.decisions if o not in ops]
        if st.session_state.get("mb_op") not in ops:
            st.session_state["mb_op"] = "youden" if "youden" in ops else ops[0]
        op = st.radio(
            "Operating point",
            ops,
            key="mb_op",
            format_func=OPERATING_POINTS.get,
            horizontal=True,
        )
        d = result.decisions[op]
        st.markdown(
            f"Decision at **{OPERATING_POINTS.get(op, op)}**: **{d['call']}** "
            f"(probability {p:.2f} {'>=' if d['positive'] else '<'} threshold {d['threshold']:.2f})."
        )
        st.caption(
            f"At this operating point the model had sensitivity {d['sensitivity']:.2f} and "
            f"specificity {d['specificity']:.2f} for {pos} on its development data "
            "(out-of-fold)."
        )
    ref = getattr(result, "referral", None) or {}
    if ref:  # conformal "refer when unsure" (issue #14)
        conf = f"{100 * (1 - ref['error_rate']):.0f} %"
        if ref["refer"]:
            st.warning(f"**Uncertain: refer.** {ref['text']}. Seek a specialist reading or "
                       "further tests before acting on this probability.")
        else:
            st.info(f"Conformal set at {conf} confidence: **{ref['text']}**.")
    st.caption(
        f"Calibrated probability from the stacker, computed in {out['seconds']['predict']:.1f} s. "
        f"Bundle: {result.bundle_version}."
    )
    if result.backbone_scores:
        st.markdown(f"**Image models** (probability of {pos} from each backbone)")
        st.dataframe(
            {
                "backbone": list(result.backbone_scores),
                f"probability of {pos}": [
                    f"{float(v):.3f}" for v in result.backbone_scores.values()
                ],
            },
            hide_index=True,
        )
    if result.image_scores and len(out["case"].images) > 1:
        table, sentences = views.view_table(
            result.image_scores,
            result.backbone_scores,
            [im.label for im in out["case"].images],
            out.get("aggregation"),
        )
        st.markdown(
            f"**Each view** (probability of {pos} per image; the last row is the patient "
            "score the stacker used)"
        )
        st.dataframe(table, hide_index=True)
        st.markdown("\n".join(f"- {s}" for s in sentences))


def result_tail(out: dict) -> None:
    """SHAP waterfall and sentences, CAM overlays per image, the report download."""
    expl = out["explanation"]
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**What moved the probability (SHAP)**")
        st.image(expl.waterfall_png, caption=f"SHAP waterfall ({expl.explainer})")
        st.caption(
            "SHAP explains the stacker before calibration; the probability above is calibrated."
        )
    with right:
        st.markdown("**In words**")
        st.markdown("\n".join(f"- {s}" for s in expl.sentences) or "(no contributions)")
    if expl.cams:
        st.markdown("**Where the image models looked** (red = more weight)")
        by_image: dict[int, list] = {}
        for cam in expl.cams:
            by_image.setdefault(cam.image_index, []).append(cam)
        labels = [im.label for im in out["case"].images]
        for idx, cams in sorted(by_image.items()):
            st.markdown(f"*{labels[idx] if idx < len(labels) else f'image {idx + 1}'}*")
            cols = st.columns(4)  # fixed width per overlay, however many backbones
            for i, cam in enumerate(cams):
                method = {"scorecam": "Score-CAM", "gradcam": "Grad-CAM"}.get(
                    cam.method, cam.method
                )
                note = f" ({cam.note})" if cam.note else ""
                cols[i % len(cols)].image(
                    cam.overlay_png, caption=f"{cam.backbone}, {method}{note}"
                )
    st.download_button(
        "Download the case report (HTML)",
        data=out["report"],
        file_name="multibone_case_report.html",
        mime="text/html",
        key="mb_report",
        on_click="ignore",
    )
    sec = out["seconds"]
    st.caption(
        f"Result in {sec['total']:.1f} s: prediction {sec['predict']:.2f} s, SHAP and heatmaps "
        f"{sec['explain']:.2f} s."
    )


def case_tab(bundle, bundle_path: str) -> None:
    st.info(DISCLAIMER)
    uploads, boxes = images_section(bundle_path, bundle)
    fields, field_errors = clinical_section(case_api.needed_fields(bundle))
    st.subheader("Compute")
    st.checkbox("Also compute Grad-CAM (slower)", key="mb_gradcam")
    cam_methods = ("scorecam", "gradcam") if st.session_state["mb_gradcam"] else ("scorecam",)
    pressed = st.button("Compute the result", type="primary", key="mb_compute", on_click=_set_tried)
    good = [up for up in uploads if up.image is not None]
    problems = []
    if not uploads and bundle.backbones:
        problems.append("upload at least one radiograph (or load a demo case)")
    if len(good) < len(uploads):
        problems.append("remove the files that could not be read")
    if any(b["errors"] for b in boxes.values()):
        problems.append("correct the lesion boxes")
    if any((b.get("proposal") or {}).get("status") == "proposed" for b in boxes.values()):
        problems.append("accept the proposed lesion box, or draw your own")
    if field_errors:
        problems.append("complete the clinical data")
    fp = logic.input_fingerprint(
        [(up.key, boxes.get(up.key, {}).get("box")) for up in uploads],
        sorted((k, repr(v)) for k, v in fields.items()),
        cam_methods,
        bundle.hash,
    )
    if pressed:
        if problems:
            st.error("Cannot compute yet: " + "; ".join(problems) + " (see the messages above).")
        else:
            try:
                out = compute_and_show(bundle, uploads, boxes, fields, cam_methods)
            except MultiboneError as exc:
                st.error(f"Could not compute the result: {exc}")
            except Exception as exc:  # a bug must not take the page down; the log has the trace
                log.exception("computing the case failed")
                st.error(
                    f"Could not compute the result ({type(exc).__name__}: {exc}). This is a "
                    "bug in multibone; the server log has the details."
                )
            else:
                out["fp"] = fp
                st.session_state["mb_result"] = out
                export_panel.render(bundle, out, st.session_state["mb_source_bytes"])
                return  # drawn while computing
    out = st.session_state.get("mb_result")
    if out is not None and out["fp"] == fp:
        result_section(out)
    elif out is not None:
        st.info(
            "The inputs changed since the last result: press 'Compute the result' to update it."
        )
    current = out if out is not None and out["fp"] == fp else None
    export_panel.render(bundle, current, st.session_state.get("mb_source_bytes", []))


def main() -> None:
    st.set_page_config(page_title="multibone", layout="wide")
    _init_state()
    try:
        configure_torch()
    except MultiboneError as exc:
        st.error(str(exc))
    st.title("multibone: primary bone tumour or bone infection?")
    loc, bundle, error = sidebar_bundle()
    if bundle is None:
        no_bundle_panel(loc, error)
        return
    case, model = st.tabs(["Case", "Model"])
    with case:
        case_tab(bundle, str(bundle.path))
    with model:
        model_tab.render(bundle)


# Streamlit runs this file as __main__; importing it (e.g. to walk the imports) draws nothing.
if __name__ == "__main__":
    main()
