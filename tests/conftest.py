"""Shared fixtures: a tiny but real end-to-end run (synthetic cohort -> one tiny
backbone cross-fitted -> stacker -> evaluation -> bundle), built once per session.

It is small enough for a 2-core CPU (well under a minute) and exercises every
layer for real, so predict, explain, bundle and dashboard tests need no mocks.

Also the fixtures several test files share: ``refdata`` (reference tables of other
implementations in ``../shared/refdata``) and ``one_torch_thread``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Tests run on 2 shared cores: keep torch/BLAS from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

MINI_CONFIG = {
    "name": "mini",
    "splits": {"n_folds": 3, "external_centers": ["B", "C"], "seed": 0},
    "imaging": {
        "backbones": ["e3_tiny"],
        "img_size": 32,
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.01,
        "lr_step": 10,
        "num_workers": 0,
        "num_threads": 1,
        "val_fraction": 0.25,
    },
    "stacking": {"compare": ["rf", "lr"], "n_iter": 1, "nested": False, "bootstrap": 50},
}


def build_mini_run(out: Path, patients: int = 48) -> Path:
    from multibone.pipeline import run_pipeline
    from multibone.runconfig import run_config_from_dict
    from multibone.synthetic import make_synthetic_cohort

    manifest = make_synthetic_cohort(out / "cohort", n_patients=patients, seed=1, progress=False)
    config = run_config_from_dict(MINI_CONFIG, where="mini config")
    return run_pipeline(manifest, out, config, progress=False, n_boot=50)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """Path of a finished tiny run; its bundle is ``mini_run / "bundle"``."""
    return build_mini_run(tmp_path_factory.mktemp("mini") / "run")


@pytest.fixture(scope="session")
def mini_bundle(mini_run) -> Path:
    return mini_run / "bundle"


# --------------------------------------------------------------------------- reference data

#: Reference tables from other implementations (R, statsmodels, ...), beside the repository.
REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def refdata() -> Callable[[str], Path]:
    """``refdata(name)``: the path of ``../shared/refdata/<name>``.

    A missing file skips the test on a workstation but fails it under ``CI=true``: CI must
    not pass by silently skipping the comparisons with other implementations.
    """

    def path_of(name: str) -> Path:
        path = REFDATA / name
        if not path.is_file():
            message = f"reference data not found at {path} (../shared/refdata beside the repo)"
            if _on_ci():
                pytest.fail(f"{message}; CI=true, so this is an error, not a skip")
            pytest.skip(message)
        return path

    return path_of


# --------------------------------------------------------------------------- torch threads


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch CPU thread for the test (the machine is shared); restored afterwards."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def bundle_path(request) -> Path:
    """The dashboard tests' bundle: $MULTIBONE_TEST_BUNDLE when set, else the mini run's."""
    given = os.environ.get("MULTIBONE_TEST_BUNDLE", "")
    if given:
        return Path(given)
    return request.getfixturevalue("mini_bundle")


@pytest.fixture(scope="session")
def dicom_case(tmp_path_factory):
    """(path of a synthetic DICOM under a neutral name, its identifier values, its row)."""
    import _dashboard_support as support

    return support.synthetic_dicom(tmp_path_factory.mktemp("dashboard-dicom"))
