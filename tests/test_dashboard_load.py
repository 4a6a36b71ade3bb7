"""The dashboard under load (issue #17 item 6): four sessions at once, each sees its own case.

Four Streamlit AppTest sessions run in four threads against one bundle (one shared,
cached model), each with its own image and clinical fields, for several rounds. Each
must show exactly the probability its case gets when it runs alone, and the process's
memory must come back to its level: after a warm-up round, further rounds may not grow
the resident set by more than a small margin.
"""

from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dashboard_support as support  # noqa: E402

AppTest = pytest.importorskip("streamlit.testing.v1", reason="streamlit not installed").AppTest

#: (age, sex, site, image seed) of the four sessions
CASES = [
    (12.0, "M", "femur", 1),
    (35.0, "F", "tibia", 2),
    (58.0, "M", "humerus", 3),
    (77.0, "F", "pelvis", 4),
]
ROUNDS = 3
#: growth of the resident set allowed between the end of round 1 and the end of the last
RSS_MARGIN_MB = 60


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _session(bundle: Path, case) -> tuple[float, float]:
    """One dashboard session: upload, fill the form, compute; (age shown, probability)."""
    from test_dashboard_apptest import compute, fill_valid_form, upload

    age, sex, site, seed = case
    at = AppTest.from_file(str(support.APP), default_timeout=300)
    at.run()
    upload(at, [("x.png", support.png_bytes(seed=seed), "image/png")])
    fill_valid_form(at, age=age, sex=sex, site=site)
    compute(at)
    # (the page may show warnings as st.error, e.g. synthetic training data; a result is what counts)
    assert not at.exception and at.session_state["mb_result"]["result"] is not None, [
        e.value for e in at.error
    ]
    out = at.session_state["mb_result"]
    return float(out["case"].age), float(out["result"].probability)


def _one_runtime_for_all_sessions(monkeypatch) -> None:
    """AppTest puts a mock Runtime into a process-wide global for each run and clears it
    when the run ends: with sessions in threads, the first to finish pulls the runtime
    from under the others ("Runtime hasn't been created!"). A real server has one Runtime
    for all its sessions; give the threads one, and let each AppTest's swap land on a
    stand-in class."""
    from unittest.mock import MagicMock

    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.runtime import Runtime
    from streamlit.runtime.caching.storage.dummy_cache_storage import (
        MemoryCacheStorageManager,
    )
    from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    shared = MagicMock(spec=Runtime)
    shared.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    shared.dataframe_source_mgr = DataframeSourceManager()
    shared.cache_storage_manager = MemoryCacheStorageManager()
    components = BidiComponentManager()
    components.discover_and_register_components(start_file_watching=False)
    shared.bidi_component_registry = components
    monkeypatch.setattr(app_test_module, "Runtime", type("RuntimeStandIn", (), {"_instance": None}))
    monkeypatch.setattr(Runtime, "_instance", shared)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc for the RSS")
def test_four_concurrent_sessions_each_see_their_own_case(mini_bundle, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTIBONE_BUNDLE", str(mini_bundle))
    alone = [_session(mini_bundle, case) for case in CASES]  # the reference: one at a time
    assert len({p for _, p in alone}) == len(CASES), "the four cases should differ"
    _one_runtime_for_all_sessions(monkeypatch)

    rss = []
    for _ in range(ROUNDS):
        results: list = [None] * len(CASES)
        errors: list = []

        def work(i: int, results: list, errors: list) -> None:
            try:
                results[i] = _session(mini_bundle, CASES[i])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(i, results, errors)) for i in range(len(CASES))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
        assert not errors, errors
        for (age, p), (case, (_, p_alone)) in zip(
            results, zip(CASES, alone, strict=True), strict=True
        ):
            assert age == case[0]
            assert p == pytest.approx(p_alone, abs=1e-6)
        gc.collect()
        rss.append(_rss_mb())
    print(
        f"\ndashboard load: {ROUNDS} rounds x {len(CASES)} sessions, RSS after each round (MB): "
        + ", ".join(f"{r:.0f}" for r in rss)
    )
    assert rss[-1] - rss[0] < RSS_MARGIN_MB, rss
