"""The tiny detector on a toy cohort of PNG files: registry weights, training, exact
resume after a crash, and cross-fitting (no development image scored by a model that
saw its patient; held-out images get the K fold models merged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from multibone.detection import registry
from multibone.detection.config import DetectionConfig
from multibone.detection.crossfit import BOXES_COLUMNS, crossfit_detector, parse_boxes
from multibone.detection.data import load_images, read_image_table
from multibone.detection.inference import detect
from multibone.detection.metrics import localisation
from multibone.detection.registry import create_detector, load_detector_weights
from multibone.detection.train import fit_detector
from multibone.errors import ConfigError, InputError, WeightsError
from multibone.io import read_radiograph

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def write_toy(root: Path, n_patients: int = 12, normals: int = 4, seed: int = 0) -> Path:
    """AP + lateral per patient, 64 x 80 px; a lesion is a bright square, normals none."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(n_patients):
        normal = p < normals
        for view in ("AP", "lateral"):
            h, w = 64, 80
            img = np.clip(0.25 + 0.06 * rng.standard_normal((h, w)), 0, 1)
            row = {
                "patient_id": f"P{p:02d}",
                "image_path": f"img/P{p:02d}_{view}.png",
                "view": view,
                "diagnosis": "normal" if normal else ("tumor" if p % 2 else "infection"),
            }
            if not normal:
                s = int(rng.integers(14, 24))
                x0, y0 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
                img[y0 : y0 + s, x0 : x0 + s] = 0.85
                row.update(roi_x0=x0, roi_y0=y0, roi_x1=x0 + s, roi_y1=y0 + s)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / row["image_path"])
            rows.append(row)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def tiny_config(**kw) -> DetectionConfig:
    base = dict(
        detector="fcos_tiny",
        img_size=64,
        cycles=2,
        epochs_per_cycle=4,
        batch_size=8,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=1e-4,
        ema_decay=0.99,
        scale=0.2,
        translate=0.1,
        device="cpu",
    )
    return DetectionConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return read_image_table(write_toy(tmp_path_factory.mktemp("toy"), n_patients=14, normals=4))


# --------------------------------------------------------------------------- registry


def test_registry_builds_and_checks_weights(tmp_path, monkeypatch):
    m = create_detector("fcos_tiny", img_size=64, seed=0)
    again = create_detector("fcos_tiny", img_size=64, seed=0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(m.state_dict().values(), again.state_dict().values(), strict=True)
    )
    # A whole-detector file round-trips; a backbone-only file loads into the body.
    save_file(m.state_dict(), str(tmp_path / "det.safetensors"))
    assert load_detector_weights(again, tmp_path / "det.safetensors") == "detector"
    body = {k: v.clone() for k, v in m.backbone.body.state_dict().items()}
    save_file(body, str(tmp_path / "body.safetensors"))
    assert load_detector_weights(again, tmp_path / "body.safetensors") == "backbone"
    # The wrong architecture is refused, naming the file.
    full = create_detector("fasterrcnn_r50", img_size=64)
    with pytest.raises(WeightsError, match=r"det\.safetensors: weights do not fit"):
        load_detector_weights(full, tmp_path / "det.safetensors")
    with pytest.raises(WeightsError, match="no COCO weights"):
        create_detector("fcos_tiny", weights="coco")
    with pytest.raises(WeightsError, match="not found"):
        create_detector("fcos_tiny", weights=str(tmp_path / "nope.pt"))
    # Offline with nothing cached: fails at once, saying what to do.
    monkeypatch.setattr(registry, "_hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(registry, "_hub_file", lambda spec: tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="no network and no cached copy"):
        create_detector("fcos_r50", weights="coco")
    with pytest.raises(InputError, match="unknown detector"):
        create_detector("yolo")


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="detection.detector"):
        DetectionConfig(detector="yolov5")
    with pytest.raises(ConfigError, match="detection.merge"):
        DetectionConfig(merge="mean")
    assert DetectionConfig(cycles=10, epochs_per_cycle=3).epochs == 30


# --------------------------------------------------------------------------- data


def test_bad_boxes_are_refused_naming_the_place(tmp_path):
    manifest = write_toy(tmp_path, n_patients=2, normals=1)
    df = pd.read_csv(manifest)
    bad = df.copy()
    bad.loc[2, "roi_x1"] = 81  # 80 px wide
    with pytest.raises(InputError, match=r"P01_AP\.png: roi_x0\.\.roi_y1: box .* outside"):
        load_images(read_image_table(bad, root=tmp_path), 64)
    bad = df.copy()
    bad.loc[0, ["roi_x0", "roi_y0", "roi_x1", "roi_y1"]] = [1, 1, 5, 5]
    with pytest.raises(InputError, match="row 2: a normal control"):
        read_image_table(bad, root=tmp_path)
    bad = df.copy()
    bad.loc[2, "roi_y1"] = bad.loc[2, "roi_y0"]
    with pytest.raises(InputError, match="zero area"):
        load_images(read_image_table(bad, root=tmp_path), 64)


def test_table_marks_normals_and_scales_boxes(toy):
    assert toy["lesion"].tolist()[:8] == [0] * 8 and toy["lesion"].sum() == 20
    data = load_images(toy.iloc[[8]], 64)
    r = toy.iloc[8]
    np.testing.assert_allclose(
        data.boxes[0].numpy()[0],
        [r.roi_x0 * 0.8, r.roi_y0, r.roi_x1 * 0.8, r.roi_y1],  # 80 -> 64 wide
        atol=1e-4,
    )
    assert load_images(toy.iloc[[0]], 64).boxes[0].shape == (0, 4)


# --------------------------------------------------------------------------- training


def test_tiny_detector_learns_the_lesions(toy):
    cfg = tiny_config()
    data = load_images(toy, cfg.img_size)
    model = create_detector("fcos_tiny", img_size=64, seed=0)
    fit = fit_detector(model, data, config=cfg, seed=0, device=CPU, progress=False)
    assert [h["cycle"] for h in fit.history] == [1] * 4 + [2] * 4
    # Warm restart: each cycle starts again at the full learning rate.
    assert fit.history[0]["lr"] == fit.history[4]["lr"] == cfg.lr > fit.history[3]["lr"]
    model.load_state_dict(fit.ema_state)
    model.eval()
    preds = [detect([model], read_radiograph(p).pixels, cfg) for p in toy["image_path"]]
    ref = [
        np.array([[r.roi_x0, r.roi_y0, r.roi_x1, r.roi_y1]]) if r.has_box else np.zeros((0, 4))
        for r in toy.itertuples()
    ]
    loc = localisation([b for b, _ in preds], [s for _, s in preds], ref, score_thresh=0.3)
    assert loc["rate_iou>0.2"] >= 0.9
    best = np.array([s[0] if len(s) else 0.0 for _, s in preds])
    assert best[toy["lesion"] == 1].min() > best[toy["lesion"] == 0].max()


def _straight_and_resumed(data, cfg, crash_after, tmp_path):
    straight = fit_detector(
        create_detector("fcos_tiny", img_size=64, seed=1),
        data,
        config=cfg,
        seed=1,
        device=CPU,
        progress=False,
    )
    ck = tmp_path / f"ck{crash_after}.pt"

    def crash(epoch, record):
        if epoch == crash_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_detector(
            create_detector("fcos_tiny", img_size=64, seed=1),
            data,
            config=cfg,
            seed=1,
            device=CPU,
            checkpoint=ck,
            fingerprint="x",
            progress=False,
            on_epoch_end=crash,
        )
    # A fresh process would build a fresh model: the checkpoint carries everything.
    resumed = fit_detector(
        create_detector("fcos_tiny", img_size=64, seed=99),
        data,
        config=cfg,
        seed=1,
        device=CPU,
        checkpoint=ck,
        fingerprint="x",
        resume=True,
        progress=False,
    )
    return straight, resumed


@pytest.mark.parametrize("crash_after", [2, 3])  # at a cycle boundary, and mid-cycle
def test_resume_after_crash_is_exact(toy, tmp_path, crash_after):
    cfg = tiny_config(cycles=2, epochs_per_cycle=2)
    data = load_images(toy.iloc[:12], cfg.img_size)
    straight, resumed = _straight_and_resumed(data, cfg, crash_after, tmp_path)
    assert resumed.resumed_from == crash_after
    for key, v in straight.ema_state.items():
        assert torch.equal(v, resumed.ema_state[key]), key
    for key, v in straight.last_state.items():
        assert torch.equal(v, resumed.last_state[key]), key
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    with pytest.raises(ConfigError, match="other data or settings"):
        fit_detector(
            create_detector("fcos_tiny", img_size=64),
            data,
            config=cfg,
            seed=1,
            device=CPU,
            checkpoint=tmp_path / f"ck{crash_after}.pt",
            fingerprint="y",
            resume=True,
            progress=False,
        )


# --------------------------------------------------------------------------- cross-fitting


def test_crossfit_never_scores_a_patient_with_a_model_that_saw_it(toy, tmp_path):
    patients = toy["patient_id"].unique()
    folds = pd.DataFrame({"patient_id": patients, "fold": [i % 3 for i in range(len(patients))]})
    folds.loc[folds.index[-2:], "fold"] = -1  # two held-out patients
    cfg = tiny_config(cycles=1, epochs_per_cycle=3, merge="wbf")
    out = crossfit_detector(toy, folds, cfg, tmp_path / "det", progress=False)
    assert list(out.columns) == BOXES_COLUMNS and len(out) == len(toy)
    fold_of = dict(zip(folds["patient_id"], folds["fold"], strict=True))
    metas = {
        k: json.loads((tmp_path / "det" / "weights" / f"fold{k}.json").read_text())
        for k in range(3)
    }
    for k, meta in metas.items():
        assert meta["train_patients"]
        assert all(fold_of[p] not in (k, -1) for p in meta["train_patients"])
    assert (out["fold"] == out["patient_id"].map(fold_of)).all()
    assert not (tmp_path / "det" / "checkpoints" / "fold0.pt").exists()
    # Re-detect: a dev image with its fold model alone, a held-out one with all three.
    from safetensors.torch import load_file

    models = {}
    for k in range(3):
        models[k] = create_detector("fcos_tiny", img_size=64)
        models[k].load_state_dict(
            load_file(str(tmp_path / "det" / "weights" / f"fold{k}.safetensors"))
        )
        models[k].eval()
    for i in (9, len(out) - 1):
        row = out.iloc[i]
        use = [models[row.fold]] if row.fold >= 0 else list(models.values())
        boxes, scores = detect(use, read_radiograph(row.image_path).pixels, cfg)
        np.testing.assert_allclose(parse_boxes(row.boxes), boxes, atol=0.01)
        np.testing.assert_allclose(json.loads(row.scores), scores, atol=1e-5)
        assert row.score == pytest.approx(scores[0] if len(scores) else 0.0, abs=1e-5)
    # Resume: finished folds are loaded, not retrained; same boxes.
    again = crossfit_detector(toy, folds, cfg, tmp_path / "det", resume=True, progress=False)
    pd.testing.assert_frame_equal(again, out)


def test_crossfit_refuses_incomplete_folds(toy, tmp_path):
    folds = pd.DataFrame({"patient_id": ["P00"], "fold": [0]})
    with pytest.raises(InputError, match="no fold for patient"):
        crossfit_detector(toy, folds, tiny_config(), tmp_path / "x", progress=False)
