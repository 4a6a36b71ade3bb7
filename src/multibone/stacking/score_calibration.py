"""Calibrated backbone scores: Platt scaling of each backbone's patient logit.

Tiny backbones trained from scratch give patient scores of 0.000 or 1.000 for
many patients: the stacker then sees almost binary image evidence, and a
clinician reads "e3: 1.000" as a certainty it is not. :class:`ScoreCalibrator`
maps each backbone's patient-level logit ``z`` to ``expit(a + b z)`` (Platt
scaling), fitted on development out-of-fold scores, so the per-backbone
probabilities in ``predictions.csv``, ``predict`` and the dashboard are
probabilities.

Cross-fitting (:meth:`ScoreCalibrator.crossfit_transform`): a development
patient's calibrated score comes from the map fitted on the *other* outer
folds' patients, so no patient calibrates its own score (the scores the stacker
is tuned on stay out-of-fold twice over). Test, external and new patients get
the map fitted on every development patient.

Details:

* the fit is a logistic regression of the label on the logit with a mild L2
  penalty (``C``, default 1.0, on the raw logit scale): a backbone whose scores
  separate the development classes would otherwise get an infinite slope,
  saturating its probabilities again;
* inputs are probabilities in [0, 1] (``patient_scores.csv``); logits are
  clipped to ``+-LOGIT_CLIP`` (34.5, about ``1e-15``) since a float64
  probability of 1.0 has an infinite logit; scores beyond it tie (see LOGIT_CLIP);
* outputs are kept within ``[P_FLOOR, 1 - P_FLOOR]`` (``1e-6``);
* a backbone with one class or constant scores in a fitting set gets the
  identity map (``a = 0, b = 1``) there, and the fit records it;
* a fitted slope ``b <= 0`` (the backbone ranks the fitting patients no better
  than chance, or backwards) is never used to turn its evidence around: the
  map is then the fitting patients' prevalence (``b = 0``), with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from multibone.errors import InputError

#: Logits are clipped to +-LOGIT_CLIP before calibration (a probability of 1.0 is inf).
#: The clip is also what keeps saturated backbones readable (a logit of -318 maps to
#: about 0.14, not 0.000). Its cost, measured: scores beyond the clip tie, so the map
#: lowers such a backbone's AUC a little (demo e3_tiny external 0.852 -> 0.839; a clip
#: of 700 keeps the AUC but shows 0.000/1.000 again). The stacker uses raw scores.
LOGIT_CLIP = 34.5
#: Calibrated probabilities are kept within [P_FLOOR, 1 - P_FLOOR].
P_FLOOR = 1e-6


def to_logit(p: Any) -> np.ndarray:
    """``log(p / (1 - p))``, clipped to ``+-LOGIT_CLIP``; NaN stays NaN."""
    q = np.asarray(p, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(q) - np.log1p(-q)
    return np.clip(z, -LOGIT_CLIP, LOGIT_CLIP)


def _fit_platt(z: np.ndarray, y: np.ndarray, C: float) -> tuple[float, float, str]:
    """``(a, b, note)`` of ``P(y=1) = expit(a + b z)`` on the finite rows."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(z) & np.isfinite(y)
    z, y = z[ok], y[ok]
    if len(np.unique(y)) < 2 or len(z) < 4 or np.ptp(z) == 0:
        return 0.0, 1.0, "identity: fewer than 4 scored patients, one class or constant scores"
    model = LogisticRegression(C=C, max_iter=1000)
    model.fit(z.reshape(-1, 1), y.astype(int))
    b = float(model.coef_[0, 0])
    if b <= 0:
        # never turn a backbone's evidence around: one that does not rank the fitting
        # patients gets their prevalence, whatever its score
        rate = float(np.clip(y.mean(), P_FLOOR, 1 - P_FLOOR))
        return float(np.log(rate / (1 - rate))), 0.0, (
            "slope <= 0 on these patients: the backbone does not rank them; its probability "
            "is their prevalence"
        )
    return float(model.intercept_[0]), b, ""


class ScoreCalibrator:
    """Per-backbone Platt maps of patient logits, fitted on development patients.

    Parameters
    ----------
    C: inverse L2 penalty of the Platt fit (on the logit scale).

    Attributes after :meth:`fit`: ``params_`` ``{backbone: {"a", "b", "n", "note"}}``.
    """

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, scores: pd.DataFrame, y: Any, columns: Sequence[str]) -> ScoreCalibrator:
        """Fit one map per column of ``scores`` (probabilities) on labels ``y`` (1/0)."""
        y = np.asarray(y, dtype="float64")
        self.columns_ = list(columns)
        self.params_: dict[str, dict[str, Any]] = {}
        for col in self.columns_:
            if col not in scores.columns:
                raise InputError(f"score calibration: backbone column {col!r} not in the table")
            z = to_logit(scores[col].to_numpy())
            a, b, note = _fit_platt(z, y, self.C)
            n = int((np.isfinite(z) & np.isfinite(y)).sum())
            self.params_[col] = {"a": a, "b": b, "n": n, "note": note}
        return self

    def _check(self) -> None:
        if not hasattr(self, "params_"):
            raise InputError("score calibration: not fitted")

    def calibrate_logit(self, column: str, z: Any) -> np.ndarray:
        """Calibrated probability of logits ``z`` of backbone ``column``."""
        self._check()
        if column not in self.params_:
            raise InputError(f"score calibration: no map for backbone {column!r}")
        par = self.params_[column]
        z = np.clip(np.asarray(z, dtype="float64"), -LOGIT_CLIP, LOGIT_CLIP)
        return np.clip(expit(par["a"] + par["b"] * z), P_FLOOR, 1.0 - P_FLOOR)

    def transform(self, scores: pd.DataFrame) -> pd.DataFrame:
        """``scores`` with every calibrated column mapped (other columns untouched)."""
        self._check()
        out = scores.copy()
        for col in self.columns_:
            out[col] = self.calibrate_logit(col, to_logit(scores[col].to_numpy()))
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (the bundle stores this, never a pickle)."""
        self._check()
        return {
            "method": f"platt on the patient logit, L2 C={self.C:g}",
            "C": self.C,
            "logit_clip": LOGIT_CLIP,
            "p_floor": P_FLOOR,
            "backbones": {c: dict(self.params_[c]) for c in self.columns_},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoreCalibrator:
        """Inverse of :meth:`to_json`."""
        try:
            out = cls(C=float(data["C"]))
            out.columns_ = list(data["backbones"])
            out.params_ = {
                c: {"a": float(v["a"]), "b": float(v["b"]), "n": int(v["n"]), "note": str(v["note"])}
                for c, v in data["backbones"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"score calibration: malformed description ({exc})") from exc
        return out

    def table(self) -> pd.DataFrame:
        """One row per backbone: ``backbone, a, b, n, note``."""
        self._check()
        return pd.DataFrame(
            [{"backbone": c, **self.params_[c]} for c in self.columns_],
            columns=["backbone", "a", "b", "n", "note"],
        )


def crossfit_calibrate(
    X: pd.DataFrame,
    meta: pd.DataFrame,
    columns: Sequence[str],
    *,
    C: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
) -> tuple[pd.DataFrame, ScoreCalibrator]:
    """Calibrate backbone columns of the stacking table, cross-fitted on dev.

    Parameters
    ----------
    X: stacking table (backbone probability columns among others).
    meta: same index; ``split``, ``fold`` (dev outer fold, -1 elsewhere), ``label``.
    columns: backbone columns to calibrate.
    n_folds, seed: folds drawn (stratified, by patient) when ``meta`` has no
        usable dev fold column.

    Returns
    -------
    ``(X_calibrated, calibrator)``: dev rows mapped by the calibrator fitted on
    the other folds' dev patients, every other row by ``calibrator`` (fitted on
    all dev patients), which is what ``predict`` uses.
    """
    columns = list(columns)
    dev = (meta["split"] == "dev").to_numpy() & meta["label"].notna().to_numpy()
    y = meta["label"].to_numpy(dtype="float64")
    full = ScoreCalibrator(C=C).fit(X[dev], y[dev], columns)
    out = full.transform(X)
    if not columns or not dev.any():
        return out, full
    fold = meta["fold"].to_numpy()[dev]
    if (fold < 0).any() or len(np.unique(fold)) < 2:
        from sklearn.model_selection import StratifiedKFold

        k = max(2, min(n_folds, int(np.bincount(y[dev].astype(int)).min())))
        fold = np.full(int(dev.sum()), -1)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, test) in enumerate(splitter.split(np.zeros(len(fold)), y[dev])):
            fold[test] = i
    Xd = X[dev]
    idx = np.flatnonzero(dev)
    for k in np.unique(fold):
        inner = fold != k
        cal = ScoreCalibrator(C=C).fit(Xd[inner], y[dev][inner], columns)
        mapped = cal.transform(Xd[~inner])
        for col in columns:
            out.iloc[idx[~inner], out.columns.get_loc(col)] = mapped[col].to_numpy()
    return out, full


__all__ = ["LOGIT_CLIP", "P_FLOOR", "ScoreCalibrator", "crossfit_calibrate", "to_logit"]
