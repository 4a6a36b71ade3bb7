"""Kill-and-resume: a run interrupted after epoch k and resumed with ``resume=True``
ends with exactly the weights of an uninterrupted run (torch.equal on every tensor).

The kill is simulated by raising from the per-epoch callback, which runs after
the epoch's checkpoint is written, the point where a SIGKILL would find the
files. ``val_fraction: 0`` keeps the LAST epoch, so the final weights are the
ones trained after the resume (not a best epoch saved before the kill).
"""

from __future__ import annotations

import json

import pytest
import torch
from imaging_cohort import load_tiny, tiny_config
from safetensors.torch import load_file

from multibone.errors import ConfigError, InputError
from multibone.imaging import train_images

EPOCHS = 4


class Killed(Exception):
    pass


# One torch thread for every test here (fixture in conftest.py; the machine is shared).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("resume") / "cohort", 12, n_folds=2)


def _weights(out):
    files = sorted((out / "weights").rglob("*.safetensors"))
    return {f.relative_to(out).as_posix(): load_file(str(f)) for f in files}


@pytest.mark.parametrize("val_fraction", [0.0, 0.25], ids=["last-epoch", "best-epoch"])
def test_resume_gives_identical_weights(tmp_path, data, val_fraction):
    cohort, splits = data
    cfg = tiny_config(backbones=["vit_tiny"], epochs=EPOCHS, val_fraction=val_fraction, batch_size=4)
    full = train_images(cohort, splits, cfg, tmp_path / "full", progress=False)

    calls = []

    def kill_after_epoch_2_of_fold_1(epoch, record):
        calls.append(epoch)
        if len(calls) == EPOCHS + 2:  # fold 0 done, fold 1 at epoch 2
            raise Killed

    with pytest.raises(Killed):
        train_images(
            cohort,
            splits,
            cfg,
            tmp_path / "cut",
            progress=False,
            on_epoch_end=kill_after_epoch_2_of_fold_1,
        )
    assert (tmp_path / "cut" / "checkpoints" / "vit_tiny" / "fold1.pt").is_file()
    assert not (tmp_path / "cut" / "image_scores.csv").exists()

    resumed = train_images(cohort, splits, cfg, tmp_path / "cut", resume=True, progress=False)
    folds = resumed["backbones"]["vit_tiny"]["folds"]
    assert [f["resumed_from_epoch"] for f in folds] == [0, 2]

    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and len(a) == 2
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    for k in range(2):
        ha = json.loads((tmp_path / "full" / "logs" / "vit_tiny" / f"fold{k}.json").read_text())
        hb = json.loads((tmp_path / "cut" / "logs" / "vit_tiny" / f"fold{k}.json").read_text())
        assert ha["history"] == hb["history"]
    assert full["backbones"]["vit_tiny"]["oof_auc"] == resumed["backbones"]["vit_tiny"]["oof_auc"]


def test_existing_run_needs_resume_or_force(tmp_path, data):
    cohort, splits = data
    cfg = tiny_config(epochs=1)
    train_images(cohort, splits, cfg, tmp_path / "run", progress=False)
    with pytest.raises(InputError, match="pass --resume .* or --force"):
        train_images(cohort, splits, cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="other data, splits or imaging settings.*--force"):
        train_images(
            cohort, splits, tiny_config(epochs=2), tmp_path / "run", resume=True, progress=False
        )
    # --force starts over; resume of a finished run only rescores.
    train_images(
        cohort, splits, tiny_config(epochs=2), tmp_path / "run", force=True, progress=False
    )
    again = train_images(
        cohort, splits, tiny_config(epochs=2), tmp_path / "run", resume=True, progress=False
    )
    assert again["backbones"]["e3_tiny"]["folds"][0]["best_epoch"] in (1, 2)
