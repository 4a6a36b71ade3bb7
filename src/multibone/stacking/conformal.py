""""Refer when unsure": class-conditional (Mondrian) conformal prediction sets.

A conformal classifier turns the stacker's probability into a *set* of
diagnoses that holds the true one with a chosen probability, here at least
``1 - error_rate`` (default 90 %) **within each true class** (class-conditional
or Mondrian conformal prediction, Vovk et al. 2005; Lofstrom et al. 2015): the
guarantee holds for infections and for tumours separately, not only on average.
A case whose set holds both classes (the model cannot rule either out at that
error rate), or neither (the case looks unlike either class), is flagged
**uncertain: refer**.

Calibration uses the stacker's development out-of-fold probabilities, so no
calibration patient was seen by the model that scored it. The nonconformity of
a case for class ``c`` is ``1 - P(c)``; the p-value of ``c`` for a new case is
the share of calibration cases *of class c* at least as nonconforming (crepes'
``ConformalClassifier``, BSD-3, one Mondrian category per class, non-smoothed
p-values so a case always gets the same answer). Class ``c`` is in the set
when its p-value exceeds ``error_rate``.

Coverage is guaranteed only when new cases are exchangeable with the
development cases; on another centre it is an empirical question, which the
evaluation report answers per held-out set (:func:`coverage_table`).

The fitted object is stored as plain JSON (:meth:`ConformalReferral.to_json`:
the calibration nonconformity scores per class), never as a pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multibone.errors import InputError

#: Default error rate: sets hold the true class for at least 90 % of each class.
DEFAULT_ERROR_RATE = 0.10
#: Fewest calibration cases of each class for a usable set at 10 % error (1/0.1 - 1 = 9).
MIN_PER_CLASS = 10


class ConformalReferral:
    """Mondrian (class-conditional) conformal sets over a binary probability.

    Parameters
    ----------
    error_rate: the tolerated miss rate per class, in (0, 0.5].
    """

    def __init__(self, error_rate: float = DEFAULT_ERROR_RATE):
        if not 0 < float(error_rate) <= 0.5:
            raise InputError(f"conformal error rate: need 0 < rate <= 0.5, got {error_rate}")
        self.error_rate = float(error_rate)

    def fit(self, y: Any, p: Any) -> ConformalReferral:
        """Calibrate on labels ``y`` (1/0) and out-of-fold probabilities ``p`` of class 1."""
        y = np.asarray(y, dtype="float64")
        p = np.asarray(p, dtype="float64")
        ok = np.isfinite(y) & np.isfinite(p)
        y, p = y[ok].astype(int), p[ok]
        counts = [int((y == c).sum()) for c in (0, 1)]
        if min(counts) < MIN_PER_CLASS:
            raise InputError(
                f"conformal calibration: {counts[0]} negative and {counts[1]} positive "
                f"development cases; need at least {MIN_PER_CLASS} of each"
            )
        # nonconformity of the true class: 1 - P(true class)
        self.alphas_ = {c: np.sort(np.where(y == 1, 1.0 - p, p)[y == c]) for c in (0, 1)}
        return self

    def _check(self) -> None:
        if not hasattr(self, "alphas_"):
            raise InputError("conformal referral: not fitted")

    def p_values(self, p: Any) -> np.ndarray:
        """(n, 2) conformal p-values of class 0 and class 1 for probabilities ``p``."""
        from crepes import ConformalClassifier

        self._check()
        p = np.atleast_1d(np.asarray(p, dtype="float64"))
        out = np.empty((len(p), 2))
        for c in (0, 1):
            cc = ConformalClassifier().fit(self.alphas_[c])
            alpha = (1.0 - p) if c == 1 else p
            out[:, c] = cc.predict_p(alpha.reshape(-1, 1), smoothing=False)[:, 0]
        return out

    def predict_sets(self, p: Any) -> np.ndarray:
        """(n, 2) booleans: is class 0 / class 1 in each case's set."""
        return self.p_values(p) > self.error_rate

    def refer(self, p: Any) -> np.ndarray:
        """True where the set holds both classes or neither ("uncertain: refer")."""
        sets = self.predict_sets(p)
        return sets.sum(axis=1) != 1

    def to_json(self) -> dict[str, Any]:
        self._check()
        return {
            "method": "class-conditional (Mondrian) conformal, crepes ConformalClassifier, "
            "nonconformity 1 - P(class), non-smoothed p-values",
            "error_rate": self.error_rate,
            "calibration": "stacker development out-of-fold probabilities",
            "n_calibration": {str(c): int(len(self.alphas_[c])) for c in (0, 1)},
            "alphas": {str(c): [float(v) for v in self.alphas_[c]] for c in (0, 1)},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConformalReferral:
        try:
            out = cls(float(data["error_rate"]))
            out.alphas_ = {c: np.asarray(data["alphas"][str(c)], dtype="float64") for c in (0, 1)}
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"conformal referral: malformed description ({exc})") from exc
        return out

    def describe(self, p: float, positive: str, negative: str) -> dict[str, Any]:
        """One case's set in words: ``{"set": [...], "refer": bool, "text": ...}``."""
        sets = self.predict_sets([p])[0]
        members = [name for name, keep in zip((negative, positive), sets, strict=True) if keep]
        refer = len(members) != 1
        conf = f"{100 * (1 - self.error_rate):.0f} %"
        if len(members) == 2:
            text = f"uncertain: refer (at {conf} confidence neither {positive} nor {negative} can be ruled out)"
        elif not members:
            text = f"uncertain: refer (at {conf} confidence the case fits neither class)"
        else:
            text = f"{members[0]} (the only diagnosis left at {conf} confidence)"
        return {"set": members, "refer": refer, "text": text, "error_rate": self.error_rate}


def coverage_table(
    conformal: ConformalReferral, predictions: pd.DataFrame, *, column: str = "p_stacker",
    group: str = "set",
) -> pd.DataFrame:
    """Empirical coverage vs nominal, and the share referred, per held-out set.

    ``predictions`` needs ``label``, ``column`` and ``group``. Returns one row per
    group: ``set, n, nominal, coverage, coverage_ci_low, coverage_ci_high``
    (Wilson), ``coverage_<class 0/1>`` (per true class), ``referred`` (share of
    cases flagged), ``singletons_correct`` (accuracy among single-class sets).
    """
    from multibone.stats import wilson

    rows = []
    for name, g in predictions.groupby(group, sort=False):
        g = g[g["label"].notna() & g[column].notna()]
        if g.empty:
            continue
        y = g["label"].to_numpy().astype(int)
        sets = conformal.predict_sets(g[column].to_numpy())
        covered = sets[np.arange(len(y)), y]
        single = sets.sum(axis=1) == 1
        w = wilson(int(covered.sum()), len(y))
        rows.append(
            {
                "set": name,
                "n": len(y),
                "nominal": 1 - conformal.error_rate,
                "coverage": w.value,
                "coverage_ci_low": w.ci_low,
                "coverage_ci_high": w.ci_high,
                "coverage_0": float(covered[y == 0].mean()) if (y == 0).any() else np.nan,
                "coverage_1": float(covered[y == 1].mean()) if (y == 1).any() else np.nan,
                "referred": float((~single).mean()),
                "singletons_correct": float(covered[single].mean()) if single.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


__all__ = ["DEFAULT_ERROR_RATE", "ConformalReferral", "coverage_table"]
