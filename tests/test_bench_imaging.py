"""The GPU benchmark command (benchmarks/bench_imaging.py --gpu) is known to start:
its --dry-run runs every part of it (plain vs fast training and inference, ensemble of
fold models, paper-recipe extrapolation) on CPU with tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_imaging.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_dry_run_exercises_every_part_of_the_gpu_check(tmp_path):
    out = tmp_path / "dry.json"
    r = subprocess.run([sys.executable, str(BENCH), "--dry-run", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["backbone"] for row in rows] == ["e3", "e4", "vit", "swin"]  # the paper's four
    for row in rows:
        for key in ("train_plain", "train_fast", "infer_plain", "infer_fast",
                    "ensemble_naive_img_s", "ensemble_fast_img_s"):
            assert row[key] > 0, key
        # extrapolation is consistent with the measured rates (100 epochs x 5 folds x 2,000 crops)
        expected = (100 * 5 * 0.8 * 2000 / row["train_fast"] + 100 * 5 * 0.2 * 2000 / row["infer_fast"]) / 3600
        assert row["paper_hours_fast"] == pytest.approx(expected, rel=0.05, abs=0.01)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_gpu_flag_without_cuda_says_so():
    r = subprocess.run([sys.executable, str(BENCH), "--gpu"], capture_output=True, text=True,
                       timeout=120, env=ENV)
    assert r.returncode == 2
    assert "--gpu needs a CUDA GPU" in r.stderr and "--dry-run" in r.stderr


@pytest.mark.ddp
def test_dry_run_under_torchrun_runs_ddp(tmp_path):
    out = tmp_path / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(BENCH), "--dry-run", "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["ddp"]
    assert {row["world_size"] for row in rows} == {2}
    assert all(row["ddp_train_img_s"] > 0 and row["backend"] == "gloo" for row in rows)
