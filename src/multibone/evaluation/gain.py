"""Does combining earn its place? And does "refer when unsure" keep its promise?

:func:`combining_gain`: on every evaluation set, the stacker against the
*better* (higher AUC on that set) of the image-only and clinical-only models,
by the paired DeLong test (:func:`multibone.stats.delong_paired`; same
patients, two scores). This is the claim multibone rests on (seed 004: images
plus clinical data beat either alone), tested where it can fail.

:func:`conformal_coverage`: empirical coverage of the stacker's conformal sets
(columns ``in_set_0``/``in_set_1`` of predictions.csv, written by the stack
step) against the nominal ``1 - error_rate``, overall with a Wilson CI and per
true class, and the share of cases flagged "uncertain: refer".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from multibone.stats import auc_or_nan, delong_paired, wilson

REFERENCE = "stacker"
SINGLE_SOURCE = ("image_only", "clinical_only")


def combining_gain(
    df: pd.DataFrame, sets: Sequence[tuple[str, str, np.ndarray]], *, level: float = 0.95
) -> pd.DataFrame:
    """One row per set: ``set, n, stacker_auc, rival, rival_auc, diff, diff_ci_low,
    diff_ci_high, p, verdict`` (empty when the stacker or both rivals are absent)."""
    rivals = [m for m in SINGLE_SOURCE if f"p_{m}" in df.columns]
    if f"p_{REFERENCE}" not in df.columns or not rivals:
        return pd.DataFrame()
    rows = []
    for key, _label, mask in sets:
        d = df[mask]
        cols = [f"p_{REFERENCE}"] + [f"p_{m}" for m in rivals]
        d = d[d["label"].notna() & d[cols].notna().all(axis=1)]
        y = d["label"].to_numpy().astype(int)
        if len(np.unique(y)) < 2:
            continue
        aucs = {m: auc_or_nan(y, d[f"p_{m}"].to_numpy()) for m in rivals}
        rival = max(rivals, key=lambda m: (aucs[m], m == "clinical_only"))
        r = delong_paired(y, d[f"p_{REFERENCE}"].to_numpy(), d[f"p_{rival}"].to_numpy(), level=level)
        if r.p < 1 - level:
            verdict = "stacker better" if r.diff > 0 else "stacker worse"
        else:
            verdict = "no significant difference"
        rows.append(
            {
                "set": key,
                "n": len(y),
                "stacker_auc": r.auc_a,
                "rival": rival,
                "rival_auc": r.auc_b,
                "diff": r.diff,
                "diff_ci_low": r.ci_low,
                "diff_ci_high": r.ci_high,
                "p": r.p,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def conformal_coverage(
    df: pd.DataFrame, sets: Sequence[tuple[str, str, np.ndarray]], nominal: float
) -> pd.DataFrame:
    """One row per set: ``set, n, nominal, coverage, coverage_ci_low/high`` (Wilson),
    ``coverage_neg, coverage_pos`` (per true class), ``referred`` (share whose set is
    not one class), ``within_ci`` (nominal inside the Wilson CI). Empty without the
    ``in_set_0``/``in_set_1`` columns."""
    if not {"in_set_0", "in_set_1"} <= set(df.columns):
        return pd.DataFrame()
    rows = []
    for key, _label, mask in sets:
        d = df[mask]
        d = d[d["label"].notna() & d["in_set_0"].notna() & d["in_set_1"].notna()]
        if d.empty:
            continue
        y = d["label"].to_numpy().astype(int)
        sets_ = d[["in_set_0", "in_set_1"]].to_numpy().astype(bool)
        covered = sets_[np.arange(len(y)), y]
        w = wilson(int(covered.sum()), len(y))
        rows.append(
            {
                "set": key,
                "n": len(y),
                "nominal": nominal,
                "coverage": w.value,
                "coverage_ci_low": w.ci_low,
                "coverage_ci_high": w.ci_high,
                "coverage_neg": float(covered[y == 0].mean()) if (y == 0).any() else np.nan,
                "coverage_pos": float(covered[y == 1].mean()) if (y == 1).any() else np.nan,
                "referred": float((sets_.sum(axis=1) != 1).mean()),
                "within_ci": bool(w.ci_low <= nominal <= w.ci_high),
            }
        )
    return pd.DataFrame(rows)


__all__ = ["combining_gain", "conformal_coverage"]
