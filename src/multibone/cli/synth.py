"""``multibone synth``: write a synthetic cohort (images + manifest.csv).

Example::

    multibone synth --out data/synth --patients 200 --seed 0 [--normals 0.3]
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument(
        "--patients", type=int, default=200, help="number of patients (default 200)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0); same seed, same files"
    )
    parser.add_argument(
        "--difficulty",
        type=float,
        default=0.5,
        help="0..1: how much tumour and infection lesions look alike (default 0.5)",
    )
    parser.add_argument(
        "--normals",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of the patients that are normal controls without a lesion, for "
        "lesion-vs-normal detection (default 0: none)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes used to render (default: up to 2); the output does not depend on it",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from multibone.synthetic import make_synthetic_cohort

    workers = args.workers if args.workers is not None else max(1, min(2, os.cpu_count() or 1))
    manifest = make_synthetic_cohort(
        args.out,
        n_patients=args.patients,
        seed=args.seed,
        difficulty=args.difficulty,
        progress=not args.no_progress,
        force=args.force,
        workers=workers,
        normals=args.normals,
    )
    with open(manifest, encoding="utf-8") as fh:
        n_images = sum(1 for _ in fh) - 1
    print(f"wrote {manifest} ({args.patients} patients, {n_images} images; simulated data)")
    return 0
