"""The PDF case report (ReportLab, BSD): one to two A4 pages a surgeon can file.

Holds the probability, the decision at the chosen operating point with that point's
development sensitivity and specificity, every operating point, the backbone and per-view
scores, the SHAP waterfall, the CAM overlays (with the lesion box), the bundle's identity
and SHA-256, the decision-support disclaimer and, for a bundle trained on synthetic data,
the synthetic-data warning. No DICOM header field reaches it: images are labelled by
position ("image 1 (DICOM)") and drawn from pixels only, and the PDF's own metadata
(title, author, subject) are fixed texts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from multibone.disclaimer import DISCLAIMER, SYNTHETIC_WARNING
from multibone.errors import InputError

#: Longest side, in pixels, of a figure embedded in the PDF (keeps the file small).
FIGURE_MAX_SIDE = 480


def choose_operating_point(decisions, wanted: str | None = None) -> str:
    """``wanted`` if the bundle has it (InputError otherwise), else Youden's point, else the
    first one."""
    if wanted:
        if wanted not in decisions:
            raise InputError(
                f"operating point {wanted!r} is not one of the bundle's: "
                f"{', '.join(decisions) or 'none'}"
            )
        return wanted
    return "youden" if "youden" in decisions else next(iter(decisions))


def _small_png(png: bytes, max_side: int = FIGURE_MAX_SIDE) -> io.BytesIO:
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    img.load()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=88)  # embedded as is (DCT): small, fast
    buf.seek(0)
    return buf


def _flowable_image(png: bytes, max_width: float, max_height: float):
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image as RLImage

    buf = _small_png(png)
    w, h = ImageReader(buf).getSize()
    buf.seek(0)
    s = min(max_width / w, max_height / h)
    return RLImage(buf, width=w * s, height=h * s)


def case_report_pdf(
    case,
    result,
    explanation=None,
    *,
    operating_point: str,
    bundle_hash: str,
    synthetic: bool,
    aggregation: str | None = None,
    created: datetime | None = None,
) -> bytes:
    """The case report as PDF bytes.

    ``case``/``result``/``explanation``: :class:`multibone.case.Case`, ``CaseResult`` and
    ``CaseExplanation`` (None: no SHAP/CAM section). ``operating_point``: the key of
    ``result.decisions`` the user chose (e.g. ``"youden"``); its decision is the one
    headlined. ``bundle_hash``: the bundle's SHA-256 (``Bundle.hash``). ``synthetic``:
    the bundle was trained on synthetic data (adds the warning).
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import (
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    if operating_point not in result.decisions:
        raise InputError(
            f"operating point {operating_point!r} is not one of the bundle's: "
            f"{', '.join(result.decisions) or 'none'}"
        )
    created = created or datetime.now(timezone.utc)
    styles = getSampleStyleSheet()
    body = ParagraphStyle("mb_body", parent=styles["BodyText"], fontSize=9, leading=11.5)
    small = ParagraphStyle("mb_small", parent=body, fontSize=7.5, leading=9.5)
    warn = ParagraphStyle(
        "mb_warn",
        parent=body,
        backColor=colors.HexColor("#fff3cd"),
        borderColor=colors.HexColor("#e0b000"),
        borderWidth=0.5,
        borderPadding=4,
    )
    h2 = ParagraphStyle(
        "mb_h2", parent=styles["Heading2"], fontSize=11.5, spaceBefore=6, spaceAfter=3
    )

    def p(text: str, style=body) -> Paragraph:
        return Paragraph(text, style)

    def table(rows: Sequence[Sequence[str]], widths=None) -> Table:
        t = Table(
            [[p(escape(str(c)), small) for c in r] for r in rows], colWidths=widths, hAlign="LEFT"
        )
        t.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5")),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ]
            )
        )
        return t

    pos, neg = result.positive_class, result.negative_class
    d = result.decisions[operating_point]
    story: list = [
        Paragraph("multibone case report", styles["Title"]),
        p(f"<b>{escape(DISCLAIMER)}</b>", warn),
        Spacer(1, 4),
    ]
    if synthetic:
        story += [
            p(
                f"<b>SYNTHETIC DATA.</b> {escape(SYNTHETIC_WARNING)} This bundle must "
                "never be used on patients.",
                warn,
            ),
            Spacer(1, 4),
        ]
    story += [
        p(
            f"<font size=14><b>Probability of {escape(pos)}: {result.probability:.1%}</b></font>"
            f" (probability of {escape(neg)}: {1 - result.probability:.1%})"
        ),
        Spacer(1, 3),
        p(
            f"Decision at the operating point <b>{escape(d['meaning'])}</b> "
            f"(threshold {d['threshold']:.3f}): <b>{escape(d['call'])}</b>. "
            f"At this operating point the model had sensitivity {d['sensitivity']:.2f} and "
            f"specificity {d['specificity']:.2f} for {escape(pos)} on its development data "
            "(out-of-fold)."
        ),
        p("All operating points (chosen on development data)", h2),
        table(
            [["operating point", "threshold", "call", "sensitivity", "specificity"]]
            + [
                [
                    v["meaning"] + (" (chosen)" if k == operating_point else ""),
                    f"{v['threshold']:.3f}",
                    v["call"],
                    f"{v['sensitivity']:.2f}",
                    f"{v['specificity']:.2f}",
                ]
                for k, v in result.decisions.items()
            ]
        ),
        p("Case", h2),
        table(
            [["field", "value"]]
            + [[k, "" if v is None else str(v)] for k, v in case.fields().items()]
            + [
                [
                    f"lesion box, {im.label}",
                    "whole image"
                    if im.roi is None
                    else f"x0={im.roi[0]}, y0={im.roi[1]}, x1={im.roi[2]}, y1={im.roi[3]} px",
                ]
                for im in case.images
            ],
            widths=[5 * cm, 11 * cm],
        ),
    ]
    if result.backbone_scores:
        labels = [im.label for im in case.images]
        header = ["backbone", *labels, f"patient ({aggregation or 'aggregate'})"]
        rows = [
            [b, *[f"{float(v):.3f}" for v in result.image_scores.get(b, [])], f"{float(s):.3f}"]
            for b, s in result.backbone_scores.items()
        ]
        story += [p(f"Image models (probability of {escape(pos)})", h2), table([header, *rows])]
    if explanation is not None:
        shap_head = p("What moved the probability (SHAP)", h2)
        fig = _flowable_image(explanation.waterfall_png, 9.5 * cm, 6.5 * cm)
        words = [p("&bull; " + escape(s), small) for s in explanation.sentences] or [
            p("(no contributions)", small)
        ]
        side = Table([[fig, words]], colWidths=[10 * cm, 7 * cm], hAlign="LEFT")
        side.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story += [
            KeepTogether([shap_head, side]),
            p(
                f"SHAP ({escape(explanation.explainer)}) explains the stacker before "
                "calibration; the probability above is calibrated.",
                small,
            ),
        ]
        if explanation.cams:
            story += [
                p("Where the image models looked (red = more weight; orange box = lesion box)", h2)
            ]
            cells = []
            for v in explanation.cams:
                label = (
                    case.images[v.image_index].label
                    if v.image_index < len(case.images)
                    else f"image {v.image_index + 1}"
                )
                method = {"scorecam": "Score-CAM", "gradcam": "Grad-CAM"}.get(v.method, v.method)
                cells.append(
                    [
                        _flowable_image(v.overlay_png, 4.0 * cm, 4.0 * cm),
                        p(escape(f"{label}: {v.backbone}, {method}"), small),
                    ]
                )
            grid = [cells[i : i + 4] for i in range(0, len(cells), 4)]
            grid[-1] += [""] * (4 - len(grid[-1]))
            g = Table(grid, colWidths=[4.3 * cm] * 4, hAlign="LEFT")
            g.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
            story.append(g)
    story += [
        p("Model bundle", h2),
        p(
            escape(result.bundle_version) + f"<br/>SHA-256 of bundle.json: {escape(bundle_hash)}",
            small,
        ),
        p(
            f"Report made {created:%Y-%m-%d %H:%M} UTC by multibone. Images are named by "
            "position; no DICOM header field is included.",
            small,
        ),
    ]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=1.6 * cm,
        rightMargin=1.6 * cm,
        topMargin=1.3 * cm,
        bottomMargin=1.3 * cm,
        title="multibone case report",
        author="multibone",
        subject="decision support, not a diagnosis",
        creator="multibone",
    )
    doc.build(story)
    return buf.getvalue()
