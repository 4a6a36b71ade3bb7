"""Error analysis by subgroup (seed 002): where does each model fail?

For every evaluated set and every model, per level of each grouping variable:

* AUC with its DeLong 95 % CI (:func:`multibone.stats.delong_auc`);
* accuracy, sensitivity and specificity at the model's Youden threshold (fixed on
  the development predictions, never re-chosen) with Wilson 95 % CIs
  (:func:`multibone.evaluation.metrics.binary_metrics`, which calls
  :func:`multibone.stats.wilson`);
* ``p_accuracy_differs``: chi-square test of correct/incorrect across the
  variable's levels (as in seed 003).

Grouping variables, those present in ``predictions.csv``: ``subtype``,
``location`` (limb/appendicular vs axial), ``lesion size tertile``, ``centre``
(when the set has more than one), ``age`` (``<18`` / ``>=18``) and ``sex``.
Lesion size is the patient's mean lesion-box area: in mm^2 when the column
``lesion_area_mm2`` is present and filled (pixel spacing known), else in px^2
from ``lesion_area``; the level names carry the unit. The tertile cut-points
are computed once over all patients of the run (every set), so a level means
the same size range in every set.

Two flags per row, read against the same model's figure on the whole set:

* ``below_overall``: the metrics (``auc``, ``accuracy``, ``sensitivity``,
  ``specificity``) whose 95 % CI in the subgroup lies wholly below the overall
  point estimate;
* ``near_chance``: the subgroup's AUC CI includes 0.5 while the overall AUC's
  CI does not (the model may be guessing there although it works overall).

No correction for multiple comparisons: the flags point at where to look, they
do not prove a failure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from multibone.evaluation.metrics import binary_metrics
from multibone.stats import SingleClassError, auc_score, delong_auc

SIZE_VARIABLE = "lesion size tertile"
METRICS = ("accuracy", "sensitivity", "specificity")
FLAGGED = ("auc", *METRICS)


def size_column(df: pd.DataFrame) -> tuple[str, str] | None:
    """(column, unit) of the lesion size to use: mm^2 when known, else px^2; None if absent."""
    for col, unit in (("lesion_area_mm2", "mm^2"), ("lesion_area", "px^2")):
        if col in df and pd.to_numeric(df[col], errors="coerce").notna().sum() >= 3:
            return col, unit
    return None


def size_cuts(df: pd.DataFrame) -> tuple[str, str, np.ndarray] | None:
    """(column, unit, two tertile cut-points) over all rows of ``df``; None if not computable."""
    sc = size_column(df)
    if sc is None:
        return None
    v = pd.to_numeric(df[sc[0]], errors="coerce").dropna()
    if v.nunique() < 3:
        return None
    return sc[0], sc[1], v.quantile([1 / 3, 2 / 3]).to_numpy()


def _age_group(a: pd.Series) -> pd.Series:
    v = pd.to_numeric(a, errors="coerce")
    return pd.Series(np.where(v.isna(), "unknown", np.where(v < 18, "<18", ">=18")), index=a.index)


def _size_levels(d: pd.DataFrame, cuts: tuple[str, str, np.ndarray]) -> pd.Series:
    col, unit, (q1, q2) = cuts
    la = pd.to_numeric(d[col], errors="coerce")
    lev = np.where(
        la.isna(),
        "unknown",
        np.where(
            la <= q1,
            f"T1 (<= {q1:.0f} {unit})",
            np.where(la <= q2, f"T2 ({q1:.0f}-{q2:.0f} {unit})", f"T3 (> {q2:.0f} {unit})"),
        ),
    )
    return pd.Series(lev, index=d.index)


def subgroup_levels(
    d: pd.DataFrame, cuts: tuple[str, str, np.ndarray] | None = None
) -> dict[str, pd.Series]:
    """Variable name -> level of each row (strings), for the variables present in ``d``.

    ``cuts``: lesion-size tertile cut-points from :func:`size_cuts` (default: computed on ``d``).
    """
    out: dict[str, pd.Series] = {}
    for c in ("subtype", "location"):
        if c in d:
            out[c] = d[c].astype(object).fillna("").astype(str).replace("", "unknown")
    cuts = size_cuts(d) if cuts is None else cuts
    if cuts is not None and cuts[0] in d:
        out[SIZE_VARIABLE] = _size_levels(d, cuts)
    if "center" in d and d["center"].nunique() > 1:
        out["centre"] = d["center"].astype(object).fillna("").astype(str).replace("", "unknown")
    if "age" in d:
        out["age"] = _age_group(d["age"])
    if "sex" in d:
        out["sex"] = d["sex"].astype(object).fillna("").astype(str).replace("", "unknown")
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    try:
        r = delong_auc(y, p)
        return r.auc, r.ci_low, r.ci_high
    except SingleClassError:
        if y.sum() >= 1 and (1 - y).sum() >= 1:  # one case of a class: AUC without CI
            return auc_score(y, p), math.nan, math.nan
        return math.nan, math.nan, math.nan


def _figures(y: np.ndarray, p: np.ndarray, t: float | None) -> dict:
    auc, lo, hi = _auc(y, p)
    row = {"auc": auc, "auc_ci_low": lo, "auc_ci_high": hi}
    if t is not None:
        m = binary_metrics(y, p, t)
        for k in METRICS:
            pr = getattr(m, k)
            row.update({k: pr.value, f"{k}_ci_low": pr.ci_low, f"{k}_ci_high": pr.ci_high})
    return row


def _flags(row: dict, overall: dict) -> tuple[str, bool]:
    below = [
        k
        for k in FLAGGED
        if np.isfinite(row.get(f"{k}_ci_high", math.nan))
        and np.isfinite(overall.get(k, math.nan))
        and row[f"{k}_ci_high"] < overall[k]
    ]
    lo, hi = row.get("auc_ci_low", math.nan), row.get("auc_ci_high", math.nan)
    olo, ohi = overall.get("auc_ci_low", math.nan), overall.get("auc_ci_high", math.nan)
    near = bool(
        np.isfinite(lo) and np.isfinite(hi) and np.isfinite(olo) and np.isfinite(ohi)
        and lo <= 0.5 <= hi and not olo <= 0.5 <= ohi
    )
    return ", ".join(below), near


def subgroup_table(
    d: pd.DataFrame,
    models: list[str],
    thresholds: dict[str, dict[str, float]],
    *,
    cuts: tuple[str, str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Error-analysis table of one set (see the module docstring for the columns).

    ``d``: the set's rows of ``predictions.csv`` (``label`` 0/1, ``p_<model>``);
    ``thresholds``: ``{model: {"youden": t, ...}}`` fixed on dev.
    """
    from scipy.stats import chi2_contingency

    rows = []
    y_all = d["label"].to_numpy().astype(int)
    levels = subgroup_levels(d, cuts)
    for model in models:
        t = thresholds.get(model, {}).get("youden")
        p_all = d[f"p_{model}"].to_numpy().astype(float)
        overall = _figures(y_all, p_all, t)
        correct = ((p_all >= t).astype(int) == y_all) if t is not None else None
        for var, lev in levels.items():
            p_diff = math.nan
            if correct is not None and lev.nunique() > 1:
                ct = pd.crosstab(lev.to_numpy(), correct)
                if ct.shape == (lev.nunique(), 2):
                    p_diff = float(chi2_contingency(ct.to_numpy())[1])
            for level in sorted(lev.unique()):
                m = (lev == level).to_numpy()
                y, p = y_all[m], p_all[m]
                row = {
                    "variable": var,
                    "level": level,
                    "model": model,
                    "n": int(m.sum()),
                    "n_pos": int(y.sum()),
                    "n_neg": int((1 - y).sum()),
                    **_figures(y, p, t),
                }
                row["below_overall"], row["near_chance"] = _flags(row, overall)
                row["overall_auc"] = overall["auc"]
                row["overall_accuracy"] = overall.get("accuracy", math.nan)
                row["p_accuracy_differs"] = p_diff
                rows.append(row)
    return pd.DataFrame(rows)


def _ci_text(row: pd.Series, k: str) -> str:
    v, lo, hi = row.get(k), row.get(f"{k}_ci_low"), row.get(f"{k}_ci_high")
    if v is None or not np.isfinite(v):
        return "–"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.3f}"
    return f"{v:.3f} ({lo:.3f}-{hi:.3f})"


def display_table(sg: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: one 'value (CI)' cell per metric, flags in words."""
    if sg.empty:
        return sg
    out = pd.DataFrame(
        {
            "variable": sg["variable"],
            "level": sg["level"],
            "model": sg["model"],
            "n (pos/neg)": [f"{r.n} ({r.n_pos}/{r.n_neg})" for r in sg.itertuples()],
            **{k: [_ci_text(r, k) for _, r in sg.iterrows()] for k in FLAGGED if k in sg},
            "p_accuracy_differs": sg["p_accuracy_differs"],
            "flag": [_flag_text(r) for _, r in sg.iterrows()],
        }
    )
    return out


def _flag_text(r: pd.Series) -> str:
    parts = []
    if isinstance(r.get("below_overall"), str) and r["below_overall"]:
        parts.append(f"CI below overall: {r['below_overall']}")
    if bool(r.get("near_chance")):
        parts.append("near chance (AUC CI includes 0.5)")
    return "; ".join(parts)


def flagged(sg: pd.DataFrame) -> pd.DataFrame:
    """Rows with a flag (CI wholly below the overall figure, or near chance)."""
    if sg.empty:
        return sg
    b = sg["below_overall"].astype(object).fillna("").astype(str) != ""
    return sg[b | sg["near_chance"].astype(bool)]
