"""``multibone readers``: model against human readers (synthetic numbers)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from test_evaluation_report import make_predictions, write_run

from multibone.cli import main
from multibone.disclaimer import DISCLAIMER
from multibone.evaluation import cohen_kappa


def _reads(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    test = df[df["split"] == "test"]
    rows = []
    for reader, acc, group in (
        ("R1", 0.72, "junior"),
        ("R2", 0.78, "junior"),
        ("R3", 0.9, "senior"),
    ):
        for pid, y in zip(test["patient_id"], test["label"], strict=True):
            c = y if rng.random() < acc else 1 - y
            rows.append(
                {
                    "patient_id": pid,
                    "reader": reader,
                    "call": ("tumour", "infection")[c] if reader != "R3" else str(c),
                    "group": group,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture()
def run(tmp_path):
    df = make_predictions(n_dev=60, n_test=40, n_ext={}, seed=4)
    return write_run(tmp_path / "run", df), df


def test_readers_end_to_end(run, tmp_path):
    run_dir, df = run
    reads = _reads(df)
    reads.to_csv(tmp_path / "reads.csv", index=False)
    assert (
        main(
            [
                "readers",
                str(run_dir),
                "--readers",
                str(tmp_path / "reads.csv"),
                "--permutations",
                "500",
                "--bootstrap",
                "100",
            ]
        )
        == 0
    )
    out = run_dir / "readers"
    res = json.loads((out / "readers.json").read_text())
    perf = {r["rater"]: r for r in res["performance"]}
    assert {"stacker", "R1", "R2", "R3", "junior", "senior"} <= set(perf)
    # kappa of a reader against the truth, recomputed independently
    truth = df.set_index("patient_id")["label"]
    r1 = reads[reads["reader"] == "R1"]
    calls = (r1["call"] == "infection").astype(int).to_numpy()
    assert perf["R1"]["kappa"] == pytest.approx(
        cohen_kappa(truth.loc[r1["patient_id"]], calls).kappa
    )
    assert perf["junior"]["n"] == 80
    assert res["cochran_q"]["df"] == 3 and 0 <= res["cochran_q"]["p"] <= 1
    assert {f["raters"] for f in res["fleiss"]} >= {
        "group junior",
        "all readers",
        "all readers + model",
    }
    assert all(0 < t["p_kappa_permutation"] <= 1 for t in res["model_vs_reader"])
    assert "Youden threshold" in res["notes"][0]
    html = (out / "readers.html").read_text()
    assert "Cochran" in html
    assert html.count(DISCLAIMER) == 1 and html.count("not a diagnosis") == 1
    for f in ("performance", "model_vs_readers", "pairwise_kappa", "fleiss_kappa"):
        assert (out / "tables" / f"{f}.csv").is_file()


def test_readers_with_plain_predictions(run, tmp_path):
    _, df = run
    test = df[df["split"] == "test"]
    test[["patient_id", "label"]].assign(score=test["p_stacker"]).to_csv(
        tmp_path / "model.csv", index=False
    )
    _reads(df).to_csv(tmp_path / "reads.csv", index=False)
    out = tmp_path / "out"
    assert (
        main(
            [
                "readers",
                "--predictions",
                str(tmp_path / "model.csv"),
                "--threshold",
                "0.5",
                "--readers",
                str(tmp_path / "reads.csv"),
                "--out",
                str(out),
                "--permutations",
                "200",
                "--bootstrap",
                "50",
            ]
        )
        == 0
    )
    res = json.loads((out / "readers.json").read_text())
    assert res["model"] == "model" and res["threshold"] == 0.5


def _unknown(r):
    extra = r.iloc[:2].assign(patient_id=["X1", "X2"])
    return pd.concat([r, extra])


def _bad_call(r):
    r = r.copy()
    r.loc[r.index[4], "call"] = "maybe"
    return r


BAD = [
    ("unknown_patients", _unknown, [], r"2 patient\(s\) not in the predictions: X1, X2"),
    ("missing_column", lambda r: r.drop(columns=["reader"]), [], r"missing column\(s\) reader"),
    ("bad_call", _bad_call, [], r"column call must be tumor.*rows 6.*'maybe'"),
    ("duplicate", lambda r: pd.concat([r, r.iloc[[0]]]), [], r"more than once: P\d+/R1"),
    ("no_threshold", lambda r: r, ["--predictions", "{pred}"], r"--predictions needs --threshold"),
]


@pytest.mark.parametrize(("name", "mutate", "extra", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(run, tmp_path, capsys, name, mutate, extra, match):
    run_dir, df = run
    mutate(_reads(df)).to_csv(tmp_path / "reads.csv", index=False)
    pred = tmp_path / "p.csv"
    df[["patient_id", "label"]].assign(score=df["p_stacker"]).to_csv(pred, index=False)
    args = ["readers", str(run_dir), "--readers", str(tmp_path / "reads.csv")]
    args += [a.format(pred=pred) for a in extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(match, err, flags=re.S), err
    assert not (run_dir / "readers").exists()


def test_readers_escapes_reader_names(run, tmp_path):
    run_dir, df = run
    evil = "<script>alert(1)</script>"
    reads = _reads(df)
    reads["reader"] = reads["reader"].replace({"R1": evil})
    reads.to_csv(tmp_path / "reads.csv", index=False)
    out = tmp_path / "out"
    args = ["readers", str(run_dir), "--readers", str(tmp_path / "reads.csv"), "--out", str(out)]
    assert main([*args, "--permutations", "50", "--bootstrap", "20"]) == 0
    html = (out / "readers.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count(DISCLAIMER) == 1
