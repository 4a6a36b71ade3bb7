"""The statistics core stays at the bottom of the import graph (DESIGN.md, issue #10)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import multibone.stats

STATS_DIR = Path(multibone.stats.__file__).parent
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _allowed(name: str) -> bool:
    root = name.split(".")[0]
    return (
        root in STDLIB
        or root in ("numpy", "scipy")
        or name == "sklearn.metrics"
        or name == "multibone.errors"
        or name == "multibone.stats"
        or name.startswith("multibone.stats.")
    )


@pytest.mark.parametrize("path", sorted(STATS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_stats_imports_only_numpy_scipy_sklearn_metrics_and_errors(path):
    bad = [n for n in _imports(path) if not _allowed(n)]
    assert not bad, f"{path.name} imports {bad}"
