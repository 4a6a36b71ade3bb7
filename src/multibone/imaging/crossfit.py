"""Cross-fitted training and scoring of the image backbones (step 1 of the two-step CV).

For every backbone and every development fold k, a model is trained on the
other folds (its best epoch chosen on an inner, patient-grouped, stratified
validation split OF THOSE FOLDS), then scores the patients of fold k. So every
development patient's score comes from a model that never saw that patient.
Test and external patients get the mean of the K fold models' logits.

Image logits become patient scores by :func:`multibone.imaging.aggregate.aggregate`; the patient columns
of ``patient_scores.csv`` are probabilities (sigmoid of the aggregated logit).

Output folder (``out_dir``)::

    image_scores.csv        patient_id, image_path, split, fold, label, <backbone> logits
    patient_scores.csv      patient_id, split, fold, label, <backbone> probabilities
    weights/<b>/fold<k>.safetensors  + fold<k>.json (arch, sizes, normalisation, grey policy)
    imaging_config.yaml     the resolved ImagingConfig
    imaging_summary.json    per-backbone out-of-fold patient AUC, per-fold details
    logs/<b>/fold<k>.json   per-epoch history and the patient ids each model trained on
    checkpoints/            per-epoch training state while a fold is in progress (resume)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multibone import __version__
from multibone._atomic import atomic_path
from multibone._config import to_dict, write_yaml
from multibone.cohort.splits import check_no_leakage
from multibone.errors import ConfigError, InputError
from multibone.imaging.aggregate import aggregate, sigmoid
from multibone.imaging.config import ImagingConfig
from multibone.imaging.data import load_crops, norm_stats
from multibone.imaging.folds import META_FORMAT, load_fold
from multibone.imaging.inference import predict_logits
from multibone.imaging.registry import (
    GREY_POLICY,
    check_weights_source,
    create_backbone,
    get_spec,
    timm_kwargs,
)
from multibone.imaging.train import (
    DistInfo,
    EpochCallback,
    barrier,
    derive_seed,
    determinism,
    dist_from_env,
    fit,
    init_distributed,
    resolve_device,
    seeded_rng,
)
from multibone.stats import auc_or_nan

log = logging.getLogger(__name__)

ROI_COLUMNS = ("roi_x0", "roi_y0", "roi_x1", "roi_y1")
# Settings that change no number of the result: a resume may differ in these.
_NOT_FINGERPRINTED = (
    "backbones",
    "arms",  # comparison arms are trained separately (multibone.imaging.arms)
    "num_workers",
    "num_threads",
    "eval_batch_size",
    "cache_dir",
    "device",
)


def _sha(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False), encoding="utf-8")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


# --------------------------------------------------------------------------- table prep


def _image_table(cohort, splits_df: pd.DataFrame) -> pd.DataFrame:
    """Images of the patients in ``splits_df`` with split, fold and patient label."""
    for col in ("patient_id", "split", "fold"):
        if col not in splits_df.columns:
            raise InputError(
                f"splits table: column {col!r} is missing (use multibone.cohort.assign_splits)"
            )
    sp = splits_df[["patient_id", "split", "fold"]].copy()
    sp["patient_id"] = sp["patient_id"].astype(str)
    sp["fold"] = sp["fold"].astype(int)
    labels = cohort.patients[["patient_id", "label"]].copy()
    labels["patient_id"] = labels["patient_id"].astype(str)
    unknown = sorted(set(sp["patient_id"]) - set(labels["patient_id"]))
    if unknown:
        raise InputError(
            f"splits table: {len(unknown)} patient(s) not in the cohort: {', '.join(unknown[:10])}"
        )
    images = cohort.images.copy()
    images["patient_id"] = images["patient_id"].astype(str)
    table = images.merge(sp, on="patient_id", how="inner").merge(labels, on="patient_id")
    missing = sorted(set(sp["patient_id"]) - set(table["patient_id"]))
    if missing:
        raise InputError(f"patients without images: {', '.join(missing[:10])}")
    dev = table["split"] == "dev"
    if table.loc[dev, "label"].isna().any():
        bad = sorted(table.loc[dev & table["label"].isna(), "patient_id"].unique())
        raise InputError(
            f"development patients need a diagnosis; missing for {', '.join(bad[:10])}"
        )
    if not dev.any():
        raise InputError("splits table: no development ('dev') patients to train on")
    if (table.loc[dev, "fold"] < 0).any():
        raise InputError("splits table: every development patient needs a fold >= 0")
    return table.reset_index(drop=True)


def _check_folds(patients: pd.DataFrame) -> list[int]:
    dev = patients[patients["split"] == "dev"]
    folds = sorted(int(f) for f in dev["fold"].unique())
    if len(folds) < 2:
        raise InputError(
            "splits table: the development set has a single fold; cross-fitting needs >= 2 folds"
        )
    for k in folds:
        held = dev.loc[dev["fold"] == k, "label"]
        train = dev.loc[dev["fold"] != k, "label"]
        for what, ys in (("held-out", held), ("training", train)):
            if ys.nunique() < 2:
                only = "positive" if ys.iloc[0] == 1 else "negative"
                raise InputError(
                    f"fold {k}: the {what} patients are all of one class ({len(ys)} {only} "
                    f"patients); use fewer folds (splits.n_folds = {len(folds) - 1} or less) or "
                    "more patients of the smaller class"
                )
    return folds


def inner_split(
    patient_ids: Sequence[str], labels: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[list[str], list[str]]:
    """Patient-level stratified (train, validation) split of a training pool.

    ``fraction`` 0 gives no validation patients. Raises InputError when a class
    is too small to be on both sides.
    """
    ids = np.asarray(patient_ids, dtype=object)
    if fraction <= 0:
        return list(ids), []
    from sklearn.model_selection import StratifiedShuffleSplit

    n_val = max(2, int(round(fraction * len(ids))))
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or counts.min() < 2 or n_val >= len(ids) - 1:
        raise InputError(
            f"{what}: too few patients of each class ({', '.join(map(str, counts))}) for an "
            f"inner validation split of {fraction:g}; use fewer folds, more patients, or "
            "imaging.val_fraction: 0 (keeps the last epoch)"
        )
    order = np.argsort(ids)  # independent of the table's row order
    sss = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed % 2**32)
    tr, va = next(sss.split(np.zeros(len(ids)), labels[order]))
    return sorted(ids[order][tr]), sorted(ids[order][va])


def _inner_for_fold(
    patients: pd.DataFrame, k: int, config: ImagingConfig
) -> tuple[list[str], list[str], list[str]]:
    """(train ids, inner validation ids, held-out ids) of dev fold ``k``, leakage-checked."""
    dev = patients[patients["split"] == "dev"]
    pool = dev[dev["fold"] != k]
    held = dev.loc[dev["fold"] == k, "patient_id"].tolist()
    train_ids, val_ids = inner_split(
        pool["patient_id"].tolist(),
        pool["label"].to_numpy(),
        config.val_fraction,
        derive_seed(config.seed, "inner-val", k),
        what=f"fold {k}",
    )
    check_no_leakage(train_ids + val_ids, held, what=f"fold {k} training vs fold {k} scoring")
    check_no_leakage(train_ids, val_ids, what=f"fold {k} training vs fold {k} validation")
    return train_ids, val_ids, held


# --------------------------------------------------------------------------- train_images


def _prepare_out_dir(
    out_dir: Path, fingerprint: str, resume: bool, force: bool, dist: DistInfo
) -> None:
    state = out_dir / "run_state.json"
    if dist.is_main:
        if out_dir.exists() and any(out_dir.iterdir()):
            if force:
                shutil.rmtree(out_dir)
            elif resume:
                if not state.is_file():
                    raise InputError(
                        f"{out_dir}: not a multibone imaging run (no run_state.json); choose "
                        "another --out or pass --force to overwrite"
                    )
                old = json.loads(state.read_text(encoding="utf-8")).get("fingerprint")
                if old != fingerprint:
                    raise ConfigError(
                        f"{out_dir}: the run there used other data, splits or imaging settings; "
                        "resume with the same config and manifest, or pass --force to start over"
                    )
            else:
                raise InputError(
                    f"{out_dir} already holds files; pass --resume to continue that run or "
                    "--force to start over"
                )
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json({"fingerprint": fingerprint, "multibone": __version__}, state)
    barrier(dist)


def _fold_paths(out_dir: Path, backbone: str, k: int) -> dict[str, Path]:
    return {
        "weights": out_dir / "weights" / backbone / f"fold{k}.safetensors",
        "meta": out_dir / "weights" / backbone / f"fold{k}.json",
        "log": out_dir / "logs" / backbone / f"fold{k}.json",
        "checkpoint": out_dir / "checkpoints" / backbone / f"fold{k}.pt",
    }


def train_images(
    cohort,
    splits_df: pd.DataFrame,
    config: ImagingConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> dict:
    """Train every backbone on every development fold and write cross-fitted scores.

    Parameters
    ----------
    cohort: :class:`multibone.cohort.Cohort` (images + patients with ``label``).
    splits_df: :func:`multibone.cohort.splits.assign_splits` output: patient_id,
        split ("dev"/"test"/"external"), fold (0..K-1 for dev, -1 otherwise).
        Only patients listed here are used.
    config: the ``imaging`` section.
    out_dir: output folder (see the module docstring). Must be empty or absent,
        unless ``resume`` (continue an interrupted run with the same settings) or
        ``force`` (delete it and start over).
    progress: tqdm bars (crop decoding, epochs).
    on_epoch_end: ``callback(epoch, record)`` after each epoch's checkpoint (tests).

    Returns the summary dict also written to ``imaging_summary.json``:
    ``{"backbones": {b: {"oof_auc", "test_auc", "external_auc", "folds": [...]}}, ...}``.

    Under ``torchrun`` every rank trains (DistributedDataParallel); only rank 0
    writes files, and only rank 0 returns the full summary.
    """
    with torch_threads(config.num_threads):
        return _train_images(
            cohort, splits_df, config, Path(out_dir), resume, force, progress, on_epoch_end
        )


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Limit torch's CPU threads inside (0 = unchanged); the previous count is restored."""
    if n <= 0:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _train_images(
    cohort,
    splits_df: pd.DataFrame,
    config: ImagingConfig,
    out_dir: Path,
    resume: bool,
    force: bool,
    progress: bool,
    on_epoch_end: EpochCallback | None,
) -> dict:
    t_start = time.perf_counter()
    if not config.backbones:
        raise InputError("imaging.backbones is empty: there is nothing to train")
    table = _image_table(cohort, splits_df)
    patients = (
        table.groupby("patient_id", sort=False)[["split", "fold", "label"]].first().reset_index()
    )
    folds = _check_folds(patients)
    # Inner validation splits are fixed per fold (same for every backbone) and checked
    # before anything is written.
    inner = {k: _inner_for_fold(patients, k, config) for k in folds}
    for backbone in config.backbones:  # fail before writing anything
        check_weights_source(backbone, weights=config.weights_for(backbone))
    # Under torchrun, each rank takes the GPU of its LOCAL_RANK.
    device = resolve_device(config.device, dist_from_env())
    dist = init_distributed(device)

    settings = {k: v for k, v in to_dict(config).items() if k not in _NOT_FINGERPRINTED}
    data_key = _sha(
        {
            "settings": settings,
            "patients": patients.sort_values("patient_id").astype(str).values.tolist(),
            "images": table[["patient_id", "image_path", *ROI_COLUMNS]].astype(str).values.tolist(),
        }
    )
    _prepare_out_dir(out_dir, data_key, resume, force, dist)
    if dist.is_main:
        write_yaml(config, out_dir / "imaging_config.yaml")

    rois = [
        None if any(math.isnan(float(v)) for v in box) else tuple(float(v) for v in box)
        for box in table[list(ROI_COLUMNS)].itertuples(index=False, name=None)
    ]
    crops = load_crops(
        table["image_path"].tolist(),
        rois,
        config.img_size,
        config.crop_margin,
        cache_dir=config.cache_dir or None,
        num_workers=config.num_workers,
        progress=progress and dist.is_main,
    )
    labels = patients.set_index("patient_id")["label"]

    fold_info: dict[str, list[dict]] = {}
    for backbone in config.backbones:
        fold_info[backbone] = []
        for k in folds:
            info = _train_fold(
                backbone,
                k,
                len(folds),
                table=table,
                patients=patients,
                labels=labels,
                crops=crops,
                config=config,
                out_dir=out_dir,
                device=device,
                dist=dist,
                data_key=data_key,
                inner=inner[k],
                resume=resume,
                progress=progress,
                on_epoch_end=on_epoch_end,
            )
            fold_info[backbone].append(info)
            barrier(dist)

    summary: dict = {}
    if dist.is_main:
        image_scores = table[["patient_id", "image_path", "split", "fold", "label"]].copy()
        for backbone in config.backbones:
            image_scores[backbone] = _score_backbone(
                out_dir, backbone, folds, table, crops, config, device
            )
        patient_scores = _patient_scores(image_scores, config.backbones, config.aggregation)
        summary = _summary(
            patient_scores, fold_info, config, device, dist, folds, time.perf_counter() - t_start
        )
        _write_csv(image_scores, out_dir / "image_scores.csv")
        _write_csv(patient_scores, out_dir / "patient_scores.csv")
        _write_json(summary, out_dir / "imaging_summary.json")
        ck = out_dir / "checkpoints"
        if ck.is_dir() and not any(p.is_file() for p in ck.rglob("*")):
            shutil.rmtree(ck)
        for b in config.backbones:
            log.info("%s: out-of-fold patient AUC %s", b, summary["backbones"][b]["oof_auc"])
    barrier(dist)
    return summary


def _train_fold(
    backbone: str,
    k: int,
    n_folds: int,
    *,
    table: pd.DataFrame,
    patients: pd.DataFrame,
    labels: pd.Series,
    crops: torch.Tensor,
    config: ImagingConfig,
    out_dir: Path,
    device: torch.device,
    dist: DistInfo,
    data_key: str,
    inner: tuple[list[str], list[str], list[str]],
    resume: bool,
    progress: bool,
    on_epoch_end: EpochCallback | None,
) -> dict:
    paths = _fold_paths(out_dir, backbone, k)
    spec = get_spec(backbone)
    fingerprint = _sha({"run": data_key, "backbone": backbone, "fold": k})
    if resume and paths["meta"].is_file():
        meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
        if meta.get("fingerprint") == fingerprint and paths["weights"].is_file():
            if dist.is_main:
                log.info("%s fold %d: already trained (resume), skipping", backbone, k)
            return meta["training"]

    train_ids, val_ids, held = inner
    tr_mask = table["patient_id"].isin(set(train_ids)).to_numpy()
    va_rows = np.flatnonzero(table["patient_id"].isin(set(val_ids)).to_numpy())
    train_x = crops[torch.from_numpy(np.flatnonzero(tr_mask))]
    train_y = torch.tensor(table.loc[tr_mask, "label"].to_numpy(), dtype=torch.float32)
    val_x = crops[torch.from_numpy(va_rows)]
    val_index = {p: i for i, p in enumerate(val_ids)}
    val_groups = table.loc[va_rows, "patient_id"].map(val_index).to_numpy().astype(int)
    val_y = labels.loc[val_ids].to_numpy().astype(float)

    weights = config.weights_for(backbone)
    # Seeds follow the family (e3 for e3 and e3_tiny): the registry name changes no number.
    seed = derive_seed(config.seed, spec.family, k)
    desc = f"{backbone} fold {k}"
    t0 = time.perf_counter()
    with seeded_rng(derive_seed(seed, "torch", dist.rank), device):
        model = create_backbone(
            backbone,
            weights=weights,
            img_size=config.img_size,
            in_chans=3,
            seed=derive_seed(seed, "init"),
        )
        if config.normalization == "pretrained":
            cfg = getattr(model, "pretrained_cfg", {}) or {}
            mean = [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))]
            std = [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))]
        else:
            m, s = norm_stats(train_x)
            mean, std = [m] * 3, [s] * 3
        with determinism(config.deterministic, device):
            result = fit(
                model,
                train_x,
                train_y,
                val_x,
                val_y,
                val_groups,
                config=config,
                seed=seed,
                norm_mean=mean,
                norm_std=std,
                device=device,
                checkpoint=paths["checkpoint"],
                fingerprint=fingerprint,
                resume=resume,
                dist=dist,
                progress=progress,
                desc=desc,
                on_epoch_end=on_epoch_end,
            )
    seconds = time.perf_counter() - t0
    training = {
        "fold": k,
        "best_epoch": result.best_epoch,
        "val_auc": _clean(result.best_auc),
        "n_train_patients": len(train_ids),
        "n_val_patients": len(val_ids),
        "n_heldout_patients": len(held),
        "n_train_images": int(tr_mask.sum()),
        "seconds": round(seconds, 2),
        "resumed_from_epoch": result.resumed_from,
    }
    if dist.is_main:
        meta = {
            "format": META_FORMAT,
            "multibone": __version__,
            "backbone": backbone,
            "arch": spec.timm_name,
            "timm_kwargs": timm_kwargs(spec, img_size=config.img_size),
            "family": spec.family,
            "kind": spec.kind,
            "cam_layer": spec.cam_layer,
            "img_size": config.img_size,
            "in_chans": 3,
            "num_classes": 1,
            "grey_policy": GREY_POLICY,
            "normalization": config.normalization,
            "norm_mean": mean,
            "norm_std": std,
            "crop_margin": config.crop_margin,
            "aggregation": config.aggregation,
            "weights_source": weights if weights in ("none", "imagenet") else Path(weights).name,
            "fold": k,
            "n_folds": n_folds,
            "fingerprint": fingerprint,
            "training": training,
        }
        from safetensors.torch import save_file

        with atomic_path(paths["weights"], suffix=".safetensors") as tmp:
            save_file(
                {n: t.contiguous() for n, t in result.best_state.items()},
                str(tmp),
                metadata={"multibone": json.dumps({"backbone": backbone, "fold": str(k)})},
            )
        _write_json(
            {
                "backbone": backbone,
                "fold": k,
                "train_patient_ids": list(train_ids),
                "val_patient_ids": list(val_ids),
                "heldout_patient_ids": held,
                "history": [{a: _clean(b) for a, b in h.items()} for h in result.history],
                **training,
            },
            paths["log"],
        )
        _write_json(meta, paths["meta"])  # written last: marks the fold as done
        paths["checkpoint"].unlink(missing_ok=True)
        log.info(
            "%s: best epoch %d (val AUC %s), %.1f s",
            desc,
            result.best_epoch,
            training["val_auc"],
            seconds,
        )
    return training


def _score_backbone(
    out_dir: Path,
    backbone: str,
    folds: list[int],
    table: pd.DataFrame,
    crops: torch.Tensor,
    config: ImagingConfig,
    device: torch.device,
) -> np.ndarray:
    """Logit per image: fold k's model for dev fold k, the mean of all fold models otherwise."""
    out = np.full(len(table), np.nan, dtype=np.float64)
    dev = (table["split"] == "dev").to_numpy()
    rest = np.flatnonzero(~dev)
    rest_sum = np.zeros(len(rest))
    amp = config.amp == "on" or (config.amp == "auto" and device.type == "cuda")
    cl = config.channels_last == "on" or (config.channels_last == "auto" and device.type == "cuda")
    for k in folds:
        model, meta = load_fold(out_dir / "weights", backbone, k)
        model = model.to(device)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        kw = dict(device=device, batch_size=config.eval_batch_size, amp=amp, channels_last=cl)
        rows = np.flatnonzero(dev & (table["fold"] == k).to_numpy())
        if len(rows):
            x = crops[torch.from_numpy(rows)]
            out[rows] = predict_logits(model, x, meta["norm_mean"], meta["norm_std"], **kw)
        if len(rest):
            x = crops[torch.from_numpy(rest)]
            rest_sum += predict_logits(model, x, meta["norm_mean"], meta["norm_std"], **kw)
    if len(rest):
        out[rest] = rest_sum / len(folds)
    return out


def _patient_scores(image_scores: pd.DataFrame, backbones: list[str], rule: str) -> pd.DataFrame:
    keys = ["patient_id", "split", "fold", "label"]
    g = image_scores.groupby("patient_id", sort=False)
    out = g[keys[1:]].first().reset_index()
    for b in backbones:
        logit = g[b].agg(lambda s: aggregate(s.to_numpy(), rule))
        out[b] = sigmoid(out["patient_id"].map(logit).to_numpy())
    return out[keys + list(backbones)]


def _summary(
    patient_scores: pd.DataFrame,
    fold_info: dict[str, list[dict]],
    config: ImagingConfig,
    device: torch.device,
    dist: DistInfo,
    folds: list[int],
    seconds: float,
) -> dict:
    ps = patient_scores
    out: dict = {
        "multibone": __version__,
        "aggregation": config.aggregation,
        "img_size": config.img_size,
        "epochs": config.epochs,
        "n_folds": len(folds),
        "device": str(device),
        "world_size": dist.world_size,
        "seconds": round(seconds, 2),
        "n_patients": {s: int((ps["split"] == s).sum()) for s in ("dev", "test", "external")},
        "backbones": {},
    }
    for b in config.backbones:
        entry: dict = {}
        dev = ps[ps["split"] == "dev"]
        entry["oof_auc"] = _clean(auc_or_nan(dev["label"].to_numpy(), dev[b].to_numpy()))
        for s in ("test", "external"):
            part = ps[ps["split"] == s]
            entry[f"{s}_auc"] = (
                _clean(auc_or_nan(part["label"].to_numpy(), part[b].to_numpy()))
                if len(part)
                else None
            )
        for info in fold_info[b]:
            part = dev[dev["fold"] == info["fold"]]
            info["heldout_auc"] = _clean(auc_or_nan(part["label"].to_numpy(), part[b].to_numpy()))
        entry["folds"] = fold_info[b]
        out["backbones"][b] = entry
    return out
