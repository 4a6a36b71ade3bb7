"""Shortcut check: does one clinical column (or its being blank) give the answer away?

A model can score well by learning how the data were collected rather than
the disease: labs ordered only when infection was suspected, one centre
sending only tumours, a column filled in for one class only. Then every model
reaches an AUC near 1 and the explanation is dominated by that column; on
patients collected another way it fails.

:func:`shortcut_table` measures, on development patients, the AUC of every
clinical feature alone (its value, over the patients where it was recorded)
and of its missingness indicator (1 = blank), both read in the direction that
separates best (``max(AUC, 1 - AUC)``: a column that predicts the *other*
class is as much a shortcut). AUCs come from :func:`multibone.stats.auc_or_nan`.
:func:`shortcut_warnings` turns rows at or above the threshold (default
:data:`DEFAULT_SHORTCUT_AUC`, the run config's ``evaluation.shortcut_auc``)
into plain warnings; :func:`perfect_model_warnings` flags any model whose AUC
is 1.000. The pipeline writes the table to ``RUN/stacking/shortcuts.csv``;
the report puts its warnings first, and ``summary.md`` and the dashboard's
Model tab repeat them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from multibone.stats import auc_or_nan

#: A single feature separating the classes at least this well (AUC) is flagged.
DEFAULT_SHORTCUT_AUC = 0.90
#: File the pipeline writes (in ``RUN/stacking/``) and the report reads.
SHORTCUTS_FILE = "shortcuts.csv"
COLUMNS = ("feature", "indicator", "auc", "n", "n_positive", "threshold", "flagged")

_MEANING = (
    "the model may be learning how the data were collected rather than the disease; "
    "check how this column was recorded for each class before trusting any AUC"
)


def shortcut_table(
    X: pd.DataFrame,
    y: np.ndarray,
    features: Iterable[str],
    *,
    threshold: float = DEFAULT_SHORTCUT_AUC,
) -> pd.DataFrame:
    """AUC of each feature alone and of its missingness, on the rows given (development).

    Parameters
    ----------
    X: one row per patient; ``features`` are its clinical columns (float, NaN = missing).
    y: (n,) 0/1 labels of the same rows.
    threshold: AUC at or above which a row is ``flagged``.

    Returns
    -------
    Columns :data:`COLUMNS`: ``feature``, ``indicator`` (``value`` or ``missing``),
    ``auc`` (best direction; NaN when undefined: a constant column, or a class
    without a recorded value), ``n`` (patients used), ``n_positive``,
    ``threshold`` and ``flagged`` (bool), sorted by AUC, highest first.
    """
    y = np.asarray(y, dtype=float)
    rows = []
    for feat in features:
        values = pd.to_numeric(X[feat], errors="coerce").to_numpy(dtype=float)
        seen = ~np.isnan(values)
        for indicator, score, keep in (
            ("value", values, seen),
            ("missing", (~seen).astype(float), np.ones_like(seen)),
        ):
            yy, ss = y[keep], score[keep]
            auc = auc_or_nan(yy, ss) if len(yy) and len(np.unique(ss)) > 1 else float("nan")
            if not np.isnan(auc):
                auc = max(auc, 1.0 - auc)
            rows.append(
                {
                    "feature": feat,
                    "indicator": indicator,
                    "auc": auc,
                    "n": int(len(yy)),
                    "n_positive": int(np.nansum(yy)),
                    "threshold": float(threshold),
                    "flagged": bool(not np.isnan(auc) and auc >= threshold),
                }
            )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values("auc", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


def shortcut_warnings(table: pd.DataFrame) -> list[str]:
    """One plain warning per flagged row of :func:`shortcut_table` (highest AUC first)."""
    out = []
    for r in table[table["flagged"].astype(bool)].itertuples():
        what = (
            f"whether {r.feature} is blank" if r.indicator == "missing"
            else f"the value of {r.feature}"
        )
        out.append(
            f"Shortcut: {what} alone separates the classes on development data "
            f"(AUC {r.auc:.3f} >= {r.threshold:.2f}, n = {r.n}): {_MEANING}."
        )
    return out


def perfect_model_warnings(aucs: dict[str, dict[str, float]]) -> list[str]:
    """A warning for every model whose AUC is 1.000 on a set (``{set: {model: auc}}``)."""
    out = []
    for set_name, models in aucs.items():
        perfect = sorted(m for m, a in models.items() if a is not None and round(float(a), 3) >= 1.0)
        if perfect:
            out.append(
                f"{set_name}: AUC 1.000 for {', '.join(perfect)}. Perfect separation is almost "
                "never real in medicine: look for a shortcut (a column recorded differently for "
                "each class), leakage between sets, or a set too small to tell."
            )
    return out


def read_shortcuts(run_dir: str | Path) -> pd.DataFrame | None:
    """``RUN/stacking/shortcuts.csv`` (None when the run has none or it is unreadable)."""
    path = Path(run_dir) / "stacking" / SHORTCUTS_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if not set(COLUMNS) <= set(table.columns):
        return None
    return table


__all__ = [
    "DEFAULT_SHORTCUT_AUC",
    "SHORTCUTS_FILE",
    "perfect_model_warnings",
    "read_shortcuts",
    "shortcut_table",
    "shortcut_warnings",
]
