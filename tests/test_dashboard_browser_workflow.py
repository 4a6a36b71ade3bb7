"""The surgeon's workflow in a real browser (issue 13): draw the lesion box with the mouse
on the drawing component, compute, make and download the PDF case report, read its text.

Marked ``browser`` (headless Chromium, see tests/test_dashboard_browser.py, whose fixtures
and helpers it uses). With ``MULTIBONE_UPDATE_SCREENSHOT=1`` the finished page is copied to
the committed ``benchmarks/dashboard_workflow.png`` for a person to look at.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dashboard_support as support  # noqa: E402
from test_dashboard_browser import (  # noqa: E402, F401 (fixtures)
    ARTIFACTS,
    _driver,
    _settle,
    _type,
    browser_tools,
    dashboard_url,
    demo_bundle,
)

SCREENSHOT_COPY = support.REPO / "benchmarks" / "dashboard_workflow.png"


@pytest.fixture(scope="module")
def dicom_with_box(tmp_path_factory):
    """(synthetic DICOM, its identifying header values, its lesion box from the manifest)."""
    path, identifiers, row = support.synthetic_dicom(tmp_path_factory.mktemp("workflow-dicom"))
    box = tuple(int(float(row[f"roi_{k}"])) for k in ("x0", "y0", "x1", "y1"))
    return path, identifiers, box


def _canvas(driver, wait):
    """The drawing component's mouse layer (Fabric.js upper canvas, in a shadow root)."""
    from selenium.webdriver.common.by import By

    host = wait.until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('*')).find("
        "e => e.shadowRoot && e.shadowRoot.querySelector('canvas.upper-canvas'))"
    ))
    return host.shadow_root.find_element(By.CSS_SELECTOR, "canvas.upper-canvas")


def _box_fields(driver) -> tuple[int, ...]:
    from selenium.webdriver.common.by import By

    return tuple(
        int(driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{k}"]').get_property("value"))
        for k in ("x0", "y0", "x1", "y1")
    )


def _click(driver, wait, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    button = wait.until(ec.element_to_be_clickable((By.XPATH, f'//button[.//p[text()="{text}"]]')))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def test_browser_draw_box_compute_download_pdf(
    browser_tools, dashboard_url, dicom_with_box, tmp_path  # noqa: F811 (fixtures)
):
    from pypdf import PdfReader
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from multibone.app import box as bx

    dicom_path, identifiers, lesion = dicom_with_box
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _driver(browser_tools, tmp_path / "chromium-profile")
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        wait = WebDriverWait(driver, 180)
        driver.get(dashboard_url)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'input[type="file"]')))
        upload.send_keys(str(dicom_path))
        wait.until(lambda d: "image 1 (DICOM)" in d.page_source)
        _settle(driver, wait)

        # draw the lesion box: press at one corner, drag to the opposite one
        canvas = _canvas(driver, wait)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
        time.sleep(0.5)
        w, h = canvas.size["width"], canvas.size["height"]
        whole = _box_fields(driver)  # the default: the whole image
        geo = bx.canvas_geometry(whole[2], whole[3])
        assert (geo.canvas_width, geo.canvas_height) == (w, h)
        rect = bx.box_to_rect(lesion, geo)
        (ActionChains(driver)
         .move_to_element_with_offset(canvas, rect["left"] - w / 2, rect["top"] - h / 2)
         .click_and_hold()
         .move_by_offset(rect["width"] / 2, rect["height"] / 2)
         .move_by_offset(rect["width"] / 2, rect["height"] / 2)
         .release()
         .perform())
        wait.until(lambda d: _box_fields(d) != whole)
        _settle(driver, wait)
        drawn = _box_fields(driver)
        tol = 2 / min(geo.scale_x, geo.scale_y) + 1  # a screen pixel or two of the mouse
        assert all(abs(a - b) <= tol for a, b in zip(drawn, lesion, strict=True)), (drawn, lesion)

        _type(driver, wait, "Age (years)", "47")
        _type(driver, wait, "Sex", "female", choose=True)
        _type(driver, wait, "Site", "femur", choose=True)
        _click(driver, wait, "Compute the result")
        wait.until(lambda d: "Download the case report" in d.find_element(By.TAG_NAME, "body").text)
        _settle(driver, wait)

        _click(driver, wait, "Make the PDF case report")
        wait.until(lambda d: "Download the PDF case report" in d.find_element(By.TAG_NAME, "body").text)
        _settle(driver, wait)
        _click(driver, wait, "Download the PDF case report")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(downloads.glob("*.pdf")):
            time.sleep(0.5)
        pdfs = list(downloads.glob("*.pdf"))
        assert pdfs, f"no PDF downloaded: {list(downloads.iterdir())}"
        data = pdfs[0].read_bytes()
        text = " ".join(
            " ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).split()
        )
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Probability of infection:" in text
        # the page shows the probability rounded to a whole percent; the PDF to 0.1 %
        pdf_pct = float(text.split("Probability of infection:")[1].split("%")[0])
        assert f"{pdf_pct:.0f} %" in body.replace("\n", " ")
        assert "balanced (Youden)" in text and "threshold" in text
        assert "Decision support, not a diagnosis" in text
        x0, y0, x1, y1 = drawn
        assert f"x0={x0}, y0={y0}, x1={x1}, y1={y1} px" in text  # the drawn box reached it
        for value in identifiers:
            assert value not in text and value.encode() not in data, f"identifier {value!r}"
            assert value not in driver.page_source

        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / ".gitignore").write_text("*\n")
        shot = ARTIFACTS / "dashboard_workflow.png"
        height = driver.execute_script(
            "const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
            "return b ? b.scrollHeight + 120 : document.documentElement.scrollHeight;"
        )
        driver.set_window_size(1500, min(max(int(height), 1200), 8000))
        time.sleep(1.0)
        assert driver.save_screenshot(str(shot))
        shutil.copyfile(pdfs[0], ARTIFACTS / "case_report.pdf")
        if os.environ.get("MULTIBONE_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT_COPY)
    finally:
        driver.quit()
