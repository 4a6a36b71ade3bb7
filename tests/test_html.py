"""The HTML layer: Jinja2 templates shipped as package data, autoescaping, one disclaimer.

The case report is rendered from hand-made results (no model): what is checked is
the page, not the prediction.
"""

from __future__ import annotations

import re
from importlib import resources

import jinja2
import numpy as np
import pytest

from multibone import case as case_api
from multibone._html import png_data_uri, render
from multibone.disclaimer import DISCLAIMER, SYNTHETIC_WARNING

EVIL = "<script>alert(1)</script>"
PAGES = ("base.html", "report.html", "compare.html", "readers.html", "case_report.html")


def _png() -> bytes:
    return case_api._png_bytes(np.zeros((4, 4, 3), np.uint8))


def _case_and_result() -> tuple[case_api.Case, case_api.CaseResult]:
    images = [
        case_api.CaseImage(np.zeros((8, 8), np.float32), (1, 1, 5, 5), "image 1"),
        case_api.CaseImage(np.full((8, 8), 0.5, np.float32), None, f"image {EVIL}"),
    ]
    case = case_api.Case(images=images, age=30, sex="F", site=EVIL, crp=12.0)
    result = case_api.CaseResult(
        probability=0.6234,
        positive_class="infection",
        negative_class="tumour",
        decisions={
            "youden": {
                "meaning": "balanced (Youden)",
                "threshold": 0.5123,
                "call": "infection",
                "sensitivity": 0.81,
                "specificity": 0.77,
            }
        },
        backbone_scores={"e3": 0.7123, EVIL: 0.2},
        image_scores={},
        features={},
        bundle_version="bundle 1",
    )
    return case, result


def test_templates_are_package_data():
    folder = resources.files("multibone") / "templates"
    assert set(PAGES) <= {f.name for f in folder.iterdir()}


def test_render_escapes_and_refuses_missing_values():
    page = render("base.html", title=EVIL, heading=EVIL)
    assert "<script" not in page and page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert page.count(DISCLAIMER) == 1 and SYNTHETIC_WARNING not in page
    assert render("base.html", title="t", heading="h", synthetic=True).count(SYNTHETIC_WARNING) == 1
    # a value the template needs but was not given fails, rather than leaving a silent gap
    with pytest.raises(jinja2.UndefinedError, match="files"):
        render("compare.html", title="t", heading="h")


def test_case_report_content_escaping_and_disclaimer():
    case, result = _case_and_result()
    expl = case_api.CaseExplanation(
        shap=None,
        sentences=[f"CRP 12 mg/L raised the probability {EVIL}"],
        waterfall_png=_png(),
        cams=[case_api.CamView(1, "e3", "gradcam", np.zeros((2, 2)), _png(), 0.1)],
        explainer="TreeExplainer",
    )
    page = case_api.case_report_html(case, result, expl)
    assert page.lower().startswith("<!doctype html")
    assert page.count(DISCLAIMER) == 1 and page.count("not a diagnosis") == 1
    assert SYNTHETIC_WARNING not in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>62.3%</b>" in page and "0.512" in page and "0.712" in page
    assert "lesion box (1, 1, 5, 5)" in page and "lesion box whole image" in page
    assert "SHAP: TreeExplainer" in page
    # every image inline: 2 inputs, the waterfall and one CAM; nothing fetched from outside
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 4
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    # without an explanation the "Why" section is left out
    plain = case_api.case_report_html(case, result)
    assert "<h2>Why</h2>" not in plain and plain.count(DISCLAIMER) == 1


def test_one_disclaimer_text_everywhere():
    # the case result, the dashboard (which reads case.DISCLAIMER) and the pages share it
    assert case_api.DISCLAIMER is DISCLAIMER
    assert case_api.CaseResult(0.5, "a", "b", {}, {}, {}, {}, "v").to_json()["disclaimer"] == (
        DISCLAIMER
    )


def test_png_data_uri_round_trips():
    import base64

    png = _png()
    uri = png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
