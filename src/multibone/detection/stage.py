"""The detector as a stage of a whole run (``multibone demo``, ``run_pipeline``).

The run's tumour-vs-infection patients keep the folds of
:func:`multibone.pipeline.make_splits`; normal controls (``diagnosis`` ``normal``,
left out of the classifiers) get folds of their own here, drawn the same way
(external centres held out, the rest cut into ``n_folds`` folds with the splits'
seed), so the detector is cross-fitted on the same patient folds as the
backbones and every development image's boxes come from a fold model that never
saw its patient.

``RUN/detection/`` holds the :mod:`.crossfit` layout (``boxes.csv``,
``weights/``, ``detection_config.yaml``) plus

* ``detection_metrics.json`` - per set (``dev`` cross-fitted, ``held_out``, and each
  held-out centre): localisation at IoU > 0.2 / 0.5, missed lesions, false-positive
  boxes per image, image-level lesion-vs-normal AUC with DeLong CI, sensitivity and
  specificity at the operating points fixed on development images, patient-level AUC
  by seed 003's rule (all views) and by the maximum over views, and the share of
  proposed boxes (best box above ``box_thresh``) with IoU > 0.2 to the reference box;
* ``examples/example_<i>.png`` - held-out images with the reference box (green) and
  the best predicted box (orange, with its score).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multibone._atomic import atomic_path
from multibone.detection.config import DetectionConfig
from multibone.detection.crossfit import crossfit_detector, parse_boxes
from multibone.detection.data import read_image_table
from multibone.detection.metrics import localisation, patient_scores
from multibone.errors import InputError

log = logging.getLogger(__name__)

METRICS_FILE = "detection_metrics.json"
EXAMPLES_DIR = "examples"
#: IoU above which a proposed box counts as on the lesion (seed 003's criterion).
PROPOSAL_IOU = 0.2


def detection_folds(cohort, splits: pd.DataFrame, split_config) -> pd.DataFrame:
    """``patient_id, split, fold, center`` for every patient of ``cohort``, normals included.

    Patients in ``splits`` (the classifiers' :func:`make_splits`) keep their split and
    fold. Normal controls: ``external`` when their centre is held out (or their manifest
    ``split`` says so), ``test`` when the manifest says so, else ``dev`` with a fold from
    scikit-learn's ``KFold`` (shuffled with the splits' seed, patients sorted by id).
    """
    from sklearn.model_selection import KFold

    p = cohort.patients.assign(patient_id=cohort.patients["patient_id"].astype(str))
    centre = p.set_index("patient_id")["center"].astype(str)
    out = splits[["patient_id", "split", "fold"]].assign(
        patient_id=splits["patient_id"].astype(str)
    )
    normals = p[p["diagnosis"].astype(str) == "normal"].sort_values("patient_id")
    if len(normals):
        ext = {str(c) for c in split_config.external_centers}
        given = normals["split"].astype(object).fillna("").astype(str)
        split = np.where(
            normals["center"].astype(str).isin(ext) | (given == "external"),
            "external",
            np.where(given == "test", "test", "dev"),
        )
        fold = np.full(len(normals), -1)
        dev = np.flatnonzero(split == "dev")
        k = int(split_config.n_folds)
        if len(dev) >= k:
            kf = KFold(n_splits=k, shuffle=True, random_state=int(split_config.seed))
            for f, (_, held) in enumerate(kf.split(dev)):
                fold[dev[held]] = f
        elif len(dev):
            fold[dev] = np.arange(len(dev)) % k
        out = pd.concat(
            [out, pd.DataFrame({"patient_id": normals["patient_id"], "split": split, "fold": fold})],
            ignore_index=True,
        )
    out["center"] = out["patient_id"].map(centre).astype(object).fillna("").astype(str)
    return out


def image_table(cohort) -> pd.DataFrame:
    """The detector's image table (:func:`.data.read_image_table`) of a loaded cohort."""
    im = cohort.images.merge(
        cohort.patients[["patient_id", "diagnosis"]], on="patient_id", how="left"
    )
    return read_image_table(im)


def _proba(y: np.ndarray, s: np.ndarray) -> dict:
    """AUC with DeLong CI; no CI with fewer than 2 images of a class, no AUC without both."""
    from multibone.stats import auc_or_nan, delong_auc

    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if min(n_pos, n_neg) < 2:
        auc = auc_or_nan(y, s)
        return {"auc": None if math.isnan(auc) else float(auc), "ci_low": None,
                "ci_high": None, "n_pos": n_pos, "n_neg": n_neg}
    r = delong_auc(y, s)
    return {"auc": float(r.auc), "ci_low": float(r.ci_low), "ci_high": float(r.ci_high),
            "n_pos": int(r.n_pos), "n_neg": int(r.n_neg)}


def _reference(row) -> np.ndarray:
    if row.has_box:
        return np.array([[row.roi_x0, row.roi_y0, row.roi_x1, row.roi_y1]], dtype=float)
    return np.zeros((0, 4))


def proposal_hits(b: pd.DataFrame, box_thresh: float) -> dict:
    """Share of lesion images (with a reference box) whose proposed box - the best box,
    when it scores >= ``box_thresh`` - has IoU > :data:`PROPOSAL_IOU` with the reference."""
    from multibone.detection.boxes import box_iou

    rows = b[b["has_box"].astype(bool)]
    hit = proposed = 0
    for r in rows.itertuples(index=False):
        boxes, scores = parse_boxes(r.boxes), json.loads(r.scores)
        if not len(scores) or float(scores[0]) < box_thresh:
            continue
        proposed += 1
        hit += bool(box_iou(_reference(r), boxes[:1]).max() > PROPOSAL_IOU)
    n = len(rows)
    return {"n_lesion_images": n, "n_proposed": proposed, "n_proposal_hits": hit,
            "proposal_hit_rate": hit / n if n else None}


def evaluate_boxes(boxes: pd.DataFrame, box_thresh: float) -> dict:
    """Detection statistics per set (see the module docstring) from ``boxes.csv`` with
    ``split`` and ``center`` columns. Operating points are chosen on the development
    (cross-fitted) image scores and applied unchanged to the other sets."""
    from multibone.stats import DECISION_POINTS, apply_threshold, choose_operating_points, wilson

    b = boxes.copy()
    b["lesion"] = b["lesion"].astype(int)
    dev = b[b["fold"] >= 0]
    ops = {}
    if dev["lesion"].nunique() == 2:
        ops = {k: float(v.threshold) for k, v in choose_operating_points(
            dev["lesion"].to_numpy(), dev["score"].to_numpy(), DECISION_POINTS).items()}
    sets: list[tuple[str, pd.DataFrame]] = [("dev", dev), ("held_out", b[b["fold"] < 0])]
    for c in sorted(b.loc[b["fold"] < 0, "center"].astype(str).unique()):
        if c:
            sets.append((f"held_out {c}", b[(b["fold"] < 0) & (b["center"].astype(str) == c)]))
    out: dict = {"box_thresh": box_thresh, "operating_points": ops, "sets": {}}
    for name, s in sets:
        if s.empty:
            continue
        loc_rows = s[s["has_box"].astype(bool) | (s["lesion"] == 0)]
        loc = localisation(
            [parse_boxes(c) for c in loc_rows["boxes"]],
            [json.loads(c) for c in loc_rows["scores"]],
            [_reference(r) for r in loc_rows.itertuples()],
            score_thresh=box_thresh,
        )
        y, sc = s["lesion"].to_numpy(), s["score"].to_numpy(dtype=float)
        entry = {
            "n_images": int(len(s)),
            "n_patients": int(s["patient_id"].nunique()),
            **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in loc.items()},
            "image_auc": _proba(y, sc),
            **proposal_hits(s, box_thresh),
        }
        at = {}
        for op, t in ops.items():
            call = apply_threshold(sc, t)
            tp, fn = int(np.sum((call == 1) & (y == 1))), int(np.sum((call == 0) & (y == 1)))
            tn, fp = int(np.sum((call == 0) & (y == 0))), int(np.sum((call == 1) & (y == 0)))
            sens, spec = wilson(tp, tp + fn), wilson(tn, tn + fp)
            at[op] = {"threshold": t,
                      "sensitivity": sens.value if tp + fn else None,
                      "sens_ci": [sens.ci_low, sens.ci_high] if tp + fn else None,
                      "specificity": spec.value if tn + fp else None,
                      "spec_ci": [spec.ci_low, spec.ci_high] if tn + fp else None}
        entry["at_operating_points"] = at
        for rule in ("all_views", "max"):
            ps = patient_scores(s[["patient_id", "score", "lesion"]], rule)
            entry[f"patient_auc_{rule}"] = _proba(ps["lesion"].to_numpy(), ps["score"].to_numpy())
        out["sets"][name] = entry
    return out


def _draw_examples(boxes: pd.DataFrame, out_dir: Path, box_thresh: float, n: int = 4) -> list[dict]:
    """PNG of up to ``n`` held-out images: reference box green, best predicted box orange."""
    from PIL import Image, ImageDraw

    from multibone.io import read_radiograph

    held = boxes[boxes["fold"] < 0]
    lesion = held[held["has_box"].astype(bool)]
    normal = held[held["lesion"] == 0]
    picks = pd.concat([lesion.iloc[:: max(1, len(lesion) // max(1, n - 1))].head(n - 1),
                       normal.head(1)])
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = []
    for i, r in enumerate(picks.itertuples(index=False), 1):
        pix = read_radiograph(r.image_path).pixels
        h, w = pix.shape
        scale = 256.0 / max(h, w)
        img = Image.fromarray((np.clip(pix, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))))
        d = ImageDraw.Draw(img)
        ref = _reference(r)
        for bx in ref:
            d.rectangle([v * scale for v in bx], outline=(0, 200, 0), width=2)
        pb, ps = parse_boxes(r.boxes), json.loads(r.scores)
        best = None
        if len(ps) and ps[0] >= box_thresh:
            best = [float(v) for v in pb[0]]
            d.rectangle([v * scale for v in best], outline=(255, 140, 0), width=2)
            d.text((best[0] * scale + 2, max(0, best[1] * scale - 12)), f"{ps[0]:.2f}",
                   fill=(255, 140, 0))
        name = f"example_{i}.png"
        with atomic_path(out_dir / name, suffix=".png") as tmp:
            img.save(tmp, format="PNG")
        from multibone.detection.boxes import box_iou

        iou = float(box_iou(ref, pb[:1]).max()) if len(ref) and best else None
        shown.append({"file": f"{EXAMPLES_DIR}/{name}", "center": str(r.center),
                      "view": str(r.view), "lesion": int(r.lesion),
                      "best_score": float(ps[0]) if len(ps) else 0.0, "iou": iou})
    return shown


def run_detection(
    run_dir: str | Path,
    cohort,
    splits: pd.DataFrame,
    config: DetectionConfig,
    split_config,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Train the cross-fitted detector of a run and evaluate it into ``RUN/detection``.

    ``cohort``: the whole cohort, normal controls included; ``splits``: the
    classifiers' :func:`multibone.pipeline.make_splits`. Returns the metrics written
    to ``detection_metrics.json``. An existing ``RUN/detection`` is refused unless
    ``resume`` (finished folds kept) or ``force`` (replaced).
    """
    out = Path(run_dir) / "detection"
    if out.exists() and any(out.iterdir()) and not resume:
        if not force:
            raise InputError(f"{out} already exists; pass --force to overwrite it")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    folds = detection_folds(cohort, splits, split_config)
    table = image_table(cohort)
    boxes = crossfit_detector(table, folds[["patient_id", "fold"]], config, out,
                              resume=resume, progress=progress)
    seconds = time.perf_counter() - t0
    boxes = boxes.merge(folds[["patient_id", "split", "center"]], on="patient_id", how="left")
    metrics = {
        "detector": config.detector,
        "weights": config.weights,
        "img_size": config.img_size,
        "epochs": config.epochs,
        "n_folds": int(folds.loc[folds["fold"] >= 0, "fold"].nunique()),
        "n_images": int(len(boxes)),
        "n_normal_patients": int(cohort.n_normals),
        "classifier_boxes": config.classifier_boxes,
        "seconds": round(seconds, 1),
        **evaluate_boxes(boxes, config.box_thresh),
    }
    metrics["examples"] = _draw_examples(boxes, out / EXAMPLES_DIR, config.box_thresh)
    with atomic_path(out / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    log.info("detection stage: %.0f s", seconds)
    return metrics


def _weights(w: str) -> str:
    return "trained from scratch" if w == "none" else f"initial weights: {w}"


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summary_lines(run: str | Path) -> list[str]:
    """The detection section of ``summary.md`` ([] when the run has no detector)."""
    p = Path(run) / "detection" / METRICS_FILE
    if not p.is_file():
        return []
    m = json.loads(p.read_text(encoding="utf-8"))
    lines = [
        "## Lesion detector (lesion vs normal; boxes cross-fitted on the same folds)",
        "",
        f"{m['detector']} ({_weights(m['weights'])}), {m['img_size']} px, {m['epochs']} epochs, "
        f"{m['n_folds']} fold models; a box is a detection when it scores >= "
        f"{m['box_thresh']:g}. Held-out images get the fold models' boxes merged.",
        "",
        "| set | images | localisation IoU>0.2 | IoU>0.5 | missed | FP boxes/image "
        "| image AUC lesion vs normal (95 % CI) | proposed box on the lesion |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in m["sets"].items():
        a = s["image_auc"]
        auc = ("- (one class)" if a["auc"] is None else f"{a['auc']:.3f}" + (
            f" ({a['ci_low']:.3f}-{a['ci_high']:.3f})" if a["ci_low"] is not None else ""))
        prop = (f"{s['n_proposal_hits']}/{s['n_lesion_images']} ({_fmt(s['proposal_hit_rate'])})"
                if s["n_lesion_images"] else "-")
        lines.append(
            f"| {name} | {s['n_images']} | {_fmt(s.get('rate_iou>0.2'))} | "
            f"{_fmt(s.get('rate_iou>0.5'))} | {s['missed']} | {_fmt(s['fp_per_image'])} | "
            f"{auc} | {prop} |"
        )
    if m.get("classifier_boxes") == "detector":
        lines += ["", "The tumour-vs-infection backbones were trained and evaluated on these "
                  "detector boxes (`detection.classifier_boxes: detector`), not on the manifest's."]
    lines += ["", "Seed 003 localised 94.5 % / 92.9 % of tumours at IoU > 0.2; seed 000 reached "
              "an image AUC of 0.954-0.961 (real radiographs; these are synthetic).", ""]
    return lines


BUNDLE_COPY = "for_bundle"


def bundle_copy(det_dir: str | Path) -> Path | None:
    """``RUN/detection/for_bundle``: what a model bundle carries of the detector, in the
    layout :func:`multibone.detection.run.load_detectors` reads (``weights/fold<k>.safetensors``
    + ``.json``, ``detection_config.yaml``). The fold descriptions lose their list of training
    patient ids (the count stays): a bundle is shared, patient ids are not. None without
    a trained detector."""
    det = Path(det_dir)
    files = sorted((det / "weights").glob("fold*.safetensors"))
    if not files or not (det / "detection_config.yaml").is_file():
        return None
    out = det / BUNDLE_COPY
    if out.exists():
        shutil.rmtree(out)
    (out / "weights").mkdir(parents=True)
    shutil.copy2(det / "detection_config.yaml", out / "detection_config.yaml")
    for f in files:
        shutil.copy2(f, out / "weights" / f.name)
        meta = json.loads(f.with_suffix(".json").read_text(encoding="utf-8"))
        meta["n_train_patients"] = len(meta.pop("train_patients", []) or [])
        (out / "weights" / f.with_suffix(".json").name).write_text(
            json.dumps(meta, indent=1), encoding="utf-8")
    return out


def with_detector_boxes(cohort, boxes_csv: str | Path, box_thresh: float):
    """``cohort`` with every image's lesion box replaced by the detector's best box
    (``detection.classifier_boxes: detector``): the box of ``boxes.csv`` scoring >=
    ``box_thresh`` (cross-fitted on development images, the fold models merged on
    held-out ones), or none (whole image). Returns (new cohort, share of images given a
    box)."""
    import dataclasses

    b = pd.read_csv(boxes_csv, dtype={"patient_id": str})
    best = {}
    for r in b.itertuples(index=False):
        scores = json.loads(r.scores)
        if len(scores) and float(scores[0]) >= box_thresh:
            best[str(r.image_path)] = parse_boxes(r.boxes)[0]
    im = cohort.images.copy()
    cols = ["roi_x0", "roi_y0", "roi_x1", "roi_y1"]
    new = np.full((len(im), 4), np.nan)
    for i, path in enumerate(im["image_path"].astype(str)):
        if path in best:
            x0, y0, x1, y1 = best[path]
            new[i] = [math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)]
    from multibone.io import read_image_size

    for i in np.flatnonzero(~np.isnan(new[:, 0])):  # cut to the image, as propose_box does
        h, w = read_image_size(im["image_path"].iloc[i])
        new[i] = [max(0, new[i, 0]), max(0, new[i, 1]), min(w, new[i, 2]), min(h, new[i, 3])]
        if new[i, 2] <= new[i, 0] or new[i, 3] <= new[i, 1]:
            new[i] = np.nan
    im[cols] = new
    share = float(np.mean(~np.isnan(new[:, 0]))) if len(new) else 0.0
    return dataclasses.replace(cohort, images=im), share
