"""``multibone validate MANIFEST``: check a cohort manifest against the data contract.

Prints every problem, one per line (``row R, column C: ...`` with spreadsheet
row numbers, header = row 1; or ``patient P: ...``) and exits 2; or prints a
short summary and exits 0. Writes nothing.

``--clinical-only`` checks a manifest for a run without backbones
(``imaging: {backbones: []}``): ``image_path`` may be absent or empty and image
files are not opened. Both outcomes name the columns the run needs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multibone.errors import CohortValidationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="the manifest CSV (one row per image)")
    parser.add_argument(
        "--no-images",
        action="store_true",
        help="check the table only; do not open the image files",
    )
    parser.add_argument(
        "--headers-only",
        action="store_true",
        help="read only each image's header (size), not its pixels: faster, but a truncated "
        "file or a DICOM without pixel data is not caught",
    )
    parser.add_argument(
        "--clinical-only",
        action="store_true",
        help="the run has no backbones (imaging: {backbones: []}): image_path may be absent or "
        "empty, and image files are not opened",
    )
    parser.add_argument(
        "--require-diagnosis",
        action="store_true",
        help="every patient must have a diagnosis (training / evaluation data)",
    )


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f} %" if whole else "0 %"


def run(args: argparse.Namespace) -> int:
    from multibone.cohort.cohort import build_cohort
    from multibone.cohort.validate import check_manifest, needed_columns

    clinical_only = bool(getattr(args, "clinical_only", False))
    no_images = args.no_images or clinical_only
    needed = needed_columns(
        require_images=not clinical_only, require_diagnosis=args.require_diagnosis
    )
    run_kind = "a clinical-only run" if clinical_only else "a run with images"
    parsed = check_manifest(
        args.manifest,
        check_images=not no_images,
        decode_images=not args.headers_only,
        require_diagnosis=args.require_diagnosis,
        require_images=not clinical_only,
    )
    if parsed.problems:
        raise CohortValidationError(parsed.problems, source=str(args.manifest))
    cohort = build_cohort(parsed)
    s = cohort.summary()
    n = s["patients"]
    if clinical_only:
        images_checked = "not opened (--clinical-only)"
    elif args.no_images:
        images_checked = "not opened (--no-images)"
    else:
        images_checked = "headers read" if args.headers_only else "all decoded"
    lines = [
        f"{args.manifest}: valid for {run_kind}",
        f"  columns {run_kind} needs: {', '.join(needed)}",
        f"  patients: {n}   images: {s['images']} ({images_checked})",
        "  diagnosis (patients / images): "
        + ", ".join(
            f"{k} {v} / {s['images_per_diagnosis'].get(k, 0)}"
            for k, v in s["patients_per_diagnosis"].items()
        ),
        "  centres (patients): "
        + ", ".join(f"{k} {v}" for k, v in s["patients_per_center"].items()),
        "  location (patients): "
        + ", ".join(f"{k} {v}" for k, v in s["patients_per_location"].items()),
        f"  missing labs: CRP {s['crp_missing_pct']:.0f} %, ESR {s['esr_missing_pct']:.0f} %",
        f"  lesion boxes: {s['images_with_roi_pct']:.0f} % of images",
    ]
    if set(s["patients_per_split"]) != {"(unassigned)"}:
        lines.append(
            "  split (patients): "
            + ", ".join(f"{k} {v}" for k, v in s["patients_per_split"].items())
        )
    if parsed.extra_columns:
        lines.append("  ignored columns: " + ", ".join(parsed.extra_columns))
    print("\n".join(lines))
    return 0
