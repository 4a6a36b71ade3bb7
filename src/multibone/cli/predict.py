"""``multibone predict``: score one case (or a CSV of cases) with a model bundle."""

from __future__ import annotations

import argparse
import json

from multibone.cli._case_args import add_case_arguments, case_from_args
from multibone.cli._engine_args import add_engine_arguments, apply_engine_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Calibrated probability of the bundle's positive class for one patient, the call at each "
        "stored operating point (chosen on development data), and each backbone's score. "
        "Prints one JSON object. Decision support, not a diagnosis."
    )
    add_case_arguments(p, allow_cases=True)
    p.add_argument("--out", help="with --cases: the CSV to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    add_engine_arguments(p)


def run(args: argparse.Namespace) -> int:
    from multibone.bundle import load_bundle

    apply_engine_arguments(args)
    bundle = load_bundle(args.bundle, trust_pickle=args.trust_pickle)
    if args.cases:
        from multibone.case import predict_cases_csv

        out = predict_cases_csv(bundle, args.cases, args.out, force=args.force)
        print(json.dumps({"cases": str(args.cases), "written": str(out)}))
        return 0
    from multibone.case import predict_case

    result = predict_case(bundle, case_from_args(args, bundle))
    print(json.dumps(result.to_json(), indent=2))
    return 0
