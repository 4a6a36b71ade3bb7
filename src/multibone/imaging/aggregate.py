"""Image scores -> patient scores: the one aggregation rule set and the logit -> probability map.

A leaf module (numpy only): training validation, cross-fitting, the scorer and
case prediction all aggregate through it, so a patient's score means the same
thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multibone.errors import InputError

#: Rules turning a patient's image logits into one patient logit.
AGGREGATIONS: tuple[str, ...] = ("mean_logit", "max", "all_positive")

__all__ = ["AGGREGATIONS", "aggregate", "aggregate_groups", "sigmoid"]


def aggregate(logits: Sequence[float] | np.ndarray, rule: str = "mean_logit") -> float:
    """Image logits of one patient -> the patient's logit.

    ``mean_logit``: mean of the logits (default); ``max``: the most positive view;
    ``all_positive``: positive only when every view is (seed 003), i.e. the minimum.
    Raises InputError for no logits or an unknown rule.
    """
    a = np.asarray(logits, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise InputError("aggregate: a patient has no image scores")
    if rule == "mean_logit":
        return float(a.mean())
    if rule == "max":
        return float(a.max())
    if rule == "all_positive":
        return float(a.min())
    raise InputError(f"aggregation {rule!r} is not one of {', '.join(AGGREGATIONS)}")


def aggregate_groups(logits: np.ndarray, groups: np.ndarray, rule: str) -> np.ndarray:
    """Image logits ``(N,)`` with patient index ``groups`` ``(N,)`` in 0..G-1 -> ``(G,)`` patient logits."""
    logits = np.asarray(logits)
    groups = np.asarray(groups)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    return np.array([aggregate(logits[groups == g], rule) for g in range(n_groups)])


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Logit -> probability in [0, 1] (numerically stable), float64, same shape."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(
        x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))
    )
