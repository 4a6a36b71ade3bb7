"""End-to-end runs: what the CLI and the dashboard call.

A run folder (see the README) is built in stages, each owned by its layer:

1. cohort   -- ``multibone.cohort.load_cohort`` (and ``multibone.synthetic`` for the demo)
2. splits   -- external centres held out, K patient-grouped, label-stratified dev folds;
   :func:`make_splits` is the one place they are drawn, whatever the entry point
3. imaging  -- step 1: cross-fitted backbone scores (``multibone.imaging.train_images``)
4. stacking -- step 2: families compared and the stacker fitted on out-of-fold scores only
5. predictions.csv + thresholds.json (operating points chosen on dev, never re-chosen)
6. lesion focus (share of CAM energy inside the lesion box) and the evaluation report
7. the model bundle (metadata built by :func:`multibone.bundle.build_metadata`), and
   ``summary.md`` for a person

Entry points: :func:`build_demo` (``multibone demo``) and :func:`run_pipeline` run
every stage; :func:`train_imaging` (``multibone train-images``) stops after stage 3;
:func:`stack_run` (``multibone stack --run``) does stages 4-7 on a run whose
imaging is done or absent; :func:`stack_step` (``multibone stack --out``) stage 4
only. The CLI parses arguments, calls one of these and prints.

Case-level functions (predict, explain, report) live in :mod:`multibone.case` and
are re-exported here so the dashboard needs one import.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pandas as pd

from multibone._atomic import LOCK_NAME, locks_folder
from multibone.case import (  # noqa: F401  (re-exported for the dashboard and CLI)
    CamView,
    Case,
    CaseExplanation,
    CaseImage,
    CaseResult,
    case_field_errors,
    case_from_fields,
    case_report_html,
    explain_case,
    predict_case,
    read_case_image,
)
from multibone.errors import InputError
from multibone.runconfig import RunConfig, load_run_config, save_run_config

log = logging.getLogger(__name__)

#: Where ``multibone demo`` writes by default, and where the dashboard looks first.
DEFAULT_DEMO_RUN = Path("runs/demo")
#: The demo config, package data (``multibone/configs/``; the repository's ``configs/`` is a
#: link to it), so a non-editable install finds it too.
DEMO_CONFIG = Path(str(resources.files("multibone").joinpath("configs", "demo.yaml")))

Progress = Callable[[float, str], None]
#: Share of normal controls in the demo cohort when the config trains a detector (extra
#: patients: the tumour/infection patients stay those of the cohort without them).
DEMO_NORMALS = 0.2


def _noop(fraction: float, message: str) -> None:
    return None


def _demo_config() -> RunConfig:
    if not DEMO_CONFIG.is_file():
        raise InputError(
            f"{DEMO_CONFIG}: the demo config is missing (a broken multibone install?); "
            "pass --config with a run config, e.g. a copy of configs/demo.yaml"
        )
    return load_run_config(DEMO_CONFIG)


# --------------------------------------------------------------------------- stages


def patient_context(cohort) -> pd.DataFrame:
    """Per-patient columns the evaluation report groups by (no identifiers).

    ``center, age, sex, location, subtype, crp_missing, esr_missing`` and
    ``lesion_area`` (mean lesion-box area in px^2 over the patient's boxed
    images; NaN when no box).
    """
    p = cohort.patients
    ctx = pd.DataFrame(
        {
            "patient_id": p["patient_id"].astype(str),
            "center": p["center"].astype(str),
            "age": p["age"].astype(float),
            "sex": p["sex"].astype(str),
            "location": p["location"].astype(str),
            "subtype": p["subtype"].astype(str) if "subtype" in p else "",
            "crp_missing": p["crp_abnormal"].isna().astype(int),
            "esr_missing": p["esr_abnormal"].isna().astype(int),
        }
    )
    im = cohort.images
    area = (im["roi_x1"] - im["roi_x0"]) * (im["roi_y1"] - im["roi_y0"])
    per_patient = area.groupby(im["patient_id"].astype(str)).mean()
    ctx["lesion_area"] = ctx["patient_id"].map(per_patient).astype(float)
    return ctx


def make_splits(cohort, config: RunConfig) -> pd.DataFrame:
    """Stage 2: every patient's ``split`` (dev/test/external) and dev ``fold``.

    The only function that draws a run's splits: the demo, ``train-images``,
    ``stack --run`` and clinical-only ``stack`` all call it, so the same cohort
    and ``config.splits`` give the same folds whatever the entry point. Returns
    ``patient_id, split, fold`` (one row per patient, in the cohort's order).
    """
    from multibone.cohort.splits import assign_splits

    # Normal controls are never tumour-vs-infection patients (the detector stage gives
    # them folds of their own: multibone.detection.stage.detection_folds).
    return assign_splits(cohort.without_normals().patients, config.splits)


def read_scores(path: str | Path) -> pd.DataFrame:
    """``patient_scores.csv`` of the imaging stage (InputError if absent or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: scores file not found (run multibone train-images first)")
    try:
        return pd.read_csv(path, dtype={"patient_id": str, "split": str}, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from exc


def check_scores_splits(scores: pd.DataFrame, splits: pd.DataFrame, source: str) -> None:
    """Refuse imaging scores cross-fitted on other splits than :func:`make_splits` gives.

    Only patients present in both tables are compared (unknown or missing ids are
    named later by :func:`multibone.stacking.build_stacking_table`).
    """
    if not {"patient_id", "split", "fold"} <= set(scores.columns):
        return  # build_stacking_table names the missing columns
    key = ["split", "fold"]
    a = scores.assign(patient_id=scores["patient_id"].astype(str)).drop_duplicates("patient_id")
    a = a.set_index("patient_id")[key]
    b = splits.assign(patient_id=splits["patient_id"].astype(str)).set_index("patient_id")[key]
    common = a.index.intersection(b.index)
    a_split = a.loc[common, "split"].astype(object).fillna("").astype(str)
    a_fold = pd.to_numeric(a.loc[common, "fold"], errors="coerce").fillna(-1).astype(int)
    differ = common[(a_split != b.loc[common, "split"].astype(str)).to_numpy()
                    | (a_fold != b.loc[common, "fold"].astype(int)).to_numpy()]
    if len(differ):
        shown = ", ".join(map(str, differ[:5])) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        raise InputError(
            f"{source}: split or fold of patient(s) {shown} differ from those the config's splits "
            "section gives for this cohort; the scores were cross-fitted on other splits: use the "
            "same config (splits section) and manifest for train-images and stack"
        )


def _scores_without_images(cohort, splits: pd.DataFrame) -> pd.DataFrame:
    """A patient score table with no backbone columns (clinical-only stacking)."""
    labels = cohort.patients.set_index(cohort.patients["patient_id"].astype(str))["label"]
    out = splits[["patient_id", "split", "fold"]].copy()
    out["patient_id"] = out["patient_id"].astype(str)
    out["label"] = out["patient_id"].map(labels)
    return out


def finish_run(
    run_dir: str | Path,
    cohort,
    splits: pd.DataFrame,
    config: RunConfig,
    *,
    family: str | None = None,
    force: bool = False,
    progress: bool = True,
    callback: Progress = _noop,
    n_boot: int = 1000,
    lesion_focus_images: int = 12,
) -> Path:
    """Stages 4-7 on a run whose imaging stage is done (or absent: clinical only).

    Reads ``RUN/imaging/patient_scores.csv`` when present; writes
    ``RUN/stacking``, ``RUN/predictions.csv``, ``RUN/thresholds.json``,
    ``RUN/evaluation``, ``RUN/bundle`` and ``RUN/summary.md``.
    """
    from multibone.stacking import build_stacking_table
    from multibone.stacking.run import run_stacking

    run = Path(run_dir)
    imaging_dir = run / "imaging"
    scores_path = imaging_dir / "patient_scores.csv"
    for sub in ("stacking", "bundle", "evaluation"):
        if (run / sub).exists() and not force:
            raise InputError(f"{run / sub} already exists; pass --force to overwrite it")
    if config.radiomics.enabled and not cohort.images.empty:
        from multibone.radiomics.features import check_roi_sizes

        check_roi_sizes(cohort.images, config.radiomics.min_roi)  # before any work
    if scores_path.is_file():
        scores = read_scores(scores_path)
        check_scores_splits(scores, splits, str(scores_path))
    else:
        log.info("no imaging scores in %s: stacking on clinical features only", imaging_dir)
        scores = _scores_without_images(cohort, splits)

    callback(0.72, "fitting and comparing stackers")
    X, meta = build_stacking_table(
        scores, cohort.patients, clinical=config.stacking.clinical, source=str(scores_path.name)
    )
    stack_summary = run_stacking(
        X, meta, config.stacking, run / "stacking", family=family, force=force, progress=progress
    )
    write_shortcuts(run, X, meta, config)

    preds = pd.read_csv(run / "stacking" / "predictions.csv", dtype={"patient_id": str})
    preds = preds.merge(patient_context(cohort), on="patient_id", how="left")
    preds.to_csv(run / "predictions.csv", index=False)
    (run / "thresholds.json").write_text(
        (run / "stacking" / "thresholds.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    if config.radiomics.enabled:
        from multibone.radiomics.run import add_radiomics

        callback(0.76, "radiomics baseline (lesion-box features, ElasticNet)")
        preds = add_radiomics(run, cohort, splits, config.radiomics, preds, force=force,
                              progress=progress)
        preds.to_csv(run / "predictions.csv", index=False)

    backbones = list(stack_summary["backbones"])
    if backbones and lesion_focus_images > 0:
        callback(0.8, "measuring lesion focus of the CAMs")
        _write_lesion_focus(run, cohort, splits, backbones, lesion_focus_images, progress)

    callback(0.85, "evaluating every model on every set")
    from multibone.evaluation import evaluate_run

    evaluate_run(run, n_boot=n_boot, progress=progress)

    callback(0.95, "writing the model bundle")
    write_bundle(run, cohort, splits, config, stack_summary, force=force)
    write_summary(run)
    callback(1.0, "done")
    return run


def write_shortcuts(run: Path, X: pd.DataFrame, meta: pd.DataFrame, config: RunConfig) -> Path:
    """``RUN/stacking/shortcuts.csv``: AUC of each clinical feature (and its blankness)
    alone on development patients (:mod:`multibone.evaluation.shortcuts`)."""
    from multibone.evaluation.shortcuts import SHORTCUTS_FILE, shortcut_table
    from multibone.stacking import CLINICAL_FEATURES

    dev = (meta["split"] == "dev").to_numpy() & meta["label"].notna().to_numpy()
    table = shortcut_table(
        X[dev], meta["label"].to_numpy()[dev], [c for c in X.columns if c in CLINICAL_FEATURES],
        threshold=config.evaluation.shortcut_auc,
    )
    out = run / "stacking" / SHORTCUTS_FILE
    table.to_csv(out, index=False)
    return out


def run_warnings(run: Path) -> list[str]:
    """The warnings a person must see first (shortcuts, models with AUC 1.000): the
    evaluation's ``top_warnings`` (``RUN/evaluation/metrics.json``); [] when none."""
    try:
        metrics = json.loads((run / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(w) for w in metrics.get("top_warnings") or []]


def _write_lesion_focus(run: Path, cohort, splits, backbones, n_images: int, progress: bool) -> None:
    """Share of CAM energy inside the lesion box on held-out images (seed 004's claim, measured)."""
    from multibone.explain.cam import CamBackbone, lesion_focus
    from multibone.explain.overlay import box_in_crop
    from multibone.imaging import load_backbone_models, preprocess
    from multibone.io import crop_roi, read_radiograph, resize_square, roi_box

    im = cohort.images.copy()
    im["patient_id"] = im["patient_id"].astype(str)
    held = set(splits.loc[splits["split"] != "dev", "patient_id"].astype(str))
    im = im[im["patient_id"].isin(held) & im["roi_x0"].notna()]
    if im.empty:
        return
    im = im.sample(n=min(n_images, len(im)), random_state=0).sort_values("row")
    rows = []
    for b in backbones:
        models = load_backbone_models(run / "imaging" / "weights", b)
        model = models[0]  # fold 0's model: one map per image keeps this a quick check
        meta = model.multibone_meta
        margin = float(meta.get("crop_margin", 0.0))
        size = int(meta["img_size"])
        crops, boxes = [], []
        for r in im.itertuples():
            pix = read_radiograph(r.image_path).pixels
            roi = (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1))
            crop_box = roi_box(pix.shape, roi, margin)
            crops.append(crop_roi(pix, roi, margin=margin))
            boxes.append(box_in_crop(roi, crop_box, size))
        cb = CamBackbone(
            name=b,
            model=model,
            layer=meta["cam_layer"],
            prepare=lambda c, meta=meta: preprocess([c], meta),
        )
        df = lesion_focus([cb], [resize_square(c, size) for c in crops], boxes, progress=progress)
        rows.append(df)
    pd.concat(rows, ignore_index=True).to_csv(run / "lesion_focus.csv", index=False)


def _training_data(cohort, splits: pd.DataFrame) -> dict:
    p = cohort.patients.drop(columns=["split"], errors="ignore").merge(
        splits, on="patient_id", how="left"
    )
    by_split = {
        s: {
            "patients": int(len(g)),
            cohort.positive_class: int((g["label"] == 1).sum()),
            "other": int((g["label"] == 0).sum()),
            "centres": sorted(map(str, g["center"].unique())),
        }
        for s, g in p.groupby("split")
    }
    synthetic = (Path(cohort.root) / "SYNTHETIC_README.txt").is_file()
    return {
        "synthetic": synthetic,
        "n_patients": int(len(p)),
        "n_images": int(len(cohort.images)),
        "centres": sorted(map(str, p["center"].unique())),
        "by_split": by_split,
    }


def write_bundle(run: Path, cohort, splits, config: RunConfig, stack_summary: dict, *, force: bool) -> Path:
    """Assemble RUN/bundle from the run's outputs (hashes, atomic, no overwrite without force)."""
    from multibone.bundle import build_metadata, save_bundle
    from multibone.runconfig import run_config_to_dict

    files: dict[str, Path] = {
        "stacker.skops": run / "stacking" / "stacker.skops",
        "baselines.skops": run / "stacking" / "baselines.skops",
        "family_comparison.csv": run / "stacking" / "family_comparison.csv",
    }
    for name in ("score_calibration.json", "conformal.json"):  # issue #14: plain JSON
        if (run / "stacking" / name).is_file():
            files[name] = run / "stacking" / name
    backbones = list(stack_summary["backbones"])
    preprocessing: dict = {}
    if backbones:
        files["backbones"] = run / "imaging" / "weights"
        files["ood"] = _write_ood(run, cohort, splits, backbones)
        first = json.loads((run / "imaging" / "weights" / backbones[0] / "fold0.json").read_text())
        preprocessing = {
            k: first.get(k)
            for k in ("img_size", "crop_margin", "aggregation", "grey_policy", "in_chans")
            if k in first
        }
    if config.detection is not None:
        from multibone.detection.stage import bundle_copy

        # safetensors + JSON + YAML in the layout multibone.detection.run.load_detectors reads
        det = bundle_copy(run / "detection")
        if det is not None:
            files["detection"] = det
    ev = run / "evaluation"
    metrics = {}
    if ev.is_dir():
        for sub in ("figures", "tables"):
            if (ev / sub).is_dir():
                files[f"evaluation/{sub}"] = ev / sub
        for name in ("metrics.json", "report.html"):
            if (ev / name).is_file():
                files[f"evaluation/{name}"] = ev / name
        metrics = _headline_metrics(ev / "metrics.json")
    meta = build_metadata(
        positive_class=cohort.positive_class,
        features=stack_summary["features"],
        backbones=backbones,
        clinical=stack_summary["clinical"],
        family=stack_summary["family"],
        calibration=stack_summary["calibration"],
        thresholds=stack_summary["operating_points"].get("stacker", {}),
        dropped_features=stack_summary.get("dropped_features") or {},
        preprocessing=preprocessing,
        training_data=_training_data(cohort, splits),
        metrics=metrics,
        config=run_config_to_dict(config),
    )
    return save_bundle(run / "bundle", meta, files=files, force=force)


def _write_ood(run: Path, cohort, splits: pd.DataFrame, backbones: list[str]) -> Path:
    """``RUN/imaging/ood``: each backbone's development-embedding summary, so a case
    image unlike the training crops is flagged (:mod:`multibone.imaging.ood`)."""
    import shutil

    from multibone.imaging.ood import fit_from_weights

    dev_ids = set(splits.loc[splits["split"] == "dev", "patient_id"].astype(str))
    images = cohort.images[cohort.images["patient_id"].astype(str).isin(dev_ids)]
    out = run / "imaging" / "ood"
    if out.exists():
        shutil.rmtree(out)
    fit_from_weights(run / "imaging" / "weights", backbones, images, out)
    return out


def _headline_metrics(path: Path) -> dict:
    """AUC (with CI) of every model on every set, from the evaluation's metrics.json."""
    from multibone.bundle import headline_metrics

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return headline_metrics(data)


def write_summary(run: Path) -> Path:
    """``summary.md``: a short account a person reads first."""
    from multibone.disclaimer import DISCLAIMER, SYNTHETIC_WARNING

    lines = ["# multibone run summary", ""]
    bundle_meta = json.loads((run / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    td = bundle_meta["training_data"]
    if td.get("synthetic"):
        lines += [f"**{SYNTHETIC_WARNING}**", ""]
    top = run_warnings(run)
    if top:
        lines += ["## Warnings (read these first)", ""] + [f"- **{w}**" for w in top] + [""]
    centres = [c for c in td.get("centres") or [] if c not in ("", "nan")]
    lines += [
        f"- patients: {td['n_patients']} ({td['n_images']} images)"
        + (f", centres: {', '.join(centres)}" if centres else " (no centre recorded)"),
        f"- positive class: {bundle_meta['positive_class']}",
        f"- backbones: {', '.join(bundle_meta['backbones']) or 'none (clinical only)'}",
        f"- stacker: {bundle_meta['stacker']['family']} "
        f"(calibration {bundle_meta['stacker']['calibration']})",
        f"- features used: {', '.join(bundle_meta['feature_schema']['features'])}",
    ]
    dropped = bundle_meta["feature_schema"].get("dropped") or {}
    if dropped:
        from multibone.stacking.prune import PruneResult

        lines.append("- " + PruneResult(kept=[], dropped=dropped).sentence())
    lines += [
        "",
        "## AUC by set (DeLong 95 % CI)",
        "",
    ]
    metrics = bundle_meta.get("metrics") or {}
    for set_name, models in metrics.items():
        lines.append(f"**{set_name}**")
        lines.append("")
        lines.append("| model | AUC | 95 % CI |")
        lines.append("|---|---|---|")
        for model, m in models.items():
            auc = m.get("auc")
            if auc is None:
                continue
            lines.append(f"| {model} | {auc:.3f} | {m.get('ci_low', float('nan')):.3f}-"
                         f"{m.get('ci_high', float('nan')):.3f} |")
        lines.append("")
    fam = run / "stacking" / "family_comparison.csv"
    if fam.is_file():
        comp = pd.read_csv(fam)
        lines += ["## Stacker families (inner-CV AUC on development data)", "",
                  "| family | CV AUC | 95 % CI |", "|---|---|---|"]
        for r in comp.itertuples():
            lines.append(f"| {r.family} | {r.cv_auc:.3f} | {r.ci_low:.3f}-{r.ci_high:.3f} |")
        lines.append("")
    ops = bundle_meta.get("thresholds") or {}
    if ops:
        lines += ["## Operating points of the stacker (chosen on development data)", "",
                  "| point | threshold | sensitivity | specificity |", "|---|---|---|---|"]
        for name, o in ops.items():
            lines.append(f"| {name} | {o['threshold']:.3f} | {o['sensitivity']:.3f} | {o['specificity']:.3f} |")
        lines.append("")
    from multibone.radiomics.run import summary_lines as radiomics_lines

    lines += radiomics_lines(run)
    from multibone.detection.stage import summary_lines as detection_lines

    lines += detection_lines(run)
    lines += _gain_and_referral_lines(run)
    lines += [
        "## Files",
        "",
        "- `evaluation/report.html`: the full report (figures, CIs, subgroups, warnings)",
        "- `bundle/`: the model bundle for `multibone predict`, `multibone explain` and the dashboard",
        "- `predictions.csv`: every model's probability per patient (dev rows are out-of-fold)",
        "",
        DISCLAIMER,
    ]
    out = run / "summary.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _gain_and_referral_lines(run: Path) -> list[str]:
    """summary.md sections from the evaluation: combining gain (paired DeLong) and
    conformal coverage (issue #14); nothing when the tables are absent."""
    lines: list[str] = []
    tables = run / "evaluation" / "tables"
    gain_csv, cov_csv = tables / "combining_gain.csv", tables / "conformal_coverage.csv"
    if gain_csv.is_file():
        g = pd.read_csv(gain_csv)
        lines += ["## Does combining earn its place? (paired DeLong)", "",
                  "The stacker against the better of image-only and clinical-only on each set "
                  "(same patients; dev rows out-of-fold).", "",
                  "| set | stacker AUC | better single-source model | its AUC | difference (95 % CI) "
                  "| p | verdict |", "|---|---|---|---|---|---|---|"]
        for r in g.itertuples():
            lines.append(f"| {r.set} | {r.stacker_auc:.3f} | {r.rival} | {r.rival_auc:.3f} | "
                         f"{r.diff:+.3f} ({r.diff_ci_low:+.3f} to {r.diff_ci_high:+.3f}) | "
                         f"{r.p:.3f} | {r.verdict} |")
        lines.append("")
    if cov_csv.is_file():
        c = pd.read_csv(cov_csv)
        if not c.empty:
            nominal = float(c["nominal"].iloc[0])
            lines += [f"## Refer when unsure (conformal sets, nominal coverage {nominal:.0%})", "",
                      "| set | n | coverage (95 % CI) | coverage per class (neg / pos) | referred |",
                      "|---|---|---|---|---|"]
            for r in c.itertuples():
                lines.append(f"| {r.set} | {r.n} | {r.coverage:.3f} ({r.coverage_ci_low:.3f}-"
                             f"{r.coverage_ci_high:.3f}) | {r.coverage_neg:.2f} / "
                             f"{r.coverage_pos:.2f} | {r.referred:.0%} |")
            lines.append("")
    return lines


# --------------------------------------------------------------------------- whole runs


def _start_run(run: Path, splits: pd.DataFrame, config: RunConfig) -> None:
    """RUN/splits.csv and RUN/config.yaml (the resolved config), written first."""
    run.mkdir(parents=True, exist_ok=True)
    splits.to_csv(run / "splits.csv", index=False)
    save_run_config(config, run / "config.yaml")


def load_run_cohort(
    manifest: str | Path,
    config: RunConfig,
    *,
    check_images: bool = True,
    progress: bool = True,
    keep_normals: bool = False,
):
    """Stage 1 for every entry point: the manifest validated for what ``config`` needs.

    A config without backbones is a clinical-only run: ``image_path`` may then be
    absent or empty and no image is opened. Normal controls (``diagnosis`` normal) are
    left out (the tumour-vs-infection cohort) unless ``keep_normals`` (the detector
    stage needs them); a cohort without normals is returned as loaded.
    """
    from multibone.cohort import load_cohort

    needs_images = bool(config.imaging.backbones) or (
        keep_normals and getattr(config, "detection", None) is not None
    )
    cohort = load_cohort(
        manifest,
        positive_class=config.positive_class,
        require_images=needs_images,
        check_images=check_images and needs_images,
        progress=progress,
    )
    if keep_normals or not cohort.n_normals:
        return cohort
    log.info("%d normal control(s) left out of the tumour-vs-infection models", cohort.n_normals)
    return cohort.without_normals()


def train_imaging(
    manifest: str | Path,
    out_dir: str | Path,
    config: RunConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict | None:
    """Stages 1-3 (``multibone train-images``): cross-fitted backbones into ``out_dir``.

    Returns the imaging summary of :func:`multibone.imaging.train_images` (``None``
    on a non-zero torchrun rank).
    """
    from multibone.imaging import train_images
    from multibone.imaging.arms import check_all_weights

    check_all_weights(config.imaging)
    cohort = load_run_cohort(manifest, config, progress=progress)
    splits = make_splits(cohort, config)
    summary = train_images(
        cohort, splits, config.imaging, out_dir, resume=resume, force=force, progress=progress
    )
    _train_arms(cohort, splits, config, Path(out_dir), resume=resume, force=force,
                progress=progress)
    return summary


def _train_arms(cohort, splits, config: RunConfig, imaging_dir: Path, *, resume: bool = False,
                force: bool = False, progress: bool = True) -> None:
    """Pretraining arms of ``imaging.arms`` and their comparison (imaging_dir/arm_*.csv)."""
    if not config.imaging.arms:
        return
    from multibone.evaluation.arms import write_arm_comparison
    from multibone.imaging.arms import arm_weights, train_arms

    folders = train_arms(cohort, splits, config.imaging, imaging_dir, resume=resume, force=force,
                         progress=progress)
    write_arm_comparison(folders, imaging_dir, arm_weights(config.imaging))


@locks_folder("run_dir")
def stack_run(
    run_dir: str | Path,
    manifest: str | Path,
    config: RunConfig,
    *,
    force: bool = False,
    progress: bool = True,
    n_boot: int = 1000,
) -> Path:
    """Stages 4-7 on RUN (``multibone stack --run``) after ``train-images --out RUN/imaging``.

    Without ``RUN/imaging/patient_scores.csv`` the stacker is clinical-only. The
    splits are :func:`make_splits`'s; imaging scores cross-fitted on others are refused.
    """
    run = Path(run_dir)
    cohort = load_run_cohort(manifest, config, progress=False)
    splits = make_splits(cohort, config)
    scores_path = run / "imaging" / "patient_scores.csv"
    if scores_path.is_file():  # refuse before anything is written
        check_scores_splits(read_scores(scores_path), splits, str(scores_path))
    _start_run(run, splits, config)
    return finish_run(run, cohort, splits, config, force=force, progress=progress, n_boot=n_boot)


def stack_step(
    manifest: str | Path,
    config: RunConfig,
    out_dir: str | Path,
    *,
    scores: str | Path | None = None,
    family: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Stage 4 only (``multibone stack --out``): compare families, fit the stacker.

    ``scores``: ``patient_scores.csv`` of ``train-images``; ``None`` stacks on the
    clinical features only, on :func:`make_splits`'s splits and folds. Returns
    :func:`multibone.stacking.run.run_stacking`'s summary.
    """
    from multibone.stacking import build_stacking_table
    from multibone.stacking.run import run_stacking

    cohort = load_run_cohort(manifest, config, check_images=False, progress=False)
    splits = make_splits(cohort, config)
    if scores is not None:
        table = read_scores(scores)
        check_scores_splits(table, splits, str(scores))
        source = str(scores)
    else:
        table = _scores_without_images(cohort, splits)
        source = "manifest (no scores: clinical-only)"
    X, meta = build_stacking_table(
        table, cohort.patients, clinical=config.stacking.clinical, source=source
    )
    return run_stacking(
        X, meta, config.stacking, out_dir, family=family, force=force, progress=progress
    )


@locks_folder("run_dir")
def run_pipeline(
    manifest: str | Path,
    run_dir: str | Path,
    config: RunConfig,
    *,
    force: bool = False,
    progress: bool = True,
    callback: Progress = _noop,
    n_boot: int = 1000,
) -> Path:
    """Cohort -> splits -> cross-fitted backbones -> stacker -> evaluation -> bundle."""
    from multibone.imaging import train_images

    run = Path(run_dir)
    if config.imaging.backbones:
        from multibone.imaging.arms import check_all_weights

        check_all_weights(config.imaging)  # offline hub weights or a wrong file: fail at once
    callback(0.12, "checking the cohort")
    whole = load_run_cohort(manifest, config, progress=progress,
                            keep_normals=config.detection is not None)
    cohort = whole.without_normals()  # normal controls only train and test the detector
    splits = make_splits(cohort, config)
    if config.radiomics.enabled and not cohort.images.empty:
        from multibone.radiomics.features import check_roi_sizes

        check_roi_sizes(cohort.images, config.radiomics.min_roi)  # before any training
    _start_run(run, splits, config)
    if config.detection is not None:
        from multibone.detection.stage import run_detection, with_detector_boxes

        callback(0.13, f"training the lesion detector {config.detection.detector} (cross-fitted)")
        run_detection(run, whole, splits, config.detection, config.splits, force=force,
                      progress=progress)
        if config.detection.classifier_boxes == "detector":
            cohort, share = with_detector_boxes(
                cohort, run / "detection" / "boxes.csv", config.detection.box_thresh)
            log.info("classifiers trained on detector boxes (%.0f %% of images got one)",
                     100 * share)
    if config.imaging.backbones:
        callback(0.15, f"training backbones {', '.join(config.imaging.backbones)} (cross-fitted)")
        t0 = time.perf_counter()
        train_images(cohort, splits, config.imaging, run / "imaging", force=force, progress=progress)
        log.info("imaging stage: %.0f s", time.perf_counter() - t0)
        _train_arms(cohort, splits, config, run / "imaging", force=force, progress=progress)
    return finish_run(run, cohort, splits, config, force=force, progress=progress,
                      callback=callback, n_boot=n_boot)


@locks_folder("out_dir")
def build_demo(
    out_dir: str | Path = DEFAULT_DEMO_RUN,
    progress_callback: Progress | None = None,
    *,
    patients: int = 200,
    seed: int = 0,
    difficulty: float = 0.5,
    config: RunConfig | None = None,
    force: bool = False,
    progress: bool = True,
    normals: float = DEMO_NORMALS,
) -> Path:
    """The whole pipeline on a fresh synthetic cohort; returns the run folder.

    The bundle is at ``RUN/bundle``. Refuses an existing ``out_dir`` unless ``force``.
    When the config has a ``detection:`` section, normal controls are added as extra
    patients (``normals``: their share of the whole cohort), so the ``patients``
    tumour/infection patients and their images are those of a cohort without normals
    and the classifiers' numbers do not change.
    """
    from multibone.synthetic import make_synthetic_cohort

    callback = progress_callback or _noop
    run = Path(out_dir)
    old = [p for p in run.iterdir() if not p.name.startswith(LOCK_NAME)]  # the lock is ours
    if old:
        if not force:
            raise InputError(f"{run} already exists; pass --force to replace it, or choose another --out")
        import shutil

        for p in old:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    config = config or _demo_config()
    t0 = time.perf_counter()
    callback(0.0, f"making a synthetic cohort of {patients} patients")
    n_normal = round(patients * normals / (1.0 - normals)) if config.detection is not None else 0
    manifest = make_synthetic_cohort(
        run / "cohort", n_patients=patients + n_normal, seed=seed, difficulty=difficulty,
        progress=progress, workers=2, normals=n_normal / (patients + n_normal),
    )
    out = run_pipeline(manifest, run, config, progress=progress, callback=callback, force=force)
    log.info("demo finished in %.0f s: %s", time.perf_counter() - t0, out)
    return out
