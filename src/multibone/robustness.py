"""Box-perturbation robustness (seed 001): how much do the scores depend on where the box was drawn?

A lesion box drawn by another reader would sit a little elsewhere and be a
little larger or smaller. :func:`box_robustness` re-scores the held-out
patients of a run (internal test and external centres; never the development
set) with the run's model bundle, once with the boxes as drawn and ``draws``
times with every box randomly moved and resized:

* shift: the box centre moves by ``u * width`` horizontally and ``v * height``
  vertically, ``u, v`` uniform in ``[-shift, shift]`` (default 0.1: up to a
  tenth of the box each way);
* scale: width and height are multiplied by factors drawn uniformly (each
  on its own) from ``[scale_lo, scale_hi]`` (default 0.8-1.2), about the new centre;
* the result is rounded to whole pixels and clipped inside the image (at least
  2 px per side); then cut with the bundle's crop margin as in training.

Every image of every draw gets its own draw from one ``numpy`` generator seeded
with ``seed`` in a fixed order: the same run, settings and seed give the same
numbers. Scoring uses the bundle's models through the one inference path
(:func:`multibone.case.runtime`: image scorer, per-patient aggregation, the
stacker on the same clinical features).

Reported per set and per model (each backbone and the stacker): the AUC with
the boxes as drawn, the mean and 2.5-97.5 % range of the perturbed AUCs, and
the per-patient spread of the probability over draws (its standard deviation
and its max-min range; mean and maximum over patients).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from multibone._atomic import atomic_dir
from multibone.errors import InputError
from multibone.stats import auc_or_nan

log = logging.getLogger(__name__)

MIN_SIDE = 2


def perturb_boxes(
    boxes: np.ndarray,
    shapes: np.ndarray,
    rng: np.random.Generator,
    *,
    shift: float = 0.1,
    scale: tuple[float, float] = (0.8, 1.2),
) -> np.ndarray:
    """One random perturbation of each box (see the module docstring).

    ``boxes``: (n, 4) ``x0, y0, x1, y1`` (x1/y1 exclusive); ``shapes``: (n, 2)
    image ``(height, width)``. Returns (n, 4) int boxes inside their images, each
    side at least 2 px (an image narrower than that keeps its whole width).
    """
    boxes = np.asarray(boxes, dtype=float)
    shapes = np.asarray(shapes, dtype=int)
    n = boxes.shape[0]
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + rng.uniform(-shift, shift, n) * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + rng.uniform(-shift, shift, n) * h
    nw = w * rng.uniform(scale[0], scale[1], n)
    nh = h * rng.uniform(scale[0], scale[1], n)
    out = np.empty((n, 4), dtype=int)
    for j, (c, half, limit) in enumerate(((cx, nw / 2, shapes[:, 1]), (cy, nh / 2, shapes[:, 0]))):
        lo = np.clip(np.rint(c - half), 0, limit).astype(int)
        hi = np.clip(np.rint(c + half), 0, limit).astype(int)
        # at least MIN_SIDE px (or the whole image when it is smaller), kept inside
        side = np.minimum(np.maximum(hi - lo, MIN_SIDE), limit)
        lo = np.clip(np.minimum(lo, limit - side), 0, None)
        out[:, j], out[:, j + 2] = lo, lo + side
    return out


def _check_settings(draws: int, shift: float, scale: tuple[float, float]) -> None:
    if draws < 2:
        raise InputError(f"--draws must be at least 2, got {draws}")
    if not 0 <= shift <= 1:
        raise InputError(f"--shift must be in [0, 1] (a fraction of the box), got {shift}")
    lo, hi = scale
    if not 0 < lo <= hi:
        raise InputError(f"--scale must be LO,HI with 0 < LO <= HI, got {lo},{hi}")


def _held_out(run: Path) -> pd.DataFrame:
    path = run / "predictions.csv"
    if not path.is_file():
        raise InputError(f"{path} not found: robustness needs a finished run (multibone demo, or stack --run)")
    preds = pd.read_csv(path, dtype={"patient_id": str, "center": str, "split": str})
    held = preds[preds["split"] != "dev"].copy()
    if held.empty:
        raise InputError(f"{path}: no held-out (test or external) patients to re-score")
    held["center"] = held["center"].fillna("") if "center" in held else ""
    return held.reset_index(drop=True)


def _sets(held: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    from multibone.evaluation.report import define_sets

    return [(key, mask) for key, _, mask in define_sets(held)]


def box_robustness(
    run_dir: str | Path,
    *,
    draws: int = 50,
    shift: float = 0.1,
    scale: tuple[float, float] = (0.8, 1.2),
    seed: int = 0,
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    threads: int = 1,
) -> pd.DataFrame:
    """Re-score a run's held-out patients under box perturbation; write ``RUN/robustness``.

    Returns the summary table (also ``robustness.csv``); writes
    ``per_draw_auc.csv``, ``per_patient_spread.csv``, ``robustness.png`` and
    ``robustness.json`` (settings). ``threads``: torch CPU threads while scoring
    (1 by default: on a shared 2-core machine more threads were 5x slower;
    restored afterwards). Raises InputError (nothing written) for a run
    without a bundle, a bundle without an image model, or images without boxes.
    """
    import torch

    _check_settings(draws, shift, scale)

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        return _box_robustness(run_dir, draws=draws, shift=shift, scale=scale, seed=seed,
                               manifest=manifest, out_dir=out_dir, force=force, progress=progress)
    finally:
        torch.set_num_threads(before)


def _box_robustness(run_dir, *, draws, shift, scale, seed, manifest, out_dir, force, progress):
    from tqdm.auto import tqdm

    from multibone.bundle import load_bundle
    from multibone.case import runtime
    from multibone.cohort import load_cohort
    from multibone.imaging.aggregate import aggregate_groups, sigmoid
    from multibone.io import crop_roi, read_radiograph
    from multibone.stacking import build_stacking_table

    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder {run} not found")
    out = Path(out_dir) if out_dir is not None else run / "robustness"
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to replace it")
    if not (run / "bundle").is_dir():
        raise InputError(
            f"{run / 'bundle'}: no model bundle in this run; robustness re-scores with the "
            "bundle (multibone demo and stack --run write one)"
        )
    bundle = load_bundle(run / "bundle")
    if not bundle.backbones:
        raise InputError(
            f"{run / 'bundle'}: a clinical-only bundle (no image model): there is no box to perturb"
        )
    held = _held_out(run)
    manifest = Path(manifest) if manifest is not None else run / "cohort" / "manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{manifest}: cohort manifest not found; pass --manifest with the run's manifest")
    cohort = load_cohort(manifest, positive_class=bundle.positive_class, progress=False)
    im = cohort.images.copy()
    im["patient_id"] = im["patient_id"].astype(str)
    im = im[im["patient_id"].isin(set(held["patient_id"]))].sort_values("row")
    if im.empty:
        raise InputError(f"{manifest}: none of the run's held-out patients has an image")
    nobox = im["roi_x0"].isna()
    if nobox.any():
        rows = ", ".join(str(int(r)) for r in im.loc[nobox, "row"].head(5))
        raise InputError(
            f"{manifest}: held-out image(s) without a lesion box (manifest rows {rows}); "
            "box perturbation needs a box on every image (roi_x0..roi_y1)"
        )
    held = held[held["patient_id"].isin(set(im["patient_id"]))].reset_index(drop=True)
    pt = cohort.patients
    patients = pt[pt["patient_id"].astype(str).isin(set(held["patient_id"]))]
    rt = runtime(bundle)
    pixels = [read_radiograph(p).pixels for p in im["image_path"]]
    shapes = np.array([p.shape[:2] for p in pixels])
    boxes = im[["roi_x0", "roi_y0", "roi_x1", "roi_y1"]].to_numpy(float)
    codes, uniq = pd.factorize(im["patient_id"])
    order = held["patient_id"].to_numpy()
    margin = rt.scorer.crop_margin
    meta_scores = held[["patient_id", "split"]].assign(fold=-1, label=held["label"])

    def score(bxs: np.ndarray) -> pd.DataFrame:
        crops = [crop_roi(p, tuple(b), margin=margin) for p, b in zip(pixels, bxs, strict=True)]
        logits = rt.scorer.score(crops)
        s = meta_scores.copy()
        for b in rt.backbones:
            agg = aggregate_groups(np.asarray(logits[b], float), codes, rt.scorer.aggregation)
            per = pd.Series(np.asarray(sigmoid(agg), float), index=uniq)
            s[b] = per.reindex(order).to_numpy()
        X, _ = build_stacking_table(s, patients, clinical=rt.clinical, source="robustness")
        res = s[["patient_id"]].copy()
        for b in rt.backbones:
            res[b] = s[b].to_numpy()
        res["stacker"] = rt.stacker.predict_proba(X[rt.features])[:, 1]
        return res

    models = [*rt.backbones, "stacker"]
    base = score(boxes.astype(int))
    rng = np.random.default_rng(seed)
    per_draw = []
    for d in tqdm(range(draws), desc="robustness", disable=not progress, leave=False):
        r = score(perturb_boxes(boxes, shapes, rng, shift=shift, scale=scale))
        r.insert(0, "draw", d)
        per_draw.append(r)
    allp = pd.concat(per_draw, ignore_index=True)
    y = held["label"].to_numpy().astype(int)
    sets = _sets(held)
    auc_rows, summary_rows = [], []
    for key, mask in sets:
        for m in models:
            base_auc = auc_or_nan(y[mask], base[m].to_numpy()[mask])
            aucs = np.array(
                [auc_or_nan(y[mask], g[m].to_numpy()[mask]) for _, g in allp.groupby("draw")]
            )
            auc_rows += [{"set": key, "model": m, "draw": d, "auc": a} for d, a in enumerate(aucs)]
            wide = allp.pivot(index="patient_id", columns="draw", values=m).loc[order[mask]]
            sd = wide.std(axis=1, ddof=1)
            rng_ = wide.max(axis=1) - wide.min(axis=1)
            ok = aucs[np.isfinite(aucs)]
            summary_rows.append(
                {
                    "set": key,
                    "model": m,
                    "n": int(mask.sum()),
                    "auc_as_drawn": base_auc,
                    "auc_perturbed_mean": float(ok.mean()) if ok.size else math.nan,
                    "auc_perturbed_p2.5": float(np.percentile(ok, 2.5)) if ok.size else math.nan,
                    "auc_perturbed_p97.5": float(np.percentile(ok, 97.5)) if ok.size else math.nan,
                    "prob_sd_mean": float(sd.mean()),
                    "prob_sd_max": float(sd.max()),
                    "prob_range_mean": float(rng_.mean()),
                    "prob_range_max": float(rng_.max()),
                }
            )
    summary = pd.DataFrame(summary_rows)
    spread = (
        allp.melt(id_vars=["draw", "patient_id"], var_name="model", value_name="p")
        .groupby(["model", "patient_id"])["p"]
        .agg(p_sd="std", p_min="min", p_max="max")
        .reset_index()
    )
    base_long = base.melt(id_vars="patient_id", var_name="model", value_name="p_as_drawn")
    spread = spread.merge(base_long, on=["model", "patient_id"], how="left")
    settings = {
        "draws": draws,
        "shift": shift,
        "scale": list(scale),
        "seed": seed,
        "n_patients": int(len(held)),
        "n_images": int(len(im)),
        "crop_margin": margin,
        "perturbation": "centre moved by U(-shift, shift) x box width/height; width and height "
        "each multiplied by U(scale_lo, scale_hi); rounded, clipped inside the image (>= 2 px)",
    }
    with atomic_dir(out, force=force) as tmp:
        summary.to_csv(tmp / "robustness.csv", index=False)
        pd.DataFrame(auc_rows).to_csv(tmp / "per_draw_auc.csv", index=False)
        spread.to_csv(tmp / "per_patient_spread.csv", index=False)
        (tmp / "robustness.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        _plot(pd.DataFrame(auc_rows), summary, tmp / "robustness.png", settings)
    log.info("robustness written to %s", out)
    return summary


def _plot(aucs: pd.DataFrame, summary: pd.DataFrame, path: Path, settings: dict) -> None:
    """Perturbed AUCs per model (one panel per set), the as-drawn AUC as a red mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(summary["set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, key in zip(axes[0], sets, strict=True):
        s = summary[summary["set"] == key]
        models = list(s["model"])
        data = [aucs[(aucs["set"] == key) & (aucs["model"] == m)]["auc"].dropna() for m in models]
        ax.boxplot(data, whis=(2.5, 97.5), showfliers=False)
        ax.scatter(range(1, len(models) + 1), s["auc_as_drawn"], color="red", zorder=3,
                   label="boxes as drawn")
        ax.set_xticks(range(1, len(models) + 1), models, rotation=30)
        ax.set_title(key)
        ax.set_ylabel("AUC")
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(
        f"AUC under box perturbation ({settings['draws']} draws, shift {settings['shift']}, "
        f"scale {settings['scale'][0]}-{settings['scale'][1]}; whiskers 2.5-97.5 %)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
