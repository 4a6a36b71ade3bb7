"""Section "4. Take the result home" of the Case tab: the PDF case report and, on explicit
request only, the DICOM Secondary Capture + Structured Report for PACS.

Asked before a result exists (or after the inputs changed): a message under the button,
nothing made. The files are offered as downloads; the page writes nothing to disk.
"""

from __future__ import annotations

import logging

import streamlit as st

from multibone.errors import MultiboneError

log = logging.getLogger("multibone.dashboard")

TOO_EARLY = (
    "There is no result to export yet: press 'Compute the result' first (after any change "
    "to the images, boxes or clinical data, compute again)."
)
DICOM_NOTE = (
    "These two DICOM files (a Secondary Capture of the heatmap and a Structured Report with "
    "the probability, decision, operating point and lesion box) copy the source image's "
    "patient module (name, ID, birth date, sex) so that a PACS can file them beside the "
    "images. They are the only outputs of multibone that carry it; the page, the PDF and the "
    "HTML report hold no DICOM header field."
)


def _pdf(bundle, out: dict, op: str) -> bytes:
    from multibone.export.pdf import case_report_pdf

    return case_report_pdf(
        out["case"],
        out["result"],
        out["explanation"],
        operating_point=op,
        bundle_hash=bundle.hash,
        synthetic=bool(bundle.training_data.get("synthetic")),
        aggregation=out.get("aggregation"),
    )


def _dicom_zip(bundle, out: dict, op: str, sources: list[bytes]) -> bytes:
    from multibone.errors import InputError
    from multibone.export.dicom import dicom_results, read_source

    for i, im in enumerate(out["case"].images):
        if "(DICOM)" in im.label and i < len(sources):
            source = read_source(sources[i], label=im.label)
            return dicom_results(
                source,
                case=out["case"],
                result=out["result"],
                explanation=out["explanation"],
                source_index=i,
                operating_point=op,
                bundle_hash=bundle.hash,
            ).zip_bytes()
    raise InputError(
        "DICOM out needs a DICOM radiograph in the case (PNG and JPEG images belong to no "
        "study a PACS could file the result in); the PDF report works for every image"
    )


def render(bundle, out: dict | None, sources: list[bytes]) -> None:
    """``out``: the current result (None when there is none or it is stale)."""
    st.subheader("4. Take the result home")
    op = st.session_state.get("mb_op", "youden")
    fp = None if out is None else out.get("fp")
    left, right = st.columns(2)
    with left:
        pressed = st.button(
            "Make the PDF case report",
            key="mb_export_pdf",
            help="One to two A4 pages: probability, decision at the chosen operating point, "
            "image model scores, SHAP, heatmaps with the box, the bundle's identity and the "
            "disclaimer. No DICOM header field.",
        )
        slot = st.empty()
        if pressed:
            if out is None:
                slot.error(TOO_EARLY)
            else:
                try:
                    st.session_state["mb_pdf"] = (fp, op, _pdf(bundle, out, op))
                except MultiboneError as exc:
                    slot.error(f"The PDF could not be made: {exc}")
                except Exception as exc:  # a bug must not take the page down
                    log.exception("making the PDF failed")
                    slot.error(f"The PDF could not be made ({type(exc).__name__}: {exc}).")
        held = st.session_state.get("mb_pdf")
        if out is not None and held and held[0] == fp and held[1] == op:
            st.download_button(
                "Download the PDF case report",
                data=held[2],
                file_name="multibone_case_report.pdf",
                mime="application/pdf",
                key="mb_pdf_download",
                on_click="ignore",
            )
    with right:
        pressed = st.button(
            "Make DICOM objects for PACS",
            key="mb_export_dicom",
            help=DICOM_NOTE,
        )
        slot = st.empty()  # right under the button: a message asked too early
        st.caption(DICOM_NOTE)
        if pressed:
            if out is None:
                slot.error(TOO_EARLY)
            else:
                try:
                    st.session_state["mb_dicom"] = (fp, op, _dicom_zip(bundle, out, op, sources))
                except MultiboneError as exc:
                    slot.error(str(exc))
                except Exception as exc:
                    log.exception("making the DICOM objects failed")
                    slot.error(
                        f"The DICOM objects could not be made ({type(exc).__name__}: {exc})."
                    )
        held = st.session_state.get("mb_dicom")
        if out is not None and held and held[0] == fp and held[1] == op:
            st.download_button(
                "Download the DICOM objects (zip: Secondary Capture + SR)",
                data=held[2],
                file_name="multibone_dicom.zip",
                mime="application/zip",
                key="mb_dicom_download",
                on_click="ignore",
            )
