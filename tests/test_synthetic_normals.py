"""Normal controls in the synthetic cohort (``multibone synth --normals``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from multibone.cli import main
from multibone.detection.data import check_boxes, read_image_table
from multibone.errors import InputError
from multibone.synthetic import draw_lesion, make_synthetic_cohort, render_view


def test_normal_view_has_no_lesion_and_same_anatomy():
    lesion = draw_lesion(np.random.default_rng(0), "infection", "tuberculosis", 0.5)
    with_lesion = render_view(np.random.default_rng(1), lesion, site="femur")
    normal = render_view(np.random.default_rng(1), lesion, site="femur", normal=True)
    assert normal.roi is None and normal.pixels.shape == with_lesion.pixels.shape
    x0, y0, x1, y1 = with_lesion.roi
    diff = np.abs(with_lesion.pixels - normal.pixels)
    inside = diff[y0:y1, x0:x1].mean()
    outside_mask = np.ones_like(diff, bool)
    outside_mask[y0:y1, x0:x1] = False
    # The lesion is what differs; outside its box only the (absent) swelling and noise.
    assert inside > 4 * diff[outside_mask].mean()


def test_synth_normals_in_manifest(tmp_path, capsys):
    out = tmp_path / "c"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--patients",
                "10",
                "--normals",
                "0.3",
                "--seed",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    m = pd.read_csv(out / "manifest.csv", dtype={"patient_id": str})
    normal = m["diagnosis"] == "normal"
    assert m.loc[normal, "patient_id"].nunique() == 3
    assert m.loc[normal, ["roi_x0", "roi_y0", "roi_x1", "roi_y1"]].isna().all().all()
    assert m.loc[~normal, ["roi_x0", "roi_y0", "roi_x1", "roi_y1"]].notna().all().all()
    assert m.loc[normal, ["subtype", "crp", "esr"]].isna().all().all()
    assert m.loc[normal, ["age", "sex", "center", "site"]].notna().all().all()
    assert set(m.loc[~normal, "diagnosis"]) <= {"tumor", "infection"}
    assert json.loads((out / "synthetic.json").read_text())["n_normals"] == 3
    assert "NORMAL CONTROLS" in (out / "SYNTHETIC_README.txt").read_text()
    # The detection layer reads them as negatives; every box lies in its image.
    table = read_image_table(out / "manifest.csv")
    assert (table["lesion"] == (~normal).astype(int)).all()
    check_boxes(table)


def test_no_normals_is_the_cohort_of_before(tmp_path):
    make_synthetic_cohort(tmp_path / "a", n_patients=6, seed=4, progress=False)
    make_synthetic_cohort(tmp_path / "b", n_patients=6, seed=4, progress=False, normals=0.0)
    for name in ("manifest.csv", "synthetic.json", "lesion_truth.csv", "SYNTHETIC_README.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "n_normals" not in json.loads((tmp_path / "a" / "synthetic.json").read_text())
    with pytest.raises(InputError, match="fraction in"):
        make_synthetic_cohort(tmp_path / "c", n_patients=4, normals=1.0, progress=False)
