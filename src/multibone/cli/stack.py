"""``multibone stack``: compare stacker families, fit the chosen one and the baselines.

Whole run (after ``train-images --out RUN/imaging``): stacking, predictions,
operating points, evaluation report, model bundle and summary, all under RUN::

    multibone stack --run RUN --manifest M [--config C] [--family rf] [--force]

Stacking step only::

    multibone stack --scores RUN/imaging/patient_scores.csv --manifest M \\
        [--config C] --out RUN/stacking [--family rf] [--force]

Without ``--scores`` the stacker is clinical-only (a cohort with tables only):
splits come from the manifest's ``split`` column (empty = dev).
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


def _read_scores(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: scores file not found (run multibone train-images first)")
    try:
        return pd.read_csv(path, dtype={"patient_id": str, "split": str}, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from exc


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
    from multibone.cohort import load_cohort
    from multibone.runconfig import load_run_config
    from multibone.stacking.features import build_stacking_table
    from multibone.stacking.run import run_stacking

    if (args.run is None) == (args.out is None):
        raise InputError("give either --run RUN (whole run) or --out DIR (stacking step only)")
    if args.run is not None:
        return _run_whole(args)
    config = load_run_config(args.config)
    cohort = load_cohort(
        args.manifest, positive_class=config.positive_class, check_images=False, progress=False
    )
    patients = cohort.patients
    if args.scores is not None:
        scores = _read_scores(args.scores)
        source = str(args.scores)
    else:
        split = patients["split"].fillna("").astype(str).replace("", "dev")
        scores = pd.DataFrame(
            {
                "patient_id": patients["patient_id"],
                "split": split,
                "fold": -1,
                "label": patients["label"],
            }
        )
        source = "manifest (no scores: clinical-only)"
    X, meta = build_stacking_table(
        scores, patients, clinical=config.stacking.clinical, source=source
    )
    summary = run_stacking(
        X,
        meta,
        config.stacking,
        args.out,
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
    print(f"wrote {args.out} (stacker.joblib, baselines.joblib, predictions.csv, thresholds.json)")
    return 0


def _run_whole(args: argparse.Namespace) -> int:
    """Stages after imaging, through the bundle (:func:`multibone.pipeline.finish_run`)."""
    from multibone.cohort import assign_splits, load_cohort
    from multibone.pipeline import finish_run
    from multibone.runconfig import load_run_config, save_run_config

    config = load_run_config(args.config)
    if args.family:
        config.stacking.family = args.family
    run = args.run
    scores_path = run / "imaging" / "patient_scores.csv"
    cohort = load_cohort(args.manifest, positive_class=config.positive_class, progress=False)
    if scores_path.is_file():
        # the splits the backbones were cross-fitted on: never re-drawn here
        splits = _read_scores(scores_path)[["patient_id", "split", "fold"]]
    else:
        splits = assign_splits(cohort.patients, config.splits)
    run.mkdir(parents=True, exist_ok=True)
    splits.to_csv(run / "splits.csv", index=False)
    save_run_config(config, run / "config.yaml")
    finish_run(run, cohort, splits, config, force=args.force, progress=sys.stderr.isatty(),
               n_boot=args.bootstrap)
    print((run / "summary.md").read_text(encoding="utf-8"))
    return 0
