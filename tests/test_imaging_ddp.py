"""Multi-process training through torchrun (DistributedDataParallel), on CPU with gloo.

The exact command a user runs on a multi-GPU node, with 2 CPU processes instead of
2 GPUs: ranks shard each epoch, only rank 0 writes files and logs. (NCCL on real
GPUs is not exercised here.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch.distributed
from imaging_cohort import make_cohort_files

pytestmark = [
    pytest.mark.ddp,
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="torch.distributed with gloo is not available",
    ),
]


def test_torchrun_two_processes(tmp_path):
    manifest = make_cohort_files(tmp_path / "cohort", 12)
    config = tmp_path / "c.yaml"
    config.write_text(
        "splits: {n_folds: 2}\n"
        "imaging: {backbones: [e3_tiny], img_size: 32, epochs: 2, batch_size: 8,\n"
        "          lr: 0.05, val_fraction: 0.25, num_workers: 0, num_threads: 1}\n"
    )
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "multibone", "train-images", "--config", str(config), "--manifest", str(manifest),
        "--out", str(out), "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "imaging_summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["backbones"]["e3_tiny"]["oof_auc"] is not None
    # Only rank 0 logs: each epoch line appears once, not once per rank.
    assert proc.stderr.count("e3_tiny fold 0 epoch 1/2") == 1
    assert sorted(p.name for p in (out / "weights" / "e3_tiny").iterdir()) == [
        "fold0.json", "fold0.safetensors", "fold1.json", "fold1.safetensors",
    ]  # fmt: skip
