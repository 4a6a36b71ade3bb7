"""Drop stacker features that carry no information on development data.

A real cohort often lacks whole columns (no site, no labs recorded): encoded,
they are features that are missing for every development patient, or that
take one value for everyone. Kept, they still sit in the model, the bundle
asks every user for them, and an explanation may lean on "was missing". So
:func:`prune_features` drops, before anything is fitted:

* **never observed**: missing (NaN) for every development patient;
* **constant**: one value for every development patient and never missing.

A column that is constant where observed but missing for some patients is
kept: whether it was recorded can carry information (and the report's
shortcut check looks at exactly that). Backbone score columns are never
dropped: a constant backbone score is a failed imaging stage, not a missing
column, and is reported there.

:func:`case_fields` names the inputs a case must give for a feature list, so
``predict`` and the dashboard ask only for those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Case input field of each clinical feature (by the feature name's prefix);
#: ``site`` stands for "site or location" (location is derived from the site).
_FIELD_OF_PREFIX: tuple[tuple[str, str], ...] = (
    ("age", "age"),
    ("sex", "sex"),
    ("location", "site"),
    ("site", "site"),
    ("crp", "crp"),
    ("esr", "esr"),
)

#: Every case field, in the order forms show them.
CASE_FIELDS: tuple[str, ...] = ("age", "sex", "site", "crp", "esr")


@dataclass
class PruneResult:
    """Features kept and dropped (with the reason), in table order."""

    kept: list[str]
    dropped: dict[str, str] = field(default_factory=dict)

    def sentence(self) -> str:
        """One line for summary.md and the report ('' when nothing was dropped)."""
        if not self.dropped:
            return ""
        parts = [f"{name} ({why})" for name, why in self.dropped.items()]
        return (
            "Features dropped before fitting (no information on development data): "
            + "; ".join(parts)
            + "."
        )


def prune_features(X: pd.DataFrame, dev: np.ndarray, clinical: Iterable[str]) -> PruneResult:
    """Which ``clinical`` columns of ``X`` to drop, judged on the rows ``dev`` (bool mask).

    Returns a :class:`PruneResult`; other columns (backbone scores) are always kept.
    """
    clinical = set(clinical)
    dev = np.asarray(dev, dtype=bool)
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for col in X.columns:
        if col not in clinical:
            kept.append(col)
            continue
        values = pd.to_numeric(X.loc[dev, col], errors="coerce")
        observed = values.dropna()
        if observed.empty:
            dropped[col] = "missing for every development patient"
        elif observed.nunique() == 1 and len(observed) == len(values):
            dropped[col] = f"the same value ({observed.iloc[0]:g}) for every development patient"
        else:
            kept.append(col)
    return PruneResult(kept=kept, dropped=dropped)


def case_fields(clinical: Sequence[str]) -> list[str]:
    """Case inputs (:data:`CASE_FIELDS`) the clinical features ``clinical`` are made from."""
    needed = set()
    for feat in clinical:
        for prefix, fld in _FIELD_OF_PREFIX:
            if feat.startswith(prefix):
                needed.add(fld)
                break
        else:  # an unknown clinical feature: ask for everything rather than guess
            return list(CASE_FIELDS)
    return [f for f in CASE_FIELDS if f in needed]


__all__ = ["CASE_FIELDS", "PruneResult", "case_fields", "prune_features"]
