"""Determinism (issue #17 item 5): the same seed gives the same bytes, another seed differs.

Two mini runs (synthetic cohort -> tiny backbone cross-fitted -> stacker -> evaluation)
with the same seeds must write byte-identical ``predictions.csv`` and ``thresholds.json``,
and the same ``evaluation/metrics.json`` but for ``run_dir`` (the folder's own path). The
cohorts themselves (manifest and every image) must be byte-identical too. A run with
other seeds must differ. Slow: three mini runs on the CPU.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _run(out: Path, seed_shift: int) -> Path:
    from conftest import MINI_CONFIG

    from multibone.pipeline import run_pipeline
    from multibone.runconfig import run_config_from_dict
    from multibone.synthetic import make_synthetic_cohort

    config = copy.deepcopy(MINI_CONFIG)
    config["splits"]["seed"] += seed_shift
    config["imaging"]["seed"] = seed_shift
    config["stacking"]["seed"] = seed_shift
    manifest = make_synthetic_cohort(out / "cohort", n_patients=48, seed=1, progress=False)
    return run_pipeline(manifest, out, run_config_from_dict(config), progress=False, n_boot=50)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _metrics(run: Path) -> dict:
    m = json.loads((run / "evaluation" / "metrics.json").read_text())
    m.pop("run_dir")
    return m


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _run(tmp_path / "a", 0)
    b = _run(tmp_path / "b", 0)
    assert _digest(a / "cohort") == _digest(b / "cohort")
    for name in ("predictions.csv", "thresholds.json", "splits.csv", "imaging/patient_scores.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert _metrics(a) == _metrics(b)
    assert json.dumps(_metrics(a), sort_keys=True) == json.dumps(_metrics(b), sort_keys=True)

    c = _run(tmp_path / "c", 1)
    assert (a / "predictions.csv").read_bytes() != (c / "predictions.csv").read_bytes()
    assert (a / "thresholds.json").read_bytes() != (c / "thresholds.json").read_bytes()
    assert _metrics(a) != _metrics(c)
