"""DICOM out, on explicit request only: a Secondary Capture of the CAM overlay and a
Comprehensive Structured Report with the probability, the decision, the operating point
and the lesion box (``highdicom``, MIT).

Both objects join the source radiograph's study and reference it by its study, series
and SOP instance UIDs (the SR in its evidence and in the box's "selected from" image
reference; the Secondary Capture in Source Image Sequence and Referenced Series
Sequence). They are the ONLY outputs of multibone that carry the source's patient module
(name, ID, birth date, sex): a PACS needs it to file them beside the images. Every other
output (page, PDF, HTML, JSON) holds no DICOM header field.

Codes: DICOM (DCM) and UCUM where a standard code exists; the model's own concepts
(probability, decision, operating point) use the private coding scheme ``99MULTIBONE``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multibone.disclaimer import DISCLAIMER
from multibone.errors import InputError

SCHEME = "99MULTIBONE"
SC_NAME = "multibone_cam_sc.dcm"
SR_NAME = "multibone_result_sr.dcm"
MANUFACTURER = "multibone"


@dataclass
class DicomResults:
    """The two objects (pydicom datasets) and the source image they reference."""

    secondary_capture: object
    report: object
    source_index: int

    def files(self) -> dict[str, bytes]:
        """File name -> DICOM bytes (Part 10)."""
        out = {}
        for name, ds in ((SC_NAME, self.secondary_capture), (SR_NAME, self.report)):
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            out[name] = buf.getvalue()
        return out

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in self.files().items():
                z.writestr(name, data)
        return buf.getvalue()


def read_source(data: bytes | str | Path, label: str = "the source image"):
    """The source DICOM dataset (pixels not needed), or InputError naming ``label``."""
    import pydicom

    try:
        fp = io.BytesIO(data) if isinstance(data, bytes | bytearray) else str(data)
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except Exception as exc:
        raise InputError(
            f"{label}: DICOM out needs a DICOM source image ({type(exc).__name__})"
        ) from None
    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not str(ds.get(tag, "")).strip():
            raise InputError(
                f"{label}: the DICOM header has no {tag}; a PACS could not file "
                "a result referencing it"
            )
    return ds


def burned_in_annotation(data: bytes | str | Path) -> bool:
    """Whether a DICOM's header says its pixels carry burned-in annotation (YES)."""
    import pydicom

    try:
        fp = io.BytesIO(data) if isinstance(data, bytes | bytearray) else str(data)
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=["BurnedInAnnotation"])
    except Exception:
        return False
    return str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"


def first_dicom_source(paths) -> tuple[int, object]:
    """(index, header) of the first DICOM among a case's image files, or InputError."""
    for i, path in enumerate(paths):
        try:
            return i, read_source(path, label=Path(path).name)
        except InputError:
            continue
    raise InputError(
        "--dicom-out needs at least one DICOM --image (the results must reference a DICOM "
        "source for a PACS to file them); PNG and JPEG images have no study to join"
    )


def _png_rgb(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint8)


def _code(value: str, meaning: str, scheme: str = SCHEME):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def dicom_results(
    source,
    *,
    case,
    result,
    explanation,
    source_index: int,
    operating_point: str,
    bundle_hash: str,
) -> DicomResults:
    """Build the Secondary Capture and the SR for ``case.images[source_index]``, whose
    DICOM header is ``source`` (:func:`read_source`)."""
    import highdicom as hd
    from highdicom.sr import (
        CodeContentItem,
        ContainerContentItem,
        ImageContentItem,
        NumContentItem,
        ScoordContentItem,
        TextContentItem,
    )
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DSequence
    from pydicom.sr.codedict import codes

    if operating_point not in result.decisions:
        raise InputError(
            f"operating point {operating_point!r} is not one of the bundle's: "
            f"{', '.join(result.decisions)}"
        )
    if not 0 <= source_index < len(case.images):
        raise InputError(f"image {source_index + 1}: the case has {len(case.images)} image(s)")
    image = case.images[source_index]
    cams = (
        []
        if explanation is None
        else [c for c in explanation.cams if c.image_index == source_index]
    )
    if not cams:
        raise InputError(f"{image.label}: no CAM overlay to export; compute the result first")
    cam = cams[0]
    d = result.decisions[operating_point]

    sc_series = hd.UID()
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=_png_rgb(cam.overlay_png),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=sc_series,
        series_number=9901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("A", "F"),  # placeholder required by highdicom; replaced below
    )
    # the overlay has the source's geometry: its orientation, or empty (unknown, type 2)
    sc.PatientOrientation = source.get("PatientOrientation", "") or ""
    sc.SeriesDescription = "multibone CAM overlay (decision support)"
    sc.ImageComments = (
        f"{cam.method} of {cam.backbone} over {image.label}; probability of "
        f"{result.positive_class} {result.probability:.3f}. {DISCLAIMER}"
    )[:10240]
    sc.BurnedInAnnotation = "NO"
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = DSequence([ref])
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = source.SeriesInstanceUID
    inst = Dataset()
    inst.ReferencedSOPClassUID = source.SOPClassUID
    inst.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series_ref.ReferencedInstanceSequence = DSequence([inst])
    sc.ReferencedSeriesSequence = DSequence([series_ref])

    root = ContainerContentItem(name=codes.DCM.ImagingMeasurementReport)
    items = [
        NumContentItem(
            name=_code("MB001", f"Probability of {result.positive_class}"),
            value=round(float(result.probability), 6),
            unit=codes.UCUM.NoUnits,
            relationship_type="CONTAINS",
        ),
        TextContentItem(
            name=_code("MB002", "Decision"),
            value=f"{d['call']} (probability {'>=' if d['positive'] else '<'} threshold "
            f"{d['threshold']:.3f})",
            relationship_type="CONTAINS",
        ),
        TextContentItem(
            name=_code("MB003", "Operating point"),
            value=f"{d['meaning']}: threshold {d['threshold']:.3f}, development sensitivity "
            f"{d['sensitivity']:.2f}, specificity {d['specificity']:.2f}",
            relationship_type="CONTAINS",
        ),
        NumContentItem(
            name=_code("MB004", "Decision threshold"),
            value=round(float(d["threshold"]), 6),
            unit=codes.UCUM.NoUnits,
            relationship_type="CONTAINS",
        ),
    ]
    for b, s in result.backbone_scores.items():
        items.append(
            NumContentItem(
                name=_code("MB005", f"Image model score {b}"),
                value=round(float(s), 6),
                unit=codes.UCUM.NoUnits,
                relationship_type="CONTAINS",
            )
        )
    h, w = image.pixels.shape[:2]
    x0, y0, x1, y1 = image.roi if image.roi is not None else (0, 0, w, h)
    region = ScoordContentItem(
        name=codes.DCM.ImageRegion,
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32),
        relationship_type="CONTAINS",
    )
    region.ContentSequence = hd.sr.ContentSequence(
        [
            ImageContentItem(
                name=codes.DCM.SourceOfMeasurement,
                referenced_sop_class_uid=source.SOPClassUID,
                referenced_sop_instance_uid=source.SOPInstanceUID,
                relationship_type="SELECTED FROM",
            )
        ]
    )
    items.append(region)
    items.append(
        CodeContentItem(
            name=_code("MB006", "Lesion box source"),
            value=_code(
                "MB007",
                "drawn or accepted by the user"
                if image.roi is not None
                else "whole image (no box)",
            ),
            relationship_type="CONTAINS",
        )
    )
    items.append(
        TextContentItem(
            name=_code("MB008", "Model bundle"),
            value=f"{result.bundle_version}; SHA-256 {bundle_hash}",
            relationship_type="CONTAINS",
        )
    )
    items.append(
        TextContentItem(
            name=_code("MB009", "Disclaimer"), value=DISCLAIMER, relationship_type="CONTAINS"
        )
    )
    root.ContentSequence = hd.sr.ContentSequence(items)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=root,
        series_instance_uid=hd.UID(),
        series_number=9902,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
    )
    sr.SeriesDescription = "multibone result (decision support)"
    return DicomResults(secondary_capture=sc, report=sr, source_index=source_index)


def write_dicom_results(
    results: DicomResults, out_dir: str | Path, *, force: bool = False
) -> list[Path]:
    """Write both files into ``out_dir`` (made atomically; an existing folder needs force)."""
    from multibone._atomic import atomic_dir

    out_dir = Path(out_dir)
    with atomic_dir(out_dir, force=force) as tmp:
        for name, data in results.files().items():
            (tmp / name).write_bytes(data)
    return [out_dir / SC_NAME, out_dir / SR_NAME]
