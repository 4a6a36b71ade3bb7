"""The dashboard's "Model" tab: what the bundle was trained on and how well it did.

Everything comes from the bundle as written by the pipeline: ``bundle.training_data``,
``bundle.thresholds``, ``bundle.family_comparison`` and the evaluation report's files in
``bundle.evaluation_dir`` (figures/*.png, tables/*.csv, metrics.json). Nothing is
recomputed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from multibone.stats import PLAIN_LABELS

# Figure groups in the order a reader wants them: (title, file-name prefixes).
FIGURE_GROUPS = (
    ("ROC curves (with confidence intervals)", ("roc",)),
    ("Calibration", ("calibration", "calib")),
    ("Decision curve (net benefit)", ("dca", "decision")),
)
OP_NAMES = PLAIN_LABELS


def _caption(path: Path) -> str:
    return path.stem.replace("_", " ")


def figure_groups(evaluation_dir: Path | None) -> tuple[list[tuple[str, list[Path]]], list[Path]]:
    """Sort the report's figures into the named groups; return (groups, the rest)."""
    if evaluation_dir is None:
        return [], []
    figures = sorted((evaluation_dir / "figures").glob("*.png"))
    used: set[Path] = set()
    groups = []
    for title, prefixes in FIGURE_GROUPS:
        found = [f for f in figures if f.stem.lower().startswith(prefixes) and f not in used]
        used.update(found)
        groups.append((title, found))
    return groups, [f for f in figures if f not in used]


def _flat_rows(data: object, prefix: str = "") -> list[tuple[str, str]]:
    """Nested training-data dict -> (field, value) rows for a table."""
    if isinstance(data, dict):
        rows = []
        for k, v in data.items():
            rows += _flat_rows(v, f"{prefix}{k}" if not prefix else f"{prefix} / {k}")
        return rows
    if isinstance(data, list | tuple):
        return [(prefix, ", ".join(map(str, data)))]
    return [(prefix, str(data))]


def split_table(by_split: dict) -> dict[str, list]:
    """training_data["by_split"] ({set: {patients, <class>, other, centres}}) as columns."""
    keys: list[str] = []
    for info in by_split.values():
        keys += [k for k in info if k not in keys]
    table: dict[str, list] = {"set": list(by_split)}
    for k in keys:
        table[k] = [
            ", ".join(map(str, v)) if isinstance(v, list | tuple) else v
            for v in (info.get(k, "") for info in by_split.values())
        ]
    return table


def auc_table(metrics: dict) -> dict[str, list]:
    """bundle.json "metrics" ({set: {model: {auc, ci_low, ci_high}}}) as model x set text."""
    sets = [s for s, models in metrics.items() if isinstance(models, dict)]
    models: list[str] = []
    for s in sets:
        models += [m for m in metrics[s] if m not in models]
    if not models:
        return {}
    table: dict[str, list] = {"model": models}
    for s in sets:
        col = []
        for m in models:
            a = metrics[s].get(m) or {}
            if a.get("auc") is None:
                col.append("")
            elif a.get("ci_low") is not None and a.get("ci_high") is not None:
                col.append(f"{a['auc']:.3f} ({a['ci_low']:.3f}-{a['ci_high']:.3f})")
            else:
                col.append(f"{a['auc']:.3f}")
        table[s] = col
    return table


def model_warnings(bundle) -> list[str]:
    """The warnings to read first: shortcut features, models with AUC 1.000 and
    features dropped before fitting (``top_warnings`` of the bundle's metrics.json)."""
    ev = bundle.evaluation_dir
    if ev is None or not (ev / "metrics.json").is_file():
        return []
    try:
        data = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(w) for w in data.get("top_warnings") or []]


def render(bundle) -> None:
    """Draw the Model tab for a loaded :class:`multibone.bundle.Bundle`."""
    for w in model_warnings(bundle):
        (st.warning if w.startswith("Features dropped") else st.error)(w)
    td = bundle.training_data
    st.subheader("Training data")
    if td.get("synthetic"):
        st.warning(
            "This bundle was trained on a SYNTHETIC cohort (simulated radiographs and clinical "
            "data). Its numbers show that the software works, not how it would do on patients."
        )
    elif td:
        st.success("Trained on real (non-synthetic) data, as described below.")
    by_split = td.get("by_split")
    rows = _flat_rows({k: v for k, v in td.items() if k != "by_split"})
    if rows:
        st.dataframe(
            {"field": [r[0] for r in rows], "value": [r[1] for r in rows]}, hide_index=True
        )
    if isinstance(by_split, dict) and by_split:
        st.markdown("Patients by set (dev = development, cross-validated; others held out)")
        st.dataframe(split_table(by_split), hide_index=True)
    if not td:
        st.caption("The bundle does not describe its training data.")

    auc = auc_table(bundle.meta.get("metrics") or {})
    if auc:
        st.subheader("Discrimination (AUC with DeLong 95 % CI)")
        st.dataframe(auc, hide_index=True)

    st.subheader("Operating points")
    st.caption("Chosen on the development data (out-of-fold) and applied unchanged to new cases.")
    th = bundle.thresholds
    if th:
        names = [n for n in OP_NAMES if n in th] + [n for n in th if n not in OP_NAMES]
        st.dataframe(
            {
                "operating point": [OP_NAMES.get(n, n) for n in names],
                "threshold": [round(float(th[n]["threshold"]), 3) for n in names],
                "sensitivity": [round(float(th[n]["sensitivity"]), 3) for n in names],
                "specificity": [round(float(th[n]["specificity"]), 3) for n in names],
            },
            hide_index=True,
        )
    else:
        st.caption("The bundle lists no operating points.")

    ev = bundle.evaluation_dir
    groups, others = figure_groups(ev)
    if ev is None:
        st.info("This bundle carries no evaluation report.")
    for title, figures in groups:
        st.subheader(title)
        if not figures:
            st.caption("No figure of this kind in the bundle's evaluation.")
        cols = st.columns(min(max(len(figures), 1), 3))
        for i, fig in enumerate(figures):
            cols[i % len(cols)].image(str(fig), caption=_caption(fig))

    st.subheader("Model families compared")
    fc = bundle.family_comparison
    if fc is not None and len(fc):
        st.dataframe(fc, hide_index=True)
        st.caption("Cross-validated AUC on the development data (inner patient-grouped CV).")
    else:
        st.caption("The bundle has no family comparison.")

    if ev is not None:
        if others:
            with st.expander(f"Other figures ({len(others)})"):
                cols = st.columns(2)
                for i, fig in enumerate(others):
                    cols[i % 2].image(str(fig), caption=_caption(fig))
        tables = sorted((ev / "tables").glob("*.csv"))
        if tables:
            import pandas as pd

            with st.expander(f"Tables ({len(tables)})"):
                for t in tables:
                    st.markdown(f"**{t.stem.replace('_', ' ')}**")
                    st.dataframe(pd.read_csv(t), hide_index=True)
        metrics = ev / "metrics.json"
        if metrics.is_file():
            with st.expander("All metrics (metrics.json)"):
                try:
                    st.json(json.loads(metrics.read_text(encoding="utf-8")), expanded=False)
                except json.JSONDecodeError:
                    st.caption("metrics.json is not valid JSON.")
