"""The shared ``refdata`` fixture (tests/conftest.py): skip on a workstation, fail under CI.

Run in a child pytest on a copy of conftest.py placed where no ``../shared/refdata`` exists,
so the real reference data (and the other tests) are left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

TEST = """
def test_reads_reference(refdata):
    refdata("aSAH.csv").read_text()
"""


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    tests = tmp_path / "repo" / "tests"  # refdata would be tmp_path/shared/refdata: absent
    tests.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CONFTEST, tests / "conftest.py")
    (tests / "test_ref.py").write_text(TEST)
    (tmp_path / "repo" / "pytest.ini").write_text("[pytest]\n")  # not the project's addopts
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path / "repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("ci", "code", "word"), [(None, 0, "skipped"), ("true", 1, "failed")])
def test_missing_refdata_skips_unless_ci(tmp_path, ci, code, word):
    assert not (tmp_path / "shared" / "refdata").exists()
    r = _run(tmp_path, ci)
    out = r.stdout + r.stderr
    assert r.returncode == code, out
    assert f"1 {word}" in out and "reference data not found" in out, out
