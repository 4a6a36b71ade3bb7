"""``multibone compare``: head-to-head of two prediction files (synthetic numbers)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from multibone.cli import main
from multibone.disclaimer import DISCLAIMER
from multibone.errors import InputError
from multibone.evaluation import delong_paired
from multibone.evaluation.compare import compare_predictions, read_score_file


def _pair(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ids = [f"P{i:03d}" for i in range(n)]
    a = expit(1.6 * (2 * y - 1) + rng.normal(0, 1.3, n))
    b = expit(1.1 * (2 * y - 1) + rng.normal(0, 1.3, n))
    fa = pd.DataFrame({"patient_id": ids, "label": y, "score": a})
    # the second file in another row order: matching is by patient_id
    fb = pd.DataFrame({"patient_id": ids, "label": y, "score": b}).iloc[::-1]
    return fa, fb


def test_compare_end_to_end(tmp_path):
    fa, fb = _pair()
    fa.to_csv(tmp_path / "tl.csv", index=False)
    fb.to_csv(tmp_path / "sc.csv", index=False)
    out = tmp_path / "cmp"
    rc = main(
        [
            "compare",
            str(tmp_path / "tl.csv"),
            str(tmp_path / "sc.csv"),
            "--out",
            str(out),
            "--names",
            "TL,SC",
            "--bootstrap",
            "100",
        ]
    )
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    fb_sorted = fb.set_index("patient_id").loc[fa["patient_id"]]
    ref = delong_paired(fa["label"], fa["score"], fb_sorted["score"])
    assert res["auc_difference"]["delong"]["p"] == pytest.approx(ref.p)
    assert set(res["operating_point_tests"]) == {"youden", "sens90", "spec90", "maxf1"}
    assert res["models"]["TL"]["operating_points"]["sens90"]["sensitivity"] >= 0.9
    table = pd.read_csv(out / "compare.csv")
    assert {"AUC", "AP", "max F1", "calibration slope", "Brier score", "sensitivity", "ppv"} <= set(
        table["metric"]
    )
    html = (out / "compare.html").read_text()
    assert html.count(DISCLAIMER) == 1 and html.count("not a diagnosis") == 1
    assert "chosen <b>per model on the same data" in html
    assert "data:image/png;base64," in html
    for f in ("roc", "pr", "calibration", "dca", "thresholds", "confusion"):
        assert (out / "figures" / f"{f}.png").is_file()
    assert (out / "tables" / "net_benefit.csv").is_file()


def test_logits_are_turned_into_probabilities(tmp_path):
    fa, _ = _pair(30)
    fa.assign(score=logit(fa["score"])).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(InputError, match="pass --logits"):
        read_score_file(tmp_path / "l.csv")
    back = read_score_file(tmp_path / "l.csv", logits=True)
    np.testing.assert_allclose(back["score"], fa["score"])


def _mismatch(a, b):
    return a.iloc[3:], b[b["patient_id"] != "P119"]


def _nan(a, b):
    a = a.copy()
    a.loc[4, "score"] = np.nan
    return a, b


def _range(a, b):
    b = b.copy()
    b.loc[b.index[0], "score"] = 3.2
    return a, b


def _labels_differ(a, b):
    b = b.copy()
    b.loc[b["patient_id"] == "P007", "label"] = 1 - b.loc[b["patient_id"] == "P007", "label"]
    return a, b


def _single(a, b):
    return a.assign(label=1), b.assign(label=1)


BAD = [
    (
        "missing_column",
        lambda a, b: (a.drop(columns=["score"]), b),
        r"a\.csv: missing column\(s\) score",
    ),
    (
        "mismatched_ids",
        _mismatch,
        r"same patients: 1 only in a\.csv \(P119\); 3 only in b\.csv \(P000, P001, P002\)",
    ),
    ("nan_score", _nan, r"a\.csv:\n  column score has NaN.*rows 6"),
    ("out_of_range", _range, r"b\.csv:\n  column score must hold probabilities.*rows 2.*--logits"),
    ("labels_differ", _labels_differ, r"labels differ .* P007"),
    ("single_class", _single, r"AUC is undefined.*0 negative"),
    ("duplicate", lambda a, b: (pd.concat([a, a.iloc[[0]]]), b), r"more than once: P000"),
]


@pytest.mark.parametrize(("name", "mutate", "match"), BAD, ids=[c[0] for c in BAD])
def test_bad_input(tmp_path, capsys, name, mutate, match):
    a, b = mutate(*_pair())
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "out"
    assert (
        main(
            [
                "compare",
                str(tmp_path / "a.csv"),
                str(tmp_path / "b.csv"),
                "--out",
                str(out),
                "--bootstrap",
                "0",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert re.search(match, err, flags=re.S), err
    assert not out.exists()


def test_bad_names(tmp_path):
    a, b = _pair(20)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    assert (
        main(
            [
                "compare",
                str(tmp_path / "a.csv"),
                str(tmp_path / "b.csv"),
                "--out",
                str(tmp_path / "o"),
                "--names",
                "X",
            ]
        )
        == 2
    )


def test_compare_escapes_model_names(tmp_path):
    fa, fb = _pair(60)
    fa.to_csv(tmp_path / "a.csv", index=False)
    fb.to_csv(tmp_path / "b.csv", index=False)
    evil = "<script>alert(1)</script>"
    compare_predictions(
        tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "out", names=(evil, "B&C"), n_boot=0
    )
    html = (tmp_path / "out" / "compare.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "B&amp;C" in html
    assert html.count(DISCLAIMER) == 1
