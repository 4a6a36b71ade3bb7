"""Patient-grouped, label-stratified folds, computed once and passed explicitly.

scikit-learn's ``CalibratedClassifierCV`` and search classes ignore ``groups``
unless metadata routing is on; multibone never relies on that: folds are made
here from the patient ids and handed over as explicit ``(train, test)`` splits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

from multibone.errors import InputError, LeakageError

Split = tuple[np.ndarray, np.ndarray]


def _few(ids, n: int = 5) -> str:
    ids = [str(i) for i in ids]
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def encode_binary_labels(y: Any, where: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """(classes (2,), y as int 0/1 (n,) indexing classes) for any two labels.

    ``classes`` are sorted as scikit-learn does (``np.unique``), so the
    positive class is ``classes[1]`` (1 for 0/1 labels)."""
    y = column_or_1d(y, warn=True)
    missing = pd.isna(y)
    if y.size == 0:
        raise InputError(f"{where}: no patients with a label")
    if missing.any():
        raise InputError(
            f"{where}: {int(missing.sum())} missing label(s); the stacker trains only on "
            "patients with a known diagnosis"
        )
    kind = type_of_target(y)
    if kind.startswith("continuous"):
        raise InputError(f"{where}: Unknown label type: {kind}; the stacker needs class labels")
    classes = np.unique(y)
    if classes.size < 2:
        raise InputError(
            f"{where}: only one class present (every label is {classes[0]}); the stacker "
            "needs patients of both diagnoses"
        )
    if classes.size > 2:
        raise InputError(
            f"{where}: Only binary classification is supported. The type of the target is "
            f"multiclass ({classes.size} classes: {', '.join(map(str, classes[:5]))})"
        )
    return classes, np.searchsorted(classes, y).astype(int)


def check_binary_labels(y, where: str = "y") -> np.ndarray:
    """``y`` as int 0/1 array of shape (n,); InputError for NaN, other values or one class."""
    classes, y01 = encode_binary_labels(np.asarray(y, dtype="float64"), where)
    if not set(classes.tolist()) <= {0.0, 1.0}:
        raise InputError(f"{where}: labels must be 0/1, found {classes.tolist()}")
    return y01


def make_group_folds(y, groups, n_splits: int, seed: int, *, what: str = "inner CV") -> list[Split]:
    """Stratified, patient-grouped K-fold splits (StratifiedGroupKFold, shuffled).

    Parameters
    ----------
    y: (n,) 0/1 labels. groups: (n,) patient ids (rows of one patient stay together).
    n_splits: K. seed: shuffling seed (same inputs and seed give the same folds).

    Returns
    -------
    list of K ``(train_idx, test_idx)`` int arrays; each test fold holds both
    classes and no patient is on both sides (checked).
    """
    y = check_binary_labels(y, what)
    groups = np.asarray(groups)
    if groups.shape[0] != y.shape[0]:
        raise InputError(f"{what}: groups has {groups.shape[0]} entries for {y.shape[0]} labels")
    for cls in (0, 1):
        n_groups = len(np.unique(groups[y == cls]))
        if n_groups < n_splits:
            raise InputError(
                f"{what}: only {n_groups} patient(s) with label {cls}, fewer than the "
                f"{n_splits} folds; lower stacking.inner_folds (or add patients)"
            )
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = [
        (np.asarray(tr, dtype=int), np.asarray(te, dtype=int))
        for tr, te in sgkf.split(np.zeros((y.shape[0], 1)), y, groups)
    ]
    for k, (tr, te) in enumerate(splits):
        if len(np.unique(y[te])) < 2 or len(np.unique(y[tr])) < 2:
            raise InputError(f"{what}: fold {k} holds a single class; lower stacking.inner_folds")
        shared = np.intersect1d(groups[tr], groups[te])
        if shared.size:  # cannot happen with StratifiedGroupKFold; a cheap guard
            raise LeakageError(f"{what}: patient(s) {_few(shared)} on both sides of fold {k}")
    return splits


def splits_from_fold_ids(fold, groups, y, *, what: str = "outer CV") -> list[Split]:
    """Explicit splits from a per-row fold id (e.g. the ``fold`` column of
    ``patient_scores.csv``); rows with fold < 0 are never used for testing."""
    fold = np.asarray(fold, dtype=int)
    groups = np.asarray(groups)
    y = np.asarray(y)
    ids = sorted(k for k in np.unique(fold) if k >= 0)
    if len(ids) < 2:
        raise InputError(f"{what}: need at least 2 folds, found {len(ids)}")
    splits = []
    for k in ids:
        te = np.flatnonzero(fold == k)
        tr = np.flatnonzero((fold != k) & (fold >= 0))
        shared = np.intersect1d(groups[tr], groups[te])
        if shared.size:
            raise LeakageError(
                f"{what}: patient(s) {_few(shared)} are in fold {k} and another fold"
            )
        if len(np.unique(y[tr])) < 2:
            raise InputError(f"{what}: training part of fold {k} holds a single class")
        splits.append((tr, te))
    return splits
