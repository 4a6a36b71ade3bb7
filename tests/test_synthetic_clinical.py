"""The synthetic clinical table follows seed 004's Table 1 within sampling error.

Reference values are typed in here from the paper (Table 1: 1208 tumours, 784
infections), not imported from the module under test. Tolerances are 4
standard errors of the sampled quantity (binomial for shares), so a correct
generator fails with probability well under 1e-3 per check; the seeds are fixed,
so the test is deterministic anyway.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from multibone.errors import InputError
from multibone.synthetic import synthetic_patients

N = 1000
Z = 4.0

# Seed 004 Table 1 (counts / class size) and DESIGN.md for the infection subtypes.
TABLE1 = {
    "tumor": {
        "n": 1208,
        "age": (24.85, 18.18),
        "female": 498,
        "appendicular": 1044,
        "crp": {"normal": 655, "abnormal": 440, "missing": 113},
        "esr": {"normal": 286, "abnormal": 803, "missing": 119},
        "subtype_group": {"benign": 767, "intermediate": 190, "malignant": 251},
    },
    "infection": {
        "n": 784,
        "age": (45.65, 18.95),
        "female": 298,
        "appendicular": 314,
        "crp": {"normal": 194, "abnormal": 389, "missing": 201},
        "esr": {"normal": 53, "abnormal": 536, "missing": 195},
        "subtype_group": {"tuberculosis": 0.69, "osteomyelitis": 0.31},
    },
}


def _check_share(observed: np.ndarray, p: float, what: str) -> None:
    n = len(observed)
    se = math.sqrt(p * (1 - p) / n)
    got = float(np.mean(observed))
    assert abs(got - p) <= Z * se, f"{what}: {got:.3f} vs {p:.3f} (n={n}, 4 SE={Z * se:.3f})"


@pytest.fixture(scope="module", params=[0, 1, 2])
def table(request):
    return synthetic_patients(N, seed=request.param)


def test_tumour_share(table):
    # Exact counts per centre (largest remainder), so the share is 60.6 % up to rounding.
    share = (table.diagnosis == "tumor").mean()
    assert abs(share - 1208 / 1992) <= 2 / N


@pytest.mark.parametrize("dx", ["tumor", "infection"])
def test_categorical_characteristics(table, dx):
    ref = TABLE1[dx]
    g = table[table.diagnosis == dx]
    n = ref["n"]
    _check_share((g.sex == "F").to_numpy(), ref["female"] / n, f"{dx} female")
    _check_share(
        (g.location == "appendicular").to_numpy(), ref["appendicular"] / n, f"{dx} appendicular"
    )
    for lab in ("crp", "esr"):
        total = sum(ref[lab].values())
        for cat, count in ref[lab].items():
            _check_share((g[f"{lab}_status"] == cat).to_numpy(), count / total, f"{dx} {lab} {cat}")
    groups = ref["subtype_group"]
    total = sum(groups.values())
    for grp, count in groups.items():
        _check_share((g.subtype_group == grp).to_numpy(), count / total, f"{dx} {grp}")


@pytest.mark.parametrize("dx", ["tumor", "infection"])
def test_age_mean_and_sd_in_adult_centres(dx):
    # Table 1 ages hold where no centre is paediatric (centre C restricts ages to < 18).
    t = synthetic_patients(N, seed=5, center_shares={"A": 0.5, "B": 0.5})
    age = t.loc[t.diagnosis == dx, "age"].to_numpy(float)
    mean, sd = TABLE1[dx]["age"]
    n = len(age)
    assert abs(age.mean() - mean) <= Z * sd / math.sqrt(n), (dx, age.mean())
    # SE of an SD ~ sd / sqrt(2 n) for near-normal data; 6 SE for the heavier beta tails.
    assert abs(age.std(ddof=1) - sd) <= 6 * sd / math.sqrt(2 * n), (dx, age.std(ddof=1))
    assert age.min() >= 1 and age.max() <= 90


def test_centres_and_paediatric_ages(table):
    counts = table.center.value_counts()
    assert counts.to_dict() == {"A": 600, "B": 200, "C": 200}
    assert table.loc[table.center == "C", "age"].max() < 18
    assert table.loc[table.center != "C", "age"].max() > 18
    # Both classes in every centre.
    assert (table.groupby("center").diagnosis.nunique() == 2).all()


def test_lab_values_match_their_category(table):
    for lab, cut in (("crp", 10.0), ("esr", 20.0)):
        st, val, text = table[f"{lab}_status"], table[f"{lab}_value"], table[lab]
        assert (val[st == "normal"] <= cut).all()
        assert (val[st == "abnormal"] > cut).all()
        assert val[st == "missing"].isna().all()
        assert (text[st == "missing"] == "").all()
        present = st != "missing"
        is_word = text.isin(["normal", "abnormal"])
        # Both encodings are exercised (about 15 % of present values are words).
        assert 0.08 < is_word[present].mean() < 0.25
        assert (text[is_word] == st[is_word]).all()
        numeric = present & ~is_word
        assert np.allclose(text[numeric].astype(float), val[numeric])


def test_sites_map_to_location_with_the_cohort_convention(table):
    cohort = pytest.importorskip("multibone.cohort")
    derived = table.site.map(cohort.location_for_site)
    assert (derived == table.location).all()


def test_views_and_ids(table):
    assert set(table.n_views) <= {1, 2, 3}
    assert table.patient_id.is_unique
    assert table.patient_id.iloc[0] == "P0001"


def test_same_seed_same_table_other_seed_differs():
    a, b, c = synthetic_patients(50, 7), synthetic_patients(50, 7), synthetic_patients(50, 8)
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_patients": 0}, "n_patients must be a whole number >= 1"),
        ({"n_patients": -3}, "n_patients must be a whole number >= 1"),
        ({"n_patients": 2.5}, "n_patients must be a whole number >= 1"),
        ({"n_patients": True}, "n_patients must be a whole number >= 1"),
        ({"n_patients": 5, "seed": -1}, "seed must be a whole number >= 0"),
        ({"n_patients": 5, "seed": "1"}, "seed must be a whole number >= 0"),
        ({"n_patients": 5, "center_shares": {}}, "center_shares must map"),
        ({"n_patients": 5, "center_shares": {"A": -1.0}}, "center_shares must map"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        synthetic_patients(**kwargs)
