"""Issue #11: images unlike the training crops are flagged; every case output says what
the bundle was trained on (and loudly when that was synthetic)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from multibone.disclaimer import SYNTHETIC_WARNING
from multibone.errors import InputError
from multibone.imaging.ood import OODModel


def _features(n, d, rng, shift=0.0):
    cov = np.diag(np.linspace(0.2, 2.0, d))
    return rng.multivariate_normal(np.full(d, shift), cov, size=n)


def test_ood_model_flags_far_points_and_few_near_ones(tmp_path):
    rng = np.random.default_rng(0)
    dev = {"a": _features(400, 12, rng), "b": _features(400, 6, rng)}
    groups = np.repeat(np.arange(200), 2)
    model = OODModel.fit(dev, groups)
    assert 0.0 < model.info["dev_flag_rate"] <= 0.02  # ~1 % of development crops by construction
    new = {"a": _features(2000, 12, rng), "b": _features(2000, 6, rng)}
    rate_new = np.mean([r["unlike_training"] for r in model.check(new)])
    assert rate_new < 0.04  # new crops of the same kind: rarely flagged
    far = {"a": _features(50, 12, rng, shift=4.0), "b": _features(50, 6, rng)}
    assert all(r["unlike_training"] for r in model.check(far))  # one backbone is enough
    # the distance is Mahalanobis under the stored (shrunk) covariance: check against scipy
    from scipy.spatial.distance import mahalanobis

    s = model.summaries["a"]
    x = new["a"][:3]
    want = [mahalanobis(v, s.mean, s.precision) for v in x]
    np.testing.assert_allclose(s.distance(x), want, rtol=1e-10)
    # saved and loaded: the same answers
    model.save(tmp_path / "ood")
    again = OODModel.load(tmp_path / "ood")
    assert again.check(far) == model.check(far)
    assert OODModel.load(tmp_path / "nothing") is None
    with pytest.raises(InputError, match="at least 15 development crops"):
        OODModel.fit({"a": dev["a"][:10]}, groups[:10])


@pytest.fixture(scope="module")
def external_case(mini_run, tmp_path_factory):
    """A manifest of two external (held-out) patients of the mini run, for predict --cases."""
    man = pd.read_csv(mini_run / "cohort" / "manifest.csv", dtype={"patient_id": str})
    splits = pd.read_csv(mini_run / "splits.csv", dtype={"patient_id": str})
    ext = splits.loc[splits["split"] == "external", "patient_id"].head(2)
    rows = man[man["patient_id"].isin(ext)].drop(columns=["diagnosis"], errors="ignore")
    rows = rows.assign(image_path=[str(mini_run / "cohort" / p) for p in rows["image_path"]])
    out = tmp_path_factory.mktemp("cases") / "cases.csv"
    rows.to_csv(out, index=False)
    return out


def test_bundle_carries_the_summary_and_outputs_carry_provenance(mini_bundle, external_case,
                                                                  tmp_path, capsys):
    from multibone.cli import main

    info = json.loads((mini_bundle / "ood" / "ood.json").read_text())
    assert set(info["backbones"]) == {"e3_tiny"} and info["threshold"] > 0
    assert "ood/ood.json" in json.loads((mini_bundle / "bundle.json").read_text())["files"]
    out = tmp_path / "p.csv"
    assert main(["predict", "--bundle", str(mini_bundle), "--cases", str(external_case),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["warning"].str.contains(SYNTHETIC_WARNING, regex=False).all()
    assert table["trained_on"].str.contains("trained on SYNTHETIC data").all()
    assert "unlike_training_images" in table.columns


def test_predict_json_has_provenance_and_image_check(mini_bundle, external_case, capsys):
    from multibone.cli import main

    row = pd.read_csv(external_case).iloc[0]
    argv = ["predict", "--bundle", str(mini_bundle), "--image", row["image_path"],
            "--age", str(row["age"]), "--sex", row["sex"], "--location", row["location"]]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["provenance"]["synthetic"] is True
    assert any(SYNTHETIC_WARNING in w for w in res["warnings"])
    (check,) = res["images_unlike_training"]
    assert set(check) >= {"image", "unlike_training", "score", "by_backbone"}


@pytest.mark.realdata
def test_a_real_radiograph_is_unlike_the_training_images(mini_bundle, capsys):
    from pydicom.data import get_testdata_file

    from multibone.cli import main

    path = get_testdata_file("RG3_UNCR.dcm")
    if path is None:
        pytest.skip("RG3_UNCR.dcm not available (install pydicom-data)")
    assert main(["predict", "--bundle", str(mini_bundle), "--image", str(path), "--age", "40",
                 "--sex", "F", "--location", "appendicular"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images_unlike_training"][0]["unlike_training"] is True
    assert any("unlike the training images" in w for w in res["warnings"])
