"""``multibone robustness RUN [--draws 50] [--shift 0.1] [--scale 0.8,1.2] [--seed 0]``.

Re-scores a finished run's held-out patients with its model bundle under random
lesion-box perturbations and writes RUN/robustness (see multibone.robustness).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multibone.errors import InputError


def _scale(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI such as 0.8,1.2, got {text!r}") from None
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "How much do the scores depend on where the lesion box was drawn? Re-scores the "
        "held-out patients (internal test, external centres) with the run's bundle, once with "
        "the boxes as drawn and --draws times with every box moved by up to --shift of its "
        "width/height and resized by a factor in --scale (clipped inside the image). Prints, "
        "per set and model, the AUC as drawn, the mean and 2.5-97.5%% range of the perturbed "
        "AUCs and how far one patient's probability moves; writes RUN/robustness (table, "
        "per-draw AUCs, per-patient spread, plot). Same seed, same numbers."
    )
    parser.add_argument("run", type=Path, help="finished run folder (predictions.csv, bundle/)")
    parser.add_argument("--draws", type=int, default=50, help="random perturbations (default 50)")
    parser.add_argument(
        "--shift", type=float, default=0.1,
        help="largest move of the box centre, as a fraction of its width/height (default 0.1)",
    )
    parser.add_argument(
        "--scale", type=_scale, default=(0.8, 1.2), metavar="LO,HI",
        help="range of the width and height factors (default 0.8,1.2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default 0)")
    parser.add_argument(
        "--manifest", type=Path, default=None,
        help="the run's cohort manifest (default RUN/cohort/manifest.csv, where demo writes it)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN/robustness)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1; more is slower on a busy small machine)",
    )


def run(args: argparse.Namespace) -> int:
    from multibone.robustness import box_robustness

    if args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    out = args.out if args.out is not None else args.run / "robustness"
    table = box_robustness(
        args.run, draws=args.draws, shift=args.shift, scale=args.scale, seed=args.seed,
        manifest=args.manifest, out_dir=out, force=args.force, threads=args.threads,
    )
    show = table[["set", "model", "n", "auc_as_drawn", "auc_perturbed_mean", "auc_perturbed_p2.5",
                  "auc_perturbed_p97.5", "prob_sd_mean", "prob_range_max"]]
    print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("prob_sd_mean: mean over patients of the SD of their probability across draws; "
          "prob_range_max: the largest max-min move of one patient's probability.")
    print(f"written to {out} (robustness.csv, per_draw_auc.csv, per_patient_spread.csv, robustness.png)")
    if args.out is None:
        print(f"add it to the report: multibone evaluate {args.run}")
    return 0
