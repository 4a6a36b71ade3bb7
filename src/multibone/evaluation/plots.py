"""Figures of the evaluation report (matplotlib, Agg canvas, no pyplot state).

Each function returns a :class:`matplotlib.figure.Figure`; :func:`save_png`
writes it. Figures are built without ``pyplot`` so nothing global (backend,
open-figure registry) is touched and memory is freed with the object.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 110


def _new(figsize: tuple[float, float] = (5.6, 5.0), ncols: int = 1) -> tuple[Figure, list]:
    # fixed margins instead of constrained layout: layout engines redraw the
    # figure to measure it, which doubles the cost of every report figure
    fig = Figure(figsize=figsize, dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _color(i: int) -> str:
    cycle = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    ]
    return cycle[i % len(cycle)]


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG at the module's DPI; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def png_base64(path: str | Path) -> str:
    """``data:image/png;base64,...`` URI of a PNG file (for a self-contained HTML)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def roc_figure(curves: Sequence[dict], title: str) -> Figure:
    """ROC curves, one per model.

    Each dict: ``name``, ``fpr``, ``tpr`` (arrays), ``auc``, ``ci_low``, ``ci_high``
    (DeLong), optional ``band`` = (fpr_grid, tpr_low, tpr_high) drawn as a ribbon.
    With many models only the first three (the report puts stacker, clinical-only
    and image-only first) get a ribbon and the rest are drawn thinner: seven
    overlapping ribbons hide the curves a reader came for.
    """
    fig, (ax,) = _new()
    banded = 3
    for i, c in enumerate(curves):
        col = _color(i)
        band = c.get("band")
        if band is not None and i < banded and np.isfinite(band[1]).all():
            ax.fill_between(
                band[0], band[1], band[2], color=col, alpha=0.13, step="post", linewidth=0
            )
        lab = f"{c['name']}  AUC {c['auc']:.3f} ({c['ci_low']:.3f}-{c['ci_high']:.3f})"
        ax.plot(c["fpr"], c["tpr"], color=col, lw=1.8 if i < banded else 1.0, label=lab)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance (AUC 0.5)")
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="1 - specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        title=title,
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(
        loc="lower right", fontsize=7, title="95% CI: DeLong; band: bootstrap" + (" (first 3)" if len(curves) > banded else ""),
        title_fontsize=7,
    )
    return fig


def pr_figure(curves: Sequence[dict], prevalence: float, title: str) -> Figure:
    """PR curves; each dict: ``name``, ``precision``, ``recall``, ``ap``."""
    fig, (ax,) = _new()
    for i, c in enumerate(curves):
        ax.step(
            c["recall"],
            c["precision"],
            where="post",
            color=_color(i),
            lw=1.8,
            label=f"{c['name']}  AP {c['ap']:.3f}",
        )
    ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"prevalence {prevalence:.2f}")
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.03),
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    return fig


def calibration_figure(tables: Sequence[tuple[str, pd.DataFrame, str]], title: str) -> Figure:
    """Decile calibration: observed rate (Wilson CI) vs mean predicted risk.

    ``tables``: (model name, :func:`~multibone.evaluation.calibration.calibration_table`
    output, legend suffix such as "slope 0.91").
    """
    fig, (ax,) = _new()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for i, (name, tab, suffix) in enumerate(tables):
        if tab.empty:
            continue
        # clip: float rounding can put a Wilson bound a hair on the wrong side
        err = np.clip(
            np.vstack(
                [
                    tab["observed"] - tab["observed_ci_low"],
                    tab["observed_ci_high"] - tab["observed"],
                ]
            ),
            0,
            None,
        )
        ax.errorbar(
            tab["mean_predicted"],
            tab["observed"],
            yerr=err,
            marker="o",
            ms=4,
            lw=1.3,
            capsize=2,
            elinewidth=0.7,
            alpha=0.9,
            color=_color(i),
            label=f"{name}  {suffix}".strip(),
        )
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="mean predicted probability (decile bin)",
        ylabel="observed fraction positive",
        title=title,
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    return fig


def dca_figure(curves: Sequence[tuple[str, pd.DataFrame]], title: str) -> Figure:
    """Decision curves: each model's net benefit against treat-all and treat-none.

    ``curves``: (model name, :func:`~multibone.evaluation.curves.net_benefit` output);
    treat-all is taken from the first frame.
    """
    fig, (ax,) = _new((6.4, 4.6))
    if curves:
        first = curves[0][1]
        ax.plot(first["threshold"], first["treat_all"], color="black", lw=1, label="treat all")
        ax.plot(
            first["threshold"], first["treat_none"], color="black", lw=1, ls=":", label="treat none"
        )
        top = max(float(first["treat_all"].max()), 0.0)
    else:
        top = 0.0
    for i, (name, df) in enumerate(curves):
        ax.plot(df["threshold"], df["net_benefit"], color=_color(i), lw=1.6, label=name)
        top = max(top, float(df["net_benefit"].max()))
    top = top if top > 0 else 0.1
    ax.set(
        xlim=(0, 1),
        ylim=(-0.1 * top - 0.02, top * 1.1 + 0.01),
        xlabel="threshold probability",
        ylabel="net benefit",
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def confusion_figure(
    rows: Sequence[tuple[str, Sequence[tuple[str, dict, float]]]],
    title: str,
    class_names: tuple[str, str] = ("negative", "positive"),
) -> Figure:
    """Grid of confusion matrices: one row per model, one column per operating point.

    ``rows``: (model name, [(operating point name, {"TP","FP","TN","FN"}, threshold), ...]).
    In each matrix rows are the truth and columns the call; cells show the count
    and the row percentage (so the diagonal reads specificity, sensitivity).
    """
    nr = max(1, len(rows))
    nc = max(1, max((len(r[1]) for r in rows), default=1))
    w, h = 2.5 * nc + 0.9, 2.45 * nr + 1.1
    fig = Figure(figsize=(w, h), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.9 / w,
        right=1 - 0.15 / w,
        bottom=0.45 / h,
        top=1 - 0.95 / h,
        wspace=0.55,
        hspace=0.75,
    )
    axes = fig.subplots(nr, nc, squeeze=False)
    neg, pos = class_names
    for r, (model, mats) in enumerate(rows):
        for col in range(nc):
            ax = axes[r][col]
            if col >= len(mats):
                ax.set_axis_off()
                continue
            name, c, thr = mats[col]
            m = np.array([[c["TN"], c["FP"]], [c["FN"], c["TP"]]], dtype=float)
            tot = m.sum(axis=1, keepdims=True)
            frac = np.divide(m, tot, out=np.zeros_like(m), where=tot > 0)
            ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
            for i in range(2):
                for j in range(2):
                    ax.text(
                        j,
                        i,
                        f"{int(m[i, j])}\n{frac[i, j]:.0%}",
                        ha="center",
                        va="center",
                        fontsize=9,
                        color="white" if frac[i, j] > 0.6 else "black",
                    )
            ax.set_xticks([0, 1], [neg, pos], fontsize=7)
            ax.set_yticks([0, 1], [neg, pos], fontsize=7)
            ax.set_xlabel("called", fontsize=7)
            ax.set_ylabel(f"{model}\ntruth" if col == 0 else "truth", fontsize=7)
            ax.set_title(f"{model}: {name}\n(p >= {thr:.3f})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def threshold_figure(curves: Sequence[dict], title: str) -> Figure:
    """Sensitivity (solid) and specificity (dashed) against the threshold (seed 000, Fig. 2).

    Each dict: ``name``, ``thresholds``, ``sensitivity``, ``specificity`` and
    ``points`` {operating point name: threshold} drawn as vertical lines.
    """
    fig, (ax,) = _new((6.4, 5.6))
    fig.subplots_adjust(bottom=0.3)
    styles = {"youden": "-.", "sens90": ":", "spec90": (0, (5, 1)), "maxf1": (0, (1, 3))}
    for i, c in enumerate(curves):
        col = _color(i)
        ax.plot(
            c["thresholds"], c["sensitivity"], color=col, lw=1.6, label=f"{c['name']} sensitivity"
        )
        ax.plot(
            c["thresholds"],
            c["specificity"],
            color=col,
            lw=1.6,
            ls="--",
            label=f"{c['name']} specificity",
        )
        for name, t in c.get("points", {}).items():
            ax.axvline(t, color=col, lw=0.9, ls=styles.get(name, ":"), alpha=0.8)
    ax.set(
        xlim=(0, 1),
        ylim=(-0.01, 1.01),
        xlabel="threshold (score >= t is positive)",
        ylabel="proportion",
        title=title,
    )
    ax.grid(alpha=0.3)
    # below the axes: inside it would hide the curves it explains
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=2,
        fontsize=7,
        title="vertical lines: -. Youden   : sensitivity >= 0.90   -- specificity >= 0.90",
        title_fontsize=7,
    )
    return fig
