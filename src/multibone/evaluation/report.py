"""``evaluate_run``: statistics, figures and a self-contained HTML report for a run.

Inputs (see the run folder layout in the project's contracts):

* ``RUN/predictions.csv``: one row per patient; columns ``patient_id``,
  ``split`` (``dev`` = out-of-fold development predictions, ``test``,
  ``external``), ``label`` (0/1), optional ``center``, subgroup columns
  (``age``, ``sex``, ``location``, ``subtype``, ``lesion_area``, ``crp_missing``,
  ``esr_missing``) and one probability column per model, ``p_<model>``.
* ``RUN/thresholds.json``: ``{model: {youden: t, sens90: t, spec90: t[, maxf1: t]}}``
  chosen on dev (a value may also be ``{"threshold": t, ...}``; the key may be
  ``stacker`` or ``p_stacker``). Thresholds are applied as given, never
  re-chosen. A model missing there gets thresholds chosen on its dev
  predictions here, with a warning.
* optional ``RUN/stacking/family_comparison.csv``, ``RUN/imaging/imaging_summary.json``,
  ``RUN/lesion_focus.csv``, ``RUN/cohort/SYNTHETIC_README.txt``, ``RUN/config.yaml``
  (for ``positive_class``).

Sets evaluated: dev (OOF), internal test, each external centre, and all
external centres pooled (when there are two or more).
"""

from __future__ import annotations

import json
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
from multibone.evaluation._output import (
    jsonable,
    prepare_out_dir,
    safe_name,
    table,
    write_json,
)
from multibone.evaluation.agreement import mcnemar_sens_spec
from multibone.evaluation.calibration import calibration, calibration_table
from multibone.evaluation.curves import net_benefit, pr_curve
from multibone.evaluation.detection_section import detection_context
from multibone.evaluation.metrics import binary_metrics
from multibone.evaluation.subgroups import display_table, flagged, size_cuts, subgroup_table
from multibone.stats import (
    LABELS,
    OPERATING_POINTS,
    Bootstrap,
    auc_score,
    choose_operating_points,
    delong_auc,
    delong_paired,
    percentile_ci,
    roc_points,
)

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient_id", "split", "label")
SPLITS = ("dev", "test", "external")
REFERENCE_MODEL = "stacker"
MIN_PER_CLASS_STABLE = 20
CLASS_NAMES = {"infection": ("tumour", "infection"), "tumor": ("infection", "tumour")}


# --------------------------------------------------------------------------- reading
def _rows(mask: np.ndarray | pd.Series) -> list[int]:
    """Spreadsheet row numbers (header = row 1) of the True positions."""
    return [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))]


def read_predictions(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read and check ``predictions.csv``; return (frame, model names without ``p_``).

    Raises InputError naming the missing columns, the rows with NaN or
    out-of-range probabilities, bad labels, unknown splits, or duplicate patients.
    """
    if not path.is_file():
        raise InputError(
            f"{path} not found; a run folder needs predictions.csv "
            "(written by the pipeline after stacking)"
        )
    try:
        df = pd.read_csv(path, dtype={"patient_id": str, "center": str, "split": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot be read as CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    pcols = [c for c in df.columns if c.startswith("p_") and len(c) > 2]
    if missing or not pcols:
        what = list(missing) + ([] if pcols else ["p_<model> (at least one probability column)"])
        raise InputError(
            f"{path}: missing column(s) {', '.join(what)}; found {', '.join(map(str, df.columns))}"
        )
    if df.empty:
        raise InputError(f"{path}: no rows")
    problems: list[str] = []
    lab = pd.to_numeric(df["label"], errors="coerce")
    bad = ~lab.isin([0, 1])
    if bad.any():
        problems.append(f"column label must be 0 or 1: rows {short_list(_rows(bad))}")
    split = df["split"].astype(object).fillna("").astype(str).str.strip().str.lower()
    bad = ~split.isin(SPLITS)
    if bad.any():
        problems.append(
            f"column split must be one of {', '.join(SPLITS)}: rows "
            f"{short_list(_rows(bad))} (e.g. {split[bad].iloc[0]!r})"
        )
    for c in pcols:
        v = pd.to_numeric(df[c], errors="coerce")
        nan = v.isna()
        if nan.any():
            problems.append(
                f"column {c} has NaN or non-numeric scores: rows {short_list(_rows(nan))}"
            )
        out = (v < 0) | (v > 1)
        if out.any():
            problems.append(
                f"column {c} must hold probabilities in [0, 1]: rows {short_list(_rows(out))} "
                f"(e.g. {float(v[out].iloc[0]):.4g}); these look like logits, apply a sigmoid"
            )
    dup = df["patient_id"].astype(str).duplicated(keep=False)
    if dup.any():
        ids = sorted(set(df.loc[dup, "patient_id"].astype(str)))
        problems.append(
            f"patients appear more than once (one row per patient expected): {short_list(ids)}"
        )
    if problems:
        raise InputError(f"{path}:\n  " + "\n  ".join(problems))
    df = df.copy()
    df["label"] = lab.astype(int)
    df["split"] = split
    df["patient_id"] = df["patient_id"].astype(str)
    df["center"] = df["center"].astype(object).fillna("").astype(str) if "center" in df else ""
    for c in pcols:
        df[c] = pd.to_numeric(df[c]).astype(float)
    return df, [c[2:] for c in pcols]


def read_thresholds(path: Path, models: list[str]) -> dict[str, dict[str, float]]:
    """Read ``thresholds.json`` -> {model: {operating point: threshold}} (missing file -> {})."""
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected an object {{model: {{youden: t, ...}}}}")
    out: dict[str, dict[str, float]] = {}
    for key, ops in raw.items():
        model = key[2:] if key.startswith("p_") else key
        if model not in models or not isinstance(ops, dict):
            continue
        parsed: dict[str, float] = {}
        for op, val in ops.items():
            if op not in OPERATING_POINTS:
                continue
            t = val.get("threshold") if isinstance(val, dict) else val
            try:
                t = float(t)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{path}: {key}.{op} must be a number, got {t!r}") from exc
            if not math.isfinite(t):
                raise InputError(f"{path}: {key}.{op} is not finite ({t})")
            parsed[op] = t
        out[model] = parsed
    return out


def _positive_class(run_dir: Path) -> str:
    """``positive_class`` from ``RUN/config.yaml`` (default ``infection``)."""
    import yaml

    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        return "infection"
    try:
        data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.warning("%s not readable (%s); assuming positive class 'infection'", cfg, exc)
        return "infection"
    pc = str(data.get("positive_class", "infection")) if isinstance(data, dict) else "infection"
    return pc if pc in CLASS_NAMES else "infection"


# --------------------------------------------------------------------------- sets
def define_sets(df: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(key, readable label, row mask) for dev, test, each external centre, pooled external."""
    sets: list[tuple[str, str, np.ndarray]] = []
    split = df["split"].to_numpy()
    if (split == "dev").any():
        sets.append(("dev", "development (out-of-fold)", split == "dev"))
    if (split == "test").any():
        sets.append(("test", "internal test", split == "test"))
    ext = split == "external"
    if ext.any():
        centres = sorted(df.loc[ext, "center"].unique())
        for c in centres:
            m = ext & (df["center"].to_numpy() == c)
            key = f"external_{safe_name(c)}" if c else "external"
            sets.append((key, f"external centre {c}" if c else "external", m))
        if len(centres) > 1:
            sets.append(("external_pooled", "external, all centres pooled", ext))
    return sets


# --------------------------------------------------------------------------- statistics
def _auc_block(y: np.ndarray, p: np.ndarray, samples: np.ndarray | None) -> dict:
    out: dict = {"auc": None, "note": ""}
    try:
        r = delong_auc(y, p)
    except SingleClassError as exc:
        out["note"] = str(exc)
        return out
    out["auc"] = r.to_dict()
    if samples is not None:
        out["bootstrap"] = percentile_ci(samples, r.auc).to_dict()
    return out


def _metrics_block(
    y: np.ndarray, p: np.ndarray, ops: dict[str, float], bs: Bootstrap | None
) -> dict:
    res = {}
    for op, t in ops.items():
        m = binary_metrics(y, p, t)
        row = m.flat()
        if bs is not None:
            samples = bs.metric_samples(p, t)
            for k, v in samples.items():
                est = row[k]
                ci = percentile_ci(v, est)
                row[f"{k}_boot_ci_low"] = ci.ci_low
                row[f"{k}_boot_ci_high"] = ci.ci_high
        res[op] = row
    return res


def subtype_table(
    d: pd.DataFrame, models: list[str], thresholds: dict, class_names: tuple[str, str]
) -> pd.DataFrame:
    """Per-subtype accuracy at the Youden threshold (seed 004, Table 3): one column per model."""
    if "subtype" not in d:
        return pd.DataFrame()
    st = d["subtype"].astype(object).fillna("").astype(str).replace("", "unknown")
    rows = []
    for (lab, sub), g in d.groupby([d["label"], st], sort=True):
        row = {"class": class_names[int(lab)], "subtype": sub, "n": len(g)}
        accs = []
        for model in models:
            t = thresholds.get(model, {}).get("youden")
            if t is None:
                continue
            acc = float(np.mean((g[f"p_{model}"].to_numpy() >= t).astype(int) == int(lab)))
            row[model] = acc
            accs.append(acc)
        row["model average"] = float(np.mean(accs)) if accs else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def missingness_warnings(d: pd.DataFrame, set_label: str) -> list[str]:
    """Warn when a missing-value indicator alone predicts the label (AUC > 0.6 or chi2 p < 0.05)."""
    from scipy.stats import chi2_contingency

    out = []
    y = d["label"].to_numpy()
    if y.min() == y.max():
        return out
    for col in ("crp_missing", "esr_missing"):
        if col not in d:
            continue
        x = pd.to_numeric(d[col], errors="coerce").fillna(0).to_numpy()
        x = (x > 0).astype(int)
        if x.min() == x.max():
            continue
        auc = auc_score(y, x)
        sep = max(auc, 1 - auc)
        ct = pd.crosstab(x, y).to_numpy()
        p = float(chi2_contingency(ct)[1])
        if sep > 0.6 or p < 0.05:
            rate1 = x[y == 1].mean()
            rate0 = x[y == 0].mean()
            out.append(
                f"{set_label}: {col} alone separates the classes (AUC {sep:.2f}, chi-square "
                f"p={p:.3g}; missing in {rate1:.0%} of positives vs {rate0:.0%} of negatives). "
                "A model can learn how the test was ordered rather than the disease; check how "
                "the value was recorded in each class and centre."
            )
    return out


def evaluate_set(
    d: pd.DataFrame,
    models: list[str],
    thresholds: dict[str, dict[str, float]],
    *,
    n_boot: int,
    seed: int,
) -> dict:
    """All statistics of one set (see module docstring). Returns a JSON-ready dict
    plus private ``_curves`` entries (arrays for the figures)."""
    y = d["label"].to_numpy().astype(int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    both = n_pos >= 2 and n_neg >= 2
    bs = Bootstrap(y, n_boot=n_boot, seed=seed) if n_boot > 0 else None
    res: dict = {"n": len(y), "n_pos": n_pos, "n_neg": n_neg, "models": {}, "_curves": {}}
    ref = REFERENCE_MODEL if REFERENCE_MODEL in models else None
    # resampled AUCs once per model (same resamples for all: differences are paired)
    boot_auc = (
        {mm: bs.auc_samples(d[f"p_{mm}"].to_numpy()) for mm in models}
        if both and bs is not None
        else {}
    )
    for model in models:
        p = d[f"p_{model}"].to_numpy()
        m: dict = {}
        m["auc"] = _auc_block(y, p, boot_auc.get(model))
        m["operating_points"] = _metrics_block(y, p, thresholds.get(model, {}), bs)
        m["calibration"] = calibration(y, p).to_dict()
        cal_tab = calibration_table(y, p)
        curves: dict = {"calibration": cal_tab, "dca": net_benefit(y, p)}
        if n_pos >= 1 and n_neg >= 1:
            pr = pr_curve(y, p)
            m["pr"] = pr.summary()
            curves["pr"] = pr
            fpr, tpr, _ = roc_points(y, p)
            curves["roc"] = (fpr, tpr)
            if both and bs is not None:
                curves["band"] = bs.roc_band(p)
        else:
            m["pr"] = None
        if ref is not None and model != ref:
            p_ref = d[f"p_{ref}"].to_numpy()
            vs: dict = {"reference": ref}
            if both:
                dl = delong_paired(y, p, p_ref)
                vs["delong"] = dl.to_dict()
                if boot_auc:
                    diff = boot_auc[model] - boot_auc[ref]
                    vs["auc_diff_bootstrap"] = percentile_ci(diff, dl.diff).to_dict()
            mc = {}
            for op, t in thresholds.get(model, {}).items():
                t_ref = thresholds.get(ref, {}).get(op)
                if t_ref is None:
                    continue
                r = mcnemar_sens_spec(y, (p >= t).astype(int), (p_ref >= t_ref).astype(int))
                mc[op] = {k: v.to_dict() for k, v in r.items()}
            vs["mcnemar"] = mc
            m["vs_reference"] = vs
        res["models"][model] = m
        res["_curves"][model] = curves
    return res


# --------------------------------------------------------------------------- tables
def _summary_rows(key: str, label: str, r: dict) -> list[dict]:
    rows = []
    for model, m in r["models"].items():
        a = m["auc"]["auc"] or {}
        b = m["auc"].get("bootstrap") or {}
        c = m["calibration"]
        pr = m["pr"] or {}
        rows.append(
            {
                "set": key,
                "set_label": label,
                "model": model,
                "n": r["n"],
                "n_pos": r["n_pos"],
                "n_neg": r["n_neg"],
                "auc": a.get("auc", math.nan),
                "auc_ci_low": a.get("ci_low", math.nan),
                "auc_ci_high": a.get("ci_high", math.nan),
                "auc_boot_ci_low": b.get("ci_low", math.nan),
                "auc_boot_ci_high": b.get("ci_high", math.nan),
                "brier": c["brier"],
                "cal_intercept": c["intercept"],
                "cal_slope": c["slope"],
                "oe_ratio": c["oe_ratio"],
                "average_precision": pr.get("average_precision", math.nan),
                "max_f1": pr.get("max_f1", math.nan),
                "auc_note": m["auc"]["note"],
            }
        )
    return rows


def _op_rows(key: str, r: dict) -> list[dict]:
    rows = []
    for model, m in r["models"].items():
        for op, row in m["operating_points"].items():
            rows.append({"set": key, "model": model, "operating_point": op, **row})
    return rows


def _vs_rows(key: str, r: dict) -> list[dict]:
    rows = []
    for model, m in r["models"].items():
        vs = m.get("vs_reference")
        if not vs:
            continue
        dl = vs.get("delong") or {}
        bt = vs.get("auc_diff_bootstrap") or {}
        base = {
            "set": key,
            "model": model,
            "reference": vs["reference"],
            "auc_model": dl.get("auc_a", math.nan),
            "auc_reference": dl.get("auc_b", math.nan),
            "auc_diff": dl.get("diff", math.nan),
            "delong_z": dl.get("z", math.nan),
            "delong_p": dl.get("p", math.nan),
            "diff_boot_ci_low": bt.get("ci_low", math.nan),
            "diff_boot_ci_high": bt.get("ci_high", math.nan),
        }
        for op in OPERATING_POINTS:
            mc = vs["mcnemar"].get(op)
            for part in ("sensitivity", "specificity", "accuracy"):
                base[f"mcnemar_{op}_{part}_p"] = mc[part]["p"] if mc else math.nan
        rows.append(base)
    return rows


# --------------------------------------------------------------------------- main entry
def evaluate_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Evaluate every model (``p_*`` column) on every set of a run and write a report.

    Parameters
    ----------
    run_dir : run folder holding ``predictions.csv`` and ``thresholds.json``.
    out_dir : output folder (default ``run_dir/evaluation``); replaced atomically
        if it holds an earlier evaluation, refused if it holds anything else.
    n_boot : bootstrap resamples for percentile CIs and ROC bands (0: none).
    seed : seed of the bootstrap generator.
    progress : show a tqdm bar over sets.
    figures : draw the PNG figures (False: tables and numbers only, much faster).

    Returns
    -------
    The content of ``metrics.json`` (dict). Writes ``report.html``,
    ``metrics.json``, ``tables/*.csv`` and ``figures/*.png``. Bad input raises
    InputError before anything is written.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} not found")
    out = Path(out_dir) if out_dir is not None else run_dir / "evaluation"
    n_boot = int(n_boot)
    if n_boot < 0:
        raise InputError(f"--bootstrap must be >= 0, got {n_boot}")
    df, models = read_predictions(run_dir / "predictions.csv")
    thresholds = read_thresholds(run_dir / "thresholds.json", models)
    prepare_out_dir(out, "metrics.json")
    positive = _positive_class(run_dir)
    class_names = CLASS_NAMES[positive]
    warnings: list[str] = []
    threshold_source = {}
    dev = df[df["split"] == "dev"]
    dev_ok = len(dev) > 0 and dev["label"].nunique() == 2
    for model in models:
        given = thresholds.get(model, {})
        missing = [op for op in OPERATING_POINTS if op not in given]
        source = "thresholds.json (chosen on dev)" if given else ""
        if missing and dev_ok:
            ops = choose_operating_points(dev["label"], dev[f"p_{model}"], missing)
            given = {**given, **{k: v.threshold for k, v in ops.items()}}
            what = ", ".join(missing)
            source = (
                f"{source}; {what} chosen here on dev (out-of-fold)"
                if source
                else "chosen here on dev (out-of-fold) predictions"
            )
        if not thresholds.get(model):
            if dev_ok:
                warnings.append(
                    f"thresholds.json has no thresholds for {model}; they were "
                    "chosen here on its dev (out-of-fold) predictions by the same "
                    "rules."
                )
            else:
                warnings.append(
                    f"no thresholds for {model} (not in thresholds.json and no dev "
                    "set with both classes): threshold metrics are left out for it."
                )
                source = "none"
        thresholds[model] = {op: given[op] for op in OPERATING_POINTS if op in given}
        threshold_source[model] = source
    if REFERENCE_MODEL not in models:
        warnings.append(
            f"no p_{REFERENCE_MODEL} column: paired comparisons against the stacker are left out."
        )

    sets = define_sets(df)
    results: dict = {}
    subgroup_frames, subtype_frames = [], []
    cuts = size_cuts(df)  # lesion-size tertiles over all patients: same ranges in every set
    for key, label, mask in tqdm(sets, desc="evaluate", disable=not progress, leave=False):
        d = df[mask].reset_index(drop=True)
        r = evaluate_set(d, models, thresholds, n_boot=n_boot, seed=seed)
        r["label"] = label
        if r["n_pos"] == 0 or r["n_neg"] == 0:
            only = class_names[1] if r["n_neg"] == 0 else class_names[0]
            warnings.append(
                f"{label}: only one class ({only}, n={r['n']}): AUC, ROC, PR "
                "and calibration slope are undefined; the other metrics are reported."
            )
        elif r["n_pos"] < 2 or r["n_neg"] < 2:
            warnings.append(f"{label}: fewer than 2 cases of a class: AUC CI undefined.")
        elif r["n_pos"] < MIN_PER_CLASS_STABLE or r["n_neg"] < MIN_PER_CLASS_STABLE:
            warnings.append(
                f"{label}: only {r['n_pos']} positive and {r['n_neg']} negative "
                f"cases (< {MIN_PER_CLASS_STABLE} per class): confidence intervals "
                "are wide and unstable; read point estimates with caution."
            )
        warnings.extend(missingness_warnings(d, label))
        sg = subgroup_table(d, models, thresholds, cuts=cuts)
        if not sg.empty:
            sg.insert(0, "set", key)
            subgroup_frames.append(sg)
        stt = subtype_table(d, models, thresholds, class_names)
        if not stt.empty:
            stt.insert(0, "set", key)
            subtype_frames.append(stt)
        r["_subgroups"] = sg
        r["_subtypes"] = stt
        results[key] = r

    extras = _read_extras(run_dir, warnings)
    # issue #14: combining gain (paired DeLong) and conformal coverage, per set
    from multibone.evaluation.gain import combining_gain, conformal_coverage

    gain = combining_gain(df, sets)
    if not gain.empty:
        extras["combining_gain"] = gain
    sc_json = run_dir / "stacking" / "score_calibration.json"
    if sc_json.is_file():
        try:
            maps = json.loads(sc_json.read_text(encoding="utf-8"))["backbones"]
            extras["score_calibration"] = pd.DataFrame(
                [{"backbone": b, **v} for b, v in maps.items()]
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            warnings.append(f"{sc_json.name} could not be read ({exc}); left out.")
    conf_json = run_dir / "stacking" / "conformal.json"
    if conf_json.is_file():
        rate = float(json.loads(conf_json.read_text(encoding="utf-8"))["error_rate"])
        cov = conformal_coverage(df, sets, 1.0 - rate)
        if not cov.empty:
            extras["conformal_coverage"] = cov
    top_warnings = _top_warnings(run_dir, results)
    warnings[:0] = top_warnings  # shortcuts and perfect AUCs come first
    summary = pd.DataFrame(
        [row for k, r in results.items() for row in _summary_rows(k, r["label"], r)]
    )
    ops_df = pd.DataFrame([row for k, r in results.items() for row in _op_rows(k, r)])
    vs_df = pd.DataFrame([row for k, r in results.items() for row in _vs_rows(k, r)])
    metrics = {
        "generated_by": f"multibone {__version__} evaluate",
        "disclaimer": DISCLAIMER,
        "run_dir": run_dir.name,
        "positive_class": positive,
        "n_boot": n_boot,
        "seed": seed,
        "models": models,
        "reference_model": REFERENCE_MODEL if REFERENCE_MODEL in models else None,
        "thresholds": thresholds,
        "threshold_source": threshold_source,
        "sets": {
            k: {kk: vv for kk, vv in r.items() if not kk.startswith("_")}
            for k, r in results.items()
        },
        "warnings": warnings,
        "top_warnings": top_warnings,
    }
    with atomic_dir(out, force=True) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        summary.to_csv(tmp / "tables" / "summary.csv", index=False)
        ops_df.to_csv(tmp / "tables" / "operating_points.csv", index=False)
        if not vs_df.empty:
            vs_df.to_csv(tmp / "tables" / "vs_stacker.csv", index=False)
        if subgroup_frames:
            pd.concat(subgroup_frames).to_csv(tmp / "tables" / "subgroups.csv", index=False)
        if subtype_frames:
            pd.concat(subtype_frames).to_csv(tmp / "tables" / "subtype_accuracy.csv", index=False)
        cal_rows, dca_rows = [], []
        for k, r in results.items():
            for model, c in r["_curves"].items():
                t = c["calibration"].copy()
                t.insert(0, "model", model)
                t.insert(0, "set", k)
                cal_rows.append(t)
                dd = c["dca"].copy()
                dd.insert(0, "model", model)
                dd.insert(0, "set", k)
                dca_rows.append(dd)
        pd.concat(cal_rows).to_csv(tmp / "tables" / "calibration_deciles.csv", index=False)
        pd.concat(dca_rows).to_csv(tmp / "tables" / "decision_curve.csv", index=False)
        for name, frame in extras.items():
            frame.to_csv(tmp / "tables" / f"{name}.csv", index=False)
        pd.DataFrame({"warning": warnings}).to_csv(tmp / "tables" / "warnings.csv", index=False)
        figs = _write_figures(tmp / "figures", results, thresholds, class_names) if figures else {}
        write_json(metrics, tmp / "metrics.json")
        html = _render_html(run_dir, metrics, results, summary, extras, figs, class_names)
        (tmp / "report.html").write_text(html, encoding="utf-8")
    log.info("evaluation written to %s", out)
    return jsonable(metrics)  # type: ignore[return-value]


def _top_warnings(run_dir: Path, results: dict) -> list[str]:
    """Shortcut features (``RUN/stacking/shortcuts.csv``), models with AUC 1.000, and
    features dropped before fitting: shown first in the report and ``summary.md``."""
    from multibone.evaluation.shortcuts import (
        perfect_model_warnings,
        read_shortcuts,
        shortcut_warnings,
    )

    out: list[str] = []
    table = read_shortcuts(run_dir)
    if table is not None:
        out += shortcut_warnings(table)
    aucs = {}
    for r in results.values():
        aucs[r["label"]] = {
            m: _auc_value(v) for m, v in (r.get("models") or {}).items() if _auc_value(v) is not None
        }
    out += perfect_model_warnings(aucs)
    try:
        stack = json.loads((run_dir / "stacking" / "stacking_summary.json").read_text("utf-8"))
    except (OSError, ValueError):
        stack = {}
    dropped = stack.get("dropped_features") or {}
    if dropped:
        out.append(
            "Features dropped before fitting (no information on development data): "
            + "; ".join(f"{k} ({v})" for k, v in dropped.items())
            + ". The model and the bundle do not use them."
        )
    return out


def _auc_value(m: object) -> float | None:
    """The AUC of one model's metrics block of :func:`evaluate_set` (None when undefined)."""
    a = m.get("auc") if isinstance(m, dict) else None
    a = a.get("auc") if isinstance(a, dict) else a
    a = a.get("auc") if isinstance(a, dict) else a
    try:
        a = float(a)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(a) else a


def _read_extras(run_dir: Path, warnings: list[str]) -> dict[str, pd.DataFrame]:
    extras: dict[str, pd.DataFrame] = {}
    fam = run_dir / "stacking" / "family_comparison.csv"
    if fam.is_file():
        try:
            extras["family_comparison"] = pd.read_csv(fam)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            warnings.append(f"{fam.name} could not be read ({exc}); left out.")
    summ = run_dir / "imaging" / "imaging_summary.json"
    if summ.is_file():
        try:
            data = json.loads(summ.read_text(encoding="utf-8"))
            extras["imaging_summary"] = _json_table(data)
        except (json.JSONDecodeError, ValueError) as exc:
            warnings.append(f"{summ.name} could not be read ({exc}); left out.")
    for name in ("arm_comparison", "arm_pairs", "robustness"):
        f = run_dir / ("robustness" if name == "robustness" else "imaging") / f"{name}.csv"
        if f.is_file():
            try:
                extras[name] = pd.read_csv(f)
            except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                warnings.append(f"{f.name} could not be read ({exc}); left out.")
    rad = run_dir / "radiomics" / "radiomics_summary.json"
    if rad.is_file():
        try:
            extras["radiomics_summary"] = _json_table(json.loads(rad.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, ValueError) as exc:
            warnings.append(f"{rad.name} could not be read ({exc}); left out.")
    foc = run_dir / "lesion_focus.csv"
    if foc.is_file():
        try:
            lf = pd.read_csv(foc)
            need = {"backbone", "method", "energy_in_box"}
            summary_cols = ["backbone", "method", "n_images", "mean_energy_in_box",
                            "box_area_share"]
            if set(summary_cols) <= set(lf.columns):
                # already summarised per backbone and method (multibone.explain.lesion_focus):
                # box_area_share is the chance level a uniform map would reach
                extras["lesion_focus_summary"] = lf[
                    summary_cols + [c for c in ("sd_energy_in_box", "n_uninformative") if c in lf]
                ].rename(columns={"box_area_share": "chance_level (box area share)"})
            elif need <= set(lf.columns):
                e = pd.to_numeric(lf["energy_in_box"], errors="coerce")
                lf = lf.assign(energy_in_box=e)
                extras["lesion_focus_summary"] = (
                    lf.groupby(["backbone", "method"])["energy_in_box"]
                    .agg(
                        n="count",
                        mean="mean",
                        median="median",
                        share_above_half=lambda s: float((s > 0.5).mean()),
                    )
                    .reset_index()
                )
            else:
                warnings.append(
                    f"lesion_focus.csv lacks column(s) "
                    f"{', '.join(sorted(need - set(lf.columns)))}; left out."
                )
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            warnings.append(f"lesion_focus.csv could not be read ({exc}); left out.")
    return extras


def _json_table(data: object) -> pd.DataFrame:
    """Flatten a small JSON summary into a table for the report."""
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        t = pd.DataFrame.from_dict(data, orient="index")
        t = t.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
        return t.reset_index(names="item")
    if isinstance(data, dict):
        return pd.DataFrame(
            {
                "item": list(data),
                "value": [
                    json.dumps(v) if isinstance(v, dict | list) else v for v in data.values()
                ],
            }
        )
    return pd.DataFrame({"value": [json.dumps(data)]})


# --------------------------------------------------------------------------- figures & html
def _write_figures(
    fig_dir: Path, results: dict, thresholds: dict, class_names: tuple[str, str]
) -> dict[str, dict[str, Path]]:
    out: dict[str, dict[str, Path]] = {}
    for key, r in results.items():
        f: dict[str, Path] = {}
        title_set = r["label"]
        roc = []
        for model, c in r["_curves"].items():
            a = r["models"][model]["auc"]["auc"]
            if "roc" in c and a is not None:
                roc.append(
                    {
                        "name": model,
                        "fpr": c["roc"][0],
                        "tpr": c["roc"][1],
                        "auc": a["auc"],
                        "ci_low": a["ci_low"],
                        "ci_high": a["ci_high"],
                        "band": c.get("band"),
                    }
                )
        if roc:
            f["roc"] = plots.save_png(
                plots.roc_figure(roc, f"ROC, {title_set}"), fig_dir / f"roc_{key}.png"
            )
            prs = [
                {
                    "name": m,
                    "precision": c["pr"].precision,
                    "recall": c["pr"].recall,
                    "ap": c["pr"].average_precision,
                }
                for m, c in r["_curves"].items()
                if "pr" in c
            ]
            prev = r["n_pos"] / r["n"]
            f["pr"] = plots.save_png(
                plots.pr_figure(prs, prev, f"Precision-recall, {title_set}"),
                fig_dir / f"pr_{key}.png",
            )
        cal = []
        for model, c in r["_curves"].items():
            s = r["models"][model]["calibration"]["slope"]
            suffix = f"slope {s:.2f}" if s is not None and math.isfinite(s) else ""
            cal.append((model, c["calibration"], suffix))
        f["calibration"] = plots.save_png(
            plots.calibration_figure(cal, f"Calibration (deciles), {title_set}"),
            fig_dir / f"calibration_{key}.png",
        )
        f["dca"] = plots.save_png(
            plots.dca_figure(
                [(m, c["dca"]) for m, c in r["_curves"].items()], f"Decision curve, {title_set}"
            ),
            fig_dir / f"dca_{key}.png",
        )
        rows = []
        for model, m in r["models"].items():
            mats = [
                (op, {k: row[k] for k in ("TP", "FP", "TN", "FN")}, row["threshold"])
                for op, row in m["operating_points"].items()
            ]
            if mats:
                rows.append((model, mats))
        if rows:
            f["confusion"] = plots.save_png(
                plots.confusion_figure(
                    rows, f"Confusion matrices, {title_set} (thresholds fixed on dev)", class_names
                ),
                fig_dir / f"confusion_{key}.png",
            )
        out[key] = f
    return out


_EXTRA_TITLES = {
    "family_comparison": "Stacker families compared (inner CV on dev)",
    "imaging_summary": "Imaging backbones (out-of-fold summary)",
    "lesion_focus_summary": "Saliency energy inside the lesion box (explain layer)",
    "arm_comparison": "Pretraining arms: each arm's backbones (AUC with DeLong CI; sensitivity "
    "and specificity with Wilson CIs at operating points fixed on the arm's dev out-of-fold "
    "scores; calibration slope; Brier)",
    "arm_pairs": "Pretraining arms head to head (paired DeLong; McNemar at each operating point)",
    "robustness": "Box-perturbation robustness (multibone robustness: AUC with the boxes as "
    "drawn, mean and 2.5-97.5 % of the AUCs under random box shift/scale, per-patient "
    "probability spread)",
    "combining_gain": "Does combining earn its place? The stacker against the better of "
    "image-only and clinical-only on each set (paired DeLong: AUC difference, 95 % CI, p)",
    "score_calibration": "Backbone score calibration (Platt on the patient logit, fitted on dev "
    "out-of-fold scores; p = expit(a + b * logit); p_<backbone> and predict use it, the stacker "
    "takes the raw scores)",
    "conformal_coverage": "Refer when unsure: conformal sets (calibrated on the stacker's dev "
    "out-of-fold probabilities): empirical coverage against nominal (Wilson CI), per true class, "
    "and the share of cases referred (set not one diagnosis)",
    "radiomics_summary": "Radiomics baseline (ElasticNet on Nyxus lesion-box features; tuning and "
    "largest coefficients)",
}
_SUMMARY_COLUMNS = [
    "set",
    "model",
    "n",
    "n_pos",
    "n_neg",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "auc_boot_ci_low",
    "auc_boot_ci_high",
    "brier",
    "cal_intercept",
    "cal_slope",
    "average_precision",
    "max_f1",
]


def _render_html(
    run_dir: Path,
    metrics: dict,
    results: dict,
    summary: pd.DataFrame,
    extras: dict,
    figs: dict,
    class_names: tuple[str, str],
) -> str:
    """``report.html`` from ``templates/report.html``; figures inlined as data URIs."""
    th = pd.DataFrame(
        [
            {
                "model": m,
                **{op: t.get(op, math.nan) for op in OPERATING_POINTS},
                "source": metrics["threshold_source"].get(m, ""),
            }
            for m, t in metrics["thresholds"].items()
        ]
    )
    return render(
        "report.html",
        title=f"multibone evaluation: {run_dir.name}",
        heading=f"multibone evaluation: {run_dir.name}",
        synthetic=(run_dir / "cohort" / "SYNTHETIC_README.txt").is_file(),
        models=metrics["models"],
        positive_class=metrics["positive_class"],
        negative_class=class_names[0],
        n_boot=metrics["n_boot"],
        seed=metrics["seed"],
        warnings=metrics["warnings"],
        thresholds=table(th, digits=4),
        summary=table(summary[_SUMMARY_COLUMNS]),
        sets=[_set_context(key, r, figs.get(key, {})) for key, r in results.items()],
        extras=[
            {"title": _EXTRA_TITLES.get(name, name), "table": table(frame),
             "img": _extra_figure(run_dir, name)}
            for name, frame in extras.items()
        ],
        detection=detection_context(run_dir),
        generated_by=metrics["generated_by"],
    )


def _extra_figure(run_dir: Path, name: str) -> str | None:
    """A figure written beside an extra table (the robustness plot), as a data URI."""
    f = run_dir / "robustness" / "robustness.png" if name == "robustness" else None
    return plots.png_base64(f) if f is not None and f.is_file() else None


def _set_context(key: str, r: dict, figs: dict) -> dict:
    """One evaluated set as plain data for the template (tables formatted, figures as URIs)."""
    notes = [v["auc"]["note"] for v in r["models"].values() if v["auc"]["note"]]
    rows = []
    for model, m in r["models"].items():
        for op, row in m["operating_points"].items():
            rows.append(
                {
                    "model": model,
                    "operating point": LABELS.get(op, op),
                    "threshold": row["threshold"],
                    "TP": row["TP"],
                    "FP": row["FP"],
                    "TN": row["TN"],
                    "FN": row["FN"],
                    "accuracy": _ci(row, "accuracy"),
                    "sensitivity": _ci(row, "sensitivity"),
                    "specificity": _ci(row, "specificity"),
                    "PPV": _ci(row, "ppv"),
                    "NPV": _ci(row, "npv"),
                    "F1": _ci(row, "f1", boot=True),
                    "LR+": _ci(row, "lr_pos", digits=2),
                    "LR-": _ci(row, "lr_neg", digits=2),
                }
            )
    vs = pd.DataFrame(_vs_rows(key, r))
    vs_table = None
    if not vs.empty:
        show = vs[
            [
                "model",
                "reference",
                "auc_model",
                "auc_reference",
                "auc_diff",
                "delong_z",
                "delong_p",
                "diff_boot_ci_low",
                "diff_boot_ci_high",
            ]
            + [c for c in vs.columns if c.startswith("mcnemar_") and not c.endswith("accuracy_p")]
        ]
        show = show.rename(columns=lambda c: c.replace("mcnemar_", "McNemar ").replace("_p", " p"))
        vs_table = table(show, p_columns=[c for c in show.columns if c.endswith(" p")])
    cal = pd.DataFrame(
        [
            {
                "model": m,
                **{
                    k: v["calibration"][k]
                    for k in (
                        "intercept",
                        "intercept_ci_low",
                        "intercept_ci_high",
                        "slope",
                        "slope_ci_low",
                        "slope_ci_high",
                        "brier",
                        "oe_ratio",
                    )
                },
            }
            for m, v in r["models"].items()
        ]
    )
    sg, st = r["_subgroups"], r["_subtypes"]
    return {
        "key": key,
        "label": r["label"],
        "n": r["n"],
        "n_pos": r["n_pos"],
        "n_neg": r["n_neg"],
        "auc_note": notes[0] if notes else None,
        "figs": {
            name: plots.png_base64(figs[name]) if figs.get(name) else None
            for name in ("roc", "pr", "confusion", "calibration", "dca")
        },
        "operating_points": table(pd.DataFrame(rows), digits=4),
        "vs_stacker": vs_table,
        "calibration": table(cal),
        "subgroups": None if sg.empty else table(display_table(sg), p_columns=["p_accuracy_differs"]),
        "subgroups_flagged": None if flagged(sg).empty else table(
            display_table(flagged(sg)), p_columns=["p_accuracy_differs"]
        ),
        "subtypes": None if st.empty else table(st),
    }


def _ci(row: dict, k: str, digits: int = 3, boot: bool = False) -> str:
    v = row.get(k)
    lo = row.get(f"{k}_boot_ci_low" if boot else f"{k}_ci_low")
    hi = row.get(f"{k}_boot_ci_high" if boot else f"{k}_ci_high")
    if v is None or not np.isfinite(v):
        return "–"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"
