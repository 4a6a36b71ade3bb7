"""Issue #14 item 5: ``multibone recalibrate`` on a shifted synthetic centre."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from stacking_sim import CLINICAL_ONLY_CONFIG

from multibone.cli import main
from multibone.evaluation.calibration import calibration

CONFIG = CLINICAL_ONLY_CONFIG


def _patients(n, rng, *, shift=0.0, scale=1.0, prefix="D"):
    age = rng.uniform(5, 80, n)
    crp = np.exp(rng.normal(2.5, 1.2, n))
    lp = -0.04 * (age - 40) + 1.1 * (np.log(crp) - 2.5)
    y = rng.random(n) < expit(shift + scale * lp)  # the centre's own truth
    return pd.DataFrame({
        "patient_id": [f"{prefix}{i:04d}" for i in range(n)],
        "diagnosis": np.where(y, "infection", "tumor"),
        "age": age.round(1),
        "sex": rng.choice(["F", "M"], n),
        "crp": crp.round(1),
    })


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    d = tmp_path_factory.mktemp("recal")
    rng = np.random.default_rng(5)
    dev = _patients(240, rng).assign(split="dev")
    dev.to_csv(d / "manifest.csv", index=False)
    (d / "config.yaml").write_text(CONFIG)
    assert main(["stack", "--run", str(d / "run"), "--manifest", str(d / "manifest.csv"),
                 "--config", str(d / "config.yaml")]) == 0
    # centre S: more infections (intercept +1.2) and a flatter relation (x0.5)
    site = _patients(600, rng, shift=1.2, scale=0.5, prefix="S")
    site.iloc[:300].to_csv(d / "site_fit.csv", index=False)
    site.iloc[300:].to_csv(d / "site_test.csv", index=False)
    return d


def _probs(bundle, cases, out):
    assert main(["predict", "--bundle", str(bundle), "--cases", str(cases), "--out", str(out)]) == 0
    p = pd.read_csv(out, dtype={"patient_id": str})
    lab = pd.read_csv(cases, dtype={"patient_id": str}).set_index("patient_id")["diagnosis"]
    y = (p["patient_id"].map(lab) == "infection").astype(int).to_numpy()
    return y, p


def test_recalibration_moves_slope_and_intercept_toward_1_and_0_on_held_out_half(setting, capsys):
    d = setting
    bundle, new = d / "run" / "bundle", d / "bundle_site"
    assert main(["recalibrate", "--bundle", str(bundle), "--cases", str(d / "site_fit.csv"),
                 "--out", str(new)]) == 0
    y, before = _probs(bundle, d / "site_test.csv", d / "before.csv")
    y2, after = _probs(new, d / "site_test.csv", d / "after.csv")
    assert (y == y2).all()
    assert set(before["refer"].unique()) <= {0, 1}  # predict --cases carries the referral flag
    cb, ca = calibration(y, before["probability"]), calibration(y, after["probability"])
    assert cb.intercept > 0.5 and cb.slope < 0.8  # the shift is there before
    assert abs(ca.intercept) < abs(cb.intercept) and abs(ca.slope - 1) < abs(cb.slope - 1)
    assert abs(ca.intercept) < 0.35 and abs(ca.slope - 1) < 0.35
    # discrimination and every call unchanged; only the stated probability moved
    assert np.array_equal(np.argsort(before["probability"], kind="stable"),
                          np.argsort(after["probability"], kind="stable"))
    calls = [c for c in before.columns if c.startswith("call_")]
    assert calls and before[calls].equals(after[calls])
    meta = json.loads((new / "bundle.json").read_text())
    prov = meta["site_recalibration"]
    assert prov["sample"]["n"] == 300 and prov["date"]
    assert prov["calibration_before"]["slope"] < 0.8  # the fitting half shows the shift too
    assert abs(prov["calibration_after"]["slope"] - 1) < 1e-6
    old = json.loads((bundle / "bundle.json").read_text())
    assert old["files"]["stacker.skops"] == meta["files"]["stacker.skops"]  # same model


def test_recalibration_refuses_a_small_sample_with_the_reason(setting, capsys):
    d = setting
    small = pd.read_csv(d / "site_fit.csv").iloc[:60]
    small.to_csv(d / "small.csv", index=False)
    out = d / "never"
    assert main(["recalibrate", "--bundle", str(d / "run" / "bundle"), "--cases",
                 str(d / "small.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "60 labelled patients" in err and "at least 100" in err
    assert not out.exists()


def test_predict_shows_refer_when_unsure_from_the_bundles_conformal_sets(setting):
    from multibone.bundle import load_bundle
    from multibone.case import Case, predict_case

    bundle = load_bundle(setting / "run" / "bundle")
    conf = json.loads((setting / "run" / "bundle" / "conformal.json").read_text())
    assert conf["error_rate"] == 0.10
    clear = predict_case(bundle, Case(images=[], age=70.0, sex="F", crp=0.5))
    assert clear.referral["set"] == ["tumor"] and not clear.referral["refer"]
    # the stacker's dev out-of-fold predictions hold mid-range cases: find one and check
    # that a set of both classes is flagged
    results = [predict_case(bundle, Case(images=[], age=a, sex="M", crp=c))
               for a in (30.0, 40.0, 50.0) for c in (8.0, 12.0, 20.0)]
    unsure = [r for r in results if r.referral["refer"]]
    assert unsure and all(r.referral["text"].startswith("uncertain: refer") for r in unsure)
