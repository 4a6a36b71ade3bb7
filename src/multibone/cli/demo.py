"""``multibone demo``: the whole pipeline on a synthetic cohort, on a CPU, in minutes."""

from __future__ import annotations

import argparse
import logging
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Make a synthetic cohort (three centres, PNG and DICOM), train the tiny backbones "
        "cross-fitted, fit and compare the stacker families, evaluate on the held-out external "
        "centres and write a model bundle and summary. With the config's detection: section "
        "(the default demo has one) the cohort gets normal controls as extra patients (20 % of "
        "it; the --patients tumour/infection patients stay the same) and a lesion detector is "
        "trained on the same folds, evaluated (localisation, lesion-vs-normal AUC) and put in "
        "the bundle, so predict proposes the lesion box when none is given. The data are "
        "simulated: the bundle is for trying multibone, never for patients."
    )
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--patients", type=int, default=200, help="synthetic patients (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cohort (default 0)")
    p.add_argument("--difficulty", type=float, default=0.5,
                   help="0 = textbook lesions, 1 = patterns fully mixed (default 0.5)")
    p.add_argument("--config", help="run config YAML (default configs/demo.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from multibone.pipeline import build_demo
    from multibone.runconfig import load_run_config

    log = logging.getLogger("multibone.demo")
    config = load_run_config(args.config) if args.config else None
    t0 = time.perf_counter()

    def step(fraction: float, message: str) -> None:
        log.info("[%3.0f%%] %s", 100 * fraction, message)

    run_dir = build_demo(args.out, step, patients=args.patients, seed=args.seed,
                         difficulty=args.difficulty, config=config, force=args.force)
    print((run_dir / "summary.md").read_text(encoding="utf-8"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s. Next:\n"
          f"  open {run_dir / 'evaluation' / 'report.html'}\n"
          f"  multibone dashboard --bundle {run_dir / 'bundle'}")
    return 0
