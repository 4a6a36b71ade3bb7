"""What a bundle does to a case's numbers after the models: one place for predict.

A bundle may hold three plain-JSON parts beside its fitted models (issue #14):

* ``score_calibration.json`` - Platt maps of each backbone's patient logit
  (:mod:`multibone.stacking.score_calibration`): the per-backbone (and
  per-image) probabilities a person reads are calibrated; the stacker itself
  still takes the raw score it was trained on;
* ``conformal.json`` - the "refer when unsure" conformal sets
  (:mod:`multibone.stacking.conformal`), applied to the stacker's own
  probability (the scale they were calibrated on);
* ``recalibration.json`` - a site's logistic recalibration of the stacker's
  probability, ``expit(a + b logit(p))`` with ``b > 0`` (``multibone
  recalibrate``): the ranking of cases, hence every decision at the
  operating points (whose thresholds ``recalibrate`` maps the same way), is
  unchanged; only the stated probability moves.

A bundle without them (older, or clinical-only) reads as identity maps and no
referral.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from multibone.errors import BundleError, InputError
from multibone.stacking.conformal import ConformalReferral
from multibone.stacking.score_calibration import ScoreCalibrator, to_logit

SCORE_CALIBRATION = "score_calibration.json"
CONFORMAL = "conformal.json"
RECALIBRATION = "recalibration.json"


def recalibrate_probability(p: Any, a: float, b: float) -> np.ndarray:
    """``expit(a + b * logit(p))`` (logit clipped as in score calibration)."""
    return expit(a + b * to_logit(np.asarray(p, dtype="float64")))


@dataclass
class Postprocess:
    score_calibration: ScoreCalibrator | None = None
    conformal: ConformalReferral | None = None
    recalibration: dict[str, Any] | None = None

    def backbone_probabilities(self, raw: dict[str, float]) -> dict[str, float]:
        """Calibrated per-backbone probabilities from raw patient probabilities."""
        cal = self.score_calibration
        if cal is None:
            return dict(raw)
        return {
            b: float(cal.calibrate_logit(b, to_logit(v))) if b in cal.params_ else float(v)
            for b, v in raw.items()
        }

    def image_probabilities(self, raw: dict[str, list[float]]) -> dict[str, list[float]]:
        cal = self.score_calibration
        if cal is None:
            return {b: list(v) for b, v in raw.items()}
        return {
            b: [float(x) for x in cal.calibrate_logit(b, to_logit(v))] if b in cal.params_ else list(v)
            for b, v in raw.items()
        }

    def probability(self, p: Any) -> np.ndarray:
        """The stacker's probability after a site's recalibration (identity without one)."""
        p = np.asarray(p, dtype="float64")
        if not self.recalibration:
            return p
        return recalibrate_probability(p, self.recalibration["a"], self.recalibration["b"])

    def referral(self, p_model: float, positive: str, negative: str) -> dict[str, Any]:
        """Conformal set of one case from the stacker's own probability; {} without one."""
        if self.conformal is None:
            return {}
        return self.conformal.describe(float(p_model), positive, negative)


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not readable JSON ({exc})") from exc


def load_postprocess(bundle_dir: str | Path) -> Postprocess:
    """The post-processing parts of a (verified) bundle folder."""
    root = Path(bundle_dir)
    out = Postprocess()
    try:
        if (d := _read(root / SCORE_CALIBRATION)) is not None:
            out.score_calibration = ScoreCalibrator.from_json(d)
        if (d := _read(root / CONFORMAL)) is not None:
            out.conformal = ConformalReferral.from_json(d)
        if (d := _read(root / RECALIBRATION)) is not None:
            out.recalibration = {"a": float(d["a"]), "b": float(d["b"])}
    except (InputError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{root}: a post-processing part is malformed ({exc})") from exc
    return out


__all__ = ["CONFORMAL", "RECALIBRATION", "SCORE_CALIBRATION", "Postprocess", "load_postprocess",
           "recalibrate_probability"]
