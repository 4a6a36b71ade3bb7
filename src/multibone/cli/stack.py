"""``multibone stack``: compare stacker families, fit the chosen one and the baselines.

Whole run (after ``train-images --out RUN/imaging``): stacking, predictions,
operating points, evaluation report, model bundle and summary, all under RUN::

    multibone stack --run RUN --manifest M [--config C] [--family rf] [--force]

Stacking step only::

    multibone stack --scores RUN/imaging/patient_scores.csv --manifest M \\
        [--config C] --out RUN/stacking [--family rf] [--force]

Without ``--scores`` the stacker is clinical-only (a cohort with tables only),
on the same splits and folds as every other entry point
(:func:`multibone.pipeline.make_splits`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from multibone.errors import InputError
from multibone.stacking.config import FAMILIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores",
        type=Path,
        help="patient_scores.csv from train-images (patient_id, split, fold, label, one "
        "probability column per backbone); omit for clinical-only stacking",
    )
    parser.add_argument("--manifest", type=Path, required=True, help="cohort manifest.csv")
    parser.add_argument("--config", type=Path, help="run config YAML (its stacking: section)")
    parser.add_argument(
        "--run",
        type=Path,
        help="run folder: reads RUN/imaging/patient_scores.csv (if present) and writes the whole "
        "run (stacking, predictions, thresholds, evaluation, bundle, summary.md)",
    )
    parser.add_argument("--out", type=Path, help="stacking step only: output folder (RUN/stacking)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="with --run: bootstrap resamples of the report"
    )
    parser.add_argument(
        "--family", choices=FAMILIES, help="family to fit (default: the config's, rf)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")


def format_comparison(comparison: pd.DataFrame, chosen: str) -> str:
    """The comparison table as aligned text, best cross-validated AUC first."""
    rows = comparison.sort_values("cv_auc", ascending=False)
    lines = [f"{'family':<10} {'CV AUC':>7}  {'95% CI':<15} {'s':>5}  best parameters"]
    for r in rows.itertuples():
        mark = " *" if r.family == chosen else ""
        params = ", ".join(f"{k}={v}" for k, v in r.best_params.items())
        lines.append(
            f"{r.family + mark:<10} {r.cv_auc:>7.3f}  {r.ci_low:.3f}-{r.ci_high:.3f}     "
            f"{r.seconds:>5.1f}  {params}"
        )
    lines.append(
        "CV AUC: pooled out-of-fold AUC of each tuned family over the inner patient-grouped "
        "folds; CI: bootstrap percentile (patients resampled within class). * = fitted."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from multibone.pipeline import stack_run, stack_step
    from multibone.runconfig import load_run_config

    if (args.run is None) == (args.out is None):
        raise InputError("give either --run RUN (whole run) or --out DIR (stacking step only)")
    config = load_run_config(args.config)
    if args.run is not None:
        if args.family:
            config.stacking.family = args.family
        run_dir = stack_run(
            args.run,
            args.manifest,
            config,
            force=args.force,
            progress=sys.stderr.isatty(),
            n_boot=args.bootstrap,
        )
        print((run_dir / "summary.md").read_text(encoding="utf-8"))
        return 0
    summary = stack_step(
        args.manifest,
        config,
        args.out,
        scores=args.scores,
        family=args.family,
        force=args.force,
        progress=sys.stderr.isatty(),
    )
    print(format_comparison(summary["comparison"], summary["family"]))
    ops = summary["operating_points"].get("stacker", {})
    if ops:
        print(
            "stacker operating points (dev, out-of-fold): "
            + "; ".join(
                f"{k} p>={v['threshold']:.3f} (sens {v['sensitivity']:.2f}, spec "
                f"{v['specificity']:.2f})"
                for k, v in ops.items()
            )
        )
    print(f"wrote {args.out} (stacker.skops, baselines.skops, predictions.csv, thresholds.json)")
    return 0
