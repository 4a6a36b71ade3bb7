"""Arguments shared by ``predict`` and ``explain``: one case on the command line."""

from __future__ import annotations

import argparse

from multibone.errors import InputError


def add_case_arguments(p: argparse.ArgumentParser, *, allow_cases: bool) -> None:
    p.add_argument("--bundle", required=True, help="model bundle folder (e.g. runs/demo/bundle)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load an old (format 2) bundle whose stacker is a pickle (stacker.joblib). "
                        "A pickle runs any code it names when loaded: use only for a bundle you "
                        "made yourself and nobody else could change; better, retrain")
    p.add_argument("--image", action="append", default=[], metavar="FILE",
                   help="a radiograph of the patient (DICOM, PNG or JPEG); repeat for more views. "
                        "Not needed for a bundle without backbones (clinical data only)")
    p.add_argument("--roi", action="append", default=[], metavar="x0,y0,x1,y1",
                   help="lesion box of the matching --image, in pixels (x1/y1 exclusive); "
                        "give one per image, or none: a bundle with a lesion detector then "
                        "proposes each box (the output's rois say roi_source detector, with "
                        "the box and its score), one without scores whole images")
    p.add_argument("--age", help="age in years (0-120)")
    p.add_argument("--sex", help="F or M")
    p.add_argument("--site", default="", help="anatomical site, e.g. femur, tibia, spine, pelvis. "
                   "Fields the bundle's model does not use (e.g. a site the training cohort never "
                   "recorded) are optional, ignored and named under ignored_fields")
    p.add_argument("--location", default="", choices=["", "axial", "appendicular"],
                   help="axial or appendicular (derived from --site when omitted)")
    p.add_argument("--crp", default=None, help="CRP in mg/L, or normal/abnormal; omit when unknown")
    p.add_argument("--esr", default=None, help="ESR in mm/h, or normal/abnormal; omit when unknown")
    if allow_cases:
        p.add_argument("--cases", metavar="CSV",
                       help="many cases at once: a manifest-format CSV (no diagnosis needed); "
                            "writes one row per patient to --out")


def case_from_args(args: argparse.Namespace, bundle=None):
    """Build a :class:`multibone.case.Case` from the command line (errors name the flag).

    With ``bundle``, only the fields its model uses are checked (others are
    ignored), and a bundle without backbones needs no ``--image``.
    """
    from multibone.case import case_from_fields, needed_fields, read_case_image
    from multibone.io import parse_roi

    needs_images = bundle is None or bool(bundle.backbones)
    if not args.image and needs_images:
        raise InputError("give at least one --image FILE (or --cases CSV for many cases)")
    if args.roi and len(args.roi) != len(args.image):
        raise InputError(
            f"{len(args.roi)} --roi for {len(args.image)} --image; give one box per image, in order"
        )
    images = []
    for i, path in enumerate(args.image):
        roi = None
        if args.roi:
            try:
                roi = parse_roi(args.roi[i])
            except InputError as exc:
                raise InputError(f"--roi {args.roi[i]!r}: {exc}") from exc
        images.append(read_case_image(path, roi, label=f"image {i + 1}"))
    fields = {"age": args.age, "sex": args.sex, "site": args.site, "location": args.location,
              "crp": args.crp, "esr": args.esr}
    try:
        return case_from_fields(fields, images, require_images=needs_images,
                                needed=needed_fields(bundle) if bundle is not None else None)
    except InputError as exc:
        raise InputError(str(exc).replace("case field ", "--")) from exc
