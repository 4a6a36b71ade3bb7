"""``multibone train-detector`` and ``multibone detect``: output, and bad input -> exit 2,
a message naming the place, nothing written."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors.torch import save_file
from test_detection_train import write_toy

from multibone.cli import main
from multibone.detection.registry import create_detector

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = """
splits: {n_folds: 2, seed: 0}
detection:
  detector: fcos_tiny
  img_size: 64
  cycles: 2
  epochs_per_cycle: 2
  batch_size: 8
  optimizer: adamw
  lr: 0.003
  ema_decay: 0.99
  device: cpu
  num_threads: 1
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    manifest = write_toy(root / "cohort", n_patients=8, normals=3)
    (root / "c.yaml").write_text(CONFIG)
    out = root / "det"
    argv = ["train-detector", "--config", str(root / "c.yaml"), "--manifest", str(manifest)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return root, manifest, out, argv


def test_train_detector_writes_boxes_and_summary(trained, capsys):
    root, manifest, out, _ = trained
    summary = json.loads((out / "detection_summary.json").read_text())
    assert summary["n_images"] == 16 and summary["dev"]["n_lesions"] == 10
    assert 0.0 <= summary["dev"]["rate_iou>0.2"] <= 1.0
    boxes = pd.read_csv(out / "boxes.csv")
    assert len(boxes) == 16 and set(boxes["fold"]) == {0, 1}
    assert sorted(p.name for p in (out / "weights").iterdir()) == [
        "fold0.json",
        "fold0.safetensors",
        "fold1.json",
        "fold1.safetensors",
    ]


def test_detect_prints_json_boxes(trained, capsys):
    root, manifest, out, _ = trained
    image = root / "cohort" / "img" / "P05_AP.png"
    assert main(["detect", "--weights", str(out), "--image", str(image), "--min-score", "0"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n_models"] == 2 and got["width"] == 80 and got["height"] == 64
    assert 1 <= len(got["boxes"]) <= 10
    scores = [b["score"] for b in got["boxes"]]
    assert scores == sorted(scores, reverse=True)
    for b in got["boxes"]:
        x0, y0, x1, y1 = b["box"]
        assert 0 <= x0 <= x1 <= 80 and 0 <= y0 <= y1 <= 64


def test_bad_box_exit_2_nothing_written(trained, tmp_path, capsys):
    root, manifest, _, argv = trained
    df = pd.read_csv(manifest)
    df.loc[df["roi_x0"].notna().idxmax(), "roi_y1"] = 500
    bad = root / "cohort" / "bad.csv"
    df.to_csv(bad, index=False)
    argv = [*argv[:-1], str(bad)]
    assert main([*argv, "--out", str(tmp_path / "new"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "P03_AP.png: roi_x0..roi_y1" in err and "outside the image" in err
    assert not (tmp_path / "new").exists()


def test_existing_out_needs_resume_or_force(trained, capsys):
    _, _, out, argv = trained
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_detect_refuses_wrong_weights_and_bundle_without_detector(trained, tmp_path, capsys):
    root, _, out, _ = trained
    image = str(root / "cohort" / "img" / "P05_AP.png")
    # Weights of another architecture under the right name and description.
    (tmp_path / "weights").mkdir()
    other = create_detector("fcos_r50", img_size=64)
    save_file(
        {k: v.contiguous() for k, v in list(other.state_dict().items())[:20]},
        str(tmp_path / "weights" / "fold0.safetensors"),
    )
    (tmp_path / "weights" / "fold0.json").write_text((out / "weights" / "fold0.json").read_text())
    assert main(["detect", "--weights", str(tmp_path), "--image", image]) == 2
    err = capsys.readouterr().err
    assert "fold0.safetensors: weights do not fit" in err
    (tmp_path / "bundle").mkdir()
    assert main(["detect", "--bundle", str(tmp_path / "bundle"), "--image", image]) == 2
    assert "carries no detector" in capsys.readouterr().err
    assert main(["detect", "--weights", str(tmp_path / "none"), "--image", image]) == 2
    assert "no detector here" in capsys.readouterr().err


def test_shipped_demo_config_reads():
    from importlib import resources

    from multibone.detection.run import read_config

    path = resources.files("multibone").joinpath("configs", "detection_demo.yaml")
    config, splits = read_config(str(path))
    assert config.detector == "fcos_tiny" and config.num_threads == 1
    assert splits["external_centers"] == ["B", "C"]
