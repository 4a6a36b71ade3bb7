"""A tiny hand-made cohort for the imaging tests (not collected: no ``test_`` prefix).

Images are small PNGs read back through the real I/O and cohort layers:
infection patients show vertical stripes inside the lesion box, tumour patients
a bright disc, both under Gaussian noise; so a tiny model can learn it in a few
epochs and the out-of-fold AUC has something to find.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from multibone.imaging import ImagingConfig

SIZE = 40


def make_cohort_files(
    root: Path,
    n_patients: int = 20,
    *,
    seed: int = 0,
    external: int = 0,
    noise: float = 0.08,
) -> Path:
    """Write ``root/manifest.csv`` + PNGs; the last ``external`` patients are centre "B"."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rows = []
    for i in range(n_patients):
        infection = i % 2 == 0
        centre = "B" if i >= n_patients - external else "A"
        for v in range(1 + (i // 2) % 2):  # 1 or 2 views
            img = rng.normal(0.35, noise, (SIZE, SIZE))
            phase = rng.uniform(0, 6.3)
            if infection:
                img += 0.25 * (np.sin(xx / 1.5 + phase) > 0)
            else:
                cy, cx = rng.uniform(14, 26, 2)
                img += 0.3 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 64)
            name = f"p{i:03d}_{v}.png"
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
                root / "images" / name
            )
            rows.append(
                {
                    "patient_id": f"P{i:03d}",
                    "image_path": f"images/{name}",
                    "view": "AP" if v == 0 else "lateral",
                    "roi_x0": 4,
                    "roi_y0": 4,
                    "roi_x1": SIZE - 4,
                    "roi_y1": SIZE - 4,
                    "center": centre,
                    "diagnosis": "infection" if infection else "tumor",
                    "age": 40,
                    "sex": "F",
                    "site": "femur",
                }
            )
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def load_tiny(
    root: Path, n_patients: int = 20, *, external: int = 0, n_folds: int = 2, seed: int = 0
):
    """(cohort, splits_df) of a fresh tiny cohort."""
    from multibone.cohort import SplitConfig, assign_splits, load_cohort

    manifest = make_cohort_files(root, n_patients, seed=seed, external=external)
    cohort = load_cohort(manifest, progress=False)
    centres = ["B"] if external else []
    splits = assign_splits(cohort.patients, SplitConfig(n_folds=n_folds, external_centers=centres))
    return cohort, splits


def tiny_config(**changes) -> ImagingConfig:
    """A seconds-long CPU config (e3_tiny, 32 px, 2 epochs, one thread)."""
    base = dict(
        backbones=["e3_tiny"],
        img_size=32,
        epochs=2,
        batch_size=8,
        lr=0.05,
        lr_step=10,
        val_fraction=0.25,
        num_workers=0,
        num_threads=1,
        eval_batch_size=64,
        crop_margin=0.0,
    )
    base.update(changes)
    return ImagingConfig(**base)
