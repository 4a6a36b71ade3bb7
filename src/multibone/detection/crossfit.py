"""Cross-fitted detector boxes on given patient folds (the backbones' folds).

For every development fold k a detector is trained on the other folds' images
(normal controls as negatives; lesion images without a box left out) and
detects on fold k's images; so every development image's boxes come from a
model that never saw its patient. Held-out images (fold -1: test, external) get
the K fold models' boxes merged (:func:`.inference.detect`, after test-time
augmentation). Development images get their one fold model's boxes under the
same test-time augmentation, so both sides' scores are alike.

Output folder (``out_dir``)::

    boxes.csv                image_path, patient_id, view, fold, lesion, has_box,
                             roi_x0..roi_y1, score (best box, 0 without one),
                             n_boxes, boxes (JSON list of [x0, y0, x1, y1] pixels),
                             scores (JSON list), best first
    weights/fold<k>.safetensors   EMA weights of fold k's detector
    weights/fold<k>.json     detector, img_size, weights source, grey policy, patients
    detection_config.yaml    the resolved DetectionConfig
    checkpoints/fold<k>.pt   per-epoch training state while a fold is in progress
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multibone._atomic import atomic_path
from multibone._config import to_dict, write_yaml
from multibone.detection.config import DetectionConfig
from multibone.detection.data import ROI_COLUMNS, load_images
from multibone.detection.inference import detect
from multibone.detection.registry import GREY_POLICY, create_detector
from multibone.detection.train import derive_seed, fit_detector, resolve_device
from multibone.errors import InputError
from multibone.io import read_radiograph

log = logging.getLogger(__name__)

BOXES_COLUMNS = [
    "image_path",
    "patient_id",
    "view",
    "fold",
    "lesion",
    "has_box",
    *ROI_COLUMNS,
    "score",
    "n_boxes",
    "boxes",
    "scores",
]


def _with_folds(table: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    for col in ("patient_id", "fold"):
        if col not in folds.columns:
            raise InputError(f"folds table: column {col!r} is missing (patient_id, fold)")
    f = folds[["patient_id", "fold"]].astype({"patient_id": str})
    if f["patient_id"].duplicated().any():
        raise InputError("folds table: a patient_id is listed twice")
    out = table.merge(f, on="patient_id", how="left")
    missing = sorted(out.loc[out["fold"].isna(), "patient_id"].unique())
    if missing:
        raise InputError(
            f"folds table: no fold for patient(s) {', '.join(missing[:10])}; give every "
            "patient of the image table a fold (-1 = held out)"
        )
    out["fold"] = out["fold"].astype(int)
    if not (out["fold"] >= 0).any():
        raise InputError("folds table: no development fold (every patient has fold -1)")
    return out


def _fingerprint(config: DetectionConfig, table: pd.DataFrame, k: int) -> str:
    text = json.dumps(
        [to_dict(config), k, table[["image_path", *ROI_COLUMNS]].astype(str).values.tolist()]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_list(a: np.ndarray, digits: int) -> str:
    return json.dumps(np.round(a, digits).tolist())


def crossfit_detector(
    table: pd.DataFrame,
    folds: pd.DataFrame,
    config: DetectionConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> pd.DataFrame:
    """Train one detector per development fold and write cross-fitted boxes.

    Parameters
    ----------
    table: image table of :func:`.data.read_image_table`.
    folds: ``patient_id``, ``fold`` (0..K-1 development, -1 held out) for every patient.
    out_dir: output folder (see the module docstring); with ``resume`` finished
        folds are loaded and an interrupted one continues from its checkpoint.

    Returns the ``boxes.csv`` table (columns :data:`BOXES_COLUMNS`, in table order).
    """
    from safetensors.torch import load_file, save_file

    out = Path(out_dir)
    df = _with_folds(table, folds)
    device = resolve_device(config.device)
    prev_threads = torch.get_num_threads()
    bar = None
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        data = load_images(df, config.img_size)  # bad boxes fail here, before anything is written
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(to_dict(config), out / "detection_config.yaml")
        models: dict[int, torch.nn.Module] = {}
        dev_folds = sorted(int(f) for f in df["fold"].unique() if f >= 0)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(dev_folds) * config.epochs,
            desc="detector",
            unit="epoch",
            disable=not progress,
        )
        for k in dev_folds:
            weights = out / "weights" / f"fold{k}.safetensors"
            train = np.flatnonzero(
                (df["fold"] != k) & (df["fold"] >= 0) & (df["has_box"] | (df["lesion"] == 0))
            ).tolist()
            seed = derive_seed(config.seed, config.detector, "fold", k)
            done = resume and weights.is_file()
            model = create_detector(
                config.detector,
                weights="none" if done else config.weights,
                img_size=config.img_size,
                seed=seed,
            )
            if done:
                model.load_state_dict(load_file(str(weights)))
                bar.update(config.epochs)
            else:
                sub = data.subset(train)
                fit = fit_detector(
                    model,
                    sub,
                    config=config,
                    seed=seed,
                    device=device,
                    checkpoint=out / "checkpoints" / f"fold{k}.pt",
                    fingerprint=_fingerprint(config, df.iloc[train], k),
                    resume=resume,
                    progress=progress,
                    desc=f"fold {k}",
                    on_epoch_end=on_epoch_end,
                    bar=bar,
                )
                model.load_state_dict(fit.ema_state)
                with atomic_path(weights, suffix=".safetensors") as tmp:
                    save_file({n: t.contiguous() for n, t in fit.ema_state.items()}, str(tmp))
                meta = {
                    "detector": config.detector,
                    "img_size": config.img_size,
                    "weights_source": config.weights,
                    "grey_policy": GREY_POLICY,
                    "fold": k,
                    "train_patients": sorted(df.iloc[train]["patient_id"].unique().tolist()),
                    "history": fit.history,
                }
                with atomic_path(weights.with_suffix(".json")) as tmp:
                    tmp.write_text(json.dumps(meta, indent=1))
                (out / "checkpoints" / f"fold{k}.pt").unlink(missing_ok=True)
            models[k] = model.to(device).eval()
        rows = []
        for row in df.itertuples(index=False):
            fold_models = [models[row.fold]] if row.fold >= 0 else list(models.values())
            pixels = read_radiograph(row.image_path).pixels
            boxes, scores = detect(fold_models, pixels, config, device=device)
            rows.append(
                {
                    "score": float(scores[0]) if len(scores) else 0.0,
                    "n_boxes": len(scores),
                    "boxes": _json_list(boxes, 2),
                    "scores": _json_list(scores, 5),
                }
            )
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(prev_threads)
    result = pd.concat([df.reset_index(drop=True), pd.DataFrame(rows)], axis=1)[BOXES_COLUMNS]
    with atomic_path(out / "boxes.csv") as tmp:
        result.to_csv(tmp, index=False)
    return result


def parse_boxes(cell: str) -> np.ndarray:
    """A ``boxes`` cell of ``boxes.csv`` -> float ``(K, 4)``."""
    return np.asarray(json.loads(cell), dtype=np.float64).reshape(-1, 4)
