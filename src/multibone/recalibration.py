"""Site recalibration of a bundle (``multibone recalibrate``; seed 000: institution-specific calibration).

A model moved to another hospital usually still *ranks* patients well but
states the wrong probabilities (other case mix, other scanners, other lab
habits). :func:`recalibrate_bundle` refits the calibration intercept and slope
on a labelled local sample (logistic recalibration, Steyerberg, *Clinical
Prediction Models*, 2nd ed., ch. 20):

    p_site = expit(a + b * logit(p_model))

where ``p_model`` is the bundle's stacker probability. The discrimination
model is unchanged (same files, same hashes); the new bundle adds
``recalibration.json`` (a, b) which ``predict`` applies
(:mod:`multibone.stacking.postprocess`), maps the operating-point thresholds
through the same increasing function (so every yes/no call stays what it was;
only the stated probability moves), and records provenance in ``bundle.json``
under ``site_recalibration``: sample size and classes, date, the local
calibration before and after, the bundle it came from.

Refused (nothing written) when the sample is too small to estimate a slope
(:data:`MIN_CASES` patients, :data:`MIN_PER_CLASS` of each diagnosis), when a
patient has no diagnosis, or when the fitted slope is not positive (that
would reverse the model's ranking: the model does not work there, and
recalibration cannot fix that).

"After" is measured on the sample that was used to fit, so it is 0/1 by
construction; judge the gain on patients not used for fitting.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multibone.errors import InputError

#: Fewest local patients, and of each diagnosis, for a recalibration. The slope's
#: standard error is roughly 1/sqrt(n p (1-p) var(LP)): below ~100 patients it is
#: too wide (often +-0.3 or more) to tell a useful correction from noise.
MIN_CASES = 100
MIN_PER_CLASS = 20


def _fit(y: np.ndarray, lp: np.ndarray) -> tuple[float, float]:
    import statsmodels.api as sm

    fit = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    a, b = (float(v) for v in fit.params)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise InputError("recalibration: the logistic fit did not converge (separated sample?)")
    return a, b


def fit_recalibration(y: Any, p_model: Any, *, min_cases: int = MIN_CASES,
                      min_per_class: int = MIN_PER_CLASS) -> dict[str, Any]:
    """``{"a", "b", "n", "n_pos", "n_neg", "before", "after"}`` on labels ``y`` and
    model probabilities ``p_model``; refuses too small a sample or a slope <= 0."""
    from multibone.evaluation.calibration import calibration
    from multibone.stacking.postprocess import recalibrate_probability
    from multibone.stacking.score_calibration import to_logit

    y = np.asarray(y, dtype="float64")
    p = np.asarray(p_model, dtype="float64")
    n, n_pos = len(y), int((y == 1).sum())
    n_neg = n - n_pos
    if n < min_cases or min(n_pos, n_neg) < min_per_class:
        raise InputError(
            f"recalibration refused: {n} labelled patients ({n_pos} positive, {n_neg} negative); "
            f"need at least {min_cases} with {min_per_class} of each diagnosis, because a "
            "calibration slope from fewer is too imprecise to correct a model with"
        )
    a, b = _fit(y, to_logit(p))
    if b <= 0:
        raise InputError(
            f"recalibration refused: the fitted slope is {b:.3f} (<= 0): on this sample the "
            "model ranks patients no better than chance or backwards; recalibration cannot "
            "repair discrimination, do not use this bundle here"
        )
    after = recalibrate_probability(p, a, b)
    return {
        "a": a, "b": b, "n": n, "n_pos": n_pos, "n_neg": n_neg,
        "before": _cal_dict(calibration(y.astype(int), p)),
        "after": _cal_dict(calibration(y.astype(int), after)),
    }


def _cal_dict(r) -> dict[str, Any]:
    d = r.to_dict()
    return {k: d[k] for k in ("intercept", "slope", "brier", "oe_ratio", "note")}


def recalibrate_bundle(
    bundle_dir: str | Path,
    cases_csv: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    min_cases: int = MIN_CASES,
    today: str | None = None,
) -> dict[str, Any]:
    """Write ``out_dir``: ``bundle_dir`` recalibrated on the labelled ``cases_csv``.

    ``cases_csv`` is manifest-format (as ``predict --cases``) with ``diagnosis`` on
    every row. Returns the provenance written under ``site_recalibration``.
    """
    from multibone.bundle import load_bundle, save_bundle
    from multibone.case import predict_cases_csv
    from multibone.cohort import load_cases
    from multibone.evaluation.calibration import calibration
    from multibone.stacking.postprocess import RECALIBRATION, recalibrate_probability

    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise InputError(f"{out_dir} already exists; pass --force to overwrite it")
    if out_dir.resolve() == Path(bundle_dir).resolve():
        raise InputError(f"{out_dir}: write the recalibrated bundle to a new folder, not over its source")
    bundle = load_bundle(bundle_dir)
    cohort = load_cases(cases_csv, positive_class=bundle.positive_class,
                        require_images=bool(bundle.backbones), check_images=bool(bundle.backbones))
    pats = cohort.patients
    unlabelled = pats.loc[pats["label"].isna(), "patient_id"].astype(str).tolist()
    if unlabelled:
        raise InputError(
            f"{cases_csv}: patient(s) {', '.join(unlabelled[:5])}"
            f"{' and more' if len(unlabelled) > 5 else ''} have no diagnosis; recalibration "
            f"needs the confirmed diagnosis ({bundle.positive_class} or {bundle.negative_class}) "
            "of every local patient"
        )
    with tempfile.TemporaryDirectory() as tmp:
        scored = pd.read_csv(predict_cases_csv(bundle, cases_csv, Path(tmp) / "p.csv"),
                             dtype={"patient_id": str})
    labels = pats.set_index(pats["patient_id"].astype(str))["label"]
    y = scored["patient_id"].map(labels).to_numpy(dtype="float64")
    p_stated = scored["probability"].to_numpy(dtype="float64")
    old = bundle.meta.get("site_recalibration")
    if old:  # undo the earlier site map: refit from the model's own probability
        p_model = recalibrate_probability(p_stated, -old["a"] / old["b"], 1.0 / old["b"])
    else:
        p_model = p_stated
    fit = fit_recalibration(y, p_model, min_cases=min_cases)
    fit["before"] = _cal_dict(calibration(y.astype(int), p_stated))  # as stated today

    meta = {k: v for k, v in bundle.meta.items()
            if k not in ("files", "format_version", "multibone_version")}
    thresholds = {}
    for name, op in (bundle.meta.get("thresholds") or {}).items():
        t = float(op["threshold"])
        t_model = (float(recalibrate_probability(t, -old["a"] / old["b"], 1.0 / old["b"]))
                   if old else t)
        thresholds[name] = {**op, "threshold": float(recalibrate_probability(t_model, fit["a"], fit["b"]))}
    meta["thresholds"] = thresholds
    provenance = {
        "a": fit["a"],
        "b": fit["b"],
        "formula": "p_site = expit(a + b * logit(p_model)); thresholds mapped alike, calls unchanged",
        "date": today or _dt.date.today().isoformat(),
        "sample": {"n": fit["n"], bundle.positive_class: fit["n_pos"],
                   bundle.negative_class: fit["n_neg"], "cases_file": Path(cases_csv).name},
        "calibration_before": fit["before"],
        "calibration_after": fit["after"],
        "after_measured_on": "the fitting sample (0/1 by construction); check on other patients",
        "source_bundle": {"path": Path(bundle_dir).name, "bundle_json_sha256": bundle.hash},
    }
    meta["site_recalibration"] = provenance
    files = {rel: bundle.path / rel for rel in bundle.meta["files"] if rel != RECALIBRATION}
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / RECALIBRATION
        rec.write_text(json.dumps({"a": fit["a"], "b": fit["b"], "date": provenance["date"],
                                   "n": fit["n"]}, indent=2), encoding="utf-8")
        files[RECALIBRATION] = rec
        save_bundle(out_dir, meta, files=files, force=force)
    return provenance


__all__ = ["MIN_CASES", "MIN_PER_CLASS", "fit_recalibration", "recalibrate_bundle"]
