"""SHAP for the stacker: additivity per family, exactness, missing labs, shapes, plots."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from stacking_sim import simulate

from multibone.errors import InputError
from multibone.explain.shap_stacker import (
    StackerExplanation,
    describe_contributions,
    explain_stacker,
    positive_class_base,
    positive_class_values,
    summary_png,
    waterfall_png,
)
from multibone.stacking import FAMILIES, Stacker, make_estimator


@pytest.fixture(scope="module")
def data():
    X, y, g = simulate(n=80, seed=11, backbones=("e3",))
    X.loc[X.index[0], "crp_abnormal"] = np.nan  # row 0: missing CRP
    return X, y, g


@pytest.fixture(scope="module")
def fitted(data):
    X, y, g = data
    small = {"rf": {"n_estimators": 30, "max_depth": 4}, "adaboost": {"n_estimators": 20}}
    return {
        f: Stacker(
            make_estimator(f, **small.get(f, {})), calibration="sigmoid", cv=3, n_background=40
        ).fit(X, y, g)
        for f in FAMILIES
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_contributions_add_up_to_the_uncalibrated_output(data, fitted, family):
    X, _, _ = data
    stk = fitted[family]
    rows = X.iloc[:6]
    assert np.isnan(rows["crp_abnormal"].iloc[0])
    expl = explain_stacker(stk, rows)
    assert expl.values.shape == (6, len(stk.get_feature_names_out()))
    assert expl.feature_names == list(stk.get_feature_names_out())
    total = expl.base_value + expl.values.sum(axis=1)
    np.testing.assert_allclose(total, expl.model_output, atol=1e-6)
    # model_output is the uncalibrated model's own output, computed by the model itself
    if family == "lr":
        assert expl.output_space == "log-odds"
        ref = stk.explain_model_.decision_function(stk.explain_transform(rows))
    else:
        assert expl.output_space == "probability"
        ref = stk.predict_proba_uncalibrated(rows)[:, 1]
    np.testing.assert_allclose(expl.model_output, ref, atol=1e-12)
    np.testing.assert_allclose(expl.calibrated, stk.predict_proba(rows)[:, 1])
    assert expl.exact
    assert expl.explainer_name.startswith("shap.")
    if family in ("adaboost", "knn"):  # no exact tree algorithm: fallback, said so
        assert expl.explainer_name.startswith("shap.KernelExplainer(all ")
        assert "no exact tree algorithm" in expl.note
    elif family == "lr":
        assert expl.explainer_name.startswith("shap.LinearExplainer")
    else:
        assert "TreeExplainer(feature_perturbation='interventional'" in expl.explainer_name


def _brute_force_shapley(f, x, background):
    """Interventional Shapley values from the definition: v(S) = mean over the
    background of f(x on S, background elsewhere)."""
    m = x.shape[0]
    subsets = list(itertools.product([0, 1], repeat=m))
    masks = np.array(subsets, dtype=bool)
    rows = np.where(masks[:, None, :], x[None, None, :], background[None, :, :])
    v = f(rows.reshape(-1, m)).reshape(len(masks), -1).mean(axis=1)
    value = dict(zip(subsets, v, strict=True))
    phi = np.zeros(m)
    for s in subsets:
        k = sum(s)
        for j in range(m):
            if not s[j]:
                w = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
                phi[j] += w * (value[s[:j] + (1,) + s[j + 1 :]] - value[s])
    return phi


@pytest.mark.parametrize("family", ["rf", "knn"])
def test_values_equal_the_shapley_definition(data, fitted, family):
    """Exact explainers (tree, and kernel over all coalitions) against the definition,
    on the missing-CRP row (NaN routing of the forest included)."""
    X, _, _ = data
    stk = fitted[family]
    expl = explain_stacker(stk, X.iloc[:1], background=X.iloc[40:60])
    bg = stk.explain_transform(X.iloc[40:60])
    ref = _brute_force_shapley(
        lambda A: stk.explain_model_.predict_proba(A)[:, 1], expl.data[0], bg
    )
    np.testing.assert_allclose(expl.values[0], ref, atol=1e-6)


def test_linear_values_are_coef_times_centred_input(data, fitted):
    X, _, _ = data
    stk = fitted["lr"]
    expl = explain_stacker(stk, X.iloc[:4])
    coef = stk.explain_model_.coef_[0]
    ref = coef * (expl.data - stk.background_.mean(axis=0))
    np.testing.assert_allclose(expl.values, ref, atol=1e-9)


def test_lr_in_probability_units_on_request(data, fitted):
    X, _, _ = data
    expl = explain_stacker(fitted["lr"], X.iloc[:3], output="probability")
    assert expl.output_space == "probability" and "KernelExplainer" in expl.explainer_name
    np.testing.assert_allclose(expl.base_value + expl.values.sum(1), expl.model_output, atol=1e-6)


@pytest.mark.slow  # shap's permutation explainer JIT-compiles on first use (~10 s)
def test_permutation_fallback_is_additive():
    X, y, g = simulate(n=60, seed=2, backbones=("e3", "e4", "vit", "swin", "resnet50", "inc"))
    stk = Stacker(make_estimator("knn"), calibration="none").fit(X, y, g)
    expl = explain_stacker(stk, X.iloc[:3])
    assert "PermutationExplainer" in expl.explainer_name and not expl.exact
    np.testing.assert_allclose(expl.base_value + expl.values.sum(1), expl.model_output, atol=1e-6)


def test_clinical_only_stacker_explained(data):
    X, y, g = data
    clin = X.drop(columns=["e3"])
    stk = Stacker(make_estimator("xgboost"), calibration="none").fit(clin, y, g)
    expl = explain_stacker(stk, clin.iloc[:3])
    np.testing.assert_allclose(expl.base_value + expl.values.sum(1), expl.model_output, atol=1e-6)


@pytest.mark.parametrize(
    ("raw", "n", "f"),
    [
        ([np.zeros((3, 4)), np.ones((3, 4))], 3, 4),  # per-class list (older RF output)
        (np.stack([np.zeros((3, 4)), np.ones((3, 4))], axis=-1), 3, 4),  # (n, f, 2)
        (np.stack([np.zeros((3, 4)), np.ones((3, 4))]), 3, 4),  # (2, n, f)
        (np.ones((3, 4)), 3, 4),  # already (n, f)
        (np.ones(4), 1, 4),  # one sample
    ],
)
def test_shape_adapter(raw, n, f):
    out = positive_class_values(raw, n, f)
    assert out.shape == (n, f)
    np.testing.assert_array_equal(out, 1.0)


def test_shape_adapter_explanation_object_and_base():
    import shap

    e = shap.Explanation(values=np.ones((2, 3, 2)), base_values=np.tile([0.7, 0.3], (2, 1)))
    assert positive_class_values(e, 2, 3).shape == (2, 3)
    assert positive_class_base(e.base_values, 2) == 0.3
    assert positive_class_base(np.array([0.6, 0.4]), 5) == 0.4
    assert positive_class_base(0.25, 3) == 0.25
    with pytest.raises(InputError, match="does not match 3 samples x 5 features"):
        positive_class_values(np.ones((3, 4)), 3, 5)


def test_sentences_and_pngs(data, fitted, tmp_path):
    X, _, _ = data
    expl = explain_stacker(fitted["rf"], X.iloc[:5])
    assert isinstance(expl, StackerExplanation)
    lines = describe_contributions(expl, 0)
    text = "\n".join(lines)
    assert lines[0].startswith("Starting point: ")
    assert "CRP: missing" in text and "age = " in text and "e3 score = " in text
    assert "towards infection by +" in text or "towards tumor by -" in text
    assert "Calibrated probability of infection" in text and "TreeExplainer" in text
    flipped = "\n".join(
        describe_contributions(expl, 0, positive_class="tumor", negative_class="infection")
    )
    assert "towards tumor" in flipped or "towards infection" in flipped
    lr = explain_stacker(fitted["lr"], X.iloc[:2])
    assert "log-odds" in "\n".join(describe_contributions(lr, 1))
    for path in (waterfall_png(expl, 0, tmp_path / "w.png"), summary_png(expl, tmp_path / "s.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="row 9 out of range"):
        describe_contributions(expl, 9)
