"""The Cohort: a checked manifest as a patient table and an image table.

A manifest (one CSV row per image, see ``data_schemas/manifest.schema.json``)
becomes two tables once every rule of the data contract holds:

* ``patients``: one row per patient, in order of first appearance;
* ``images``: one row per image, in manifest order.

Any broken rule raises :class:`CohortValidationError` listing every problem.

A clinical-only cohort (a run without backbones) is loaded with
``require_images=False``: the manifest may lack ``image_path`` or leave it
empty, and rows without an image add nothing to ``images`` (a patient may
have no image at all).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multibone.cohort.schema import (
    NORMAL,
    abnormal_threshold,
    enum_values,
    manifest_properties,
    validate_case,
)
from multibone.cohort.sites import location_for_site
from multibone.cohort.validate import (
    ROI_COLUMNS,
    ParsedManifest,
    check_manifest,
    check_table,
    dataframe_records,
)
from multibone.errors import CohortValidationError, InputError

PATIENT_COLUMNS = (
    "patient_id", "diagnosis", "label", "subtype", "age", "sex", "site", "location",
    "crp", "crp_abnormal", "esr", "esr_abnormal", "center", "split",
)
IMAGE_COLUMNS = ("patient_id", "image_path", "view", *ROI_COLUMNS, "center", "row")


def diagnoses() -> list[str]:
    """The disease classes of the data contract (``["tumor", "infection"]``); the
    contract's third value, :data:`NORMAL`, is not a class of the classifiers."""
    return [str(v) for v in enum_values(manifest_properties()["diagnosis"]) if v != NORMAL]


def _check_positive_class(positive_class: str) -> str:
    classes = diagnoses()
    if positive_class == NORMAL:
        raise InputError(
            f"positive_class: {NORMAL!r} cannot be the positive class: normal controls have no "
            f"lesion and only train the lesion detector; use one of {', '.join(classes)}"
        )
    if positive_class not in classes:
        raise InputError(
            f"positive_class: {positive_class!r} is not a diagnosis; use one of {', '.join(classes)}"
        )
    return positive_class


@dataclass
class Cohort:
    """Patients and their radiographs, checked against the data contract.

    Attributes:
        root: the manifest's folder (image paths in ``images`` are absolute).
        positive_class: diagnosis coded as ``label == 1.0`` (``"infection"`` or ``"tumor"``).
        images: one row per image (manifest rows without an image are left out):
            ``patient_id`` (str), ``image_path`` (str, absolute), ``view``
            (AP/lateral/oblique/other or ""), ``roi_x0, roi_y0, roi_x1, roi_y1`` (float pixels,
            x1/y1 exclusive, NaN when the whole image is used),
            ``center`` (str, "" if absent), ``row`` (int, the manifest row, header = 1),
            then any unknown manifest columns as text.
        patients: one row per patient (RangeIndex): ``patient_id``, ``diagnosis`` (str or ""),
            ``label`` (float 1.0 positive class, 0.0 other class, NaN no diagnosis),
            ``subtype`` (str), ``age`` (float years), ``sex`` ("F"/"M"), ``site`` (lower case or
            ""), ``location`` ("axial"/"appendicular"/""), ``crp`` (float mg/L or NaN),
            ``crp_abnormal`` (float 1/0/NaN; numeric > 10 mg/L is abnormal), ``esr`` (float mm/h
            or NaN), ``esr_abnormal`` (float 1/0/NaN; numeric > 20 mm/h), ``center`` (str),
            ``split`` ("dev"/"test"/"external" or "").
        source: where the cohort came from (manifest path, "cases" or "case").
    """

    root: Path
    positive_class: str
    images: pd.DataFrame
    patients: pd.DataFrame
    source: str = field(default="")

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    @property
    def n_images(self) -> int:
        return len(self.images)

    def image_rois(self) -> list[tuple[int, int, int, int] | None]:
        """Lesion box per image row, ``(x0, y0, x1, y1)`` int pixels, or None (whole image)."""
        out: list[tuple[int, int, int, int] | None] = []
        for box in self.images[list(ROI_COLUMNS)].itertuples(index=False, name=None):
            if any(math.isnan(float(v)) for v in box):
                out.append(None)
            else:
                x0, y0, x1, y1 = (int(v) for v in box)
                out.append((x0, y0, x1, y1))
        return out

    def select(self, patient_ids: Iterable[str]) -> Cohort:
        """A new Cohort with only these patients (their images too), order kept."""
        wanted = {str(p) for p in patient_ids}
        unknown = sorted(wanted - set(self.patients["patient_id"]))
        if unknown:
            raise InputError(
                f"{len(unknown)} patient id(s) not in the cohort: {', '.join(unknown[:10])}"
            )
        pmask = self.patients["patient_id"].isin(wanted)
        imask = self.images["patient_id"].isin(wanted)
        return Cohort(
            root=self.root,
            positive_class=self.positive_class,
            images=self.images[imask].reset_index(drop=True),
            patients=self.patients[pmask].reset_index(drop=True),
            source=self.source,
        )

    @property
    def is_normal(self) -> pd.Series:
        """Boolean per patient row: a normal control (``diagnosis`` :data:`NORMAL`)."""
        return self.patients["diagnosis"].astype(str) == NORMAL

    @property
    def n_normals(self) -> int:
        return int(self.is_normal.sum())

    def without_normals(self) -> Cohort:
        """The tumour-vs-infection cohort: normal controls (and their images) left out.

        Returns ``self`` when there are none, so a cohort without normals is unchanged.
        """
        if not self.n_normals:
            return self
        return self.select(self.patients.loc[~self.is_normal, "patient_id"])

    def summary(self) -> dict[str, Any]:
        """Counts for a human: patients, images, classes, centres, missing labs (percent)."""
        p = self.patients
        img_diag = self.images.merge(p[["patient_id", "diagnosis"]], on="patient_id", how="left")

        def counts(series: pd.Series, empty: str = "(none)") -> dict[str, int]:
            s = series.astype(str).replace("", empty)
            return {str(k): int(v) for k, v in s.value_counts(sort=False).sort_index().items()}

        n = max(len(p), 1)
        return {
            "patients": int(len(p)),
            "images": int(len(self.images)),
            "positive_class": self.positive_class,
            "patients_per_diagnosis": counts(p["diagnosis"], "(no diagnosis)"),
            "images_per_diagnosis": counts(img_diag["diagnosis"], "(no diagnosis)"),
            "patients_per_center": counts(p["center"], "(no centre)"),
            "patients_per_location": counts(p["location"], "(unknown)"),
            "patients_per_split": counts(p["split"], "(unassigned)"),
            "crp_missing_pct": round(100.0 * float(p["crp_abnormal"].isna().sum()) / n, 1),
            "esr_missing_pct": round(100.0 * float(p["esr_abnormal"].isna().sum()) / n, 1),
            "images_with_roi_pct": round(
                100.0 * float(self.images["roi_x0"].notna().sum()) / max(len(self.images), 1), 1
            ),
        }


def _lab(value: Any, threshold: float) -> tuple[float, float]:
    """(numeric value or NaN, abnormal 1/0/NaN) of a CRP/ESR cell."""
    if value is None:
        return np.nan, np.nan
    if isinstance(value, str):
        return np.nan, 1.0 if value == "abnormal" else 0.0
    v = float(value)
    return v, 1.0 if v > threshold else 0.0


def build_cohort(parsed: ParsedManifest, positive_class: str = "infection") -> Cohort:
    """Turn a problem-free :class:`ParsedManifest` into a :class:`Cohort`.

    Raises :class:`CohortValidationError` when ``parsed`` has problems.
    """
    if parsed.problems:
        raise CohortValidationError(parsed.problems, source=parsed.source)
    _check_positive_class(positive_class)
    crp_thr, esr_thr = abnormal_threshold("crp"), abnormal_threshold("esr")
    prow = []
    for pid in parsed.patients:
        pv = parsed.patient_values[pid]
        diagnosis = str(pv.get("diagnosis", ""))
        # A normal control has no tumour-vs-infection label (the classifiers leave it out).
        label = (
            np.nan if not diagnosis or diagnosis == NORMAL
            else (1.0 if diagnosis == positive_class else 0.0)
        )
        site = str(pv.get("site", ""))
        location = str(pv.get("location") or location_for_site(site))
        crp, crp_abn = _lab(pv.get("crp"), crp_thr)
        esr, esr_abn = _lab(pv.get("esr"), esr_thr)
        prow.append(
            {
                "patient_id": pid,
                "diagnosis": diagnosis,
                "label": label,
                "subtype": str(pv.get("subtype", "")),
                "age": float(pv["age"]),
                "sex": str(pv["sex"]),
                "site": site,
                "location": location,
                "crp": crp,
                "crp_abnormal": crp_abn,
                "esr": esr,
                "esr_abnormal": esr_abn,
                "center": str(pv.get("center", "")),
                "split": str(pv.get("split", "")),
            }
        )
    patients = pd.DataFrame(prow, columns=list(PATIENT_COLUMNS))
    for col in ("label", "age", "crp", "crp_abnormal", "esr", "esr_abnormal"):
        patients[col] = patients[col].astype(float)

    irow = []
    # Unknown manifest columns ride along as text, unless one shadows a column of ours.
    extra = [c for c in parsed.extra_columns if c not in IMAGE_COLUMNS]
    for r in parsed.rows:
        if not r.abs_path:
            continue  # a clinical-only row (checked with require_images=False): no image
        rec: dict[str, Any] = {
            "patient_id": str(r.values["patient_id"]),
            "image_path": r.abs_path,
            "view": str(r.values.get("view", "")),
        }
        for c in ROI_COLUMNS:
            rec[c] = float(r.values[c]) if c in r.values else np.nan
        rec["center"] = str(r.values.get("center", ""))
        rec["row"] = int(r.row)
        for c in extra:
            rec[c] = r.extra.get(c, "")
        irow.append(rec)
    images = pd.DataFrame(irow, columns=[*IMAGE_COLUMNS, *extra])
    for c in ROI_COLUMNS:
        images[c] = images[c].astype(float)
    images["row"] = images["row"].astype(int)
    return Cohort(
        root=parsed.root,
        positive_class=positive_class,
        images=images,
        patients=patients,
        source=parsed.source,
    )


def load_cohort(
    path: str | Path,
    *,
    positive_class: str = "infection",
    check_images: bool = True,
    decode_images: bool = False,
    require_diagnosis: bool = True,
    require_images: bool = True,
    progress: bool = True,
) -> Cohort:
    """Read a manifest CSV into a :class:`Cohort` (training / evaluation data).

    ``positive_class``: ``"infection"`` (default) or ``"tumor"``, coded ``label == 1``.
    ``check_images``: open every image; by default only its header is read
    (existence, readability, size for the lesion-box check), as training
    decodes them anyway; ``decode_images=True`` decodes fully (what
    ``multibone validate`` does). ``require_diagnosis``: every patient needs a
    diagnosis (default True; training and evaluation need labels).
    ``require_images=False``: a clinical-only run (no backbones): ``image_path``
    may be absent or empty; combine with ``check_images=False`` so that image
    files the run will not use are not opened.

    Raises :class:`CohortValidationError` listing every problem, or
    :class:`InputError` when the file is not a readable CSV.
    """
    _check_positive_class(positive_class)
    parsed = check_manifest(
        path,
        check_images=check_images,
        decode_images=decode_images,
        require_diagnosis=require_diagnosis,
        require_images=require_images,
        progress=progress,
    )
    return build_cohort(parsed, positive_class)


def load_cases(
    path_or_df: str | Path | pd.DataFrame,
    *,
    require_diagnosis: bool = False,
    positive_class: str = "infection",
    root: str | Path | None = None,
    check_images: bool = True,
    decode_images: bool = False,
    require_images: bool = True,
) -> Cohort:
    """Cases to score (``predict --cases``), in the manifest format, as a :class:`Cohort`.

    ``path_or_df``: a manifest-format CSV (image paths relative to its folder)
    or a DataFrame with the same columns (paths relative to ``root``, default
    the current folder; row numbers in messages are those the table would
    have as a CSV: header = row 1). Diagnosis is optional unless
    ``require_diagnosis``; images optional when ``require_images=False`` (a bundle
    without backbones). Same rules and errors as :func:`load_cohort`.
    """
    _check_positive_class(positive_class)
    if isinstance(path_or_df, pd.DataFrame):
        header, records = dataframe_records(path_or_df)
        parsed = check_table(
            header,
            records,
            root=Path(root).resolve() if root is not None else Path.cwd(),
            source="cases",
            check_images=check_images,
            decode_images=decode_images,
            require_diagnosis=require_diagnosis,
            require_images=require_images,
        )
    else:
        parsed = check_manifest(
            path_or_df,
            check_images=check_images,
            decode_images=decode_images,
            require_diagnosis=require_diagnosis,
            require_images=require_images,
        )
    return build_cohort(parsed, positive_class)


_ROW_PREFIX = re.compile(r"^row (\d+), column (\w+): ")


def case_to_cohort(
    case: dict[str, Any],
    *,
    root: str | Path | None = None,
    check_images: bool = True,
    decode_images: bool = False,
    positive_class: str = "infection",
    require_images: bool = True,
) -> Cohort:
    """One case (``case.schema.json``; e.g. from the dashboard) as a one-patient Cohort.

    Field problems raise :class:`InputError` (``case field F: ...``); image and
    lesion-box problems raise :class:`CohortValidationError` whose lines read
    ``case image K, field C: ...`` (K = 1 for the first image). Relative image
    paths are taken from ``root`` (default: the current folder).
    ``require_images=False`` (a bundle without backbones): ``images`` may be
    absent or empty; the Cohort then has the patient and no image.
    """
    c = validate_case(case, require_images=require_images)
    pid = str(c.get("case_id") or "case")
    clinical = {
        "age": c["age"],
        "sex": c["sex"],
        "site": c.get("site"),
        "location": c.get("location"),
        "crp": c.get("crp"),
        "esr": c.get("esr"),
    }
    rows = []
    if not c.get("images"):  # only possible with require_images=False
        rows.append({"patient_id": pid, **clinical})
    for im in c.get("images") or []:
        roi = im.get("roi") or [None] * 4
        rows.append(
            {
                "patient_id": pid,
                "image_path": os.fspath(im["path"]),
                "view": im.get("view"),
                **dict(zip(ROI_COLUMNS, roi, strict=True)),
                **clinical,
            }
        )
    header, records = dataframe_records(pd.DataFrame(rows))
    parsed = check_table(
        header,
        records,
        root=Path(root).resolve() if root is not None else Path.cwd(),
        source="case",
        check_images=check_images,
        decode_images=decode_images,
        require_images=require_images,
        progress=False,
    )
    if parsed.problems:
        renamed = [
            _ROW_PREFIX.sub(lambda m: f"case image {int(m.group(1)) - 1}, field {m.group(2)}: ", p)
            for p in parsed.problems
        ]
        raise CohortValidationError(renamed, source="case")
    return build_cohort(parsed, positive_class)
