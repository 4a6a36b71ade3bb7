"""Write a synthetic cohort: images (DICOM and PNG), ``manifest.csv`` and a README.

Layout of the output folder::

    manifest.csv           one row per image (the data contract of DESIGN.md)
    images/P0001_AP.png    radiographs; about 30 % DICOM (.dcm), the rest PNG
    lesion_truth.csv       simulation ground truth per image (evidence score,
                           pattern families); for checks, never for training
    synthetic.json         seed, size, difficulty, evidence ceiling AUC
    SYNTHETIC_README.txt   says the data are simulated and what the numbers follow

Determinism: every random draw comes from a generator derived from ``seed``
(clinical table: :func:`multibone.synthetic.clinical.synthetic_patients`; image
``j`` of patient ``i``: a child of ``SeedSequence(seed, spawn_key=(100,)).spawn``
number ``i``), so the files do not depend on worker count or order. DICOM UIDs
are hashed from the seed and the image, dates are fixed, PNGs carry no time
chunk: the same seed and version give the same bytes.

File formats are assigned by a fixed cycle over the images (so even a
five-patient cohort has every kind), independent of the label:

* DICOM: 3 images in 10 (uncompressed, Explicit VR Little Endian, 16-bit
  allocated / 12-bit stored, CR or DX Image Storage, Window Center/Width,
  Rescale Slope/Intercept (intercept 0 or -1024), one in three MONOCHROME1 with
  inverted values so that bone is bright after a reader's inversion, and fake
  identifying tags: PatientName ``SYNTHETIC^PATIENT^0042``, PatientID ``MRN...``,
  PatientBirthDate, InstitutionName, ReferringPhysicianName, AccessionNumber);
* PNG: the rest, 8-bit grey, and one in three 16-bit grey.
"""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from multibone import __version__
from multibone._atomic import atomic_dir
from multibone.errors import InputError
from multibone.synthetic.clinical import (
    CENTER_SHARES,
    PAEDIATRIC_CENTERS,
    TABLE1_COUNTS,
    synthetic_patients,
)
from multibone.synthetic.scene import (
    VIEWS,
    LesionAppearance,
    draw_lesion,
    evidence_ceiling_auc,
    evidence_separation,
    render_view,
)

MANIFEST_COLUMNS = [
    "patient_id",
    "image_path",
    "view",
    "roi_x0",
    "roi_y0",
    "roi_x1",
    "roi_y1",
    "center",
    "diagnosis",
    "subtype",
    "age",
    "sex",
    "site",
    "location",
    "crp",
    "esr",
    "subtype_group",
]
TRUTH_COLUMNS = [
    "patient_id",
    "image_path",
    "evidence",
    "tumour_likeness",
    "tumour_family",
    "infection_family",
    "sequestrum",
    "format",
]

_IMAGE_STREAM = 100  # spawn key of the image streams (the clinical table uses 0..7)
_UID_PREFIX = "multibone-synthetic"
_CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
_DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
_VIEW_POSITION = {"AP": "AP", "lateral": "LL", "oblique": "LLO"}
_STUDY_DATE = "20200115"  # fixed: no file ever records when it was written


@dataclass(frozen=True)
class ImagePlan:
    """How one image is written. ``kind``: dicom | png8 | png16."""

    view: str
    file_name: str
    kind: str
    photometric: str = "MONOCHROME2"
    sop_class: str = _CR_STORAGE
    intercept: float = 0.0


def _plan_images(patients: list[dict[str, Any]], seed: int) -> list[list[ImagePlan]]:
    """File name and format of every image (a fixed cycle, phase set by the seed)."""
    phase = int(
        np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(_IMAGE_STREAM + 1,))
        ).integers(10)
    )
    plans: list[list[ImagePlan]] = []
    k = phase
    n_dicom = n_png = 0
    for p in patients:
        row: list[ImagePlan] = []
        for view in VIEWS[: int(p["n_views"])]:
            stem = f"{p['patient_id']}_{view}"
            if k % 10 in (1, 4, 8):
                row.append(
                    ImagePlan(
                        view=view,
                        file_name=f"images/{stem}.dcm",
                        kind="dicom",
                        photometric="MONOCHROME1" if n_dicom % 3 == 1 else "MONOCHROME2",
                        sop_class=_DX_STORAGE if n_dicom % 4 == 3 else _CR_STORAGE,
                        intercept=-1024.0 if n_dicom % 2 == 1 else 0.0,
                    )
                )
                n_dicom += 1
            else:
                kind = "png16" if n_png % 3 == 2 else "png8"
                row.append(ImagePlan(view=view, file_name=f"images/{stem}.png", kind=kind))
                n_png += 1
            k += 1
        plans.append(row)
    return plans


# --------------------------------------------------------------------------- encoders


def to_stored_12bit(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """float (H, W) in [0, 1], bone bright -> uint16 stored values 0..4095.

    MONOCHROME1 means "low values are bright", so the values are inverted:
    a reader that inverts MONOCHROME1 gets bone bright again.
    """
    v = np.rint(np.clip(pixels, 0.0, 1.0) * 4095.0).astype(np.uint16)
    if photometric == "MONOCHROME1":
        v = (4095 - v).astype(np.uint16)
    return v


def write_png(path: Path, pixels: np.ndarray, bits: int) -> None:
    """Grey PNG, 8- or 16-bit, full range (0 and 2**bits - 1 = 0.0 and 1.0), no metadata."""
    x = np.clip(pixels, 0.0, 1.0)
    if bits == 8:
        arr = np.rint(x * 255.0).astype(np.uint8)
    elif bits == 16:
        arr = np.rint(x * 65535.0).astype(np.uint16)
    else:  # pragma: no cover - internal use only
        raise InputError(f"bits must be 8 or 16, got {bits}")
    # No pnginfo -> Pillow writes no tIME/tEXt chunks. zlib level 1: encoding at the
    # default level takes longer than rendering the image, for ~15 % smaller files.
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    plan: ImagePlan,
    patient: dict[str, Any],
    patient_number: int,
    seed: int,
) -> None:
    """Write one uncompressed 12-bit grey DICOM (CR or DX) with fake identifying tags.

    ``pixels``: float32 (H, W) in [0, 1], bone bright. Window Center/Width are in
    rescaled units (after Rescale Slope/Intercept) and cover the image's values
    from the 0.1 to the 99.9 percentile (widened by 10 %), so little is clipped.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    stored = to_stored_12bit(pixels, plan.photometric)
    slope, intercept = 1.0, float(plan.intercept)
    # 0.1 and 99.9 percentiles of the stored values from their histogram (cheap).
    cdf = np.cumsum(np.bincount(stored.ravel(), minlength=4096)) / stored.size
    lo = float(np.searchsorted(cdf, 0.001)) * slope + intercept
    hi = float(np.searchsorted(cdf, 0.999)) * slope + intercept
    width = max(2.0, (hi - lo) * 1.1)
    center = (hi + lo) / 2.0

    pid = str(patient["patient_id"])

    def uid(*parts: object) -> str:
        # PS3.5 B.2: "2.25." + the decimal of a UUID. A name-based UUID (v5) of the
        # seed and image keeps UIDs unique per image and identical across runs
        # (pydicom's generate_uid ignores its entropy sources without a prefix).
        name = "/".join([_UID_PREFIX, str(seed), pid, *map(str, parts)])
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"

    sop_uid = uid(plan.view, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = plan.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SpecificCharacterSet = "ISO_IR 100"
    is_dx = plan.sop_class == _DX_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""] if is_dx else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = plan.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = _STUDY_DATE
    ds.SeriesDate = _STUDY_DATE
    ds.ContentDate = _STUDY_DATE
    ds.StudyTime = "101500"
    ds.SeriesTime = "101500"
    ds.ContentTime = "101500"
    # Fake but realistic-looking identifiers: present so that the rule "no DICOM
    # identifier ever reaches an output" is exercised; none equals the manifest's id.
    h = int(uid("mrn").rsplit(".", 1)[-1])
    ds.AccessionNumber = f"ACC{h % 10**8:08d}"
    ds.Modality = "DX" if is_dx else "CR"
    if is_dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "multibone synthetic"
    ds.InstitutionName = f"SYNTHETIC HOSPITAL {patient['center']}"
    ds.ReferringPhysicianName = "SYNTHETIC^REFERRER"
    ds.PatientName = f"SYNTHETIC^PATIENT^{patient_number:04d}"
    ds.PatientID = f"MRN{(h // 10**8) % 10**7:07d}"
    age = int(patient["age"])
    birth_year = int(_STUDY_DATE[:4]) - age - 1
    ds.PatientBirthDate = f"{birth_year:04d}{1 + h % 12:02d}{1 + (h // 12) % 28:02d}"
    ds.PatientSex = str(patient["sex"])
    ds.PatientAge = f"{min(age, 999):03d}Y"
    ds.PatientIdentityRemoved = "NO"
    ds.BodyPartExamined = str(patient["site"]).upper()[:16]
    ds.ViewPosition = _VIEW_POSITION[plan.view]
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid(plan.view, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = VIEWS.index(plan.view) + 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["", ""] if not is_dx else ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.ImagerPixelSpacing = [0.5, 0.5]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = plan.photometric
    ds.Rows, ds.Columns = (int(x) for x in stored.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{center:.1f}"
    ds.WindowWidth = f"{width:.1f}"
    ds.VOILUTFunction = "LINEAR"
    ds.LossyImageCompression = "00"
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------- cohort


def patient_streams(seed: int, index: int) -> list[np.random.SeedSequence]:
    """Seed sequences of patient ``index``: [lesion, view 0, view 1, view 2]."""
    return np.random.SeedSequence(seed, spawn_key=(_IMAGE_STREAM, index)).spawn(1 + len(VIEWS))


def patient_lesion(
    seed: int, index: int, diagnosis: str, subtype: str, difficulty: float
) -> LesionAppearance:
    """The lesion of patient ``index`` (0-based row of the clinical table) of cohort ``seed``.

    Drawn from the patient's own stream: it depends on the label (and subtype,
    which picks the pattern family) but on no other clinical value.
    """
    return draw_lesion(
        np.random.default_rng(patient_streams(seed, index)[0]), diagnosis, subtype, difficulty
    )


def _render_patient(
    task: tuple[int, dict[str, Any], list[ImagePlan], int, float, str],
) -> list[dict[str, Any]]:
    """Render and write all images of one patient; return their manifest/truth rows."""
    index, patient, plans, seed, difficulty, root = task
    kids = patient_streams(seed, index)
    normal = patient["diagnosis"] == NORMAL
    # A normal control's "lesion" only fixes the site geometry; nothing is painted.
    lesion = draw_lesion(
        np.random.default_rng(kids[0]),
        "tumor" if normal else patient["diagnosis"],
        "" if normal else patient["subtype"],
        difficulty,
    )
    rows = []
    for j, plan in enumerate(plans):
        view = render_view(
            np.random.default_rng(kids[1 + j]),
            lesion,
            site=patient["site"],
            view=plan.view,
            center=patient["center"],
            paediatric=patient["center"] in PAEDIATRIC_CENTERS,
            normal=normal,
        )
        path = Path(root) / plan.file_name
        if plan.kind == "dicom":
            write_dicom(
                path, view.pixels, plan=plan, patient=patient, patient_number=index + 1, seed=seed
            )
        else:
            write_png(path, view.pixels, 16 if plan.kind == "png16" else 8)
        rows.append(
            {
                "index": index,
                "view_index": j,
                "image_path": plan.file_name,
                "view": plan.view,
                "roi": ("", "", "", "") if view.roi is None else view.roi,
                "kind": plan.kind,
                "normal": normal,
                "evidence": lesion.evidence,
                "tumour_likeness": lesion.tumour_likeness,
                "tumour_family": lesion.tumour_family,
                "infection_family": lesion.infection_family,
                "sequestrum": lesion.sequestrum,
            }
        )
    return rows


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _readme(n: int, seed: int, difficulty: float, n_images: int, counts: dict[str, int]) -> str:
    t, i = TABLE1_COUNTS["tumor"], TABLE1_COUNTS["infection"]
    ceiling = evidence_ceiling_auc(difficulty)
    return f"""SYNTHETIC DATA - NOT REAL PATIENTS
===================================

Every image and every clinical value in this folder is SIMULATED by
multibone {__version__} (`multibone synth`). No real patient, image or
measurement is included. The names, IDs, dates and institutions in the DICOM
headers are fake; they exist so that multibone's rule "no DICOM identifier in
any output" is exercised. Do not use these data to draw clinical conclusions.

Made with: patients={n}, seed={seed}, difficulty={difficulty:g}
Images: {n_images} ({counts.get("dicom", 0)} DICOM, {counts.get("png8", 0)} PNG 8-bit, {counts.get("png16", 0)} PNG 16-bit)
The same version, seed and parameters give byte-identical files.

What the numbers follow
-----------------------
The clinical table follows Table 1 of seed 004 (DeepTIRP; patient level):
  tumour share 60.6 %;
  age {t["age_mean"]} +/- {t["age_sd"]} y (tumour), {i["age_mean"]} +/- {i["age_sd"]} y (infection)
      (beta distribution on 1-90 y with exactly these mean and SD; whole years);
  female 41.2 % / 38.0 %; appendicular site 86.4 % / 40.1 %;
  CRP normal/abnormal/missing 54.2/36.4/9.4 % (tumour), 24.7/49.6/25.6 % (infection);
  ESR normal/abnormal/missing 23.7/66.5/9.9 % (tumour), 6.8/68.4/24.9 % (infection);
  tumour groups benign 63.5 %, intermediate 15.7 %, malignant 20.8 %;
  infections tuberculosis ~69 %, osteomyelitis ~31 %.
Assumptions (not from the seeds): centres {", ".join(f"{k} {v:.0%}" for k, v in CENTER_SHARES.items())}
(A development, B external adult with higher contrast and more noise, C external
paediatric: ages restricted to 1-17 y, slimmer bones, open growth plates);
site and entity shares within a location / WHO group; labs missing together
where possible and abnormal values correlated (rho 0.4); numeric values drawn
from log-normal shapes inside their category, the same for both classes (CRP
normal <= 10 mg/L, ESR normal <= 20 mm/h); ~15 % of present lab values written
as the words normal/abnormal; 1/2/3 views with probabilities 0.3/0.5/0.2.

Images
------
Radiograph-like scenes (soft tissue, cortex, medulla, trabecular texture; long
bones for limb sites, vertebrae for the spine, a flat pelvis-like bone for
pelvis, sacrum, rib and skull) with one lesion inside the box roi_x0..roi_y1
(pixels, x1/y1 exclusive). Tumour-leaning lesions: sharp margins, sclerotic
rims, chondroid/osteoid matrix, sunburst spicules, soap-bubble septa.
Infection-leaning lesions: wide zone of transition, permeative lysis, cortical
breach, lamellated periosteal reaction, sequestra, soft-tissue swelling or
paravertebral abscess. How strongly a lesion leans is a latent score drawn
from the label alone (independent of the clinical values given the label);
`difficulty` sets how far apart the classes are. A perfect observer of that
score would reach AUC {ceiling:.3f}; image models reach less.
lesion_truth.csv holds the latent score per image: it is the simulation's
answer key, for checks only - never train on it.
"""


def make_synthetic_cohort(
    out_dir: str | os.PathLike[str],
    n_patients: int = 200,
    seed: int = 0,
    difficulty: float = 0.5,
    progress: bool = True,
    *,
    force: bool = False,
    workers: int = 1,
    normals: float = 0.0,
) -> Path:
    """Write a synthetic cohort (images + manifest) into ``out_dir``.

    Args:
        out_dir: folder to create. An existing non-empty folder is refused unless
            ``force``; the cohort is written to a temporary sibling folder and moved
            into place at the end, so a failure leaves nothing half-written.
        n_patients: number of patients (>= 1); about 1.9 images each.
        seed: integer >= 0; the same seed gives byte-identical files.
        difficulty: in [0, 1]; 0 -> lesion evidence nearly separates the classes,
            1 -> barely (see :func:`multibone.synthetic.scene.evidence_ceiling_auc`).
        progress: show a tqdm progress bar (per patient).
        force: replace an existing non-empty ``out_dir``.
        workers: processes used to render (>= 1); the output does not depend on it.
        normals: fraction in [0, 1) of the ``n_patients`` that are normal controls
            (``diagnosis`` ``normal``, no lesion, empty roi columns, no labs), for
            lesion-vs-normal detection. 0 (default) writes exactly the cohort of before.

    Returns:
        Path of ``out_dir/manifest.csv``.

    Raises:
        InputError: bad argument, or ``out_dir`` exists (not empty) without ``force``.
    """
    n = _check_int("n_patients", n_patients, 1)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)
    try:
        difficulty = float(difficulty)
    except (TypeError, ValueError):
        raise InputError(f"difficulty must be a number from 0 to 1, got {difficulty!r}") from None
    evidence_separation(difficulty)  # range check
    try:
        normals = float(normals)
    except (TypeError, ValueError):
        raise InputError(f"normals must be a fraction in [0, 1), got {normals!r}") from None
    if not 0.0 <= normals < 1.0:
        raise InputError(f"normals must be a fraction in [0, 1), got {normals!r}")
    n_normal = round(normals * n)
    if n - n_normal < 1:
        raise InputError(f"normals {normals:g} of {n} patients leaves no patient with a lesion")
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out} exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not force:
            raise InputError(
                f"{out} already exists and is not empty; pass --force to replace it "
                "(its contents are deleted) or choose another --out"
            )
        force = True  # empty folder, or replacing was asked for

    patients = synthetic_patients(n - n_normal, seed).to_dict("records")
    patients += normal_controls(n_normal, seed, first_number=n - n_normal + 1)
    plans = _plan_images(patients, seed)

    from tqdm.auto import tqdm

    with atomic_dir(out, force=force) as tmp:
        # mkdtemp makes the folder private (0700); a cohort is meant to be shared.
        tmp.chmod(0o755)
        (tmp / "images").mkdir()
        tasks = [(i, p, plans[i], seed, difficulty, str(tmp)) for i, p in enumerate(patients)]
        results: list[list[dict[str, Any]]] = []
        bar = tqdm(total=n, desc="synth", unit="patient", disable=not progress)
        try:
            if workers == 1 or n < 8:
                for task in tasks:
                    results.append(_render_patient(task))
                    bar.update(1)
            else:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    chunk = max(1, min(16, math.ceil(n / (workers * 8))))
                    for rows in pool.map(_render_patient, tasks, chunksize=chunk):
                        results.append(rows)
                        bar.update(1)
        finally:
            bar.close()
        _write_tables(tmp, patients, results)
        counts: dict[str, int] = {}
        for rows in results:
            for r in rows:
                counts[r["kind"]] = counts.get(r["kind"], 0) + 1
        n_images = sum(counts.values())
        readme = _readme(n, seed, difficulty, n_images, counts)
        if n_normal:
            readme += _NORMALS_README.format(k=n_normal, share=normals)
        (tmp / "SYNTHETIC_README.txt").write_text(readme, encoding="utf-8")
        info = {
            "synthetic": True,
            "generator": f"multibone {__version__}",
            "n_patients": n,
            "n_images": n_images,
            "seed": seed,
            "difficulty": difficulty,
            "evidence_separation": evidence_separation(difficulty),
            "evidence_ceiling_auc": round(evidence_ceiling_auc(difficulty), 4),
            "centers": {"A": "development", "B": "external adult", "C": "external paediatric"},
            "image_formats": dict(sorted(counts.items())),
        }
        if n_normal:  # absent without normals: such a cohort's files stay as before
            info["n_normals"] = n_normal
        (tmp / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out / "manifest.csv"


#: ``diagnosis`` of a normal control (no lesion).
NORMAL = "normal"
_NORMAL_STREAM = 200  # spawn key of the normal controls' clinical table

_NORMALS_README = """
Normal controls
---------------
{k} of the patients ({share:.0%} asked) are NORMAL CONTROLS: diagnosis "normal",
the same anatomy, centres, ages and views drawn as for the others, but no lesion
(no painted lesion, no lesion-related soft-tissue swelling), empty roi_x0..roi_y1,
empty subtype and labs. They are for lesion-vs-normal detection; the tumour-vs-
infection models must leave them out.
"""


def normal_controls(k: int, seed: int, *, first_number: int) -> list[dict[str, Any]]:
    """``k`` normal-control patients (clinical rows) numbered from ``P<first_number>``.

    Centre, age, sex, site and number of views come from their own clinical table
    (its own seed stream, so the lesion patients are unchanged); diagnosis is
    ``normal`` and subtype, subtype group and labs are empty.
    """
    if k == 0:
        return []
    sub_seed = int(np.random.SeedSequence(seed, spawn_key=(_NORMAL_STREAM,)).generate_state(1)[0])
    rows = synthetic_patients(k, sub_seed).to_dict("records")
    for i, r in enumerate(rows):
        r.update(
            patient_id=f"P{first_number + i:04d}",
            diagnosis=NORMAL,
            subtype="",
            subtype_group="",
            crp="",
            esr="",
            crp_status="missing",
            esr_status="missing",
            crp_value=float("nan"),
            esr_value=float("nan"),
        )
    return rows


def _write_tables(
    root: Path, patients: list[dict[str, Any]], results: list[list[dict[str, Any]]]
) -> None:
    rows = sorted((r for rs in results for r in rs), key=lambda r: (r["index"], r["view_index"]))
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for r in rows:
            p = patients[r["index"]]
            w.writerow(
                [
                    p["patient_id"],
                    r["image_path"],
                    r["view"],
                    *r["roi"],
                    p["center"],
                    p["diagnosis"],
                    p["subtype"],
                    int(p["age"]),
                    p["sex"],
                    p["site"],
                    p["location"],
                    p["crp"],
                    p["esr"],
                    p["subtype_group"],
                ]
            )
    with open(root / "lesion_truth.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(TRUTH_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    patients[r["index"]]["patient_id"],
                    r["image_path"],
                    *(
                        ("", "", "", "", "")  # a normal control has no lesion
                        if r["normal"]
                        else (
                            f"{r['evidence']:.4f}",
                            f"{r['tumour_likeness']:.4f}",
                            r["tumour_family"],
                            r["infection_family"],
                            int(r["sequestrum"]),
                        )
                    ),
                    r["kind"],
                ]
            )
