"""``multibone recalibrate``: refit a bundle's calibration on a local labelled sample."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Institution-specific calibration (seed 000). Scores every patient of a local, labelled "
        "manifest-format CSV with the bundle, fits p_site = expit(a + b * logit(p)) on them, and "
        "writes a NEW bundle: same models (discrimination unchanged, every call at the operating "
        "points unchanged), probabilities recalibrated for your site, and the provenance (sample "
        "size, date, calibration intercept/slope before and after) in its bundle.json. Needs at "
        "least 100 patients with 20 of each diagnosis, else it refuses and says why. Judge the "
        "result on patients NOT used here."
    )
    p.epilog = (
        "example: multibone recalibrate --bundle runs/demo/bundle --cases local.csv "
        "--out runs/demo/bundle_site"
    )
    p.add_argument("--bundle", required=True, help="the bundle to recalibrate (left untouched)")
    p.add_argument(
        "--cases", required=True,
        help="local manifest-format CSV (as for predict --cases) with a diagnosis on every row",
    )
    p.add_argument("--out", required=True, help="folder of the new, recalibrated bundle")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from multibone.recalibration import recalibrate_bundle

    prov = recalibrate_bundle(args.bundle, args.cases, args.out, force=args.force)
    print(json.dumps({"written": str(args.out), "site_recalibration": prov}, indent=2))
    return 0
