"""The clinical table of the synthetic cohort (one row per patient, no images).

Where seed 004 gives numbers (its Table 1, patient level) they are used as
given; everything else is an assumption, stated next to the constant that
encodes it and repeated in the cohort's ``SYNTHETIC_README.txt``.

From seed 004 Table 1 (1208 tumours, 784 infections):

========================  =====================  =====================
                          tumour (PBT)           infection
========================  =====================  =====================
share of patients         1208/1992 = 60.6 %     784/1992 = 39.4 %
age, years (mean +/- SD)  24.85 +/- 18.18        45.65 +/- 18.95
female                    498 (41.2 %)           298 (38.0 %)
appendicular site         1044 (86.4 %)          314 (40.1 %)
CRP normal/abn./missing   655 / 440 / 113        194 / 389 / 201
ESR normal/abn./missing   286 / 803 / 119        53 / 536 / 195
subtypes                  benign 767, intermediate 190, malignant 251
                                                 tuberculosis ~69 %, osteomyelitis ~31 %
========================  =====================  =====================

Assumptions (not in the seeds):

* **Age** follows a beta distribution scaled to [1, 90] years whose mean and
  SD equal Table 1's exactly (a normal distribution would need truncation at
  0, which shifts the tumour mean by about 2 years). Ages are whole years.
  Centre ``C`` is paediatric: the same class-wise distribution restricted to
  [1, 18) years (inverse-CDF sampling), so age is a shifted, weaker cue there.
* **Centres**: ``A`` 60 % (development), ``B`` 20 % (external adult), ``C`` 20 %
  (external paediatric); the class share is the same in each centre (exact
  counts, rounded), every other characteristic follows Table 1 in all centres.
* **Sites** within a location, and subtype entities within a WHO group, have
  the shares in :data:`SITE_SHARES` and :data:`TUMOUR_ENTITIES` (plausible,
  not from the seeds).
* **Labs**: CRP and ESR are missing together where possible (one blood draw:
  the missing sets are nested), and, when present, abnormal values are
  positively correlated (Gaussian copula, rho = 0.4). Numeric values are drawn
  inside their category from log-normal shapes that are the same for both
  classes, so only the category carries information, as in Table 1:
  CRP normal: median 3 mg/L (sigma 0.8) in [0.1, 10]; abnormal: median 30 mg/L
  (sigma 1.0) in (10, 300]. ESR normal: median 10 mm/h (sigma 0.5) in [1, 20];
  abnormal: median 45 mm/h (sigma 0.5) in (20, 150]. CRP is rounded to 0.1
  mg/L, ESR to whole mm/h. About 15 % of present values are written as the
  words ``normal``/``abnormal`` instead of a number, so both encodings are
  exercised; missing is an empty cell.
* **Views**: 1, 2 or 3 radiographs per patient with probabilities 0.3, 0.5, 0.2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from multibone.errors import InputError

#: Seed 004 Table 1, patient counts per class (the numbers the cohort follows).
TABLE1_COUNTS: dict[str, dict[str, object]] = {
    "tumor": {
        "n": 1208,
        "age_mean": 24.85,
        "age_sd": 18.18,
        "female": 498,
        "appendicular": 1044,
        "crp": {"normal": 655, "abnormal": 440, "missing": 113},
        "esr": {"normal": 286, "abnormal": 803, "missing": 119},
        "groups": {"benign": 767, "intermediate": 190, "malignant": 251},
    },
    "infection": {
        "n": 784,
        "age_mean": 45.65,
        "age_sd": 18.95,
        "female": 298,
        "appendicular": 314,
        "crp": {"normal": 194, "abnormal": 389, "missing": 201},
        "esr": {"normal": 53, "abnormal": 536, "missing": 195},
        # Supplementary Table 2 is not in the seed text; DESIGN.md gives ~69 / ~31 %.
        "groups": {"tuberculosis": 0.69, "osteomyelitis": 0.31},
    },
}

#: Share of patients with a primary bone tumour (1208 / 1992).
TUMOUR_SHARE = 1208 / 1992

#: Centre -> share of patients. A: development; B: external adult; C: external paediatric.
CENTER_SHARES: dict[str, float] = {"A": 0.6, "B": 0.2, "C": 0.2}
PAEDIATRIC_CENTERS = frozenset({"C"})
PAEDIATRIC_MAX_AGE = 18.0

AGE_RANGE = (1.0, 90.0)

#: Assumed site shares within a location, per class (lower-case words that
#: multibone.cohort.SITE_LOCATION knows).
SITE_SHARES: dict[str, dict[str, dict[str, float]]] = {
    "tumor": {
        "appendicular": {
            "femur": 0.34,
            "tibia": 0.24,
            "humerus": 0.14,
            "fibula": 0.07,
            "radius": 0.04,
            "ulna": 0.03,
            "hand": 0.08,
            "foot": 0.06,
        },
        "axial": {"pelvis": 0.38, "spine": 0.30, "sacrum": 0.12, "rib": 0.12, "skull": 0.08},
    },
    "infection": {
        "appendicular": {
            "femur": 0.26,
            "tibia": 0.28,
            "humerus": 0.09,
            "fibula": 0.05,
            "radius": 0.04,
            "ulna": 0.04,
            "hand": 0.09,
            "foot": 0.15,
        },
        # Spinal tuberculosis dominates axial bone infection.
        "axial": {"spine": 0.68, "pelvis": 0.14, "sacrum": 0.10, "rib": 0.05, "skull": 0.03},
    },
}

#: Assumed entity shares within each WHO 2020 group (tumours) -> subtype text.
TUMOUR_ENTITIES: dict[str, dict[str, float]] = {
    "benign": {
        "osteochondroma": 0.28,
        "enchondroma": 0.16,
        "non-ossifying fibroma": 0.15,
        "simple bone cyst": 0.12,
        "fibrous dysplasia": 0.12,
        "osteoid osteoma": 0.10,
        "aneurysmal bone cyst": 0.07,
    },
    "intermediate": {
        "giant cell tumour of bone": 0.70,
        "osteoblastoma": 0.15,
        "atypical cartilaginous tumour": 0.15,
    },
    "malignant": {
        "osteosarcoma": 0.50,
        "chondrosarcoma": 0.22,
        "ewing sarcoma": 0.16,
        "myeloma": 0.12,
    },
}

VIEW_COUNT_PROBS = (0.3, 0.5, 0.2)  # 1, 2, 3 views
LAB_CORRELATION = 0.4
WORD_ENCODING_SHARE = 0.15

# (median, sigma, low, high) of the log-normal inside each category; units mg/L, mm/h.
_LAB_SHAPES = {
    ("crp", "normal"): (3.0, 0.8, 0.1, 10.0),
    ("crp", "abnormal"): (30.0, 1.0, 10.05, 300.0),
    ("esr", "normal"): (10.0, 0.5, 1.0, 20.0),
    ("esr", "abnormal"): (45.0, 0.5, 20.5, 150.0),
}

PATIENT_COLUMNS = [
    "patient_id",
    "center",
    "diagnosis",
    "subtype",
    "subtype_group",
    "age",
    "sex",
    "site",
    "location",
    "crp",
    "esr",
    "crp_status",
    "esr_status",
    "crp_value",
    "esr_value",
    "n_views",
]

# Independent random streams of the table (stream k = SeedSequence(seed).spawn(...)[k]);
# adding a stream at the end never changes the others.
_STREAMS = ("labels", "age", "sex", "site", "subtype", "labs", "encoding", "views")


def _proportions(counts: dict[str, float]) -> dict[str, float]:
    total = float(sum(counts.values()))
    return {k: v / total for k, v in counts.items()}


def class_targets() -> dict[str, dict[str, object]]:
    """Table 1 as proportions per class (what the synthetic table is drawn from).

    Returns ``{"tumor"|"infection": {"age_mean", "age_sd", "female", "appendicular",
    "crp": {normal, abnormal, missing}, "esr": {...}, "groups": {...}}}``; all
    shares are fractions in [0, 1] that sum to 1 within each categorical variable.
    """
    out: dict[str, dict[str, object]] = {}
    for dx, row in TABLE1_COUNTS.items():
        n = float(row["n"])  # type: ignore[arg-type]
        out[dx] = {
            "age_mean": row["age_mean"],
            "age_sd": row["age_sd"],
            "female": float(row["female"]) / n,  # type: ignore[arg-type]
            "appendicular": float(row["appendicular"]) / n,  # type: ignore[arg-type]
            "crp": _proportions(row["crp"]),  # type: ignore[arg-type]
            "esr": _proportions(row["esr"]),  # type: ignore[arg-type]
            "groups": _proportions(row["groups"]),  # type: ignore[arg-type]
        }
    return out


def _age_beta(mean: float, sd: float) -> stats.rv_continuous:
    """Beta distribution on AGE_RANGE with the given mean and SD (method of moments)."""
    lo, hi = AGE_RANGE
    m = (mean - lo) / (hi - lo)
    v = (sd / (hi - lo)) ** 2
    common = m * (1 - m) / v - 1
    return stats.beta(m * common, (1 - m) * common, loc=lo, scale=hi - lo)


def _choice(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    keys = list(shares)
    p = np.array([shares[k] for k in keys], dtype=float)
    idx = rng.choice(len(keys), size=n, p=p / p.sum())
    return np.array(keys, dtype=object)[idx]


def _split_counts(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Whole counts per key summing to n (largest remainder), so small cohorts keep every key."""
    keys = list(shares)
    raw = np.array([shares[k] for k in keys]) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(keys, counts.tolist(), strict=True))


def _lab_values(lab: str, status: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Numeric lab values (float, NaN for missing) monotone in ``u`` within each category."""
    out = np.full(status.shape, np.nan)
    for cat in ("normal", "abnormal"):
        sel = status == cat
        if not sel.any():
            continue
        median, sigma, lo, hi = _LAB_SHAPES[(lab, cat)]
        dist = stats.lognorm(s=sigma, scale=median)
        c_lo, c_hi = dist.cdf(lo), dist.cdf(hi)
        out[sel] = dist.ppf(c_lo + u[sel] * (c_hi - c_lo))
    if lab == "crp":
        out = np.round(out, 1)
        out = np.where(status == "normal", np.clip(out, 0.1, 10.0), out)
        out = np.where(status == "abnormal", np.maximum(out, 10.1), out)
    else:
        out = np.round(out)
        out = np.where(status == "normal", np.clip(out, 1.0, 20.0), out)
        out = np.where(status == "abnormal", np.maximum(out, 21.0), out)
    return out


def _format_lab(value: float, status: str, as_word: bool, lab: str) -> str:
    if status == "missing":
        return ""
    if as_word:
        return status
    return f"{value:.1f}" if lab == "crp" else f"{int(value)}"


def synthetic_patients(
    n_patients: int,
    seed: int = 0,
    *,
    center_shares: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Draw the clinical table of a synthetic cohort (no images; fast).

    Args:
        n_patients: number of patients (>= 1).
        seed: integer seed; the same seed gives the same table.
        center_shares: centre -> share (default :data:`CENTER_SHARES`); centres in
            :data:`PAEDIATRIC_CENTERS` get paediatric ages.

    Returns:
        DataFrame, one row per patient (RangeIndex), columns :data:`PATIENT_COLUMNS`:
        ``patient_id`` (``P0001``...), ``center``, ``diagnosis`` (``tumor``/``infection``),
        ``subtype`` (entity text), ``subtype_group`` (benign/intermediate/malignant/
        tuberculosis/osteomyelitis), ``age`` (int years), ``sex`` (F/M), ``site`` (lower
        case), ``location`` (axial/appendicular), ``crp``/``esr`` (the manifest text:
        a number, ``normal``/``abnormal`` or ``""``), ``crp_status``/``esr_status``
        (normal/abnormal/missing), ``crp_value`` (float mg/L or NaN), ``esr_value``
        (float mm/h or NaN; both present even where the text is a word), ``n_views``
        (int 1..3).

    Raises:
        InputError: ``n_patients`` < 1, a negative seed or bad centre shares.
    """
    if (
        isinstance(n_patients, bool)
        or not isinstance(n_patients, (int, np.integer))
        or n_patients < 1
    ):
        raise InputError(f"n_patients must be a whole number >= 1, got {n_patients!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    shares = dict(CENTER_SHARES if center_shares is None else center_shares)
    if (
        not shares
        or any((not isinstance(v, (int, float))) or v < 0 for v in shares.values())
        or sum(shares.values()) <= 0
    ):
        raise InputError(f"center_shares must map centre names to shares >= 0, got {shares!r}")
    n = int(n_patients)
    streams = dict(
        zip(_STREAMS, np.random.SeedSequence(int(seed)).spawn(len(_STREAMS)), strict=True)
    )
    rngs = {k: np.random.default_rng(s) for k, s in streams.items()}
    targets = class_targets()

    # Centre x class with exact (rounded) counts, then one shuffle of the rows.
    total = sum(shares.values())
    centers_n = _split_counts(n, {k: v / total for k, v in shares.items()})
    center_col: list[str] = []
    dx_col: list[str] = []
    for c, n_c in centers_n.items():
        n_t = _split_counts(n_c, {"tumor": TUMOUR_SHARE, "infection": 1 - TUMOUR_SHARE})
        center_col += [c] * n_c
        dx_col += ["tumor"] * n_t["tumor"] + ["infection"] * n_t["infection"]
    order = rngs["labels"].permutation(n)
    center = np.array(center_col, dtype=object)[order]
    dx = np.array(dx_col, dtype=object)[order]
    is_t = dx == "tumor"

    # Age: one uniform per patient, mapped through the class's (restricted) inverse CDF.
    u_age = rngs["age"].random(n)
    paed = np.isin(center, list(PAEDIATRIC_CENTERS))
    age = np.empty(n)
    for d in ("tumor", "infection"):
        dist = _age_beta(float(targets[d]["age_mean"]), float(targets[d]["age_sd"]))  # type: ignore[arg-type]
        sel = dx == d
        top = np.where(paed[sel], dist.cdf(PAEDIATRIC_MAX_AGE - 0.5), 1.0)
        age[sel] = dist.ppf(u_age[sel] * top)
    age = np.clip(np.round(age), AGE_RANGE[0], AGE_RANGE[1]).astype(int)

    p_female = np.where(is_t, targets["tumor"]["female"], targets["infection"]["female"])
    sex = np.where(rngs["sex"].random(n) < p_female, "F", "M").astype(object)

    p_app = np.where(is_t, targets["tumor"]["appendicular"], targets["infection"]["appendicular"])
    location = np.where(rngs["site"].random(n) < p_app, "appendicular", "axial").astype(object)
    site = np.empty(n, dtype=object)
    for d in ("tumor", "infection"):
        for loc in ("appendicular", "axial"):
            sel = (dx == d) & (location == loc)
            site[sel] = _choice(rngs["site"], SITE_SHARES[d][loc], int(sel.sum()))

    group = np.empty(n, dtype=object)
    subtype = np.empty(n, dtype=object)
    group[is_t] = _choice(rngs["subtype"], targets["tumor"]["groups"], int(is_t.sum()))  # type: ignore[arg-type]
    group[~is_t] = _choice(rngs["subtype"], targets["infection"]["groups"], int((~is_t).sum()))  # type: ignore[arg-type]
    subtype[~is_t] = group[~is_t]
    for g, entities in TUMOUR_ENTITIES.items():
        sel = group == g
        subtype[sel] = _choice(rngs["subtype"], entities, int(sel.sum()))

    # Labs: nested missingness (shared uniform), correlated abnormality (Gaussian copula).
    lab_rng = rngs["labs"]
    u_miss = lab_rng.random(n)
    z = lab_rng.multivariate_normal(
        [0.0, 0.0], [[1.0, LAB_CORRELATION], [LAB_CORRELATION, 1.0]], size=n, method="cholesky"
    )
    u_lab = stats.norm.cdf(z)
    u_val = lab_rng.random((n, 2))
    lab_text: dict[str, list[str]] = {}
    lab_status: dict[str, np.ndarray] = {}
    lab_value: dict[str, np.ndarray] = {}
    for j, lab in enumerate(("crp", "esr")):
        p = {d: targets[d][lab] for d in ("tumor", "infection")}
        p_miss = np.where(is_t, p["tumor"]["missing"], p["infection"]["missing"])  # type: ignore[index]
        p_norm = np.where(is_t, p["tumor"]["normal"], p["infection"]["normal"])  # type: ignore[index]
        # P(normal | present); high latent u -> abnormal.
        p_norm_present = p_norm / (1.0 - p_miss)
        status = np.where(u_lab[:, j] < p_norm_present, "normal", "abnormal").astype(object)
        status[u_miss < p_miss] = "missing"
        value = _lab_values(lab, status, u_val[:, j])
        as_word = rngs["encoding"].random(n) < WORD_ENCODING_SHARE
        lab_status[lab] = status
        lab_value[lab] = value
        lab_text[lab] = [
            _format_lab(v, s, w, lab) for v, s, w in zip(value, status, as_word, strict=True)
        ]

    n_views = rngs["views"].choice([1, 2, 3], size=n, p=VIEW_COUNT_PROBS)
    width = max(4, len(str(n)))
    df = pd.DataFrame(
        {
            "patient_id": [f"P{i + 1:0{width}d}" for i in range(n)],
            "center": center.astype(str),
            "diagnosis": dx.astype(str),
            "subtype": subtype.astype(str),
            "subtype_group": group.astype(str),
            "age": age,
            "sex": sex.astype(str),
            "site": site.astype(str),
            "location": location.astype(str),
            "crp": lab_text["crp"],
            "esr": lab_text["esr"],
            "crp_status": lab_status["crp"].astype(str),
            "esr_status": lab_status["esr"].astype(str),
            "crp_value": lab_value["crp"],
            "esr_value": lab_value["esr"],
            "n_views": n_views.astype(int),
        },
        columns=PATIENT_COLUMNS,
    )
    return df
