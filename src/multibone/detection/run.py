"""The detection run the CLI calls: a manifest in, cross-fitted boxes and a summary out;
and the loading of a finished run's fold detectors (``multibone detect``).

Folds: the backbones' patient folds when given (``folds``: a CSV or DataFrame with
``patient_id`` and ``fold``, e.g. an imaging run's ``patient_scores.csv``), else
drawn here by :func:`multibone.cohort.splits.assign_splits` from the config's
``splits:`` section, stratified by lesion-vs-normal (by tumour-vs-other in a
cohort without normal controls).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multibone._atomic import atomic_path
from multibone._config import from_dict, read_yaml
from multibone.detection.config import DetectionConfig
from multibone.detection.crossfit import crossfit_detector, parse_boxes
from multibone.detection.data import check_boxes, read_image_table
from multibone.detection.metrics import localisation
from multibone.detection.registry import create_detector, load_detector_weights
from multibone.errors import InputError, WeightsError

SUMMARY = "detection_summary.json"


def read_config(path: str | Path) -> tuple[DetectionConfig, dict]:
    """(``detection:`` section, ``splits:`` mapping) of a YAML run config."""
    data = read_yaml(path)
    if "detection" not in data:
        raise InputError(f"{path}: no 'detection:' section; see configs/detection_demo.yaml")
    return from_dict(DetectionConfig, data["detection"], "detection"), data.get("splits") or {}


def folds_for(
    table: pd.DataFrame, folds: str | Path | pd.DataFrame | None, splits: dict
) -> pd.DataFrame:
    """``patient_id``, ``fold`` for every patient of ``table`` (see the module docstring)."""
    if isinstance(folds, pd.DataFrame):
        return folds
    if folds is not None:
        p = Path(folds)
        if not p.is_file():
            raise InputError(f"{p}: folds file not found (a CSV with patient_id, fold)")
        return pd.read_csv(p, dtype={"patient_id": str})
    from multibone.cohort.splits import SplitConfig, assign_splits

    patients = table.groupby("patient_id", sort=False).agg(
        lesion=("lesion", "max"),
        tumour=("diagnosis", lambda d: float((d.astype(str) == "tumor").any()))
        if "diagnosis" in table.columns
        else ("lesion", "max"),
        **({"center": ("center", "first")} if "center" in table.columns else {}),
    )
    label = patients["lesion"] if patients["lesion"].nunique() > 1 else patients["tumour"]
    pdf = patients.reset_index().assign(label=label.to_numpy().astype(float))
    return assign_splits(pdf, from_dict(SplitConfig, splits, "splits"))[["patient_id", "fold"]]


def _reference(row) -> np.ndarray:
    if row.has_box:
        return np.array([[row.roi_x0, row.roi_y0, row.roi_x1, row.roi_y1]], dtype=float)
    return np.zeros((0, 4))


def summarise(boxes: pd.DataFrame, score_thresh: float) -> dict:
    """Localisation (boxes scoring >= ``score_thresh``) and lesion-vs-normal image AUC, on development (cross-fitted) and
    held-out images separately. Lesion images without a reference box are left out of
    localisation but not of the AUC."""
    from multibone.stats import auc_or_nan

    out = {}
    for part, sel in (("dev", boxes["fold"] >= 0), ("held_out", boxes["fold"] < 0)):
        b = boxes[sel]
        if b.empty:
            continue
        loc_rows = b[b["has_box"] | (b["lesion"] == 0)]
        loc = localisation(
            [parse_boxes(c) for c in loc_rows["boxes"]],
            [json.loads(c) for c in loc_rows["scores"]],
            [_reference(r) for r in loc_rows.itertuples()],
            score_thresh=score_thresh,
        )
        auc = auc_or_nan(b["lesion"].to_numpy(), b["score"].to_numpy())
        out[part] = {**loc, "image_auc_lesion_vs_normal": None if math.isnan(auc) else auc}
    return out


def train_detector(
    manifest: str | Path,
    out_dir: str | Path,
    config: DetectionConfig,
    *,
    folds: str | Path | pd.DataFrame | None = None,
    splits: dict | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Cross-fitted detector run into ``out_dir`` (layout: :mod:`.crossfit`, plus
    ``detection_summary.json``). Bad input fails before anything is written."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (resume or force):
        raise InputError(f"{out} already exists; pass --resume to continue it or --force")
    table = read_image_table(manifest)
    fold_table = folds_for(table, folds, splits or {})
    start = time.time()
    check_boxes(table)  # before --force removes anything
    if force and out.exists():
        shutil.rmtree(out)
    boxes = crossfit_detector(table, fold_table, config, out, resume=resume, progress=progress)
    summary = {
        "detector": config.detector,
        "weights": config.weights,
        "n_images": len(boxes),
        "seconds": round(time.time() - start, 1),
        **summarise(boxes, config.box_thresh),
    }
    with atomic_path(out / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def load_detectors(path: str | Path) -> tuple[list[torch.nn.Module], DetectionConfig]:
    """The fold detectors of a finished run (its folder or its ``weights/`` folder), or
    one weights file with its ``.json`` beside it; in eval mode, with the run's config.

    Raises InputError when the place holds no detector, WeightsError when a file
    does not fit its recorded architecture.
    """
    p = Path(path)
    if p.is_dir():
        run = p.parent if p.name == "weights" else p
        files = sorted((run / "weights").glob("fold*.safetensors"))
    else:
        run, files = p.parent.parent, [p] if p.is_file() else []
    if not files:
        raise InputError(
            f"{p}: no detector here (expected weights/fold<k>.safetensors from "
            "`multibone train-detector`)"
        )
    cfg_file = run / "detection_config.yaml"
    config = (
        from_dict(DetectionConfig, read_yaml(cfg_file), str(cfg_file))
        if cfg_file.is_file()
        else None
    )
    models = []
    for f in files:
        meta_file = f.with_suffix(".json")
        if not meta_file.is_file():
            raise InputError(f"{f}: its description {meta_file.name} is missing beside it")
        meta = json.loads(meta_file.read_text())
        if config is None:
            config = DetectionConfig(detector=meta["detector"], img_size=int(meta["img_size"]))
        model = create_detector(meta["detector"], img_size=int(meta["img_size"]))
        if load_detector_weights(model, f) != "detector":
            raise WeightsError(f"{f}: holds a backbone only, not a trained {meta['detector']}")
        models.append(model.eval())
    assert config is not None
    return models, config
