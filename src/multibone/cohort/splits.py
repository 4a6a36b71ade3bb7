"""Patient-level splits: external centres, an optional internal test set, K dev folds.

Every split is made on the **patient** table (one row per patient), so all the
images of a patient always land on the same side. Order of precedence:

1. a ``split`` value given in the manifest (dev / test / external) is kept;
2. patients of ``external_centers`` become ``external``;
3. of the rest, a label-stratified ``test_fraction`` becomes ``test``;
4. everything else is ``dev``, cut into ``n_folds`` label-stratified folds
   (scikit-learn's ``StratifiedKFold``; one row per patient makes it grouped).

Patients are sorted by id before any random draw, so the result depends only on
the set of patients, the labels and the seed, not on the manifest's row order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from multibone.errors import ConfigError, InputError, LeakageError

SPLITS = ("dev", "test", "external")


@dataclass
class SplitConfig:
    """How to split a cohort (run config section ``splits``).

    Attributes:
        n_folds: number of cross-fitting folds of the development set (>= 2).
        external_centers: centre names (manifest ``center``) held out entirely as ``external``;
            numbers are accepted and compared as text (``2`` matches a ``center`` cell "2").
        test_fraction: fraction in [0, 1) of the remaining patients drawn as an internal
            ``test`` set (label-stratified); 0 = none.
        seed: seed of the test draw and of the fold shuffle.
    """

    n_folds: int = 5
    # Numbers allowed (``[2, 3]`` in YAML): kept as text, as the manifest's ``center`` is read.
    external_centers: list[str | int] = field(default_factory=list)
    test_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise ConfigError(f"splits.n_folds: must be an integer >= 2, got {self.n_folds!r}")
        if not 0.0 <= float(self.test_fraction) < 1.0:
            raise ConfigError(
                f"splits.test_fraction: must be in [0, 1), got {self.test_fraction!r}"
            )
        self.external_centers = [str(c) for c in self.external_centers]


def _shown(ids: Iterable[str], limit: int = 10) -> str:
    ids = list(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _text_column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        return pd.Series([""] * len(df), index=df.index, dtype=object)
    return df[name].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v).strip())


def assign_splits(patients_df: pd.DataFrame, config: SplitConfig | None = None) -> pd.DataFrame:
    """Assign every patient to dev (with a fold), test or external.

    ``patients_df``: one row per patient with ``patient_id`` and ``label``
    (float 1/0; NaN allowed only for test/external patients), optional
    ``center`` and ``split`` (e.g. ``Cohort.patients``).

    Returns a DataFrame in the input's patient order with columns ``patient_id``
    (str), ``split`` ("dev"/"test"/"external") and ``fold`` (int 0..K-1 for dev,
    -1 otherwise). Deterministic for a seed.

    Raises :class:`InputError` for an unknown external centre (listing the
    centres present), a given split contradicting ``external_centers``, dev
    patients without a label, or a class too small for ``n_folds`` (a fold
    would hold a single class: use fewer folds).
    """
    cfg = config if config is not None else SplitConfig()
    for col in ("patient_id", "label"):
        if col not in patients_df.columns:
            raise InputError(f"patients table: column {col!r} is missing (use Cohort.patients)")
    ids = patients_df["patient_id"].astype(str).reset_index(drop=True)
    dup = sorted(ids[ids.duplicated()].unique())
    if dup:
        raise InputError(
            f"patients table: patient_id repeated ({_shown(dup)}); give one row per patient"
        )
    labels = pd.to_numeric(patients_df["label"], errors="coerce").reset_index(drop=True)
    centers = _text_column(patients_df, "center").reset_index(drop=True)
    given = _text_column(patients_df, "split").reset_index(drop=True)

    bad_split = sorted(set(given) - {"", *SPLITS})
    if bad_split:
        raise InputError(
            f"patients table: split value(s) {', '.join(map(repr, bad_split))} not one of "
            f"{', '.join(SPLITS)}"
        )

    present = sorted(set(centers) - {""})
    unknown = [c for c in cfg.external_centers if c not in present]
    if unknown:
        raise InputError(
            f"splits.external_centers: centre{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} not in the cohort; centres present: "
            + (", ".join(present) if present else "(none: the manifest has no center values)")
        )

    split = given.copy()
    is_ext_center = centers.isin(cfg.external_centers)
    conflict = is_ext_center & (given != "") & (given != "external")
    if conflict.any():
        raise InputError(
            "splits.external_centers holds the centre of patient(s) "
            f"{_shown(ids[conflict])} whose manifest split says otherwise "
            f"({_shown(sorted(set(given[conflict])))}); fix the manifest's split column or the "
            "config so they agree"
        )
    split[is_ext_center] = "external"

    pool = split == ""
    if cfg.test_fraction > 0 and pool.any():
        pool_ids = ids[pool].sort_values()
        pool_y = labels.loc[pool_ids.index]
        if pool_y.isna().any():
            raise InputError(
                "splits.test_fraction: patients without a diagnosis cannot be drawn stratified: "
                f"{_shown(pool_ids[pool_y.isna()])}"
            )
        from sklearn.model_selection import train_test_split

        try:
            _, test_ids = train_test_split(
                pool_ids.to_numpy(),
                test_size=cfg.test_fraction,
                stratify=pool_y.to_numpy(),
                random_state=cfg.seed,
            )
        except ValueError as exc:
            raise InputError(
                f"splits.test_fraction = {cfg.test_fraction}: cannot draw a stratified test set "
                f"from {len(pool_ids)} patients ({exc}); lower test_fraction or set it to 0"
            ) from exc
        split[ids.isin(set(test_ids))] = "test"
    split[split == ""] = "dev"

    dev = split == "dev"
    if not dev.any():
        raise InputError(
            "splits: no development patients left (all are test or external); hold out fewer "
            "centres or lower test_fraction"
        )
    dev_ids = ids[dev].sort_values()
    dev_y = labels.loc[dev_ids.index]
    if dev_y.isna().any():
        raise InputError(
            "splits: development patients need a diagnosis; missing for "
            f"{_shown(dev_ids[dev_y.isna()])}"
        )
    classes, class_counts = np.unique(dev_y.to_numpy(), return_counts=True)
    if len(classes) < 2:
        raise InputError(
            f"splits: the development set has only one class (label {classes[0]:g}, "
            f"{int(class_counts[0])} patients); both diagnoses are needed"
        )
    smallest = int(class_counts.min())
    if smallest < cfg.n_folds:
        raise InputError(
            f"splits.n_folds = {cfg.n_folds}: the smaller class of the development set has only "
            f"{smallest} patient{'s' if smallest != 1 else ''}, so some fold would hold a single "
            f"class (no AUC there); use fewer folds (n_folds <= {smallest}) or more patients"
        )

    from sklearn.model_selection import StratifiedKFold

    fold = pd.Series(-1, index=ids.index, dtype=int)
    skf = StratifiedKFold(n_splits=cfg.n_folds, shuffle=True, random_state=cfg.seed)
    dev_index = dev_ids.index.to_numpy()
    y = dev_y.to_numpy()
    for k, (_, held) in enumerate(skf.split(np.zeros(len(y)), y)):
        if len(np.unique(y[held])) < 2:  # cannot happen after the check above; kept as a guard
            raise InputError(
                f"splits: fold {k} holds a single class; use fewer folds (n_folds < {cfg.n_folds})"
            )
        fold.loc[dev_index[held]] = k

    return pd.DataFrame({"patient_id": ids, "split": split.astype(str), "fold": fold.astype(int)})


def check_no_leakage(
    train_ids: Iterable[str], eval_ids: Iterable[str], what: str = "training vs evaluation"
) -> None:
    """Raise :class:`LeakageError` if any patient id is on both sides.

    ``what`` names the two sides in the message, e.g. ``"fold 2 training vs fold 2 scoring"``.
    """
    both = sorted({str(i) for i in train_ids} & {str(i) for i in eval_ids})
    if both:
        raise LeakageError(
            f"{what}: {len(both)} patient{'s are' if len(both) > 1 else ' is'} on both sides "
            f"({_shown(both)}); all images of a patient must stay on one side of a split"
        )


def iter_folds(splits_df: pd.DataFrame) -> Iterator[tuple[int, list[str], list[str]]]:
    """``(k, train_ids, held_out_ids)`` for each dev fold of :func:`assign_splits` output.

    Each pair is checked with :func:`check_no_leakage` before it is yielded.
    """
    dev = splits_df[splits_df["split"] == "dev"]
    for k in sorted(int(f) for f in dev["fold"].unique()):
        held = dev.loc[dev["fold"] == k, "patient_id"].astype(str).tolist()
        train = dev.loc[dev["fold"] != k, "patient_id"].astype(str).tolist()
        check_no_leakage(train, held, what=f"fold {k} training vs fold {k} held-out")
        yield k, train, held
