"""Speed work of issue #15: batched worklists, ONNX export/engine, lazy imports.

Every speed-up here must leave the answers unchanged: batched scoring equals
case-by-case scoring, and ONNX Runtime agrees with torch eager to 1e-4 in logits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multibone.errors import BundleError

HEAVY = ("shap", "lightgbm", "xgboost", "matplotlib", "streamlit", "statsmodels")


def _cases(run: Path, n: int):
    from multibone.case import Case, CaseImage
    from multibone.io import read_radiograph

    m = pd.read_csv(run / "cohort" / "manifest.csv")
    cases = []
    for pid, g in list(m.groupby("patient_id", sort=True))[:n]:
        r0 = g.iloc[0]
        images = [CaseImage(read_radiograph(run / "cohort" / r.image_path).pixels,
                            (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1)), pid)
                  for r in g.itertuples()]
        crp = None if pd.isna(r0.crp) else (float(r0.crp) if str(r0.crp).replace(".", "").isdigit()
                                            else str(r0.crp))
        cases.append(Case(images=images, age=float(r0.age), sex=str(r0.sex), site=str(r0.site),
                          location=str(r0.location), crp=crp, esr=None))
    return cases


@pytest.fixture
def engine(monkeypatch):
    """Set multibone.case.ENGINE_SETTINGS for one test (restored after)."""
    from multibone import case

    monkeypatch.setattr(case, "ENGINE_SETTINGS", dict(case.ENGINE_SETTINGS))
    monkeypatch.setattr(case, "_RUNTIMES", {})

    def set_(**kw):
        case.ENGINE_SETTINGS.update(kw)
        return case

    return set_


def test_batched_worklist_equals_case_by_case(mini_run, mini_bundle, engine, one_torch_thread):
    from multibone.bundle import load_bundle

    case = engine(engine="torch")
    bundle = load_bundle(mini_bundle)
    cases = _cases(mini_run, 7)
    assert sum(len(c.images) for c in cases) > len(cases)  # several views per patient
    batched = case.predict_cases(bundle, cases)
    single = [case.predict_case(bundle, c) for c in cases]
    for b, s in zip(batched, single, strict=True):
        assert b.probability == pytest.approx(s.probability, abs=1e-9)
        assert b.decisions == s.decisions
        for k in s.backbone_scores:
            assert b.backbone_scores[k] == pytest.approx(s.backbone_scores[k], abs=1e-6)
            np.testing.assert_allclose(b.image_scores[k], s.image_scores[k], atol=1e-6)
    assert len({round(r.probability, 9) for r in batched}) > 1  # not one constant answer
    assert case.predict_cases(bundle, []) == []


def test_predict_cases_csv_chunks_do_not_change_rows(mini_run, mini_bundle, engine, tmp_path,
                                                     one_torch_thread):
    from multibone.bundle import load_bundle

    case = engine(engine="torch")
    bundle = load_bundle(mini_bundle)
    manifest = mini_run / "cohort" / "manifest.csv"
    a = pd.read_csv(case.predict_cases_csv(bundle, manifest, tmp_path / "a.csv", chunk=1))
    b = pd.read_csv(case.predict_cases_csv(bundle, manifest, tmp_path / "b.csv", chunk=1000))
    assert len(a) == pd.read_csv(manifest)["patient_id"].nunique()
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-9)


# --------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def onnx_export(mini_bundle, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="pip install 'multibone[onnx]' to test the ONNX path")
    from multibone.bundle import load_bundle
    from multibone.imaging.onnx_export import export_onnx

    bundle = load_bundle(mini_bundle)
    out = tmp_path_factory.mktemp("onnx") / "export"
    manifest = export_onnx(bundle.path / "backbones", bundle.backbones, out, bundle_hash=bundle.hash)
    return out, manifest


def test_onnx_agrees_with_torch_on_cohort_crops(mini_run, mini_bundle, onnx_export, one_torch_thread):
    from multibone.bundle import load_bundle
    from multibone.imaging import ImageScorer
    from multibone.imaging.onnx_runtime import OnnxScorer

    out, manifest = onnx_export
    assert manifest["check"] and all(c["max_logit_diff"] <= 1e-4 for c in manifest["check"].values())
    bundle = load_bundle(mini_bundle)
    torch_scorer = ImageScorer.from_dir(bundle.path / "backbones", bundle.backbones)
    onnx_scorer = OnnxScorer.from_dir(out, bundle.backbones, bundle_hash=bundle.hash, threads=1)
    from multibone.io import crop_roi

    crops = [crop_roi(im.pixels, im.roi, margin=torch_scorer.crop_margin)
             for c in _cases(mini_run, 6) for im in c.images]
    ref, got = torch_scorer.score(crops), onnx_scorer.score(crops)
    for b in bundle.backbones:
        assert np.ptp(ref[b]) > 1e-3  # the images get different scores: a real comparison
        np.testing.assert_allclose(got[b], ref[b], atol=1e-4, rtol=0)
    assert onnx_scorer.crop_margin == torch_scorer.crop_margin
    assert onnx_scorer.aggregation == torch_scorer.aggregation


def test_auto_uses_onnx_only_when_an_export_of_this_bundle_exists(
        mini_run, mini_bundle, onnx_export, engine, tmp_path, one_torch_thread):
    import shutil

    from multibone.bundle import load_bundle

    out, _ = onnx_export
    bundle = load_bundle(mini_bundle)
    cases = _cases(mini_run, 3)
    case = engine(engine="torch")
    ref = case.predict_cases(bundle, cases)

    case = engine(engine="auto", onnx_dir=str(tmp_path / "absent"))
    assert case.runtime(bundle).scorer.engine == "torch"

    case = engine(engine="auto", onnx_dir=str(out))
    assert case.runtime(bundle).scorer.engine == "onnx"
    got = case.predict_cases(bundle, cases)
    assert case.runtime(bundle).ood_models == {}  # the export's feature graphs, no torch model
    for r, g in zip(ref, got, strict=True):
        assert g.probability == pytest.approx(r.probability, abs=1e-4)
        # the unlike-training check sees the same pooled features through ONNX
        assert r.images_unlike_training and len(g.images_unlike_training) == len(r.images_unlike_training)
        for gi, ri in zip(g.images_unlike_training, r.images_unlike_training, strict=True):
            assert gi.keys() == ri.keys()
            for key, value in ri.items():
                if isinstance(value, float):
                    assert gi[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
                else:
                    assert gi[key] == value, key

    stale = tmp_path / "stale"
    shutil.copytree(out, stale)
    meta = json.loads((stale / "onnx.json").read_text())
    meta["bundle_hash"] = "0" * 64
    (stale / "onnx.json").write_text(json.dumps(meta))
    case = engine(engine="auto", onnx_dir=str(stale))
    assert case.runtime(bundle).scorer.engine == "torch"  # stale export: not used
    case = engine(engine="onnx", onnx_dir=str(stale))
    with pytest.raises(BundleError, match="another bundle"):
        case.runtime(bundle)


def test_tampered_onnx_file_is_refused(mini_bundle, onnx_export, tmp_path):
    import shutil

    from multibone.bundle import load_bundle
    from multibone.imaging.onnx_runtime import OnnxScorer

    out, manifest = onnx_export
    bundle = load_bundle(mini_bundle)
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    rel = next(r for r in manifest["files"] if r.endswith(".onnx"))
    with open(bad / rel, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="SHA-256"):
        OnnxScorer.from_dir(bad, bundle.backbones, bundle_hash=bundle.hash)


def test_cli_export_then_predict_without_torch(mini_run, mini_bundle, tmp_path):
    """export-onnx writes BUNDLE-onnx; predict then runs with ONNX and never imports torch."""
    pytest.importorskip("onnxruntime", reason="pip install 'multibone[onnx]' to test the ONNX path")
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(mini_bundle, bundle)
    m = pd.read_csv(mini_run / "cohort" / "manifest.csv").iloc[0]
    image = str(mini_run / "cohort" / m.image_path)
    predict = ["predict", "--bundle", str(bundle), "--image", image, "--age", "40", "--sex", "F",
               "--site", "femur", "--threads", "1"]
    code = (
        "import sys, json\n"
        "from multibone.cli import main\n"
        f"rc = main({predict!r} + sys.argv[1:])\n"
        f"print(json.dumps({{'rc': rc, 'heavy': [m for m in {HEAVY + ('torch', 'timm')!r} "
        "if m in sys.modules]}))\n"
    )
    def run(*extra):
        r = subprocess.run([sys.executable, "-c", code, *extra], capture_output=True, text=True,
                           timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        return r, json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None

    r, info = run("--engine", "onnx")
    assert info["rc"] == 2 and "export-onnx" in r.stderr  # no export yet: a clear error
    from multibone.cli import main

    assert main(["export-onnx", "--bundle", str(bundle)]) == 0
    assert (tmp_path / "bundle-onnx" / "onnx.json").is_file()
    assert main(["export-onnx", "--bundle", str(bundle)]) == 2  # exists: refused without --force
    r, info = run()
    assert info["rc"] == 0, r.stderr
    assert info["heavy"] == [], r.stderr  # neither torch/timm nor any optional heavy library was loaded
    r, torch_info = run("--engine", "torch")
    assert torch_info["rc"] == 0 and "torch" in torch_info["heavy"]


def test_predict_path_imports_no_optional_heavy_library():
    code = (
        "import sys\n"
        "import multibone.cli.predict, multibone.case, multibone.bundle, multibone.imaging\n"
        "import multibone.imaging.onnx_runtime, multibone.imaging.engine, multibone.stacking.model\n"
        f"print([m for m in {HEAVY + ('torch', 'timm')!r} if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_help_imports_no_library_beyond_the_standard_one():
    """``multibone --help`` and ``multibone predict --help`` answer without numpy, torch, pandas."""
    code = (
        "import sys, contextlib, io\n"
        "from multibone.cli import main\n"
        "for argv in ([], ['predict', '--help'], ['export-onnx', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print([m for m in ('numpy', 'pandas', 'torch', 'sklearn', 'scipy') if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (4, 2), (16, 8), (64, 8)])
def test_default_threads_is_half_the_cpus(monkeypatch, cpus, expected):
    import os

    from multibone.imaging.engine import default_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_threads() == expected


def test_threads_below_one_is_refused(capsys):
    from multibone.cli import main

    assert main(["predict", "--bundle", "nowhere", "--image", "x.png", "--age", "3", "--sex", "F",
                 "--threads", "0"]) == 2
    assert "--threads must be 1 or more" in capsys.readouterr().err


def test_explain_with_the_onnx_engine_draws_cams_from_the_torch_models(
        mini_run, mini_bundle, onnx_export, engine, one_torch_thread):
    """The dashboard's path with an export: scores from ONNX, CAMs from the torch folds."""
    from multibone.bundle import load_bundle

    out, _ = onnx_export
    bundle = load_bundle(mini_bundle)
    case_ = _cases(mini_run, 1)[0]
    case = engine(engine="torch")
    ref = case.explain_case(bundle, case_, cam_methods=("gradcam",))
    case = engine(engine="onnx", onnx_dir=str(out))
    assert case.runtime(bundle).scorer.engine == "onnx"
    got = case.explain_case(bundle, case_, cam_methods=("gradcam",))
    assert len(got.cams) == len(ref.cams) == len(case_.images) * len(bundle.backbones)
    for g, r in zip(got.cams, ref.cams, strict=True):
        np.testing.assert_allclose(g.cam, r.cam, atol=1e-5)
    assert got.sentences == ref.sentences


def test_lazy_imaging_package_keeps_aggregate_the_function():
    """``aggregate`` names a submodule and a function; the package attribute stays the function."""
    code = (
        "import multibone.imaging.scorer, multibone.imaging.aggregate, multibone.imaging.engine\n"
        "from multibone.imaging import aggregate, sigmoid, ImageScorer, train_images\n"
        "import multibone.imaging as I\n"
        "print(callable(aggregate), callable(I.aggregate), sorted(set(I.__all__) - set(dir(I))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True True []"
