"""The radiomics pipeline step: features, cross-fitted ElasticNet, ``RUN/radiomics``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from multibone._atomic import atomic_dir
from multibone.radiomics.config import RadiomicsConfig
from multibone.radiomics.features import INSTALL_HINT, image_features
from multibone.radiomics.model import crossfit, patient_features

log = logging.getLogger(__name__)


def run_radiomics(
    cohort,
    splits: pd.DataFrame,
    config: RadiomicsConfig,
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = False,
) -> pd.DataFrame | None:
    """Compute the radiomics baseline of a run; None when the cohort has no lesion box.

    Writes ``out_dir`` (atomically): ``image_features.csv`` (manifest row,
    patient, features), ``patient_scores.csv`` (``patient_id, split, fold,
    label, p_radiomics``; dev rows out-of-fold) and ``radiomics_summary.json``
    (chosen hyper-parameters, non-zero coefficients). Returns the scores.
    """
    im = cohort.images
    if im.empty or "roi_x0" not in im or "image_path" not in im:
        log.info("radiomics: the cohort has no boxed images; baseline skipped")
        return None
    usable = im["roi_x0"].notna() & (im["image_path"].astype(object).fillna("").astype(str).str.strip() != "")
    if not usable.any():
        log.info("radiomics: no image has both a file and a lesion box; baseline skipped")
        return None
    feats = image_features(
        im, grey_levels=config.grey_levels, min_roi=config.min_roi, progress=progress
    )
    per = patient_features(feats)
    labels = cohort.patients.set_index(cohort.patients["patient_id"].astype(str))["label"]
    scores, summary = crossfit(per, splits, labels, config)
    summary["feature_library"] = _library_version()
    summary["aggregation"] = "mean of each feature over the patient's boxed images"
    with atomic_dir(out_dir, force=force) as tmp:
        feats.to_csv(tmp / "image_features.csv", index=False)
        scores.to_csv(tmp / "patient_scores.csv", index=False)
        (tmp / "radiomics_summary.json").write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
    return scores


def _library_version() -> str:
    import nyxus

    return f"nyxus {getattr(nyxus, '__version__', '?')}"


def add_radiomics(
    run: Path,
    cohort,
    splits: pd.DataFrame,
    config: RadiomicsConfig,
    preds: pd.DataFrame,
    *,
    force: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """The pipeline's radiomics step: ``RUN/radiomics``, ``p_radiomics`` and its thresholds.

    Adds ``p_radiomics`` to ``preds`` (the run's ``predictions.csv`` frame) and
    the baseline's operating points, chosen on its out-of-fold development
    probabilities by the same rules as the other models, to
    ``RUN/thresholds.json``. Unchanged ``preds`` when the baseline is disabled,
    the cohort has no boxes, or some patient has no boxed image (then the scores
    stay in ``RUN/radiomics`` and a warning says why the report lacks them).
    """
    from multibone.stats import choose_operating_points

    if not config.enabled:
        return preds
    try:
        import nyxus  # noqa: F401
    except ImportError:
        log.warning("radiomics baseline skipped: %s", INSTALL_HINT)
        return preds
    from multibone.errors import InputError

    try:
        scores = run_radiomics(cohort, splits, config, Path(run) / "radiomics", force=force,
                               progress=progress)
    except InputError as exc:
        if "radiomics inner CV" not in str(exc):
            raise
        # too few patients to tune the baseline: the run goes on without it, saying why
        log.warning("radiomics baseline skipped: %s", exc)
        return preds
    if scores is None:
        return preds
    p = preds["patient_id"].astype(str).map(scores.set_index("patient_id")["p_radiomics"])
    if p.isna().any():
        log.warning(
            "radiomics: %d patient(s) have no boxed image; p_radiomics is left out of "
            "predictions.csv (scores in %s)", int(p.isna().sum()), Path(run) / "radiomics"
        )
        return preds
    out = preds.copy()
    out["p_radiomics"] = p.to_numpy()
    tpath = Path(run) / "thresholds.json"
    th = json.loads(tpath.read_text(encoding="utf-8")) if tpath.is_file() else {}
    ops = list((th.get("stacker") or {}).keys()) or ["youden", "sens90", "spec90"]
    ops = [o for o in ops if o in ("youden", "sens90", "spec90", "maxf1")]
    dev = scores[scores["split"] == "dev"]
    chosen = choose_operating_points(dev["label"], dev["p_radiomics"], ops)
    th["radiomics"] = {k: v.threshold for k, v in chosen.items()}
    tpath.write_text(json.dumps(th, indent=2) + "\n", encoding="utf-8")
    return out


def summary_lines(run: Path) -> list[str]:
    """``summary.md`` lines: the radiomics baseline against the stacker on every set.

    Reads ``RUN/evaluation/tables/vs_stacker.csv`` (paired DeLong, written by
    ``evaluate``) and ``RUN/evaluation/tables/summary.csv`` (AUC with DeLong CI).
    Empty when the run has no radiomics baseline.
    """
    tables = Path(run) / "evaluation" / "tables"
    try:
        vs = pd.read_csv(tables / "vs_stacker.csv")
        summ = pd.read_csv(tables / "summary.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []
    vs = vs[vs["model"] == "radiomics"]
    summ = summ[summ["model"] == "radiomics"].set_index("set")
    if vs.empty or summ.empty:
        return []
    lines = [
        "## Radiomics baseline vs the stacker (paired DeLong)",
        "",
        "ElasticNet logistic regression on Nyxus first-order, box-shape and texture features of "
        "the lesion boxes (dev: out-of-fold on the run's folds).",
        "",
        "| set | radiomics AUC (95 % CI) | stacker AUC | difference | DeLong p |",
        "|---|---|---|---|---|",
    ]
    for r in vs.itertuples():
        s = summ.loc[r.set]
        p = "<0.001" if r.delong_p < 0.001 else f"{r.delong_p:.3f}"
        lines.append(
            f"| {r.set} | {s['auc']:.3f} ({s['auc_ci_low']:.3f}-{s['auc_ci_high']:.3f}) | "
            f"{r.auc_reference:.3f} | {r.auc_diff:+.3f} | {p} |"
        )
    lines.append("")
    return lines
