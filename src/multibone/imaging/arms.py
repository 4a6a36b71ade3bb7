"""Pretraining arms (seed 001): the same recipe, different initial weights.

A run config's ``imaging.arms`` names comparison arms, ``{name: weights}``, where
``weights`` is ``none`` (from scratch), ``imagenet`` (timm hub) or a local file
(e.g. RadImageNet or a chest-X-ray model; parameter names are remapped and the
classifier dropped by :func:`multibone.imaging.registry.load_weights_file`). The
run's own ``imaging.weights`` (and ``weights_per_backbone``) are the arm
``main``, trained into ``RUN/imaging`` as usual; each other arm is trained with
everything else unchanged (folds, inner validation split, epochs, seeds,
augmentation) into ``RUN/imaging/arms/<name>``, so its ``patient_scores.csv``
is comparable patient by patient. :func:`multibone.evaluation.arms` compares them.

Every arm's weights are checked for every backbone before anything is trained:
a missing file, a file that does not fit the architecture, or ImageNet weights
with no network fail at once, naming the arm and the file.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from multibone.errors import WeightsError
from multibone.imaging.config import ImagingConfig

log = logging.getLogger(__name__)

MAIN = "main"


def arm_config(config: ImagingConfig, weights: str) -> ImagingConfig:
    """``config`` with every backbone starting from ``weights`` and no arms of its own."""
    return dataclasses.replace(config, weights=weights, weights_per_backbone={}, arms={})


def check_arms(config: ImagingConfig) -> None:
    """Fail fast (WeightsError naming arm, backbone and file) on any arm's weights."""
    from multibone.imaging.registry import check_weights_source, create_backbone

    for name, weights in config.arms.items():
        for b in config.backbones:
            try:
                check_weights_source(b, weights=weights)
                if weights not in ("none", "imagenet"):
                    # build and load once: a file for another architecture fails here
                    create_backbone(b, weights=weights, img_size=config.img_size)
            except WeightsError as exc:
                raise WeightsError(f"imaging.arms.{name} ({weights}), backbone {b}: {exc}") from exc


def train_arms(
    cohort,
    splits_df: pd.DataFrame,
    config: ImagingConfig,
    imaging_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Train every comparison arm of ``config.arms`` into ``imaging_dir/arms/<name>``.

    The main arm (``imaging_dir`` itself) is trained by the caller
    (:func:`multibone.imaging.train_images`). Returns ``{arm: folder}`` including
    ``main``. Call :func:`check_arms` before training the main arm to fail fast.
    """
    from multibone.imaging.crossfit import train_images

    imaging_dir = Path(imaging_dir)
    out = {MAIN: imaging_dir}
    if not config.arms:
        return out
    check_arms(config)
    for name, weights in config.arms.items():
        log.info("pretraining arm %s (weights: %s)", name, weights)
        folder = imaging_dir / "arms" / name
        train_images(cohort, splits_df, arm_config(config, weights), folder, resume=resume,
                     force=force, progress=progress)
        out[name] = folder
    return out


def arm_weights(config: ImagingConfig) -> dict[str, str]:
    """``{arm: weights}`` as the comparison table names them (``main`` first)."""
    main = config.weights
    if config.weights_per_backbone:
        main += " (" + ", ".join(f"{b}: {w}" for b, w in config.weights_per_backbone.items()) + ")"
    return {MAIN: main, **config.arms}


def read_arm_scores(folders: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Each arm's ``patient_scores.csv`` (WeightsError-free; missing files are skipped)."""
    out = {}
    for name, folder in folders.items():
        f = Path(folder) / "patient_scores.csv"
        if f.is_file():
            out[name] = pd.read_csv(f, dtype={"patient_id": str, "split": str})
    return out


def check_all_weights(config: ImagingConfig) -> None:
    """The run's own weight sources and every arm's, before any work (WeightsError)."""
    from multibone.imaging.registry import check_weights_source

    for b in config.backbones:
        check_weights_source(b, weights=config.weights_for(b))
    check_arms(config)
