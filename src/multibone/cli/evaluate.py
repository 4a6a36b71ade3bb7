"""``multibone evaluate RUN [--out DIR] [--bootstrap N] [--seed S]``.

Reads RUN/predictions.csv and RUN/thresholds.json and writes report.html,
metrics.json, tables/*.csv and figures/*.png to RUN/evaluation (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", type=Path, help="run folder holding predictions.csv and thresholds.json"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default RUN/evaluation; an earlier evaluation there is replaced)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples for percentile CIs and ROC bands "
        "(default 2000 here for speed; the statistics functions default to "
        "5000; 0 turns the bootstrap off)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="skip the PNG figures (tables, metrics.json and report only)",
    )


def run(args: argparse.Namespace) -> int:
    from multibone.evaluation.report import evaluate_run

    out = args.out if args.out is not None else args.run / "evaluation"
    metrics = evaluate_run(
        args.run, out, n_boot=args.bootstrap, seed=args.seed, figures=not args.no_figures
    )
    print(
        f"evaluation of {len(metrics['models'])} model(s) on {len(metrics['sets'])} set(s) "
        f"written to {out}"
    )
    for w in metrics["warnings"]:
        print(f"warning: {w}")
    print(f"open {out / 'report.html'}")
    return 0
