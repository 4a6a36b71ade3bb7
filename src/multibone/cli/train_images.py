"""``multibone train-images``: train the backbones cross-fitted and write patient scores.

    multibone train-images --config configs/paper.yaml --manifest cohort/manifest.csv \\
        --out runs/r1/imaging [--backbones e3,vit] [--resume | --force]

Multi-GPU: the same command under torchrun, e.g.
``torchrun --nproc-per-node 4 -m multibone.cli train-images ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from multibone.errors import InputError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, type=Path, help="run config YAML (imaging, splits sections)"
    )
    parser.add_argument("--manifest", required=True, type=Path, help="cohort manifest.csv")
    parser.add_argument("--out", required=True, type=Path, help="output folder of the imaging run")
    parser.add_argument(
        "--backbones",
        default=None,
        help="comma-separated subset of backbones to train (default: the config's imaging.backbones)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    group.add_argument("--force", action="store_true", help="delete --out and start over")
    parser.add_argument(
        "--device", default=None, help="override imaging.device (auto, cpu, cuda, cuda:N)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from multibone.imaging.registry import get_spec
    from multibone.pipeline import train_imaging
    from multibone.runconfig import load_run_config

    cfg = load_run_config(args.config)
    imaging = cfg.imaging
    changes: dict = {}
    if args.backbones:
        names = [b.strip() for b in args.backbones.split(",") if b.strip()]
        if not names:
            raise InputError("--backbones: give at least one backbone name")
        for b in names:
            get_spec(b)
        changes["backbones"] = names
    if args.device:
        changes["device"] = args.device
    if changes:
        cfg = dataclasses.replace(cfg, imaging=dataclasses.replace(imaging, **changes))
    summary = train_imaging(
        args.manifest,
        args.out,
        cfg,
        resume=args.resume,
        force=args.force,
        progress=not args.no_progress,
    )
    if summary:
        aucs = {b: v["oof_auc"] for b, v in summary["backbones"].items()}
        print(json.dumps({"out": str(args.out), "oof_auc": aucs, "seconds": summary["seconds"]}))
    return 0
