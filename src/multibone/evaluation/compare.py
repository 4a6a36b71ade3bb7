"""Head-to-head comparison of two prediction files on the same patients (seed 000 style).

Inputs: two CSV files with columns ``patient_id``, ``label`` (0/1) and
``score`` (a probability in [0, 1]; with ``logits=True`` any real number,
turned into a probability by the logistic sigmoid).

What is reported (Hasei et al. 2025, seed 000, Methods 2.3):

* AUC of each with DeLong CI and stratified percentile bootstrap CI; the
  difference with the paired DeLong test and a paired bootstrap CI;
* operating points (Youden, sensitivity >= 0.90, specificity >= 0.90, max-F1)
  **chosen per model on the same data being compared**, as seed 000 did (there
  is no separate development set here; these are therefore optimistic for both
  models alike). At each: sensitivity, specificity, PPV, NPV, F1 with Wilson
  CIs, McNemar tests (continuity corrected) of sensitivity (on positives) and
  specificity (on negatives), and paired bootstrap CIs of the differences in
  sensitivity, specificity, PPV and NPV at the fixed thresholds (threshold
  choice is not repeated inside the bootstrap);
* calibration intercept and slope, Brier score; AP and max-F1; net benefit
  curves against treat-all and treat-none.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from multibone import __version__
from multibone._atomic import atomic_dir
from multibone._html import render
from multibone.disclaimer import DISCLAIMER
from multibone.errors import InputError
from multibone.evaluation import plots
from multibone.evaluation._checks import SingleClassError, short_list
from multibone.evaluation._output import jsonable, prepare_out_dir, table, write_json
from multibone.evaluation.agreement import mcnemar_sens_spec
from multibone.evaluation.calibration import calibration, calibration_table
from multibone.evaluation.curves import net_benefit, pr_curve
from multibone.evaluation.metrics import binary_metrics
from multibone.stats import (
    LABELS,
    OPERATING_POINTS,
    Bootstrap,
    choose_operating_points,
    delong_auc,
    delong_paired,
    percentile_ci,
    roc_points,
)

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("patient_id", "label", "score")


def read_score_file(path: str | Path, *, logits: bool = False) -> pd.DataFrame:
    """Read a ``patient_id, label, score`` CSV; return it with ``score`` as a probability.

    Raises InputError naming missing columns, rows with NaN scores, scores
    outside [0, 1] (unless ``logits``), labels other than 0/1, duplicate patients.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found")
    try:
        df = pd.read_csv(path, dtype={"patient_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as CSV ({exc})") from exc
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(SCORE_COLUMNS)}, found {', '.join(map(str, df.columns))}"
        )
    if df.empty:
        raise InputError(f"{path}: no rows")
    rows = lambda m: [int(i) + 2 for i in np.flatnonzero(np.asarray(m))]  # noqa: E731
    problems = []
    s = pd.to_numeric(df["score"], errors="coerce")
    nan = s.isna() | ~np.isfinite(s.fillna(0))
    if nan.any():
        problems.append(
            f"column score has NaN, infinite or non-numeric values: rows {short_list(rows(nan))}"
        )
    if not logits:
        out = (s < 0) | (s > 1)
        if out.any():
            problems.append(
                f"column score must hold probabilities in [0, 1]: rows "
                f"{short_list(rows(out))} (e.g. {float(s[out].iloc[0]):.4g}); "
                "if these are logits, pass --logits to apply a sigmoid"
            )
    lab = pd.to_numeric(df["label"], errors="coerce")
    bad = ~lab.isin([0, 1])
    if bad.any():
        problems.append(f"column label must be 0 or 1: rows {short_list(rows(bad))}")
    pid = df["patient_id"].astype(str)
    dup = pid.duplicated(keep=False)
    if dup.any():
        problems.append(f"patients appear more than once: {short_list(sorted(set(pid[dup])))}")
    if problems:
        raise InputError(f"{path}:\n  " + "\n  ".join(problems))
    from scipy.special import expit

    score = expit(s.to_numpy(float)) if logits else s.to_numpy(float)
    return pd.DataFrame(
        {"patient_id": pid.to_numpy(), "label": lab.astype(int).to_numpy(), "score": score}
    )


def align(
    a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str], files: tuple[str, str]
) -> pd.DataFrame:
    """Join two score frames on patient_id; refuse mismatched patients or labels."""
    ia, ib = set(a["patient_id"]), set(b["patient_id"])
    if ia != ib:
        only_a, only_b = sorted(ia - ib), sorted(ib - ia)
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {files[0]} ({short_list(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in {files[1]} ({short_list(only_b)})")
        raise InputError("the two files must hold the same patients: " + "; ".join(parts))
    m = a.merge(b, on="patient_id", suffixes=("_a", "_b"))
    bad = m["label_a"] != m["label_b"]
    if bad.any():
        raise InputError(
            f"labels differ between {files[0]} and {files[1]} for patients "
            f"{short_list(m.loc[bad, 'patient_id'].tolist())}"
        )
    n_pos = int(m["label_a"].sum())
    n_neg = len(m) - n_pos
    if n_pos < 2 or n_neg < 2:
        raise SingleClassError(
            f"AUC is undefined for these files: {n_pos} positive and {n_neg} negative "
            "patients; a comparison needs at least 2 of each class"
        )
    return pd.DataFrame(
        {
            "patient_id": m["patient_id"],
            "label": m["label_a"],
            names[0]: m["score_a"],
            names[1]: m["score_b"],
        }
    )


def compare_predictions(
    file_a: str | Path,
    file_b: str | Path,
    out_dir: str | Path,
    *,
    names: tuple[str, str] = ("A", "B"),
    logits: bool = False,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Compare two prediction files; write compare.html/json/csv, tables/ and figures/.

    Parameters
    ----------
    file_a, file_b : CSVs with ``patient_id``, ``label``, ``score`` for the same patients.
    out_dir : output folder (an earlier compare output there is replaced).
    names : display names of the two models (distinct).
    logits : the scores are logits; apply the sigmoid (otherwise they must be in [0, 1]).
    n_boot : bootstrap resamples (0 = none). seed : bootstrap seed.

    Returns the content of ``compare.json``. Bad input raises InputError before
    anything is written.
    """
    names = (str(names[0]).strip(), str(names[1]).strip())
    if names[0] == names[1] or not all(names):
        raise InputError(f"--names must be two different non-empty names, got {names}")
    if n_boot < 0:
        raise InputError(f"--bootstrap must be >= 0, got {n_boot}")
    out = Path(out_dir)
    a = read_score_file(file_a, logits=logits)
    b = read_score_file(file_b, logits=logits)
    d = align(a, b, names, (Path(file_a).name, Path(file_b).name))
    prepare_out_dir(out, "compare.json")

    y = d["label"].to_numpy()
    pa, pb = d[names[0]].to_numpy(), d[names[1]].to_numpy()
    bs = Bootstrap(y, n_boot=n_boot, seed=seed) if n_boot else None
    res: dict = {
        "generated_by": f"multibone {__version__} compare",
        "disclaimer": DISCLAIMER,
        "files": [Path(file_a).name, Path(file_b).name],
        "names": list(names),
        "logits": logits,
        "n": len(y),
        "n_pos": int(y.sum()),
        "n_neg": int(len(y) - y.sum()),
        "n_boot": n_boot,
        "seed": seed,
        "threshold_note": (
            "operating points are chosen per model on the same data being "
            "compared (as in Hasei et al. 2025); no separate development set"
        ),
        "models": {},
    }
    samples_auc = {}
    ops_all = {}
    curves = {}
    for name, p in ((names[0], pa), (names[1], pb)):
        auc = delong_auc(y, p)
        m: dict = {"auc": auc.to_dict()}
        if bs is not None:
            samples_auc[name] = bs.auc_samples(p)
            m["auc_bootstrap"] = percentile_ci(samples_auc[name], auc.auc).to_dict()
        ops = choose_operating_points(y, p)
        ops_all[name] = ops
        m["operating_points"] = {
            op: {**binary_metrics(y, p, o.threshold).flat()} for op, o in ops.items()
        }
        m["calibration"] = calibration(y, p).to_dict()
        pr = pr_curve(y, p)
        m["pr"] = pr.summary()
        fpr, tpr, thr = roc_points(y, p)
        curves[name] = {
            "score": p,
            "roc": (fpr, tpr, thr),
            "pr": pr,
            "cal": calibration_table(y, p),
            "dca": net_benefit(y, p),
            "band": bs.roc_band(p) if bs is not None else None,
        }
        res["models"][name] = m
    dl = delong_paired(y, pa, pb)
    res["auc_difference"] = {"delong": dl.to_dict()}
    if bs is not None:
        res["auc_difference"]["bootstrap"] = percentile_ci(
            samples_auc[names[0]] - samples_auc[names[1]], dl.diff
        ).to_dict()
    res["operating_point_tests"] = {}
    for op in OPERATING_POINTS:
        ta, tb = ops_all[names[0]][op].threshold, ops_all[names[1]][op].threshold
        mc = mcnemar_sens_spec(y, (pa >= ta).astype(int), (pb >= tb).astype(int))
        entry: dict = {
            "threshold_a": ta,
            "threshold_b": tb,
            "mcnemar": {k: v.to_dict() for k, v in mc.items()},
        }
        if bs is not None:
            sa, sb = bs.metric_samples(pa, ta), bs.metric_samples(pb, tb)
            ma = res["models"][names[0]]["operating_points"][op]
            mb = res["models"][names[1]]["operating_points"][op]
            entry["bootstrap_difference"] = {
                k: percentile_ci(sa[k] - sb[k], ma[k] - mb[k]).to_dict()
                for k in ("sensitivity", "specificity", "ppv", "npv", "f1")
            }
        res["operating_point_tests"][op] = entry

    long = _long_table(res, names)
    with atomic_dir(out, force=True) as tmp:
        (tmp / "figures").mkdir()
        (tmp / "tables").mkdir()
        long.to_csv(tmp / "compare.csv", index=False)
        nb = []
        for name in names:
            t = curves[name]["dca"].copy()
            t.insert(0, "model", name)
            nb.append(t)
        pd.concat(nb).to_csv(tmp / "tables" / "net_benefit.csv", index=False)
        cal = []
        for name in names:
            t = curves[name]["cal"].copy()
            t.insert(0, "model", name)
            cal.append(t)
        pd.concat(cal).to_csv(tmp / "tables" / "calibration_deciles.csv", index=False)
        figs = _figures(tmp / "figures", res, curves, y, names)
        write_json(res, tmp / "compare.json")
        (tmp / "compare.html").write_text(_html(res, long, figs, names), encoding="utf-8")
    log.info("comparison written to %s", out)
    return jsonable(res)  # type: ignore[return-value]


def _long_table(res: dict, names: tuple[str, str]) -> pd.DataFrame:
    """One row per metric: value for A and B, difference, CI of the difference, test p."""
    a, b = (res["models"][n] for n in names)
    rows = []
    dl = res["auc_difference"]["delong"]
    bt = res["auc_difference"].get("bootstrap", {})
    rows.append(
        {
            "metric": "AUC",
            "operating_point": "",
            names[0]: a["auc"]["auc"],
            names[1]: b["auc"]["auc"],
            "difference": dl["diff"],
            "diff_ci_low": bt.get("ci_low", dl["ci_low"]),
            "diff_ci_high": bt.get("ci_high", dl["ci_high"]),
            "p": dl["p"],
            "test": "paired DeLong",
        }
    )
    for key, label in (("average_precision", "AP"), ("max_f1", "max F1")):
        rows.append(
            {
                "metric": label,
                "operating_point": "",
                names[0]: a["pr"][key],
                names[1]: b["pr"][key],
                "difference": a["pr"][key] - b["pr"][key],
                "diff_ci_low": math.nan,
                "diff_ci_high": math.nan,
                "p": math.nan,
                "test": "",
            }
        )
    for key, label in (
        ("slope", "calibration slope"),
        ("intercept", "calibration intercept"),
        ("brier", "Brier score"),
    ):
        va, vb = a["calibration"][key], b["calibration"][key]
        rows.append(
            {
                "metric": label,
                "operating_point": "",
                names[0]: va,
                names[1]: vb,
                "difference": va - vb,
                "diff_ci_low": math.nan,
                "diff_ci_high": math.nan,
                "p": math.nan,
                "test": "",
            }
        )
    for op, t in res["operating_point_tests"].items():
        ma, mb = a["operating_points"][op], b["operating_points"][op]
        rows.append(
            {
                "metric": "threshold",
                "operating_point": op,
                names[0]: ma["threshold"],
                names[1]: mb["threshold"],
                "difference": math.nan,
                "diff_ci_low": math.nan,
                "diff_ci_high": math.nan,
                "p": math.nan,
                "test": "",
            }
        )
        for k in ("sensitivity", "specificity", "ppv", "npv", "f1"):
            bd = t.get("bootstrap_difference", {}).get(k, {})
            p, test = math.nan, ""
            if k in ("sensitivity", "specificity"):
                p, test = t["mcnemar"][k]["p"], "McNemar (continuity corrected)"
            rows.append(
                {
                    "metric": k,
                    "operating_point": op,
                    names[0]: ma[k],
                    names[1]: mb[k],
                    "difference": ma[k] - mb[k],
                    "diff_ci_low": bd.get("ci_low", math.nan),
                    "diff_ci_high": bd.get("ci_high", math.nan),
                    "p": p,
                    "test": test,
                }
            )
    return pd.DataFrame(rows)


def _figures(
    fig_dir: Path, res: dict, curves: dict, y: np.ndarray, names: tuple[str, str]
) -> dict[str, Path]:
    out: dict[str, Path] = {}
    roc = []
    for n in names:
        a = res["models"][n]["auc"]
        fpr, tpr, _ = curves[n]["roc"]
        roc.append(
            {
                "name": n,
                "fpr": fpr,
                "tpr": tpr,
                "auc": a["auc"],
                "ci_low": a["ci_low"],
                "ci_high": a["ci_high"],
                "band": curves[n]["band"],
            }
        )
    p = res["auc_difference"]["delong"]["p"]
    out["roc"] = plots.save_png(
        plots.roc_figure(roc, f"ROC (paired DeLong p = {p:.3g})"), fig_dir / "roc.png"
    )
    out["pr"] = plots.save_png(
        plots.pr_figure(
            [
                {
                    "name": n,
                    "precision": curves[n]["pr"].precision,
                    "recall": curves[n]["pr"].recall,
                    "ap": curves[n]["pr"].average_precision,
                }
                for n in names
            ],
            float(y.mean()),
            "Precision-recall",
        ),
        fig_dir / "pr.png",
    )
    out["calibration"] = plots.save_png(
        plots.calibration_figure(
            [
                (
                    n,
                    curves[n]["cal"],
                    f"slope {res['models'][n]['calibration']['slope']:.2f}, "
                    f"Brier {res['models'][n]['calibration']['brier']:.3f}",
                )
                for n in names
            ],
            "Calibration (deciles)",
        ),
        fig_dir / "calibration.png",
    )
    out["dca"] = plots.save_png(
        plots.dca_figure([(n, curves[n]["dca"]) for n in names], "Decision curve"),
        fig_dir / "dca.png",
    )
    th = []
    grid = np.linspace(0, 1, 201)
    for n in names:
        s = curves[n]["score"]
        sens = (s[y == 1][None, :] >= grid[:, None]).mean(axis=1)
        spec = (s[y == 0][None, :] < grid[:, None]).mean(axis=1)
        th.append(
            {
                "name": n,
                "thresholds": grid,
                "sensitivity": sens,
                "specificity": spec,
                "points": {
                    op: v["threshold"]
                    for op, v in res["models"][n]["operating_points"].items()
                    if op != "maxf1"
                },
            }
        )
    out["thresholds"] = plots.save_png(
        plots.threshold_figure(th, "Sensitivity and specificity against the threshold"),
        fig_dir / "thresholds.png",
    )
    mats = [
        (
            n,
            [
                (op, {k: v[k] for k in ("TP", "FP", "TN", "FN")}, v["threshold"])
                for op, v in res["models"][n]["operating_points"].items()
            ],
        )
        for n in names
    ]
    out["confusion"] = plots.save_png(
        plots.confusion_figure(
            mats, "Confusion matrices (thresholds chosen per model on these data)"
        ),
        fig_dir / "confusion.png",
    )
    return out


def _html(res: dict, long: pd.DataFrame, figs: dict, names: tuple[str, str]) -> str:
    """``compare.html`` from ``templates/compare.html``; figures inlined as data URIs."""
    ops_rows = []
    for n in names:
        for op, v in res["models"][n]["operating_points"].items():
            ops_rows.append(
                {
                    "model": n,
                    "operating point": LABELS[op],
                    "threshold": v["threshold"],
                    "TP": v["TP"],
                    "FP": v["FP"],
                    "TN": v["TN"],
                    "FN": v["FN"],
                    "sensitivity": v["sensitivity"],
                    "specificity": v["specificity"],
                    "PPV": v["ppv"],
                    "NPV": v["npv"],
                    "F1": v["f1"],
                    "LR+": v["lr_pos"],
                    "LR-": v["lr_neg"],
                }
            )
    return render(
        "compare.html",
        title=f"multibone compare: {names[0]} vs {names[1]}",
        heading=f"multibone compare: {names[0]} vs {names[1]}",
        files=res["files"],
        names=list(names),
        n=res["n"],
        n_pos=res["n_pos"],
        n_neg=res["n_neg"],
        logits=res["logits"],
        n_boot=res["n_boot"],
        delong=res["auc_difference"]["delong"],
        head_to_head=table(long, digits=4, p_columns=["p"]),
        operating_points=table(pd.DataFrame(ops_rows), digits=4),
        fig={k: plots.png_base64(v) for k, v in figs.items()},
        generated_by=res["generated_by"],
    )
