"""SHAP explanations of the stacker, per patient and over a cohort.

What is explained: the fitted, **uncalibrated** model of the stacker
(``Stacker.explain_model_``) on the exact matrix it saw
(``Stacker.explain_transform(X)``: imputed, with missing-indicator columns,
scaled, as the family requires). Calibration is a monotone map applied after
the model; it is reported next to the explanation (``calibrated``), never mixed
into the contributions. Contributions plus the base value add up to the
uncalibrated model output (``model_output``) for every patient.

Explainer per family, chosen explicitly (never shap's ``algorithm="auto"``),
and recorded in :attr:`StackerExplanation.explainer_name`:

=========================  ==================================================
RF, DT, GBDT, LightGBM,    ``shap.TreeExplainer(data=background,
XGBoost                    feature_perturbation="interventional",
                           model_output="probability")``: exact interventional
                           Shapley values in probability units.
LR                         ``shap.LinearExplainer`` with an ``Independent``
                           masker: exact, in **log-odds** units
                           (``output_space="log-odds"``); ask
                           ``output="probability"`` for the model-agnostic
                           explainer in probability units instead.
AdaBoost, KNN (no exact    ``shap.KernelExplainer`` over all 2^M - 2
tree algorithm in shap)    coalitions and a 50-patient background (exact
                           Shapley values) when there are at most 10 model
                           features, else ``shap.PermutationExplainer``
                           (sampled permutations, seeded; additive by
                           construction, values approximate).
=========================  ==================================================

Base value: the mean model output over the background patients (default: up
to 100 training patients kept by the stacker; 50 for model-agnostic
explainers). A contribution reads "this patient's value of the feature moved
the output from that average by this much".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multibone._atomic import atomic_path
from multibone.errors import InputError
from multibone.stacking.families import family_of, get_family
from multibone.stacking.features import describe_value, feature_label

#: Model features up to which the model-agnostic case uses the exact explainer.
EXACT_MAX_FEATURES = 10
#: Background rows of the model-agnostic explainers (cost grows linearly).
AGNOSTIC_BACKGROUND = 50


@dataclasses.dataclass
class StackerExplanation:
    """SHAP values of a stacker for n patients over its f model features.

    Attributes
    ----------
    values: float64 (n, f), contribution of each model feature, in ``output_space``
        units, towards the positive class.
    base_value: float, mean model output over the background (same units).
    data: float64 (n, f), the matrix the model saw (after imputation/scaling).
    feature_names: f names of the model features (``Stacker.get_feature_names_out``);
        ``missingindicator_<x>`` columns are 1 where x was missing.
    explainer_name: the shap explainer and its settings, e.g.
        ``shap.TreeExplainer(feature_perturbation='interventional', model_output='probability')``.
    output_space: ``"probability"`` or ``"log-odds"``.
    model_output: float64 (n,), uncalibrated model output in ``output_space``;
        equals ``base_value + values.sum(axis=1)``.
    calibrated: float64 (n,), the stacker's calibrated P(positive) (shown
        separately; not what the contributions add up to unless calibration is none).
    raw: DataFrame (n, input features), the patients' inputs before any
        transformation (index kept, e.g. patient ids), used for readable labels.
    family, calibration: of the stacker. exact: True for exact explainers.
    note: why a fallback explainer was used ("" otherwise).
    """

    values: np.ndarray
    base_value: float
    data: np.ndarray
    feature_names: list[str]
    explainer_name: str
    output_space: str
    model_output: np.ndarray
    calibrated: np.ndarray
    raw: pd.DataFrame
    family: str = ""
    calibration: str = ""
    exact: bool = True
    note: str = ""

    def feature_text(self, i: int) -> list[str]:
        """Readable ``feature: value`` for every model feature of row i
        (``age = 62 y``, ``CRP: missing``, ``e3 score = 0.81``)."""
        out = []
        imputed = not get_family(self.family).native_nan if self.family else False
        for j, name in enumerate(self.feature_names):
            if name in self.raw.columns:
                value = float(self.raw.iloc[i][name])
                text = describe_value(name, value)
                if imputed and np.isnan(value):
                    text += " (filled with the training median)"
                out.append(text)
            else:
                out.append(describe_value(name, float(self.data[i, j])))
        return out


def positive_class_values(values: Any, n_samples: int, n_features: int) -> np.ndarray:
    """Turn any shap output into float64 (n_samples, n_features) for the positive class.

    Accepts a ``shap.Explanation``; a list of per-class arrays (older RF output:
    ``[neg (n, f), pos (n, f)]``); a 3-D array ``(n, f, classes)`` (shap >= 0.45
    for RF/DT) or ``(classes, n, f)``; a 2-D ``(n, f)`` array; a 1-D ``(f,)``
    array for a single sample. The positive class is the last class.
    """
    if hasattr(values, "values") and not isinstance(values, (np.ndarray, list, pd.DataFrame)):
        values = values.values
    if isinstance(values, list):
        values = np.asarray(values[-1])
    arr = np.asarray(values, dtype="float64")
    if arr.ndim == 1 and arr.shape[0] == n_features and n_samples == 1:
        arr = arr.reshape(1, n_features)
    elif arr.ndim == 3:
        if arr.shape[:2] == (n_samples, n_features):
            arr = arr[:, :, -1]
        elif arr.shape[1:] == (n_samples, n_features):
            arr = arr[-1]
    if arr.shape != (n_samples, n_features):
        raise InputError(
            f"SHAP output of shape {np.shape(values)} does not match {n_samples} samples x "
            f"{n_features} features"
        )
    return arr


def positive_class_base(base: Any, n_samples: int) -> float:
    """Base value of the positive class as one float (from a scalar, a
    per-class array, or a per-sample array of equal values)."""
    arr = np.atleast_1d(np.asarray(base, dtype="float64"))
    if arr.ndim == 2:  # (n, classes)
        arr = arr[:, -1]
    if arr.size == n_samples and n_samples > 1:
        if not np.allclose(arr, arr[0]):
            raise InputError("SHAP base values differ between samples; expected one background")
        return float(arr[0])
    return float(arr[-1])


def _proba_fn(model: Any):
    def f(A: np.ndarray) -> np.ndarray:
        return np.asarray(
            model.predict_proba(np.asarray(A, dtype="float64"))[:, 1], dtype="float64"
        )

    return f


def _agnostic(model, Z, bg, seed: int):
    """Model-agnostic SHAP in probability units over background ``bg``.

    At most EXACT_MAX_FEATURES features: KernelExplainer over *all* 2^M - 2
    coalitions, which makes Kernel SHAP's weighted regression return the exact
    Shapley values (Lundberg & Lee 2017, Theorem 2), deterministic, with no
    numba compilation (shap's Exact/Permutation explainers JIT-compile on first
    use: ~10 s). More features: PermutationExplainer, seeded; additive by
    construction, values approximate.
    """
    import shap

    n_features = Z.shape[1]
    f = _proba_fn(model)
    if n_features <= EXACT_MAX_FEATURES:
        nsamples = 2**n_features - 2
        explainer = shap.KernelExplainer(f, bg)
        # l1_reg=False: shap's default keeps only 10 features (LARS) - never wanted here
        values = explainer.shap_values(Z, nsamples=nsamples, l1_reg=False, silent=True)
        base = explainer.expected_value
        name = (
            f"shap.KernelExplainer(all {nsamples} coalitions = exact, "
            f"{bg.shape[0]} background rows, l1_reg=False)"
        )
        exact = True
    else:
        max_evals = 20 * n_features + 1
        masker = shap.maskers.Independent(bg, max_samples=bg.shape[0])
        explainer = shap.PermutationExplainer(f, masker, seed=seed)
        result = explainer(Z, max_evals=max_evals, batch_size=max_evals * bg.shape[0], silent=True)
        values, base = result.values, result.base_values
        name = (
            f"shap.PermutationExplainer(masker=Independent({bg.shape[0]} background rows), "
            f"max_evals={max_evals}, seed={seed})"
        )
        exact = False
    return values, base, name, exact, f(Z)


def explain_stacker(
    stacker: Any,
    X: pd.DataFrame,
    background: pd.DataFrame | None = None,
    *,
    output: str = "default",
    seed: int = 0,
) -> StackerExplanation:
    """SHAP contributions of every model feature for each row of X.

    Parameters
    ----------
    stacker: a fitted :class:`multibone.stacking.Stacker`.
    X: DataFrame (n, features the stacker was fitted on): backbone
        probabilities in [0, 1] and clinical features (NaN = missing).
    background: reference patients in the same raw format as X (default: the
        stacker's ``background_``, up to 100 training patients).
    output: ``"default"`` (exact explainer per family; LR in log-odds) or
        ``"probability"`` (probability units for every family: LR then uses
        the model-agnostic explainer).
    seed: seed of the background subsample and of the permutation explainer.

    Returns
    -------
    :class:`StackerExplanation`; ``values.sum(1) + base_value == model_output``.
    """
    import shap

    if output not in ("default", "probability"):
        raise InputError(f"output: {output!r} is not 'default' or 'probability'")
    if not hasattr(stacker, "explain_model_"):
        raise InputError("explain_stacker: the stacker is not fitted (no explain_model_)")
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(np.asarray(X), columns=list(stacker.feature_names_in_))
    raw = X[list(stacker.feature_names_in_)].copy()
    Z = stacker.explain_transform(raw)
    bg = stacker.background_ if background is None else stacker.explain_transform(background)
    model = stacker.explain_model_
    spec = family_of(model)  # None: a model outside the registry -> model-agnostic
    kind = "agnostic" if spec is None else spec.explainer
    if kind == "linear" and output == "probability":
        kind = "agnostic"
    note = ""
    space = "probability"
    exact = True
    rng = np.random.default_rng(seed)

    if kind == "tree":
        try:
            explainer = shap.TreeExplainer(
                model, data=bg, feature_perturbation="interventional", model_output="probability"
            )
            raw_values = explainer.shap_values(Z, check_additivity=True)
            base = explainer.expected_value
            name = (
                "shap.TreeExplainer(feature_perturbation='interventional', "
                f"model_output='probability', {bg.shape[0]} background rows)"
            )
            fx = _proba_fn(model)(Z)
        except Exception as exc:  # shap cannot take this model: say so, then fall back
            note = f"TreeExplainer failed ({type(exc).__name__}: {exc}); model-agnostic fallback"
            kind = "agnostic"
    if kind == "linear":
        explainer = shap.LinearExplainer(
            model, shap.maskers.Independent(bg, max_samples=bg.shape[0])
        )
        raw_values = explainer.shap_values(Z)
        base = explainer.expected_value
        name = f"shap.LinearExplainer(masker=Independent({bg.shape[0]} background rows))"
        fx = np.asarray(model.decision_function(Z), dtype="float64")
        space = "log-odds"
    if kind == "agnostic":
        if bg.shape[0] > AGNOSTIC_BACKGROUND:
            bg = bg[np.sort(rng.choice(bg.shape[0], AGNOSTIC_BACKGROUND, replace=False))]
        raw_values, base, name, exact, fx = _agnostic(model, Z, bg, seed)
        if not note and (spec is None or spec.explainer == "agnostic"):
            label = type(model).__name__ if spec is None else spec.label
            note = f"{label} has no exact tree algorithm in shap; model-agnostic explainer used"
        elif not note:
            note = "probability units requested: model-agnostic explainer used"

    n, f = Z.shape
    values = positive_class_values(raw_values, n, f)
    base_value = positive_class_base(base, n)
    return StackerExplanation(
        values=values,
        base_value=base_value,
        data=np.asarray(Z, dtype="float64"),
        feature_names=[str(c) for c in stacker.get_feature_names_out()],
        explainer_name=name,
        output_space=space,
        model_output=np.asarray(fx, dtype="float64"),
        calibrated=np.asarray(stacker.predict_proba(raw)[:, 1], dtype="float64"),
        raw=raw,
        family=stacker.family_,
        calibration=stacker.calibration,
        exact=exact,
        note=note,
    )


def _units(expl: StackerExplanation) -> str:
    return "" if expl.output_space == "probability" else " log-odds"


def describe_contributions(
    expl: StackerExplanation,
    i: int,
    positive_class: str = "infection",
    negative_class: str = "tumor",
    *,
    top: int | None = None,
) -> list[str]:
    """Sentences a clinician reads, for row i (0-based position in X).

    First line: the starting point (base value). Then one line per feature,
    largest effect first, e.g. ``age = 62 y pushed towards infection by +0.11``
    (signed on the scale of the positive class: negative numbers push towards
    ``negative_class``). Then the uncalibrated output they add up to, the
    calibrated probability (shown separately), and the explainer used.
    """
    if not 0 <= i < expl.values.shape[0]:
        raise InputError(f"row {i} out of range: the explanation has {expl.values.shape[0]} rows")
    unit = _units(expl)
    scale = "probability" if expl.output_space == "probability" else "log-odds"
    small = 0.005 if expl.output_space == "probability" else 0.02
    texts = expl.feature_text(i)
    v = expl.values[i]
    order = np.argsort(-np.abs(v), kind="stable")
    if top is not None:
        order = order[:top]
    lines = [
        f"Starting point: {expl.base_value:.2f}{unit} ({scale} of {positive_class} of the "
        "uncalibrated model, averaged over the reference patients)"
    ]
    for j in order:
        c = float(v[j])
        if abs(c) < small:
            lines.append(f"{texts[j]} had almost no effect ({c:+.2f}{unit})")
        else:
            towards = positive_class if c > 0 else negative_class
            lines.append(f"{texts[j]} pushed towards {towards} by {c:+.2f}{unit}")
    lines.append(
        f"Model output (uncalibrated): {expl.model_output[i]:.2f}{unit} = starting point + "
        "the contributions above"
    )
    if expl.calibration != "none":
        lines.append(
            f"Calibrated probability of {positive_class}: {expl.calibrated[i]:.2f} "
            f"({expl.calibration} calibration, applied after the model; SHAP explains the "
            "uncalibrated model)"
        )
    lines.append(f"Explainer: {expl.explainer_name}" + (f"; {expl.note}" if expl.note else ""))
    return lines


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def waterfall_png(
    expl: StackerExplanation,
    i: int,
    path: str | Path,
    *,
    positive_class: str = "infection",
    negative_class: str = "tumor",
    max_display: int = 10,
) -> Path:
    """Waterfall chart of row i: base value, each feature's push, model output.

    Bars are labelled with the feature's value (``CRP: abnormal``, ``age = 62 y``,
    ``e3 score = 0.81``); red pushes towards ``positive_class``, blue towards
    ``negative_class``. Features beyond ``max_display`` are summed into one bar.
    The calibrated probability is printed below, separately. Written atomically.
    """
    if not 0 <= i < expl.values.shape[0]:
        raise InputError(f"row {i} out of range: the explanation has {expl.values.shape[0]} rows")
    v = expl.values[i]
    texts = expl.feature_text(i)
    order = list(np.argsort(-np.abs(v), kind="stable"))
    shown = order[:max_display]
    rest = order[max_display:]
    items = [(texts[j], float(v[j])) for j in shown]
    if rest:
        items.append((f"{len(rest)} other features", float(v[rest].sum())))
    items = items[::-1]  # smallest at the bottom, largest on top
    unit = _units(expl)
    fig = _figure(8.0, 1.2 + 0.42 * len(items))
    ax = fig.subplots()
    # cumulative path from the base (bottom bar) to the model output (top bar)
    lefts = expl.base_value + np.concatenate([[0.0], np.cumsum([c for _, c in items])[:-1]])
    ends = np.concatenate([lefts, lefts + np.array([c for _, c in items])])
    pad = 0.01 * max(float(ends.max() - ends.min()), 1e-6)
    for k, ((_, c), left) in enumerate(zip(items, lefts, strict=True)):
        ax.barh(k, c, left=left, color="#d62728" if c > 0 else "#1f77b4", height=0.6)
        ax.text(
            left + c + (pad if c >= 0 else -pad),
            k,
            f"{c:+.3f}",
            va="center",
            ha="left" if c >= 0 else "right",
            fontsize=8,
        )
    ax.margins(x=0.15)
    ax.set_yticks(range(len(items)), [label for label, _ in items], fontsize=9)
    ax.axvline(expl.base_value, color="grey", ls=":", lw=1)
    ax.axvline(float(expl.model_output[i]), color="black", ls="--", lw=1)
    space = "probability" if expl.output_space == "probability" else "log-odds"
    ax.set_xlabel(
        f"uncalibrated model output ({space} of {positive_class})\n"
        f"red: towards {positive_class}, blue: towards {negative_class}; "
        f"SHAP: {expl.explainer_name.split('(')[0]}",
        fontsize=9,
    )
    title = (
        f"Patient {expl.raw.index[i]}: {expl.base_value:.2f} (average) -> "
        f"{expl.model_output[i]:.2f}{unit} (uncalibrated)"
    )
    if expl.calibration != "none":
        title += (
            f"\ncalibrated probability of {positive_class} = {expl.calibrated[i]:.2f} "
            f"({expl.calibration}, applied after the model; not part of SHAP)"
        )
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def summary_png(expl: StackerExplanation, path: str | Path, *, max_display: int = 15) -> Path:
    """Global importance: mean |SHAP| per model feature over all rows, as a bar chart."""
    mean_abs = np.abs(expl.values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")[:max_display][::-1]
    labels = [feature_label(expl.feature_names[j]) for j in order]
    fig = _figure(7.0, 1.2 + 0.38 * len(order))
    ax = fig.subplots()
    ax.barh(range(len(order)), mean_abs[order], color="#7f7f7f", height=0.6)
    ax.set_yticks(range(len(order)), labels, fontsize=9)
    space = "probability" if expl.output_space == "probability" else "log-odds"
    ax.set_xlabel(f"mean |SHAP value| ({space} units, uncalibrated model)")
    ax.set_title(
        f"Feature importance over {expl.values.shape[0]} patients ({expl.family}; "
        f"{expl.explainer_name.split('(')[0]})",
        fontsize=10,
    )
    return _save(fig, path)
