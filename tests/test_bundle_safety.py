"""Safe loading (issue #17 item 2): a bundle holds no pickle, and a planted payload is
refused before it can run.

Every payload here would create a marker file if it ran; each test asserts both the
refusal (a clear :class:`BundleError`) and that the marker was never created.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from multibone.bundle import load_bundle, save_bundle, sha256_file
from multibone.cli import main
from multibone.errors import BundleError, UnsafeModelError
from multibone.io.modelfile import TRUSTED_TYPES, dump_model, load_model, untrusted_types
from multibone.stacking import FAMILIES, ScoreBaseline, StackingConfig, fit_stacker


class Payload:
    """Creates ``marker`` when unpickled (``__reduce__``) or rebuilt by skops (``__setstate__``)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))

    def __setstate__(self, state):  # pragma: no cover - reaching this is the failure
        Path(state["marker"]).touch()
        self.__dict__.update(state)


def _relist(root: Path, drop: str | None = None, add: str | None = None, **meta_changes) -> None:
    """Re-hash ``bundle.json``'s files as an attacker would (drop/add an entry, edit keys)."""
    meta = json.loads((root / "bundle.json").read_text())
    files = meta["files"]
    if drop:
        files.pop(drop)
    if add:
        files[add] = ""
    for rel in files:
        files[rel] = sha256_file(root / rel)
    meta.update(meta_changes)
    (root / "bundle.json").write_text(json.dumps(meta))


def _xy(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "p_a": rng.random(n),
            "age": rng.normal(50, 15, n),
            "crp_abnormal": rng.integers(0, 2, n).astype(float),
        }
    )
    X.loc[::5, "crp_abnormal"] = np.nan
    y = (X["p_a"] + rng.normal(0, 0.3, n) > 0.5).astype(int).to_numpy()
    return X, y


def _meta():
    from test_bundle import _meta as meta

    return meta()


@pytest.fixture(scope="module")
def fitted():
    X, y = _xy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacker = fit_stacker(X, y, np.arange(len(y)), StackingConfig(family="lr", n_iter=1), "lr")
    return X, stacker


@pytest.fixture()
def bundle(tmp_path, fitted):
    _, stacker = fitted
    return save_bundle(tmp_path / "b", _meta(), objects={"stacker.skops": stacker})


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "calibration",
    [
        "sigmoid",
        pytest.param("isotonic", marks=pytest.mark.slow),
        pytest.param("none", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_saves_only_trusted_types_and_round_trips(tmp_path, family, calibration):
    """The allow-list covers what multibone saves (every family, every calibration,
    LightGBM and XGBoost boosters included) and the reloaded model predicts the same.
    The default run checks sigmoid calibration; ``-m slow`` adds isotonic and none."""
    X, y = _xy(36)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = StackingConfig(family=family, calibration=calibration, n_iter=1)
        stacker = fit_stacker(X, y, np.arange(len(y)), config, family)
    path = dump_model(stacker, tmp_path / "stacker.skops")
    assert untrusted_types(path) == []
    back = load_model(path)
    np.testing.assert_array_equal(back.predict_proba(X), stacker.predict_proba(X))


def test_baselines_round_trip(tmp_path, fitted):
    X, _ = fitted
    models = {"p_a": ScoreBaseline(["p_a"]).fit(X)}
    back = load_model(dump_model(models, tmp_path / "baselines.skops"))
    np.testing.assert_array_equal(back["p_a"].predict_proba(X), models["p_a"].predict_proba(X))


def test_allow_list_holds_no_function_or_builtin_with_side_effects():
    assert not {
        n for n in TRUSTED_TYPES if n.startswith(("builtins.", "os.", "posix.", "subprocess."))
    }


# ----------------------------------------------------------------------------- planted payloads


def test_pickle_planted_as_the_stacker_is_refused_not_run(bundle, tmp_path):
    marker = tmp_path / "PWNED"
    joblib.dump(Payload(str(marker)), bundle / "stacker.skops")
    _relist(bundle)  # the attacker updates the hash: the manifest check alone cannot see it
    loaded = load_bundle(bundle)
    with pytest.raises(
        UnsafeModelError, match=r"stacker\.skops: not a readable \.skops model file"
    ):
        loaded.load_object("stacker.skops")
    assert not marker.exists()


def test_skops_file_naming_an_unknown_type_is_refused_not_built(bundle, tmp_path):
    marker = tmp_path / "PWNED"
    sio.dump({"model": Payload(str(marker))}, bundle / "stacker.skops")
    _relist(bundle)
    with pytest.raises(UnsafeModelError, match=r"never saves \(test_bundle_safety\.Payload\)"):
        load_bundle(bundle).load_object("stacker.skops")
    assert not marker.exists()


def test_skops_file_naming_a_function_is_refused(bundle):
    import os

    sio.dump({"f": os.system}, bundle / "stacker.skops")
    _relist(bundle)
    with pytest.raises(UnsafeModelError, match=r"never saves \((posix|nt)\.system\)"):
        load_bundle(bundle).load_object("stacker.skops")


def test_pickle_added_beside_a_format_3_bundle_is_refused(bundle, tmp_path):
    marker = tmp_path / "PWNED"
    joblib.dump(Payload(str(marker)), bundle / "stacker.joblib")
    (bundle / "stacker.skops").unlink()
    _relist(bundle, drop="stacker.skops", add="stacker.joblib")
    with pytest.raises(BundleError, match=r"stacker\.joblib as pickle.*Retrain.*--trust-pickle"):
        load_bundle(bundle)
    assert not marker.exists()


def test_save_refuses_pickles(tmp_path):
    (tmp_path / "m.joblib").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"m\.joblib.*it is a pickle"):
        save_bundle(tmp_path / "b", _meta(), files={"m.joblib": tmp_path / "m.joblib"})
    with pytest.raises(BundleError, match=r"saved as \.skops files"):
        save_bundle(tmp_path / "b", _meta(), objects={"m.joblib": 1})
    assert not (tmp_path / "b").exists()


def test_swapped_valid_stacker_changes_the_bundle_identity(bundle, tmp_path):
    """Another valid stacker with its hash updated loads (nothing signs a bundle), but the
    identity every prediction carries (``bundle_version``) changes."""
    before = load_bundle(bundle).version
    X, y = _xy(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = fit_stacker(X, y, np.arange(len(y)), StackingConfig(family="lr", n_iter=1), "lr")
    dump_model(other, bundle / "stacker.skops")
    _relist(bundle)
    after = load_bundle(bundle).version
    assert before.split("id ")[1] != after.split("id ")[1]


# ----------------------------------------------------------------------------- old bundles


def _as_format_2(src: Path, dst: Path) -> Path:
    """A copy of a real bundle as multibone wrote it before format 3 (joblib pickles)."""
    shutil.copytree(src, dst)
    for name in ("stacker", "baselines"):
        obj = load_model(dst / f"{name}.skops")
        (dst / f"{name}.skops").unlink()
        joblib.dump(obj, dst / f"{name}.joblib")
        meta = json.loads((dst / "bundle.json").read_text())
        meta["files"].pop(f"{name}.skops")
        meta["files"][f"{name}.joblib"] = ""
        (dst / "bundle.json").write_text(json.dumps(meta))
    _relist(dst, format_version=2)
    return dst


def test_old_format_bundle_is_refused_unless_trusted(mini_run, tmp_path, capsys):
    old = _as_format_2(mini_run / "bundle", tmp_path / "old")
    m = pd.read_csv(mini_run / "cohort" / "manifest.csv").iloc[0]
    image = str(mini_run / "cohort" / m.image_path)
    args = ["predict", "--bundle", str(old), "--image", image, "--age", "40", "--sex", "F"]
    args += ["--site", "femur", "--crp", "30"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "stacker.joblib" in err and "--trust-pickle" in err and "Traceback" not in err
    assert main([*args, "--trust-pickle"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 <= out["probability"] <= 1 and "bundle format 2" in out["bundle_version"]
