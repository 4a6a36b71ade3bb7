"""Model bundle: hashes verified before unpickling, atomic writes, no silent overwrite,
metadata checked against bundle.schema.json, version drift of pickling libraries warned."""

from __future__ import annotations

import json
import shutil
import warnings
from importlib import metadata as importlib_metadata

import pytest

from multibone.bundle import (
    BUNDLE_FORMAT_VERSION,
    BundleVersionWarning,
    build_metadata,
    load_bundle,
    save_bundle,
    verify_bundle,
)
from multibone.cli import main
from multibone.errors import BundleError, InputError


def _meta(**changes):
    kwargs = dict(
        positive_class="infection",
        features=["age", "sex_male"],
        backbones=[],
        clinical=["age", "sex_male"],
        family="lr",
        calibration="sigmoid",
        thresholds={"youden": {"threshold": 0.42, "sensitivity": 0.8, "specificity": 0.7}},
        preprocessing={},
        training_data={
            "synthetic": True,
            "n_patients": 10,
            "n_images": 0,
            "centres": ["A"],
            "by_split": {},
        },
        metrics={},
        config={},
    )
    kwargs.update(changes)
    return build_metadata(**kwargs)


@pytest.fixture()
def small_bundle(tmp_path):
    return save_bundle(
        tmp_path / "b",
        _meta(),
        objects={"stacker.skops": {"weights": [1, 2, 3]}},
        files={},
    )


def test_round_trip_lists_every_file_with_its_hash(small_bundle):
    meta = verify_bundle(small_bundle)
    assert meta["format_version"] == BUNDLE_FORMAT_VERSION
    assert set(meta["files"]) == {"stacker.skops"}
    b = load_bundle(small_bundle)
    assert b.load_object("stacker.skops") == {"weights": [1, 2, 3]}
    assert len(b.hash) == 64


def test_existing_bundle_is_not_overwritten_without_force(small_bundle):
    before = (small_bundle / "bundle.json").read_bytes()
    with pytest.raises(InputError, match="already exists; pass --force"):
        save_bundle(small_bundle, _meta(), objects={"a.skops": 1})
    assert (small_bundle / "bundle.json").read_bytes() == before
    save_bundle(small_bundle, _meta(), objects={"a.skops": 1}, force=True)
    assert set(verify_bundle(small_bundle)["files"]) == {"a.skops"}


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(BundleError, match="no such file"):
        save_bundle(tmp_path / "b", {}, files={"x.bin": tmp_path / "missing.bin"})
    assert list(tmp_path.iterdir()) == []


def _tamper(root):
    p = root / "stacker.skops"
    p.write_bytes(p.read_bytes() + b"\0")


def _truncate(root):
    p = root / "stacker.skops"
    p.write_bytes(p.read_bytes()[:10])


def _remove(root):
    (root / "stacker.skops").unlink()


def _extra(root):
    (root / "evil.joblib").write_bytes(b"x")


def _future(root):
    meta = json.loads((root / "bundle.json").read_text())
    meta["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (root / "bundle.json").write_text(json.dumps(meta))


def _garbled(root):
    (root / "bundle.json").write_text("{not json")


@pytest.mark.parametrize(
    "damage, match",
    [
        (_tamper, r"stacker\.skops: SHA-256 does not match"),
        (_truncate, r"stacker\.skops: SHA-256 does not match"),
        (_remove, r"stacker\.skops: listed in bundle\.json but missing"),
        (_extra, r"evil\.joblib: not listed in bundle\.json"),
        (_future, rf"format version {BUNDLE_FORMAT_VERSION + 1} is newer"),
        (_garbled, r"bundle\.json: not valid JSON"),
    ],
)
def test_damaged_bundle_is_refused_before_unpickling(small_bundle, monkeypatch, damage, match):
    damage(small_bundle)
    import joblib
    import skops.io

    def _boom(*a, **k):  # pragma: no cover - reaching this is the failure
        raise AssertionError("loaded a part of a damaged bundle")

    monkeypatch.setattr(joblib, "load", _boom)
    monkeypatch.setattr(skops.io, "load", _boom)
    with pytest.raises(BundleError, match=match):
        load_bundle(small_bundle)


def test_missing_bundle_folder(tmp_path):
    with pytest.raises(BundleError, match="no bundle folder here"):
        load_bundle(tmp_path / "nope")


def test_predict_cli_refuses_tampered_real_bundle(mini_bundle, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(mini_bundle, copy)
    weights = next((copy / "backbones").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8])
    code = main(
        [
            "predict",
            "--bundle",
            str(copy),
            "--image",
            "x.png",
            "--age",
            "30",
            "--sex",
            "F",
            "--site",
            "femur",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert weights.name in err and "SHA-256 does not match" in err


def _edit_meta(root, edit):
    """Rewrite bundle.json. It is not in its own ``files`` list (it holds the hashes); the
    bundle's identity, ``Bundle.hash``, is its SHA-256 and is recomputed at every load."""
    meta = json.loads((root / "bundle.json").read_text())
    edit(meta)
    (root / "bundle.json").write_text(json.dumps(meta))


def test_metadata_records_the_library_versions(small_bundle):
    meta = verify_bundle(small_bundle)
    versions = meta["versions"]
    expected = ("python", "numpy", "torch", "timm", "scikit-learn", "lightgbm", "xgboost")
    assert set(expected) | {"multibone"} <= set(versions)
    assert versions["scikit-learn"] == importlib_metadata.version("scikit-learn")
    assert versions["lightgbm"] == importlib_metadata.version("lightgbm")
    assert meta["pickled_with"] == ["skops", "numpy", "scikit-learn"]
    assert _meta(family="xgboost")["pickled_with"][-1] == "xgboost"
    assert meta["negative_class"] == "tumor" and meta["thresholds"]["youden"]["threshold"] == 0.42


def test_save_refuses_metadata_that_breaks_the_schema(tmp_path):
    with pytest.raises(BundleError, match=r"positive_class: 'fracture' is not one of"):
        save_bundle(tmp_path / "b", _meta(positive_class="fracture"), objects={"a.skops": 1})
    bad_threshold = {"youden": {"threshold": "high"}}
    with pytest.raises(BundleError, match=r"thresholds\.youden\.threshold: 'high' is not of type"):
        save_bundle(tmp_path / "b", _meta(thresholds=bad_threshold), objects={"a.skops": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.pop("versions"), r"'versions' is a required property"),
        (lambda m: m["training_data"].update(n_patients=-1), r"training_data\.n_patients"),
        (lambda m: m["files"].update({"stacker.skops": "abc"}), r"files\.stacker\.skops"),
    ],
)
def test_load_refuses_metadata_that_breaks_the_schema(small_bundle, edit, match):
    _edit_meta(small_bundle, edit)
    with pytest.raises(BundleError, match=match):
        load_bundle(small_bundle)


def test_format_1_bundle_without_versions_still_loads(small_bundle):
    def as_format_1(m):
        m["format_version"] = 1
        for key in ("versions", "pickled_with", "input", "metrics"):
            m.pop(key)

    _edit_meta(small_bundle, as_format_1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_bundle(small_bundle).load_object("stacker.skops") == {"weights": [1, 2, 3]}


def _bump_minor(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}.0"


def test_loading_under_another_minor_version_warns(mini_bundle, tmp_path):
    """The real stacker was pickled with scikit-learn: another major.minor warns, naming
    the library and both versions; another patch release does not."""
    copy = tmp_path / "bundle"
    shutil.copytree(mini_bundle, copy)
    installed = importlib_metadata.version("scikit-learn")
    assert "scikit-learn" in verify_bundle(copy)["pickled_with"]
    before = load_bundle(copy).hash

    recorded = _bump_minor(installed)
    _edit_meta(copy, lambda m: m["versions"].update({"scikit-learn": recorded}))
    with pytest.warns(BundleVersionWarning) as caught:
        bundle = load_bundle(copy)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert f"scikit-learn {recorded}" in text and f"scikit-learn {installed} is installed" in text
    assert bundle.hash != before  # the edited bundle.json is a different bundle

    major, minor = installed.split(".")[:2]
    _edit_meta(copy, lambda m: m["versions"].update({"scikit-learn": f"{major}.{minor}.999"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BundleVersionWarning)
        load_bundle(copy)
