"""The ``stack`` step end to end: compare families, fit the stacker and the
baselines, predict, choose operating points, write ``RUN/stacking/``.

Written atomically into ``out_dir`` (a temporary folder renamed into place):

* ``family_comparison.csv`` - :func:`compare_families` (best_params as JSON);
* ``stacker.skops`` - the fitted :class:`Stacker` (tuned on all dev patients);
* ``baselines.skops`` - ``{name: estimator}``: one :class:`ScoreBaseline` per
  backbone (its probability as the score), ``image_only`` (mean of the
  backbone probabilities) and ``clinical_only`` (the same family, tuned and
  calibrated the same way, on the clinical features only); with no backbones
  it is empty (the stacker is then the clinical model, listed once);
* ``predictions.csv`` - ``patient_id, split, fold, label`` and ``p_<model>``
  for every model (``p_stacker``, ``p_clinical_only``, ``p_image_only``,
  ``p_<backbone>``): dev rows are out-of-fold (nested CV for fitted models),
  test/external rows come from the models fitted on all dev patients;
* ``thresholds.json`` - ``{model: {youden, sens90, spec90}}`` chosen on dev;
* ``score_calibration.json`` - per-backbone Platt maps fitted on all dev patients
  (:mod:`multibone.stacking.score_calibration`); ``p_<backbone>`` in
  predictions.csv are these calibrated probabilities (dev rows cross-fitted);
* ``conformal.json`` - the "refer when unsure" conformal sets calibrated on the
  stacker's dev out-of-fold probabilities (:mod:`multibone.stacking.conformal`);
  predictions.csv's ``in_set_0``/``in_set_1`` say which classes a case's set
  holds, ``refer`` is 1 where it is not exactly one class;
* ``operating_points.json`` - the same with dev sensitivity/specificity;
* ``stacking_summary.json`` - config, features, family, timings, and
  ``dropped_features`` (clinical columns never observed or constant on dev,
  dropped before fitting: :mod:`multibone.stacking.prune`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multibone._atomic import atomic_dir
from multibone._config import to_dict
from multibone.errors import InputError
from multibone.io.modelfile import dump_model
from multibone.stacking.config import CLINICAL_FEATURES, StackingConfig
from multibone.stacking.conformal import ConformalReferral
from multibone.stacking.families import get_family
from multibone.stacking.folds import check_binary_labels
from multibone.stacking.model import ScoreBaseline
from multibone.stacking.prune import prune_features
from multibone.stacking.score_calibration import crossfit_calibrate
from multibone.stacking.selection import CI_METHOD, compare_families, fit_stacker, oof_predict
from multibone.stats import DECISION_POINTS, choose_operating_points


def _outer_folds(meta: pd.DataFrame) -> np.ndarray | None:
    """The dev ``fold`` column when it is a usable K-fold assignment, else None."""
    fold = meta["fold"].to_numpy()
    if (fold < 0).any() or len(np.unique(fold)) < 2:
        return None
    for k in np.unique(fold):
        train_y = meta["label"].to_numpy()[fold != k]
        if len(np.unique(train_y)) < 2:
            return None
    return fold


def run_stacking(
    X: pd.DataFrame,
    meta: pd.DataFrame,
    config: StackingConfig,
    out_dir: str | Path,
    *,
    family: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit and compare stackers on the dev rows of X and write ``out_dir``.

    Parameters
    ----------
    X: DataFrame indexed by patient id: backbone probability columns, then
       clinical features (:func:`build_stacking_table`).
    meta: same index; ``split`` (dev/test/external), ``fold`` (dev outer fold,
       -1 elsewhere), ``label`` (1.0/0.0/NaN).
    config: the ``stacking`` section. family: overrides ``config.family``.
    force: replace an existing ``out_dir``.

    Returns
    -------
    The summary dict also written to ``stacking_summary.json``.
    """
    family = config.family if family is None else family
    get_family(family)
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise InputError(f"{out_dir} already exists; pass --force to overwrite it")
    clinical = [c for c in X.columns if c in CLINICAL_FEATURES]
    backbones = [c for c in X.columns if c not in CLINICAL_FEATURES]
    dev = (meta["split"] == "dev").to_numpy() & meta["label"].notna().to_numpy()
    if not dev.any():
        raise InputError(
            "no development patients with a diagnosis (split 'dev'); the stacker is trained "
            "on dev patients only"
        )
    pruned = prune_features(X, dev, [c for c in X.columns if c in CLINICAL_FEATURES])
    if pruned.dropped:
        X = X[pruned.kept]
        clinical = [c for c in clinical if c in pruned.kept]
        if not len(X.columns):
            raise InputError(
                "no usable feature left: " + pruned.sentence().split(": ", 1)[1]
                + " Record at least one clinical column, or train backbones"
            )
    Xd = X[dev]
    yd = check_binary_labels(meta["label"].to_numpy()[dev], "development labels")
    gd = np.asarray(X.index[dev]).astype(str)
    folds = _outer_folds(meta[dev])
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    comparison = compare_families(Xd, yd, gd, config, progress=progress)
    timings["compare_families"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # compare_families tuned this family on the same folds with the same seed:
    # reuse its choice rather than tuning twice.
    compared = comparison.set_index("family")
    params = compared.loc[family, "best_params"] if family in compared.index else None
    stacker = fit_stacker(Xd, yd, gd, config, family, params=params)
    if params is not None:
        stacker.tuning_ = {
            "best_params": params,
            "cv_auc": float(compared.loc[family, "cv_auc"]),
            "mean_fold_auc": float(compared.loc[family, "mean_fold_auc"]),
        }
    timings["fit_stacker"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = None if config.nested else dict(stacker.tuning_["best_params"])
    p_dev = oof_predict(Xd, yd, gd, config, family, folds=folds, params=params)
    timings["oof_stacker"] = time.perf_counter() - t0

    models: dict[str, Any] = {}
    preds = pd.DataFrame(index=X.index)
    if backbones:
        for b in backbones:
            models[b] = ScoreBaseline([b]).fit(Xd)
        models["image_only"] = ScoreBaseline(backbones).fit(Xd)
    if clinical and backbones:
        t0 = time.perf_counter()
        clin = fit_stacker(Xd[clinical], yd, gd, config, family)
        cparams = None if config.nested else dict(clin.tuning_["best_params"])
        p_clin_dev = oof_predict(Xd[clinical], yd, gd, config, family, folds=folds, params=cparams)
        timings["clinical_only"] = time.perf_counter() - t0
        models["clinical_only"] = clin
    # zero backbones: the stacker itself is the clinical model; no separate
    # clinical_only baseline (it would be the same model, compared with itself)

    preds["p_stacker"] = stacker.predict_proba(X)[:, 1]
    preds.loc[dev, "p_stacker"] = p_dev
    if "clinical_only" in models:
        preds["p_clinical_only"] = models["clinical_only"].predict_proba(X[clinical])[:, 1]
        preds.loc[dev, "p_clinical_only"] = p_clin_dev
    score_cal = None
    if backbones:
        preds["p_image_only"] = models["image_only"].predict_proba(X)[:, 1]
        # Per-backbone probabilities a person reads: Platt-calibrated, cross-fitted
        # (dev rows mapped by folds that never saw them). The stacker and image_only
        # keep the raw out-of-fold scores: calibrating its inputs cost the stacker
        # AUC on the demo (benchmarks/RESULTS.md, issue #14).
        t0 = time.perf_counter()
        Xcal, score_cal = crossfit_calibrate(X, meta, backbones, seed=config.seed)
        for b in backbones:
            preds[f"p_{b}"] = Xcal[b].to_numpy()
        timings["score_calibration"] = time.perf_counter() - t0

    conformal, conformal_note = None, ""
    try:
        conformal = ConformalReferral(config.conformal_error_rate).fit(yd, p_dev)
        in_set = conformal.predict_sets(preds["p_stacker"].to_numpy())
        preds["in_set_0"] = in_set[:, 0].astype(int)  # negative class in the conformal set
        preds["in_set_1"] = in_set[:, 1].astype(int)  # positive class in the conformal set
        preds["refer"] = (in_set.sum(axis=1) != 1).astype(int)
    except InputError as exc:
        conformal_note = f"no conformal referral: {exc}"

    points: dict[str, Any] = {}
    for col in [c for c in preds.columns if c.startswith("p_")]:
        p = preds.loc[dev, col].to_numpy()
        ok = np.isfinite(p)
        if ok.sum() and len(np.unique(yd[ok])) == 2:
            ops = choose_operating_points(yd[ok], p[ok], DECISION_POINTS)
            points[col.removeprefix("p_")] = {k: op.rates() for k, op in ops.items()}
    thresholds = {m: {k: v["threshold"] for k, v in ops.items()} for m, ops in points.items()}

    table = pd.concat(
        [
            meta[["split", "fold", "label"]].reset_index(names="patient_id"),
            preds.reset_index(drop=True),
        ],
        axis=1,
    )
    summary = {
        "family": family,
        "calibration": config.calibration,
        "config": to_dict(config),
        "features": list(X.columns),
        "backbones": backbones,
        "clinical": clinical,
        "dropped_features": pruned.dropped,
        "n_dev": int(dev.sum()),
        "n_dev_positive": int(yd.sum()),
        "outer_folds": "fold column of the scores table" if folds is not None else "made here",
        "dev_predictions": (
            "nested CV (re-tuned inside each outer fold)"
            if config.nested
            else "outer CV with hyper-parameters tuned on all dev patients (slightly optimistic)"
        ),
        "cv_auc": "pooled out-of-fold AUC of the tuned configuration over the inner folds",
        "ci_method": CI_METHOD,
        "baselines": {
            "backbone": "its patient-level out-of-fold probability used directly as the score",
            "image_only": "mean of the backbone probabilities",
            "clinical_only": f"{family} on the clinical features only, tuned and calibrated alike",
        } if backbones else {"stacker": "clinical features only (no backbones): the "
                             "stacker is the clinical model, listed once"},
        "score_calibration": score_cal.to_json()["backbones"] if score_cal else {},
        "conformal": (
            {"error_rate": conformal.error_rate, "n_calibration": conformal.to_json()["n_calibration"]}
            if conformal else {"note": conformal_note}
        ),
        "stacker_params": stacker.tuning_["best_params"],
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "operating_points": points,
    }
    comp = comparison.copy()
    comp["best_params"] = [json.dumps(p, sort_keys=True) for p in comp["best_params"]]
    with atomic_dir(out_dir, force=force) as tmp:
        comp.to_csv(tmp / "family_comparison.csv", index=False)
        dump_model(stacker, tmp / "stacker.skops")
        dump_model(models, tmp / "baselines.skops")
        table.to_csv(tmp / "predictions.csv", index=False)
        if score_cal is not None:
            (tmp / "score_calibration.json").write_text(
                json.dumps(score_cal.to_json(), indent=2), encoding="utf-8"
            )
        if conformal is not None:
            (tmp / "conformal.json").write_text(
                json.dumps(conformal.to_json(), indent=2), encoding="utf-8"
            )
        (tmp / "thresholds.json").write_text(json.dumps(thresholds, indent=2), encoding="utf-8")
        (tmp / "operating_points.json").write_text(json.dumps(points, indent=2), encoding="utf-8")
        (tmp / "stacking_summary.json").write_text(
            json.dumps(summary, indent=2, default=str), encoding="utf-8"
        )
    summary["comparison"] = comparison
    return summary


__all__ = ["run_stacking"]
