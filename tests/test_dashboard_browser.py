"""The dashboard in a real browser: headless Chromium drives the app as ``multibone dashboard``
starts it.

Marked ``browser`` (not in the default run). Needs Debian's ``chromium`` and
``chromium-driver`` packages and the ``selenium`` Python package (``dev`` extra); skipped
with the reason when any is missing. The screenshot of the finished case goes to
``tests/artifacts/dashboard.png`` (git-ignored folder); with
``MULTIBONE_UPDATE_SCREENSHOT=1`` it is also copied to the committed
``benchmarks/dashboard_screenshot.png`` for a person to look at (take it with the demo
bundle: run ``multibone demo`` first).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dashboard_support as support  # noqa: E402

REPO = support.REPO
APP = support.APP
ARTIFACTS = REPO / "tests" / "artifacts"
SCREENSHOT_COPY = REPO / "benchmarks" / "dashboard_screenshot.png"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1500,4200",
)


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser_tools():
    """(chromium path, chromedriver path), or skip saying what is missing."""
    pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")
    chromium = _which("chromium", "chromium-browser", "google-chrome")
    driver = _which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "Chromium not installed: apt-get install chromium chromium-driver "
            f"(found chromium={chromium}, chromedriver={driver})"
        )
    return chromium, driver


@pytest.fixture(scope="module")
def demo_bundle(request) -> Path:
    """The demo bundle (``$MULTIBONE_TEST_BUNDLE``, else runs/demo/bundle from
    ``multibone demo``), else the session's tiny real run (conftest ``mini_bundle``)."""
    return support.find_bundle() or request.getfixturevalue("mini_bundle")


@pytest.fixture(scope="module")
def synthetic_dicom(tmp_path_factory):
    """(synthetic DICOM under a neutral name, its identifying header values)."""
    path, identifiers, _ = support.synthetic_dicom(tmp_path_factory.mktemp("dashboard-dicom"))
    return path, identifiers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout:.0f} s")


@pytest.fixture
def dashboard_url(demo_bundle, tmp_path):
    """Start the dashboard on a free localhost port with the demo bundle; stop it after."""
    from multibone.cli.dashboard import streamlit_command

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MULTIBONE_BUNDLE"}
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 (closed in finally)
    # The command line of `multibone dashboard --bundle B`, started outside the repository
    # (no .streamlit/config.toml there: its settings must come as flags).
    proc = subprocess.Popen(
        streamlit_command(APP, port, str(demo_bundle)),
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    try:
        _wait_health(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
        print((tmp_path / "streamlit.log").read_text(errors="replace")[-3000:])


def _driver(browser_tools, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_tools
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(chromedriver), options=opts)


def _settle(driver, wait) -> None:
    """Wait for the script rerun a widget change started (the status widget disappears)."""
    from selenium.webdriver.common.by import By

    time.sleep(0.6)
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))
    time.sleep(0.2)


def _type(driver, wait, label: str, text: str, *, choose: bool = False) -> None:
    """Type into the input labelled ``label`` and commit (Enter); for a selectbox, the
    typed text filters the options and Enter picks the first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]'))
    box.click()
    box.send_keys(text)
    if choose:
        time.sleep(0.4)  # let the option list filter
    box.send_keys(Keys.ENTER)
    _settle(driver, wait)


def test_browser_demo_case(browser_tools, dashboard_url, synthetic_dicom, tmp_path):
    """Upload a synthetic DICOM, fill the form, compute, see the result; no identifiers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    dicom_path, identifiers = synthetic_dicom
    driver = _driver(browser_tools, tmp_path / "chromium-profile")
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(dashboard_url)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'input[type="file"]')))
        upload.send_keys(str(dicom_path))
        wait.until(lambda d: "image 1 (DICOM)" in d.page_source)

        _type(driver, wait, "Age (years)", "47")
        _type(driver, wait, "Sex", "female", choose=True)
        _type(driver, wait, "Site", "femur", choose=True)

        def value(label: str) -> str:
            el = driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
            return el.get_property("value")

        assert (value("Age (years)"), value("Sex"), value("Site")) == ("47", "female", "femur")
        assert "Location: appendicular" in driver.find_element(By.TAG_NAME, "body").text

        button = wait.until(
            ec.element_to_be_clickable((By.XPATH, '//button[.//p[text()="Compute the result"]]'))
        )
        t0 = time.perf_counter()
        button.click()
        wait.until(lambda d: "Probability of infection" in d.find_element(By.TAG_NAME, "body").text)
        t_probability = time.perf_counter() - t0
        # SHAP and heatmaps follow the probability; the report button comes last
        wait.until(lambda d: "Download the case report" in d.find_element(By.TAG_NAME, "body").text)
        # not asserted (speed lives in benchmarks/), printed for the record
        print(
            f"click to probability {t_probability:.1f} s, "
            f"to complete result {time.perf_counter() - t0:.1f} s"
        )
        _settle(driver, wait)
        # wait for every image (waterfall, overlays) to have loaded before the picture
        wait.until(
            lambda d: d.execute_script(
                "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        time.sleep(1.0)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Decision at" in body
        assert "Score-CAM" in body
        assert "not a diagnosis" in body
        html = driver.page_source
        for value in identifiers:
            assert value not in html, "a DICOM identifier reached the page"
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / ".gitignore").write_text("*\n")  # test output, never committed
        shot = ARTIFACTS / "dashboard.png"
        # Streamlit scrolls inside its own container: measure the page's content block
        height = driver.execute_script(
            "const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
            "return b ? b.scrollHeight + 120 : document.documentElement.scrollHeight;"
        )
        driver.set_window_size(1500, min(max(int(height), 1200), 8000))
        time.sleep(1.0)
        assert driver.save_screenshot(str(shot))
        if os.environ.get("MULTIBONE_UPDATE_SCREENSHOT") == "1":  # the committed picture
            shutil.copyfile(shot, SCREENSHOT_COPY)
    finally:
        driver.quit()
