"""``multibone readers RUN --readers READS.csv [--out DIR]`` (or ``--predictions FILE --threshold T``).

Compares the model's calls with human readers as in seeds 003/004: accuracy,
sensitivity, specificity per reader with Wilson CIs, Cohen's kappa of each
rater against the truth and pairwise, permutation tests of kappa differences,
Fleiss' kappa within groups and Cochran's Q across model and readers.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run",
        type=Path,
        nargs="?",
        default=None,
        help="run folder (predictions.csv, thresholds.json); optional with --predictions",
    )
    parser.add_argument(
        "--readers",
        type=Path,
        required=True,
        metavar="READS.csv",
        help="reads: patient_id, reader, call (tumor/infection or 0/1 with 1 = "
        "positive class), optional group",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default RUN/readers)"
    )
    parser.add_argument(
        "--predictions",
        type=Path,
        default=None,
        metavar="FILE",
        help="plain score file (patient_id, label, score) instead of a run",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="call positive when p >= T (required with --predictions; with a "
        "RUN it overrides the Youden threshold from thresholds.json)",
    )
    parser.add_argument(
        "--logits",
        action="store_true",
        help="--predictions scores are logits (a sigmoid is applied; T is then a probability)",
    )
    parser.add_argument(
        "--model", default="stacker", help="which p_<model> column of the run (default stacker)"
    )
    parser.add_argument(
        "--positive-class",
        default=None,
        choices=("infection", "tumor"),
        help="class meant by call 1 (default: the run's config, else infection)",
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=10_000,
        metavar="N",
        help="permutations per kappa-difference test (default 10000)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples for Fleiss kappa CIs (default 2000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from multibone.evaluation.readers import run_readers

    res = run_readers(
        args.readers,
        run_dir=args.run,
        out_dir=args.out,
        predictions=args.predictions,
        threshold=args.threshold,
        logits=args.logits,
        model=args.model,
        positive_class=args.positive_class,
        n_perm=args.permutations,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    for row in res["performance"]:
        print(
            f"{row['rater']:>20s}  n={row['n']:<5d} accuracy {row['accuracy']:.3f}  "
            f"kappa {row['kappa']:.3f}"
        )
    out = args.out if args.out is not None else args.run / "readers"
    print(f"written to {out}")
    return 0
