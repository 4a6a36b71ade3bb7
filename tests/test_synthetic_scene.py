"""Synthetic radiographs: contract of one rendered view, and the evidence model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from multibone.errors import InputError
from multibone.synthetic import draw_lesion, evidence_ceiling_auc, render_view
from multibone.synthetic.clinical import synthetic_patients
from multibone.synthetic.scene import SITE_ANATOMY, feature_strengths
from multibone.synthetic.writer import patient_lesion


@pytest.mark.parametrize(
    ("site", "center", "view", "diagnosis", "subtype"),
    [
        ("femur", "A", "AP", "tumor", "osteosarcoma"),
        ("hand", "B", "lateral", "infection", "osteomyelitis"),
        ("fibula", "C", "oblique", "tumor", "enchondroma"),
        ("spine", "A", "AP", "infection", "tuberculosis"),
        ("spine", "B", "lateral", "tumor", "giant cell tumour of bone"),
        ("pelvis", "C", "AP", "tumor", "chondrosarcoma"),
        ("skull", "A", "AP", "infection", "tuberculosis"),
    ],
)
def test_rendered_view_contract(site, center, view, diagnosis, subtype):
    rng = np.random.default_rng(3)
    lesion = draw_lesion(rng, diagnosis, subtype, 0.5)
    out = render_view(rng, lesion, site=site, view=view, center=center, paediatric=center == "C")
    px = out.pixels
    assert px.dtype == np.float32 and px.ndim == 2
    assert 256 <= px.shape[0] <= 384 and 256 <= px.shape[1] <= 384
    assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0
    assert px.std() > 0.03  # a scene, not a flat field
    x0, y0, x1, y1 = out.roi
    assert 0 <= x0 < x1 <= px.shape[1] and 0 <= y0 < y1 <= px.shape[0]
    assert x1 - x0 >= 8 and y1 - y0 >= 8


def test_same_generator_same_image():
    def one(seed):
        rng = np.random.default_rng(seed)
        lesion = draw_lesion(rng, "tumor", "osteosarcoma", 0.5)
        return render_view(rng, lesion, site="tibia")

    a, b, c = one(1), one(1), one(2)
    assert np.array_equal(a.pixels, b.pixels) and a.roi == b.roi
    assert a.pixels.shape != c.pixels.shape or not np.array_equal(a.pixels, c.pixels)


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_evidence_auc_matches_the_normal_model(difficulty):
    # AUC of the latent score between N(+mu/2, 1) and N(-mu/2, 1) is Phi(mu / sqrt 2);
    # reference from scipy's normal CDF. SE of an AUC with 1500 + 1500 draws < 0.01.
    n = 1500
    rng = np.random.default_rng(11)
    s_t = [draw_lesion(rng, "tumor", "osteosarcoma", difficulty).evidence for _ in range(n)]
    s_i = [draw_lesion(rng, "infection", "tuberculosis", difficulty).evidence for _ in range(n)]
    auc = stats.mannwhitneyu(s_t, s_i).statistic / (n * n)
    mu = np.mean(s_t) - np.mean(s_i)
    assert auc == pytest.approx(evidence_ceiling_auc(difficulty), abs=0.03)
    assert auc == pytest.approx(stats.norm.cdf(mu / math.sqrt(2)), abs=0.03)


def test_default_difficulty_ceiling_is_in_the_design_range():
    # DESIGN.md: image-only AUC around 0.85-0.92; the perfect-observer ceiling sits there.
    assert 0.85 <= evidence_ceiling_auc(0.5) <= 0.92
    assert evidence_ceiling_auc(0.0) > evidence_ceiling_auc(0.5) > evidence_ceiling_auc(1.0)


def test_signs_lean_by_class():
    rng = np.random.default_rng(0)
    t = [feature_strengths(draw_lesion(rng, "tumor", "enchondroma", 0.5)) for _ in range(400)]
    i = [feature_strengths(draw_lesion(rng, "infection", "osteomyelitis", 0.5)) for _ in range(400)]
    for key in ("rim", "matrix"):
        assert np.mean([f[key] for f in t]) > np.mean([f[key] for f in i]) + 0.1
    for key in ("permeative", "lamellated", "breach", "edge_px"):
        assert np.mean([f[key] for f in i]) > np.mean([f[key] for f in t])


def test_pattern_families_carry_no_label_information():
    # Infections get a tumour family drawn at the tumour class's mix, and vice versa.
    table = synthetic_patients(2000, seed=4)
    lesions = [
        patient_lesion(4, i, r.diagnosis, r.subtype, 0.5) for i, r in enumerate(table.itertuples())
    ]
    fam = np.array([les.tumour_family for les in lesions])
    inf = np.array([les.infection_family for les in lesions])
    is_t = (table.diagnosis == "tumor").to_numpy()
    for arr in (fam, inf):
        cats = sorted(set(arr))
        ct = np.array([[np.sum((arr == c) & g) for c in cats] for g in (is_t, ~is_t)])
        assert stats.chi2_contingency(ct).pvalue > 1e-4, ct


def test_lesion_evidence_independent_of_clinical_values_given_label():
    table = synthetic_patients(2000, seed=9)
    s = np.array(
        [
            patient_lesion(9, i, r.diagnosis, r.subtype, 0.5).evidence
            for i, r in enumerate(table.itertuples())
        ]
    )
    for dx in ("tumor", "infection"):
        g = (table.diagnosis == dx).to_numpy()
        n = int(g.sum())
        for col in ("age", "crp_value", "esr_value"):
            x = table.loc[g, col].to_numpy(float)
            ok = ~np.isnan(x)
            r = stats.spearmanr(s[g][ok], x[ok]).statistic
            assert abs(r) < 4 / math.sqrt(n), (dx, col, r)
        female = (table.loc[g, "sex"] == "F").to_numpy()
        r = stats.pointbiserialr(female, s[g]).statistic
        assert abs(r) < 4 / math.sqrt(n), (dx, "sex", r)


def test_every_table_site_has_an_anatomy():
    from multibone.synthetic.clinical import SITE_SHARES

    sites = {s for d in SITE_SHARES.values() for loc in d.values() for s in loc}
    assert sites <= set(SITE_ANATOMY)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda rng: draw_lesion(rng, "tumour?", "x", 0.5), "diagnosis must be tumor or infection"),
        (
            lambda rng: draw_lesion(rng, "tumor", "x", 1.5),
            "difficulty must be a number from 0 to 1",
        ),
        (
            lambda rng: draw_lesion(rng, "tumor", "x", -0.1),
            "difficulty must be a number from 0 to 1",
        ),
        (
            lambda rng: render_view(
                rng, draw_lesion(rng, "tumor", "x", 0.5), site="femur", view="PA"
            ),
            "view must be one of AP, lateral, oblique",
        ),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(InputError, match=match):
        call(np.random.default_rng(0))
