"""Input checks shared by the statistics core.

Every statistic validates what it is given once, here, and raises an
:class:`~multibone.errors.InputError` subclass whose message names the
argument at fault and the fix.
"""

from __future__ import annotations

import numpy as np

from multibone.errors import InputError


class SingleClassError(InputError):
    """A statistic needs both classes (e.g. AUC) but the labels hold only one."""


def as_labels(y: object, name: str = "y") -> np.ndarray:
    """Return ``y`` as an int8 array of 0/1, shape (n,).

    Accepts bool, int or float arrays whose values are exactly 0 or 1 (NaN is refused).
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    try:
        num = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must hold 0/1 labels; got values such as {arr[:3]!r}") from exc
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        idx = np.flatnonzero(bad)[:5].tolist()
        raise InputError(
            f"{name} must hold only 0/1 labels; positions {idx} hold {num[idx].tolist()}"
        )
    return num.astype(np.int8)


def as_scores(p: object, n: int | None = None, name: str = "score") -> np.ndarray:
    """Return ``p`` as float64 (n,), refusing NaN/inf and a length mismatch."""
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} values but the labels have {n}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)[:5].tolist()
        raise InputError(f"{name} holds NaN or infinite values at positions {idx}")
    return arr


def as_probabilities(p: object, n: int | None = None, name: str = "probability") -> np.ndarray:
    """Like :func:`as_scores` and also require every value in [0, 1]."""
    arr = as_scores(p, n, name)
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        idx = np.flatnonzero(bad)[:5].tolist()
        raise InputError(
            f"{name} must be probabilities in [0, 1]; positions {idx} hold "
            f"{arr[idx].round(4).tolist()} (logits? apply a sigmoid first)"
        )
    return arr


def require_both_classes(y: np.ndarray, min_per_class: int = 2, what: str = "AUC") -> None:
    """Raise :class:`SingleClassError` unless each class has ``min_per_class`` cases."""
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos < min_per_class or n_neg < min_per_class:
        raise SingleClassError(
            f"{what} is undefined here: it needs at least {min_per_class} cases of each class, "
            f"got {n_pos} positive and {n_neg} negative"
        )
