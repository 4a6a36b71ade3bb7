"""Inside ``multibone.imaging`` imports follow one order, with no cycle and no
import hidden in a function to dodge one; aggregation and inference each live once."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

IMAGING = Path(__file__).resolve().parents[1] / "src" / "multibone" / "imaging"

#: Each module may import only modules before it (the layer map of imaging/__init__.py).
ORDER = [
    "registry",
    "aggregate",
    "config",
    "data",
    "inference",
    "folds",
    "ood",
    "train",
    "crossfit",
    "arms",
    "scorer",
    "onnx_runtime",
    "onnx_export",
    "engine",
    "__init__",
]


def _imaging_imports(path: Path) -> set[str]:
    """Imaging modules imported anywhere in ``path`` (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level:  # relative, inside imaging/
            base = f"multibone.imaging.{node.module}" if node.module else None
            names = [base] if base else [f"multibone.imaging.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            if n.startswith("multibone.imaging."):
                found.add(n.split(".")[2])
    return found


def test_every_module_is_placed():
    assert sorted(p.stem for p in IMAGING.glob("*.py")) == sorted(ORDER)


@pytest.mark.parametrize("module", ORDER)
def test_imports_only_modules_below(module):
    allowed = set(ORDER[: ORDER.index(module)])
    upward = _imaging_imports(IMAGING / f"{module}.py") - allowed
    assert not upward, f"imaging/{module}.py imports {sorted(upward)}, not below it in {ORDER}"


def test_the_checker_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "def f():\n    from multibone.imaging.scorer import ImageScorer\n"
        "    from . import train\n    from .folds import load_fold\n"
    )
    assert _imaging_imports(f) == {"scorer", "train", "folds"}


def test_training_validation_and_scorer_aggregate_alike():
    """aggregate_groups (training validation) == aggregate per patient (scorer, case)."""
    from multibone.imaging.aggregate import aggregate, aggregate_groups

    logits = np.array([0.5, -1.0, 2.0, 3.0, -4.0], dtype=np.float32)
    groups = np.array([0, 0, 1, 2, 2])
    for rule in ("mean_logit", "max", "all_positive"):
        want = [aggregate(logits[groups == g], rule) for g in range(3)]
        np.testing.assert_array_equal(aggregate_groups(logits, groups, rule), want)
    np.testing.assert_allclose(
        aggregate_groups(logits, groups, "mean_logit"), [-0.25, 2.0, -0.5], rtol=1e-7
    )


def test_scorer_uses_the_one_inference_path():
    """ImageScorer.score == predict_logits on the resized crops, averaged over folds."""
    from multibone.imaging import ImageScorer, create_backbone, predict_logits
    from multibone.imaging.data import resize_crops

    meta = {"img_size": 32, "norm_mean": 0.4, "norm_std": 0.2, "crop_margin": 0.0}
    models = [create_backbone("e3_tiny", img_size=32, seed=s).eval() for s in (1, 2)]
    rng = np.random.default_rng(0)
    crops = [rng.random((40, 50), dtype=np.float32) for _ in range(3)]
    got = ImageScorer({"e3_tiny": [(m, meta) for m in models]}, batch_size=2).score(crops)
    x = resize_crops(crops, 32)
    want = np.mean([predict_logits(m, x, 0.4, 0.2, batch_size=3) for m in models], axis=0)
    np.testing.assert_allclose(got["e3_tiny"], want, rtol=1e-5, atol=1e-5)
    # and a plain forward pass of the normalised input agrees too
    with torch.no_grad():
        xn = (x.unsqueeze(1).expand(-1, 3, -1, -1) - 0.4) / 0.2
        plain = np.mean([m(xn).reshape(-1).numpy() for m in models], axis=0)
    np.testing.assert_allclose(got["e3_tiny"], plain, rtol=1e-5, atol=1e-5)
