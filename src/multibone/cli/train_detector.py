"""``multibone train-detector``: train the lesion detector cross-fitted; write boxes.

    multibone train-detector --config src/multibone/configs/detection_demo.yaml \\
        --manifest cohort/manifest.csv --out runs/r1/detection [--folds FOLDS.csv] \\
        [--resume | --force]

``--folds``: the backbones' folds (``patient_id``, ``fold``; e.g. an imaging run's
``patient_scores.csv``); without it they are drawn from the config's ``splits:``.
Prints one JSON line: localisation and image AUC on development and held-out images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, type=Path, help="run config YAML (detection, splits sections)"
    )
    parser.add_argument("--manifest", required=True, type=Path, help="cohort manifest.csv")
    parser.add_argument("--out", required=True, type=Path, help="output folder of the detector run")
    parser.add_argument(
        "--folds", type=Path, default=None, help="CSV with patient_id, fold (-1 = held out)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    group.add_argument("--force", action="store_true", help="delete --out and start over")
    parser.add_argument("--device", default=None, help="override detection.device")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from multibone.detection.run import read_config, train_detector

    config, splits = read_config(args.config)
    if args.device:
        config = dataclasses.replace(config, device=args.device)
    summary = train_detector(
        args.manifest,
        args.out,
        config,
        folds=args.folds,
        splits=splits,
        resume=args.resume,
        force=args.force,
        progress=not args.no_progress,
    )
    print(json.dumps({"out": str(args.out), **summary}))
    return 0
