"""``multibone compare A.csv B.csv --out DIR [--names A,B] [--logits] [--bootstrap N]``.

Head-to-head comparison of two prediction files (patient_id, label, score) on
the same patients, in the style of Hasei et al. 2025: AUC difference with the
paired DeLong test, operating points chosen per model on these data with
McNemar tests, calibration, AP, max-F1 and decision curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file_a", type=Path, help="first predictions CSV (patient_id, label, score)"
    )
    parser.add_argument("file_b", type=Path, help="second predictions CSV, same patients")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--names", default=None, help="display names 'A,B' (default: the file names without .csv)"
    )
    parser.add_argument(
        "--logits",
        action="store_true",
        help="scores are logits: apply the sigmoid (otherwise they must be "
        "probabilities in [0, 1])",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples for CIs of differences (default 2000; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from multibone.errors import InputError
    from multibone.evaluation.compare import compare_predictions

    if args.names is None:
        names = (args.file_a.stem, args.file_b.stem)
        if names[0] == names[1]:
            names = ("A", "B")
    else:
        parts = [p.strip() for p in args.names.split(",")]
        if len(parts) != 2:
            raise InputError(f"--names takes two names separated by a comma, got {args.names!r}")
        names = (parts[0], parts[1])
    res = compare_predictions(
        args.file_a,
        args.file_b,
        args.out,
        names=names,
        logits=args.logits,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    d = res["auc_difference"]["delong"]
    print(
        f"AUC {names[0]} {d['auc_a']:.3f} vs {names[1]} {d['auc_b']:.3f}: "
        f"difference {d['diff']:+.4f}, paired DeLong p = {d['p']:.3g} (n = {res['n']})"
    )
    print(f"written to {args.out} (compare.html, compare.json, compare.csv, figures/)")
    return 0
