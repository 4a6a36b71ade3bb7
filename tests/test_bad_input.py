"""Bad input across the entry points (issue #17 item 1).

Every kind is fed to the command a user would run (``multibone.cli.main``): a refusal
must be exit 2 with one clear message naming the place (file, row, column, flag or
config key), no traceback, and nothing written. Kinds that are not errors (colour
DICOM, CMYK JPEG, a BOM, ...) must load, and are listed as accepted.

``KINDS`` is counted in benchmarks/RELIABILITY.md; the sweep over every DICOM file
shipped by pydicom / pydicom-data is the last test.
"""

from __future__ import annotations

import io
import json
import resource
import shutil
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multibone.cli import main

# ----------------------------------------------------------------------------- helpers


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _cli(args: list[str], capsys, watch: Path) -> tuple[int, str]:
    """Run the CLI; assert it wrote nothing under ``watch`` and printed no traceback."""
    before = _snapshot(watch)
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc != 0:
        assert _snapshot(watch) == before, "a refused command must write nothing"
    return rc, err


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def _pil_bytes(img: Image.Image, fmt: str) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt)
    return b.getvalue()


def _grey(n: int = 64) -> np.ndarray:
    return (np.add.outer(np.arange(n), np.arange(n)) % 256).astype(np.uint8)


def _dicom_bytes(*, rows: int = 32, cols: int = 32, pixels: bool = True, frames: int = 1) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixels:
        n = min(rows * cols, 32 * 32) * frames  # a bomb declares more than it holds
        ds.PixelData = np.arange(n, dtype=np.uint16).tobytes()
    b = io.BytesIO()
    ds.save_as(b, enforce_file_format=True)
    return b.getvalue()


def _testdata(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name)).read_bytes()


def _jpeg_bomb() -> bytes:
    data = bytearray(_pil_bytes(Image.fromarray(_grey(16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 40000, 40000)  # height, width
    return bytes(data)


def _cmyk_jpeg() -> bytes:
    return _pil_bytes(Image.new("CMYK", (48, 40), (10, 40, 90, 20)), "JPEG")


def _rgba16_png() -> bytes:
    w, h = 8, 6
    row = b"\x00" + b"".join(
        struct.pack(">HHHH", 1000 * x, 500, 65535 - 1000 * x, 40000) for x in range(w)
    )
    return _png(w, h, 16, 6, row * h)


# ----------------------------------------------------------------------------- images


#: name -> (file name, bytes maker, expected: "loaded" or a regex of the refusal)
IMAGE_KINDS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zero-byte PNG": ("x.png", lambda: b"", r"x\.png: file is empty \(0 bytes\)"),
    "zero-byte DICOM": ("x.dcm", lambda: b"", r"x\.dcm: file is empty"),
    "truncated PNG": (
        "x.png",
        lambda: _pil_bytes(Image.fromarray(_grey()), "PNG")[:70],
        r"x\.png: .*truncated",
    ),
    "truncated JPEG": (
        "x.jpg",
        lambda: _pil_bytes(Image.fromarray(_grey()), "JPEG")[:300],
        r"x\.jpg: .*(truncated|damaged)",
    ),
    "text named .dcm": (
        "x.dcm",
        lambda: b"a report, not an image\n" * 20,
        r"x\.dcm: not a DICOM file",
    ),
    "random bytes named .png": (
        "x.png",
        lambda: bytes(range(256)),
        r"x\.png: not a DICOM, PNG or JPEG",
    ),
    "TIFF": (
        "x.tif",
        lambda: _pil_bytes(Image.fromarray(_grey()), "TIFF"),
        r"x\.tif: is a TIFF file",
    ),
    "DICOM without pixel data": (
        "x.dcm",
        lambda: _dicom_bytes(pixels=False),
        r"x\.dcm: .*no pixel data",
    ),
    "DICOM pixel data shorter than declared": (
        "x.dcm",
        lambda: _dicom_bytes(rows=64, cols=64),
        r"x\.dcm: pixel data could not be decoded .*less than expected",
    ),
    "multi-frame DICOM": (
        "x.dcm",
        lambda: _testdata("emri_small.dcm"),
        r"x\.dcm: multi-frame DICOM",
    ),
    "RT plan (no image) DICOM": (
        "x.dcm",
        lambda: _testdata("rtplan.dcm"),
        r"x\.dcm: .*no pixel data",
    ),
    "legacy DICOM without preamble, no image": (
        "x.dcm",
        lambda: _testdata("ExplVR_BigEndNoMeta.dcm"),
        r"x\.dcm: a DICOM data set without preamble \(modality RTPLAN\) that holds no image",
    ),
    "PNG bomb 40000 x 40000": (
        "x.png",
        lambda: _png(40000, 40000, 8, 0, b"\0" * 64),
        r"x\.png: .*MAX_PIXELS",
    ),
    "JPEG bomb 40000 x 40000": ("x.jpg", _jpeg_bomb, r"x\.jpg: .*MAX_PIXELS"),
    "DICOM bomb 40000 x 40000": (
        "x.dcm",
        lambda: _dicom_bytes(rows=40000, cols=40000),
        r"x\.dcm: image is 40000 x 40000 .* MAX_PIXELS",
    ),
    # accepted kinds: must load as grey (H, W) in [0, 1]
    "colour DICOM (RGB)": ("x.dcm", lambda: _testdata("SC_rgb.dcm"), "loaded"),
    "palette-colour DICOM without preamble": (
        "x.dcm",
        lambda: _testdata("OT-PAL-8-face.dcm"),
        "loaded",
    ),
    "16-bit PNG with alpha": ("x.png", _rgba16_png, "loaded"),
    "CMYK JPEG": ("x.jpg", _cmyk_jpeg, "loaded"),
    "8-bit PNG with alpha": (
        "x.png",
        lambda: _pil_bytes(Image.new("RGBA", (9, 7), (5, 6, 7, 0)), "PNG"),
        "loaded",
    ),
}


@pytest.mark.parametrize("kind", list(IMAGE_KINDS))
def test_image_kind(kind, tmp_path, capsys):
    name, make, expected = IMAGE_KINDS[kind]
    src = tmp_path / "in" / name
    src.parent.mkdir()
    src.write_bytes(make())
    out = tmp_path / "out.png"
    rc, err = _cli(["inspect", src, "--png", out], capsys, tmp_path)
    if expected == "loaded":
        assert rc == 0, err
        from multibone.io import read_radiograph

        px = read_radiograph(src).pixels
        assert px.ndim == 2 and px.dtype == np.float32 and 0 <= px.min() <= px.max() <= 1
    else:
        assert rc == 2, f"{kind} was not refused"
        assert err.count("\n") <= 2, err  # one message, not a report
        import re

        assert re.search(expected, err), err
        assert not out.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: _png(40000, 40000, 8, 0, b"\0" * 64),
        _jpeg_bomb,
        lambda: _dicom_bytes(rows=40000, cols=40000),
    ],
    ids=["png", "jpeg", "dicom"],
)
def test_decompression_bomb_is_refused_before_allocation(make, tmp_path):
    """40,000 x 40,000 pixels would take 1.6 GB as bytes and 6.4 GB as float32; the header
    check refuses it with (far) less than 50 MB allocated (Python + numpy, tracemalloc)
    and no jump of the process's peak RSS."""
    from multibone.errors import ImageReadError
    from multibone.io import read_radiograph

    path = tmp_path / "bomb"
    path.write_bytes(make())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="MAX_PIXELS"):
            read_radiograph(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000  # KiB


# ----------------------------------------------------------------------------- manifests


def _manifest_text(rows, columns=None, sep=","):
    import csv

    from test_cohort_validate import COLUMNS

    b = io.StringIO()
    w = csv.DictWriter(b, fieldnames=columns or COLUMNS, extrasaction="ignore", delimiter=sep)
    w.writeheader()
    w.writerows(rows)
    return b.getvalue()


def _rows():
    from test_cohort_validate import _base_rows

    return _base_rows()


def _dup_age() -> bytes:
    lines = _manifest_text(_rows()).splitlines()
    return ("\n".join([lines[0] + ",age"] + [line + ",33" for line in lines[1:]]) + "\n").encode()


#: name -> (bytes maker, expected: "valid" or a regex of the refusal)
MANIFEST_KINDS: dict[str, tuple[Callable[[], bytes], str]] = {
    "UTF-8 with BOM (Excel)": (lambda: ("\ufeff" + _manifest_text(_rows())).encode(), "valid"),
    "Latin-1 encoded": (
        lambda: _manifest_text([{**r, "site": "fémur"} for r in _rows()]).encode("latin-1"),
        r"m\.csv: not UTF-8 text .*Latin-1",
    ),
    "UTF-16 encoded": (
        lambda: _manifest_text(_rows()).encode("utf-16"),
        r"m\.csv: .*it is UTF-16 text",
    ),
    "binary file named .csv": (
        lambda: bytes(range(256)) * 4,
        r"m\.csv: not UTF-8 text .*NUL bytes",
    ),
    "semicolon-separated": (
        lambda: _manifest_text(_rows(), sep=";").encode(),
        r"row 1: .*separated by ';'",
    ),
    "duplicated column": (_dup_age, r"row 1, column age: the header has this column twice"),
    "100 % missing age": (
        lambda: _manifest_text([{**r, "age": ""} for r in _rows()]).encode(),
        r"row 2, column age: required value is empty",
    ),
    "empty file": (lambda: b"", r"row 1: the manifest is empty"),
    "header only": (
        lambda: _manifest_text([]).encode(),
        r"row 2: the manifest has a header but no data rows",
    ),
    "age 200 in a row": (
        lambda: _manifest_text(
            [{**r, "age": "200"} if i == 2 else r for i, r in enumerate(_rows())]
        ).encode(),
        r"row 4, column age",
    ),
}


@pytest.mark.parametrize("kind", list(MANIFEST_KINDS))
def test_manifest_kind(kind, tmp_path, capsys, monkeypatch):
    from test_cohort_validate import _write_images

    make, expected = MANIFEST_KINDS[kind]
    _write_images(tmp_path)
    (tmp_path / "m.csv").write_bytes(make())
    monkeypatch.chdir(tmp_path)
    rc, err = _cli(["validate", tmp_path / "m.csv"], capsys, tmp_path)
    if expected == "valid":
        assert rc == 0, err
    else:
        import re

        assert rc == 2 and re.search(expected, err), err


# ----------------------------------------------------------------------------- configs

#: name -> (YAML text, regex of the refusal)
CONFIG_KINDS: dict[str, tuple[str, str]] = {
    "unknown section (typo)": (
        "stackng: {family: lr}\n",
        r"c\.yaml: unknown section stackng \(did you mean 'stacking'\?\)",
    ),
    "unknown key (typo)": (
        "stacking: {famly: lr}\n",
        r"c\.yaml: stacking: unknown key famly \(did you mean 'family'\?\)",
    ),
    "wrong type": (
        "imaging: {epochs: two}\n",
        r"c\.yaml: imaging\.epochs: expected an integer, got 'two'",
    ),
    "bool for an integer": (
        "splits: {n_folds: true}\n",
        r"c\.yaml: splits\.n_folds: expected an integer",
    ),
    "out of range": ("imaging: {epochs: -3}\n", r"c\.yaml: .*imaging\.epochs: must be >= 1"),
    "unknown backbone": (
        "imaging: {backbones: [resnet9000]}\n",
        r"c\.yaml: .*unknown backbone 'resnet9000'",
    ),
    "unknown family": ("stacking: {family: svm}\n", r"c\.yaml: .*unknown model family 'svm'"),
    "YAML syntax error": ("stacking: {family: lr\n", r"c\.yaml: not valid YAML"),
    "top level a list": ("- a\n- b\n", r"c\.yaml: the top level must be a mapping"),
    "unknown positive class": (
        "positive_class: fracture\n",
        r"c\.yaml: positive_class: 'fracture'",
    ),
}


@pytest.mark.parametrize("kind", list(CONFIG_KINDS))
def test_config_kind(kind, tmp_path, capsys):
    text, expected = CONFIG_KINDS[kind]
    (tmp_path / "c.yaml").write_text(text)
    (tmp_path / "m.csv").write_text("patient_id,image_path,age,sex\n")
    rc, err = _cli(
        [
            "stack",
            "--config",
            tmp_path / "c.yaml",
            "--manifest",
            tmp_path / "m.csv",
            "--out",
            tmp_path / "o",
        ],
        capsys,
        tmp_path,
    )
    import re

    assert rc == 2 and re.search(expected, err), err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- cases (real bundle)


def _image_and_box(run: Path) -> tuple[Path, str]:
    import pandas as pd

    r = pd.read_csv(run / "cohort" / "manifest.csv").iloc[0]
    return (
        run / "cohort" / r.image_path,
        f"{int(r.roi_x0)},{int(r.roi_y0)},{int(r.roi_x1)},{int(r.roi_y1)}",
    )


_OK = ["--age", "40", "--sex", "F", "--site", "femur", "--crp", "30", "--esr", "40"]


def _with(**flags: str) -> list[str]:
    out = list(_OK)
    for key, value in flags.items():
        flag = f"--{key}"
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


#: name -> (case flags (the image is added), regex of the refusal)
CASE_KINDS: dict[str, tuple[list[str], str]] = {
    "age 200": (_with(age="200"), r"--age"),
    "age not a number": (_with(age="forty"), r"--age"),
    "sex X": (_with(sex="X"), r"--sex"),
    "CRP -5": (_with(crp="-5"), r"--crp"),
    "CRP NaN": (_with(crp="NaN"), r"--crp"),
    "CRP with a unit": (_with(crp="12 mg/dl"), r"--crp"),
    "ESR -1": (_with(esr="-1"), r"--esr"),
    "box outside the image": (_with(roi="0,0,99999,5"), r"lesion box"),
    "box inverted (x1 < x0)": (_with(roi="50,10,20,40"), r"--roi|lesion box"),
    "box not four numbers": (_with(roi="1,2,3"), r"--roi"),
}


@pytest.mark.parametrize("kind", list(CASE_KINDS))
def test_case_kind(kind, mini_run, tmp_path, capsys):
    flags, expected = CASE_KINDS[kind]
    image, _ = _image_and_box(mini_run)
    rc, err = _cli(
        ["predict", "--bundle", mini_run / "bundle", "--image", image, *flags], capsys, tmp_path
    )
    import re

    assert rc == 2 and re.search(expected, err), err


def test_case_image_that_is_not_an_image(mini_run, tmp_path, capsys):
    bad = tmp_path / "scan.dcm"
    bad.write_text("not an image")
    rc, err = _cli(
        ["predict", "--bundle", mini_run / "bundle", "--image", bad, *_OK], capsys, tmp_path
    )
    assert rc == 2 and "scan.dcm: not a DICOM file" in err


# ----------------------------------------------------------------------------- bundles


def _rehash(root: Path) -> None:
    from multibone.bundle import sha256_file

    meta = json.loads((root / "bundle.json").read_text())
    meta["files"] = {
        rel: sha256_file(root / rel) for rel in meta["files"] if (root / rel).is_file()
    }
    (root / "bundle.json").write_text(json.dumps(meta))


def _tamper(root: Path) -> None:
    p = root / "stacker.skops"
    p.write_bytes(p.read_bytes() + b"\0")


def _truncate(root: Path) -> None:
    p = root / "stacker.skops"
    p.write_bytes(p.read_bytes()[:100])


def _truncate_rehashed(root: Path) -> None:
    _truncate(root)
    _rehash(root)


def _future(root: Path) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["format_version"] += 1
    (root / "bundle.json").write_text(json.dumps(meta))


def _pickle_planted(root: Path) -> None:
    import joblib

    joblib.dump({"a": 1}, root / "stacker.skops")
    _rehash(root)


def _weights_tampered(root: Path) -> None:
    p = next(root.glob("backbones/*/fold0.safetensors"))
    p.write_bytes(p.read_bytes()[:-1] + b"\1")


#: name -> (damage, regex of the refusal)
BUNDLE_KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "tampered stacker": (_tamper, r"stacker\.skops: SHA-256 does not match"),
    "truncated stacker": (_truncate, r"stacker\.skops: SHA-256 does not match"),
    "truncated stacker, hash updated": (
        _truncate_rehashed,
        r"stacker\.skops: not a readable \.skops",
    ),
    "tampered backbone weights": (_weights_tampered, r"fold0\.safetensors: SHA-256 does not match"),
    "missing file": (
        lambda r: (r / "baselines.skops").unlink(),
        r"baselines\.skops: listed in bundle\.json but missing",
    ),
    "extra file": (
        lambda r: (r / "notes.txt").write_text("hi"),
        r"notes\.txt: not listed in bundle\.json",
    ),
    "future format": (_future, r"format version \d+ is newer than this multibone understands"),
    "bundle.json not JSON": (
        lambda r: (r / "bundle.json").write_text("{"),
        r"bundle\.json: not valid JSON",
    ),
    "bundle.json missing": (
        lambda r: (r / "bundle.json").unlink(),
        r"bundle\.json: missing; this folder is not a multibone bundle",
    ),
    "pickle planted as the stacker, hash updated": (
        _pickle_planted,
        r"stacker\.skops: not a readable \.skops model file",
    ),
}


@pytest.mark.parametrize("kind", list(BUNDLE_KINDS))
def test_bundle_kind(kind, mini_run, tmp_path, capsys):
    damage, expected = BUNDLE_KINDS[kind]
    bundle = tmp_path / "bundle"
    shutil.copytree(mini_run / "bundle", bundle)
    damage(bundle)
    image, _ = _image_and_box(mini_run)
    rc, err = _cli(["predict", "--bundle", bundle, "--image", image, *_OK], capsys, tmp_path)
    import re

    assert rc == 2 and re.search(expected, err), err


#: every kind tried above, by entry point (counted in benchmarks/RELIABILITY.md)
KINDS = {
    "images (inspect)": list(IMAGE_KINDS) + ["bomb before allocation x3"],
    "manifests (validate)": list(MANIFEST_KINDS),
    "configs (stack --config)": list(CONFIG_KINDS),
    "cases (predict)": list(CASE_KINDS) + ["case image not an image"],
    "bundles (predict)": list(BUNDLE_KINDS),
}


def test_at_least_forty_kinds():
    assert sum(len(v) for v in KINDS.values()) >= 40


# ----------------------------------------------------------------------------- real DICOM sweep


@pytest.mark.realdata
def test_every_pydicom_test_file_loads_or_is_refused_clearly():
    """Every file pydicom and pydicom-data ship as test data (hundreds, many transfer
    syntaxes, damaged ones on purpose) either loads as grey [0, 1] or is refused with an
    ImageReadError naming the file; nothing else escapes."""
    import warnings

    from pydicom.data import get_testdata_files

    from multibone.errors import ImageReadError
    from multibone.io import read_radiograph

    files = [Path(f) for f in get_testdata_files()]
    assert len(files) > 100
    loaded = refused = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            try:
                px = read_radiograph(f).pixels
            except ImageReadError as exc:
                assert f.name in str(exc), (f, exc)
                refused += 1
            else:
                assert px.ndim == 2 and np.isfinite(px).all(), f
                assert 0 <= px.min() and px.max() <= 1, f
                loaded += 1
    assert loaded > 50 and refused > 50


@pytest.mark.realdata
def test_legacy_files_without_preamble_are_read_with_force():
    """The legacy files without preamble / file meta: pydicom reads them only with
    force=True, and multibone does the same: the image loads, the three non-image data
    sets are refused as such (not as 'not DICOM')."""
    import pydicom
    from pydicom.data import get_testdata_file

    from multibone.errors import ImageReadError
    from multibone.io import read_radiograph

    names = [
        "OT-PAL-8-face.dcm",
        "ExplVR_BigEndNoMeta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "rtstruct.dcm",
    ]
    for name in names:
        path = get_testdata_file(name)
        assert Path(path).read_bytes()[128:132] != b"DICM"
        with pytest.raises(pydicom.errors.InvalidDicomError):
            pydicom.dcmread(path)
        assert len(pydicom.dcmread(path, force=True)) > 10
    assert read_radiograph(get_testdata_file(names[0])).shape == (480, 640)
    for name in names[1:]:
        with pytest.raises(ImageReadError, match="without preamble .* holds no image"):
            read_radiograph(get_testdata_file(name))
