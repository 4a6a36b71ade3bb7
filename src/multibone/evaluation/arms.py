"""Pretraining arms compared (seed 001): which initial weights give the better backbone?

Input: each arm's ``patient_scores.csv`` (``patient_id, split, fold, label`` and
one probability column per backbone; dev rows out-of-fold), all arms trained by
the same recipe on the same folds (:mod:`multibone.imaging.arms`). Per backbone
and set (``dev`` out-of-fold, ``test``, ``external``, only patients every arm
scored):

* ``arm_comparison.csv``, one row per arm: AUC with DeLong 95 % CI; sensitivity
  and specificity (Wilson CIs) at the operating points fixed on the arm's own
  dev out-of-fold scores (Youden, sensitivity >= 0.90, specificity >= 0.90;
  :func:`multibone.stats.choose_operating_points`) and applied unchanged to the
  other sets; calibration slope and Brier score
  (:func:`multibone.evaluation.calibration.calibration`);
* ``arm_pairs.csv``, one row per pair of arms: the AUC difference with the
  paired DeLong test, and McNemar tests of sensitivity and specificity at each
  named operating point (each arm at its own threshold).

No correction for multiple comparisons.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from multibone.errors import InputError
from multibone.evaluation.agreement import mcnemar_sens_spec
from multibone.evaluation.calibration import calibration
from multibone.evaluation.metrics import binary_metrics
from multibone.stats import SingleClassError, choose_operating_points, delong_auc, delong_paired

POINTS = ("youden", "sens90", "spec90")
_META = ("patient_id", "split", "fold", "label")


def _common(scores: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str]]:
    """One wide table: meta columns + ``<arm>:<backbone>``; patients scored by every arm."""
    if len(scores) < 2:
        raise InputError(f"arm comparison needs at least two arms, got {', '.join(scores) or 'none'}")
    backbones = None
    wide = None
    for arm, df in scores.items():
        bb = [c for c in df.columns if c not in _META]
        backbones = bb if backbones is None else [b for b in backbones if b in bb]
        part = df[list(_META) + bb].rename(columns={b: f"{arm}:{b}" for b in bb})
        wide = part if wide is None else wide.merge(
            part.drop(columns=["split", "fold", "label"]), on="patient_id", how="inner"
        )
    if not backbones:
        raise InputError("arm comparison: the arms share no backbone")
    wide = wide[wide["label"].notna()].reset_index(drop=True)
    wide["label"] = wide["label"].astype(int)
    return wide, backbones


def compare_arms(
    scores: dict[str, pd.DataFrame], weights: dict[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-arm table, pairwise table); see the module docstring."""
    wide, backbones = _common(scores)
    arms = list(scores)
    weights = weights or {}
    dev = (wide["split"] == "dev").to_numpy()
    rows, pairs = [], []
    for b in backbones:
        ops = {}
        for arm in arms:
            p = wide[f"{arm}:{b}"].to_numpy(float)
            if dev.any() and len(np.unique(wide.loc[dev, "label"])) == 2:
                ops[arm] = {k: v.threshold for k, v in
                            choose_operating_points(wide.loc[dev, "label"], p[dev], POINTS).items()}
            else:
                ops[arm] = {}
        for split in [s for s in ("dev", "test", "external") if (wide["split"] == s).any()]:
            m = (wide["split"] == split).to_numpy()
            y = wide.loc[m, "label"].to_numpy()
            for arm in arms:
                p = wide.loc[m, f"{arm}:{b}"].to_numpy(float)
                row = {"backbone": b, "set": split, "arm": arm, "weights": weights.get(arm, ""),
                       "n": int(m.sum()), "n_pos": int(y.sum())}
                try:
                    r = delong_auc(y, p)
                    row.update(auc=r.auc, auc_ci_low=r.ci_low, auc_ci_high=r.ci_high)
                except SingleClassError:
                    row.update(auc=math.nan, auc_ci_low=math.nan, auc_ci_high=math.nan)
                for op, t in ops[arm].items():
                    bm = binary_metrics(y, p, t)
                    for k in ("sensitivity", "specificity"):
                        pr = getattr(bm, k)
                        row[f"{op}_{k}"] = pr.value
                        row[f"{op}_{k}_ci_low"] = pr.ci_low
                        row[f"{op}_{k}_ci_high"] = pr.ci_high
                c = calibration(y, p)
                row.update(cal_slope=c.slope, brier=c.brier)
                rows.append(row)
            for a, c_ in itertools.combinations(arms, 2):
                pa = wide.loc[m, f"{a}:{b}"].to_numpy(float)
                pc = wide.loc[m, f"{c_}:{b}"].to_numpy(float)
                pr_row = {"backbone": b, "set": split, "arm_a": a, "arm_b": c_, "n": int(m.sum())}
                try:
                    d = delong_paired(y, pa, pc)
                    pr_row.update(auc_a=d.auc_a, auc_b=d.auc_b, auc_diff=d.diff, delong_z=d.z,
                                  delong_p=d.p)
                except SingleClassError:
                    pr_row.update(auc_a=math.nan, auc_b=math.nan, auc_diff=math.nan,
                                  delong_z=math.nan, delong_p=math.nan)
                for op in POINTS:
                    ta, tc = ops[a].get(op), ops[c_].get(op)
                    if ta is None or tc is None:
                        continue
                    mc = mcnemar_sens_spec(y, (pa >= ta).astype(int), (pc >= tc).astype(int))
                    pr_row[f"mcnemar_{op}_sensitivity_p"] = mc["sensitivity"].p
                    pr_row[f"mcnemar_{op}_specificity_p"] = mc["specificity"].p
                pairs.append(pr_row)
    return pd.DataFrame(rows), pd.DataFrame(pairs)


def write_arm_comparison(
    folders: dict[str, Path], out_dir: str | Path, weights: dict[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read each arm's ``patient_scores.csv``; write ``arm_comparison.csv`` and ``arm_pairs.csv``."""
    from multibone._atomic import atomic_path

    scores = {}
    for arm, folder in folders.items():
        f = Path(folder) / "patient_scores.csv"
        if not f.is_file():
            raise InputError(f"{f}: arm {arm!r} has no patient scores (train it first)")
        scores[arm] = pd.read_csv(f, dtype={"patient_id": str, "split": str})
    per_arm, pairs = compare_arms(scores, weights)
    out = Path(out_dir)
    for name, frame in (("arm_comparison.csv", per_arm), ("arm_pairs.csv", pairs)):
        with atomic_path(out / name, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False)
    return per_arm, pairs
