"""Model bundle: hashes verified before unpickling, atomic writes, no silent overwrite."""

from __future__ import annotations

import json
import shutil

import pytest

from multibone.bundle import BUNDLE_FORMAT_VERSION, load_bundle, save_bundle, verify_bundle
from multibone.cli import main
from multibone.errors import BundleError, InputError


@pytest.fixture()
def small_bundle(tmp_path):
    return save_bundle(
        tmp_path / "b",
        {"positive_class": "infection", "negative_class": "tumor", "backbones": []},
        objects={"stacker.joblib": {"weights": [1, 2, 3]}},
        files={},
    )


def test_round_trip_lists_every_file_with_its_hash(small_bundle):
    meta = verify_bundle(small_bundle)
    assert meta["format_version"] == BUNDLE_FORMAT_VERSION
    assert set(meta["files"]) == {"stacker.joblib"}
    b = load_bundle(small_bundle)
    assert b.load_object("stacker.joblib") == {"weights": [1, 2, 3]}
    assert len(b.hash) == 64


def test_existing_bundle_is_not_overwritten_without_force(small_bundle):
    before = (small_bundle / "bundle.json").read_bytes()
    with pytest.raises(InputError, match="already exists; pass --force"):
        save_bundle(small_bundle, {"positive_class": "x"}, objects={"a.joblib": 1})
    assert (small_bundle / "bundle.json").read_bytes() == before
    save_bundle(small_bundle, {"positive_class": "infection"}, objects={"a.joblib": 1}, force=True)
    assert set(verify_bundle(small_bundle)["files"]) == {"a.joblib"}


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(BundleError, match="no such file"):
        save_bundle(tmp_path / "b", {}, files={"x.bin": tmp_path / "missing.bin"})
    assert list(tmp_path.iterdir()) == []


def _tamper(root):
    p = root / "stacker.joblib"
    p.write_bytes(p.read_bytes() + b"\0")


def _truncate(root):
    p = root / "stacker.joblib"
    p.write_bytes(p.read_bytes()[:10])


def _remove(root):
    (root / "stacker.joblib").unlink()


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
        (_tamper, r"stacker\.joblib: SHA-256 does not match"),
        (_truncate, r"stacker\.joblib: SHA-256 does not match"),
        (_remove, r"stacker\.joblib: listed in bundle\.json but missing"),
        (_extra, r"evil\.joblib: not listed in bundle\.json"),
        (_future, r"format version 2 is newer"),
        (_garbled, r"bundle\.json: not valid JSON"),
    ],
)
def test_damaged_bundle_is_refused_before_unpickling(small_bundle, monkeypatch, damage, match):
    damage(small_bundle)
    import joblib

    def _boom(*a, **k):  # pragma: no cover - reaching this is the failure
        raise AssertionError("unpickled a damaged bundle")

    monkeypatch.setattr(joblib, "load", _boom)
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
