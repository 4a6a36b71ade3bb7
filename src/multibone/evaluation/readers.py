"""Model against human readers (seeds 003 and 004).

Inputs: the truth (patient_id, label), the model's binary call per patient
(stacker at its Youden threshold, or any score file at a given threshold) and
a reads file with one row per (patient, reader): ``patient_id``, ``reader``,
``call`` (``tumor``/``tumour``/``infection`` or 0/1 where 1 is the positive
class) and an optional ``group`` (e.g. seniority group, as EG1-EG3 in seed 004).

Reported:

* per reader, per group (all reads of its readers pooled) and for the model:
  accuracy, sensitivity, specificity, PPV, NPV with Wilson CIs; Cohen's kappa
  against the truth (ASE CI); the difference of kappas model - reader with a
  paired permutation test (seed 003: 10,000 permutations) and McNemar on
  correctness, both on the patients that reader read;
* pairwise Cohen's kappa between all raters (model included) on shared patients;
* Fleiss' kappa (bootstrap CI over patients) within each group, among all
  readers, and among readers + model, on patients read by every rater involved;
* Cochran's Q of correctness across the model and all readers, on the patients
  read by every reader (seed 004).

The model is evaluated on every patient named in the reads file.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from multibone import __version__
from multibone._atomic import atomic_dir
from multibone._html import render
from multibone.disclaimer import DISCLAIMER
from multibone.errors import InputError
from multibone.evaluation import plots
from multibone.evaluation._checks import short_list
from multibone.evaluation._output import jsonable, prepare_out_dir, table, write_json
from multibone.evaluation.agreement import (
    cochran_q,
    cohen_kappa,
    fleiss_kappa,
    kappa_difference_test,
    mcnemar_test,
)
from multibone.evaluation.metrics import confusion_counts, metrics_from_counts

log = logging.getLogger(__name__)

READ_COLUMNS = ("patient_id", "reader", "call")
_CALL_WORDS = {"tumor": "tumor", "tumour": "tumor", "infection": "infection"}


def read_reads(
    path: str | Path, *, positive_class: str = "infection", known_patients: set[str] | None = None
) -> pd.DataFrame:
    """Read a reader-study file; return columns patient_id, reader, call (0/1), group.

    Raises InputError naming missing columns, unreadable calls (rows), duplicate
    (patient, reader) pairs and patients not in ``known_patients``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"reads file {path} not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as CSV ({exc})") from exc
    missing = [c for c in READ_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(READ_COLUMNS)} (+ optional group), found "
            f"{', '.join(map(str, df.columns))}"
        )
    if df.empty:
        raise InputError(f"{path}: no rows")
    problems = []
    raw = df["call"].str.strip().str.lower()
    words = raw.map(_CALL_WORDS)
    numeric = raw.map({"0": 0, "1": 1, "0.0": 0, "1.0": 1})
    call = np.where(words.notna(), (words == positive_class).astype(float), numeric)
    call = pd.Series(call, index=df.index, dtype=float)
    bad = call.isna()
    if bad.any():
        rows = [int(i) + 2 for i in np.flatnonzero(bad)]
        problems.append(
            f"column call must be tumor, tumour, infection, 0 or 1 (1 = "
            f"{positive_class}): rows {short_list(rows)} "
            f"(e.g. {df['call'][bad].iloc[0]!r})"
        )
    empty = (df["patient_id"].str.strip() == "") | (df["reader"].str.strip() == "")
    if empty.any():
        rows = [int(i) + 2 for i in np.flatnonzero(empty)]
        problems.append(f"empty patient_id or reader: rows {short_list(rows)}")
    dup = df.duplicated(["patient_id", "reader"], keep=False) & ~empty
    if dup.any():
        pairs = sorted({f"{p}/{r}" for p, r in df.loc[dup, ["patient_id", "reader"]].to_numpy()})
        problems.append(f"a reader reads a patient more than once: {short_list(pairs)}")
    if known_patients is not None:
        unknown = sorted(set(df["patient_id"][~empty]) - known_patients)
        if unknown:
            problems.append(
                f"{len(unknown)} patient(s) not in the predictions: {short_list(unknown)}"
            )
    if problems:
        raise InputError(f"{path}:\n  " + "\n  ".join(problems))
    group = df["group"].str.strip() if "group" in df.columns else pd.Series("", index=df.index)
    return pd.DataFrame(
        {
            "patient_id": df["patient_id"].str.strip(),
            "reader": df["reader"].str.strip(),
            "call": call.astype(int),
            "group": group,
        }
    )


def _perf_row(name: str, kind: str, y: np.ndarray, c: np.ndarray) -> dict:
    cc = confusion_counts(y, c)
    m = metrics_from_counts(cc["TP"], cc["FP"], cc["TN"], cc["FN"])
    row: dict = {"rater": name, "kind": kind, "n": len(y)}
    row.update({k: v for k, v in m.flat().items() if not k.startswith("lr_") and k != "threshold"})
    k = cohen_kappa(y, c)
    row.update(kappa=k.kappa, kappa_ci_low=k.ci_low, kappa_ci_high=k.ci_high)
    return row


def compare_readers(
    truth: pd.DataFrame,
    model_call: pd.Series,
    reads: pd.DataFrame,
    out_dir: str | Path,
    *,
    model_name: str = "model",
    model_score: pd.Series | None = None,
    threshold: float | None = None,
    n_perm: int = 10_000,
    n_boot: int = 2000,
    seed: int = 0,
    notes: list[str] | None = None,
) -> dict:
    """Compare a model's calls with readers' calls; write readers.html/json, tables/, figures/.

    Parameters
    ----------
    truth : DataFrame with ``patient_id`` (str) and ``label`` (0/1).
    model_call : 0/1 Series indexed by patient_id (the model's call).
    reads : output of :func:`read_reads`.
    out_dir : output folder (an earlier readers output there is replaced).
    model_score, threshold : optional scores (indexed by patient_id) and the
        threshold, to draw the model's ROC curve with the readers as points.
    n_perm : permutations for each kappa difference. n_boot : bootstrap for Fleiss CIs.
    notes : lines shown at the top of the report (e.g. where the threshold came from).
    """
    out = Path(out_dir)
    if model_name in set(reads["reader"]):
        raise InputError(f"a reader is called {model_name!r}, the model's name; rename it")
    prepare_out_dir(out, "readers.json")
    truth = truth.set_index("patient_id")
    pats = sorted(set(reads["patient_id"]))
    y_all = truth.loc[pats, "label"].astype(int)
    mc = model_call.loc[pats].astype(int)
    readers = sorted(reads["reader"].unique())
    wide = reads.pivot(index="patient_id", columns="reader", values="call").reindex(pats)
    complete = wide.dropna().index.tolist()
    groups = {
        g: sorted(reads.loc[reads["group"] == g, "reader"].unique())
        for g in sorted(reads["group"].unique())
        if g
    }

    perf = [_perf_row(model_name, "model", y_all.to_numpy(), mc.to_numpy())]
    tests = []
    for r in readers:
        sub = reads[reads["reader"] == r]
        ids = sub["patient_id"].tolist()
        y = y_all.loc[ids].to_numpy()
        c = sub["call"].to_numpy()
        row = _perf_row(r, "reader", y, c)
        row["group"] = sub["group"].iloc[0]
        perf.append(row)
        m = mc.loc[ids].to_numpy()
        kd = kappa_difference_test(y, m, c, n_perm=n_perm, seed=seed)
        mn = mcnemar_test(m == y, c == y)
        tests.append(
            {
                "reader": r,
                "n": len(ids),
                "kappa_model": kd.kappa_a,
                "kappa_reader": kd.kappa_b,
                "kappa_diff": kd.diff,
                "p_kappa_permutation": kd.p,
                "accuracy_model": float(np.mean(m == y)),
                "accuracy_reader": float(np.mean(c == y)),
                "mcnemar_b": mn.b,
                "mcnemar_c": mn.c,
                "p_mcnemar_accuracy": mn.p,
            }
        )
    for g, members in groups.items():
        sub = reads[reads["reader"].isin(members)]
        perf.append(
            {
                **_perf_row(
                    g,
                    "group (reads pooled)",
                    y_all.loc[sub["patient_id"]].to_numpy(),
                    sub["call"].to_numpy(),
                ),
                "group": g,
            }
        )
    perf_df = pd.DataFrame(perf)

    # pairwise Cohen kappa between raters on shared patients
    raters = {model_name: mc}
    raters.update({r: wide[r].dropna().astype(int) for r in readers})
    pair_rows = []
    for a, b in itertools.combinations(raters, 2):
        shared = raters[a].index.intersection(raters[b].index)
        if len(shared) < 2:
            continue
        k = cohen_kappa(raters[a].loc[shared], raters[b].loc[shared])
        pair_rows.append(
            {
                "rater_a": a,
                "rater_b": b,
                "n": len(shared),
                "kappa": k.kappa,
                "kappa_ci_low": k.ci_low,
                "kappa_ci_high": k.ci_high,
            }
        )
    pair_df = pd.DataFrame(pair_rows)

    # Fleiss' kappa within groups, all readers, readers + model
    fl_rows = []
    sets = {f"group {g}": m for g, m in groups.items() if len(m) >= 2}
    if len(readers) >= 2:
        sets["all readers"] = readers
    sets["all readers + model"] = readers + [model_name]
    for label, members in sets.items():
        cols = [raters[m] for m in members]
        frame = pd.concat(cols, axis=1, keys=members).dropna()
        if len(members) < 2 or len(frame) < 2:
            continue
        k = fleiss_kappa(frame.to_numpy().astype(int), n_boot=n_boot, seed=seed)
        fl_rows.append(
            {
                "raters": label,
                "members": ", ".join(members),
                "n_patients": len(frame),
                "fleiss_kappa": k.kappa,
                "ci_low": k.ci_low,
                "ci_high": k.ci_high,
            }
        )
    fl_df = pd.DataFrame(fl_rows)

    # Cochran's Q on correctness: model + every reader, patients read by all
    cq = None
    if complete and len(readers) >= 1:
        yc = y_all.loc[complete].to_numpy()
        mat = np.column_stack(
            [mc.loc[complete].to_numpy() == yc]
            + [wide.loc[complete, r].to_numpy().astype(int) == yc for r in readers]
        ).astype(int)
        q = cochran_q(mat)
        cq = {**q.to_dict(), "raters": [model_name, *readers], "n_patients": len(complete)}

    res = {
        "generated_by": f"multibone {__version__} readers",
        "disclaimer": DISCLAIMER,
        "model": model_name,
        "threshold": threshold,
        "notes": notes or [],
        "n_patients": len(pats),
        "n_pos": int(y_all.sum()),
        "n_neg": int(len(y_all) - y_all.sum()),
        "readers": readers,
        "groups": groups,
        "n_permutations": n_perm,
        "n_boot": n_boot,
        "seed": seed,
        "performance": perf_df.to_dict(orient="records"),
        "model_vs_reader": tests,
        "pairwise_kappa": pair_rows,
        "fleiss": fl_rows,
        "cochran_q": cq,
    }
    tests_df = pd.DataFrame(tests)
    with atomic_dir(out, force=True) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        perf_df.to_csv(tmp / "tables" / "performance.csv", index=False)
        tests_df.to_csv(tmp / "tables" / "model_vs_readers.csv", index=False)
        pair_df.to_csv(tmp / "tables" / "pairwise_kappa.csv", index=False)
        fl_df.to_csv(tmp / "tables" / "fleiss_kappa.csv", index=False)
        fig = None
        if model_score is not None:
            fig = _roc_with_readers(
                tmp / "figures" / "roc_readers.png",
                y_all,
                model_score.loc[pats],
                perf_df,
                model_name,
                threshold,
            )
        write_json(res, tmp / "readers.json")
        (tmp / "readers.html").write_text(
            _html(res, perf_df, tests_df, pair_df, fl_df, fig), encoding="utf-8"
        )
    log.info("reader comparison written to %s", out)
    return jsonable(res)  # type: ignore[return-value]


def _roc_with_readers(
    path: Path,
    y: pd.Series,
    score: pd.Series,
    perf: pd.DataFrame,
    model_name: str,
    threshold: float | None,
) -> Path | None:
    from multibone.evaluation._checks import SingleClassError
    from multibone.stats import delong_auc, roc_points

    try:
        a = delong_auc(y.to_numpy(), score.to_numpy())
    except SingleClassError:
        return None
    fpr, tpr, _ = roc_points(y.to_numpy(), score.to_numpy())
    fig = plots.roc_figure(
        [
            {
                "name": model_name,
                "fpr": fpr,
                "tpr": tpr,
                "auc": a.auc,
                "ci_low": a.ci_low,
                "ci_high": a.ci_high,
            }
        ],
        "Model ROC with readers (points)",
    )
    ax = fig.axes[0]
    markers = {"model": "*", "reader": "o", "group (reads pooled)": "s"}
    for _, r in perf.iterrows():
        lab = r["rater"]
        if r["kind"] == "model" and threshold is not None:
            lab = f"{model_name} at p >= {threshold:.3f}"
        size = 13 if r["kind"] == "model" else 8
        ax.plot(
            1 - r["specificity"],
            r["sensitivity"],
            markers.get(r["kind"], "o"),
            ms=size,
            label=lab,
            alpha=0.85,
        )
    ax.legend(loc="lower right", fontsize=7)
    return plots.save_png(fig, path)


def _html(
    res: dict,
    perf: pd.DataFrame,
    tests: pd.DataFrame,
    pairs: pd.DataFrame,
    fleiss: pd.DataFrame,
    fig: Path | None,
) -> str:
    """``readers.html`` from ``templates/readers.html``; the figure inlined as a data URI."""
    cols = [
        c
        for c in [
            "rater",
            "kind",
            "group",
            "n",
            "accuracy",
            "accuracy_ci_low",
            "accuracy_ci_high",
            "sensitivity",
            "sensitivity_ci_low",
            "sensitivity_ci_high",
            "specificity",
            "specificity_ci_low",
            "specificity_ci_high",
            "ppv",
            "npv",
            "f1",
            "kappa",
            "kappa_ci_low",
            "kappa_ci_high",
        ]
        if c in perf.columns
    ]
    return render(
        "readers.html",
        title="multibone readers",
        heading=f"multibone readers: {res['model']} against {len(res['readers'])} reader(s)",
        n_patients=res["n_patients"],
        n_pos=res["n_pos"],
        n_neg=res["n_neg"],
        readers=res["readers"],
        notes=res["notes"],
        n_permutations=res["n_permutations"],
        n_boot=res["n_boot"],
        performance=table(perf[cols]),
        roc_figure=plots.png_base64(fig) if fig is not None else None,
        model_vs_reader=table(tests, p_columns=["p_kappa_permutation", "p_mcnemar_accuracy"]),
        cochran_q=res["cochran_q"],
        pairwise_kappa=table(pairs),
        fleiss_kappa=table(fleiss),
        generated_by=res["generated_by"],
    )


def run_readers(
    reads_path: str | Path,
    *,
    run_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    predictions: str | Path | None = None,
    threshold: float | None = None,
    logits: bool = False,
    model: str = "stacker",
    positive_class: str | None = None,
    n_perm: int = 10_000,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Resolve the model's calls (from a run or a plain score file) and compare with readers.

    * With ``run_dir``: ``p_<model>`` of RUN/predictions.csv at the model's Youden
      threshold from RUN/thresholds.json (``threshold`` overrides it; a missing
      entry is chosen on the dev predictions, with a note). Output default RUN/readers.
    * With ``predictions`` (patient_id, label, score) and ``threshold``: the plain
      file's score >= threshold (the threshold is on the probability scale, after
      the sigmoid when ``logits``). ``out_dir`` is then required.
    """
    from multibone.evaluation.compare import read_score_file
    from multibone.evaluation.report import _positive_class, read_predictions, read_thresholds
    from multibone.stats import choose_operating_points

    notes: list[str] = []
    if n_perm < 1:
        raise InputError(f"--permutations must be >= 1, got {n_perm}")
    if predictions is not None:
        if threshold is None:
            raise InputError("--predictions needs --threshold T (calls are score >= T)")
        if out_dir is None and run_dir is None:
            raise InputError("--out DIR is required with --predictions and no RUN")
        sf = read_score_file(predictions, logits=logits)
        truth = sf[["patient_id", "label"]]
        score = sf.set_index("patient_id")["score"]
        name = Path(predictions).stem
        notes.append(f"model: {Path(predictions).name}, called positive when p >= {threshold:g}.")
    elif run_dir is not None:
        run_dir = Path(run_dir)
        df, models = read_predictions(run_dir / "predictions.csv")
        if model not in models:
            raise InputError(
                f"{run_dir / 'predictions.csv'} has no column p_{model}; models "
                f"there: {', '.join(models)}"
            )
        truth = df[["patient_id", "label"]]
        score = df.set_index("patient_id")[f"p_{model}"]
        name = model
        if threshold is None:
            th = read_thresholds(run_dir / "thresholds.json", models).get(model, {})
            if "youden" in th:
                threshold = th["youden"]
                notes.append(
                    f"model: {model} at its Youden threshold {threshold:.4f} from "
                    "thresholds.json (chosen on dev)."
                )
            else:
                dev = df[df["split"] == "dev"]
                if len(dev) == 0 or dev["label"].nunique() < 2:
                    raise InputError(
                        f"no Youden threshold for {model} in thresholds.json and "
                        "no dev predictions to choose one; pass --threshold T"
                    )
                threshold = choose_operating_points(dev["label"], dev[f"p_{model}"], ("youden",))[
                    "youden"
                ].threshold
                notes.append(
                    f"thresholds.json had no Youden threshold for {model}; "
                    f"{threshold:.4f} was chosen here on the dev predictions."
                )
        else:
            notes.append(f"model: {model} at the threshold given, p >= {threshold:g}.")
        if positive_class is None:
            positive_class = _positive_class(run_dir)
        if out_dir is None:
            out_dir = run_dir / "readers"
    else:
        raise InputError("give a RUN folder or --predictions FILE --threshold T")
    positive_class = positive_class or "infection"
    if positive_class not in _CALL_WORDS.values():
        raise InputError(f"--positive-class must be tumor or infection, got {positive_class!r}")
    reads = read_reads(
        reads_path, positive_class=positive_class, known_patients=set(truth["patient_id"])
    )
    calls = (score >= float(threshold)).astype(int)
    return compare_readers(
        truth,
        calls,
        reads,
        out_dir,
        model_name=name,
        model_score=score,
        threshold=float(threshold),
        n_perm=n_perm,
        n_boot=n_boot,
        seed=seed,
        notes=notes,
    )
