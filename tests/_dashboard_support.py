"""Shared helpers of the dashboard tests (AppTest and browser): a real bundle, synthetic
uploads, crafted bad files. Kept out of conftest.py so only the dashboard tests use them."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from multibone.app import app_path

REPO = Path(__file__).resolve().parents[1]
#: The Streamlit script shipped in the package (what ``multibone dashboard`` runs).
APP = app_path()
#: The repository's thin launcher for ``streamlit run apps/dashboard.py``.
LAUNCHER = REPO / "apps" / "dashboard.py"

# DICOM tags that identify a person or a visit; the synthetic DICOMs fill them with fakes.
IDENTIFYING_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "InstitutionName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "OtherPatientIDs",
)


def find_bundle() -> Path | None:
    """A ready bundle for the browser test: $MULTIBONE_TEST_BUNDLE, else runs/demo/bundle."""
    for candidate in (
        os.environ.get("MULTIBONE_TEST_BUNDLE", ""),
        str(REPO / "runs" / "demo" / "bundle"),
    ):
        if candidate and (Path(candidate) / "bundle.json").is_file():
            return Path(candidate)
    return None


def dicom_identifiers(path: Path) -> list[str]:
    """The identifying header values of a DICOM file (whole values of at least 4 chars; not
    their parts, which for fakes are common words such as "SYNTHETIC")."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    values = []
    for tag in IDENTIFYING_TAGS:
        v = ds.get(tag)
        if v is None:
            continue
        items = v if isinstance(v, list | tuple | pydicom.multival.MultiValue) else [v]
        for item in items:
            text = str(item).strip()
            if len(text) >= 4 and text not in values:
                values.append(text)
    return values


def synthetic_dicom(workdir: Path, seed: int = 3) -> tuple[Path, list[str], dict]:
    """A synthetic DICOM copied under a neutral name, its identifying header values, and
    the clinical fields of its patient (from the synthetic manifest)."""
    import pandas as pd

    from multibone.synthetic import make_synthetic_cohort

    manifest = Path(
        make_synthetic_cohort(workdir / "cohort", n_patients=12, seed=seed, progress=False)
    )
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    dicoms = df[df["image_path"].str.lower().str.endswith((".dcm", ".dicom"))]
    assert len(dicoms), "the synthetic cohort wrote no DICOM"
    row = dicoms.iloc[0]
    target = workdir / "upload.dcm"
    shutil.copyfile(manifest.parent / row["image_path"], target)
    identifiers = dicom_identifiers(target)
    assert identifiers, "the synthetic DICOM carries no fake identifiers to check against"
    return target, identifiers, dict(row)


def png_bytes(width: int = 96, height: int = 80, seed: int = 0) -> bytes:
    """A small grey PNG radiograph-like image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = (
        60
        + 120 * np.exp(-(((xx - width / 2) / (width / 6)) ** 2))
        + rng.normal(0, 8, (height, width))
    )
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def huge_png_bytes(side: int = 30_000) -> bytes:
    """A valid PNG header claiming side x side pixels with a tiny (truncated) body:
    a reader that checks the size from the header refuses it without decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def dicom_without_pixels() -> bytes:
    """A well-formed DICOM file (preamble, meta, image tags) with no Pixel Data element."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = 64, 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
