"""The import graph of ``src/multibone`` follows DESIGN.md's layer order.

Every ``import``/``from ... import`` of a multibone module is read from the
source with ``ast`` (function-level imports included, so a cycle cannot hide
inside a function), then two rules are checked:

* no module imports a module of a higher layer (imports flow downward:
  cli/app -> pipeline/case -> feature packages -> cohort/io -> stats/base);
* the module graph has no cycle, inside a layer either.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "multibone"

# Layer of each top-level part of the package (a module or a sub-package).
# A new part must be placed here on purpose: the test fails until it is.
LAYERS: dict[str, int] = {
    # 0: no multibone imports beyond each other
    "__init__": 0,
    "__main__": 6,
    "errors": 0,
    "_atomic": 0,
    "_config": 0,
    "_html": 0,
    "disclaimer": 0,
    "templates": 0,
    "stats": 0,
    # 1: data in
    "io": 1,
    "cohort": 1,
    # 2: feature packages
    "synthetic": 2,
    "imaging": 2,
    "stacking": 2,
    "evaluation": 2,
    "configs": 2,
    # 3: built on the feature packages
    "explain": 3,
    "bundle": 3,
    "detection": 3,
    "radiomics": 3,
    # 4: whole runs and single cases
    "runconfig": 4,
    "case": 4,
    "export": 4,
    "pipeline": 4,
    "recalibration": 4,
    "robustness": 4,
    # 5: user interfaces
    "cli": 5,
    "app": 5,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` (a module or a symbol in one) refers to."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in known:
            return cand
        parts.pop()
    return None


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from pkg import mod`` imports pkg.mod when it is a module.
            names = [f"{stem}.{a.name}" for a in node.names] + [stem]
        for n in names:
            if not n.startswith("multibone"):
                continue
            target = _resolve(n, known)
            if target and target != module:
                out.add(target)
    # ``from multibone.x import y`` also lists ``multibone.x``'s parents' __init__:
    # only the deepest match counts, so drop ancestors of other targets.
    return {t for t in out if not any(o.startswith(t + ".") for o in out)} | {
        t for t in out if t == "multibone"
    }


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


Graph = dict[str, set[str]]


@pytest.fixture(scope="module")
def graph() -> Graph:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _edges(g: Graph) -> list[tuple[str, str]]:
    return [(a, b) for a, targets in g.items() for b in targets]


def test_every_part_has_a_layer(graph: Graph) -> None:
    unplaced = sorted({_part(m) for m in graph} - set(LAYERS))
    assert not unplaced, f"place these in LAYERS (DESIGN.md layer order): {unplaced}"


def test_imports_flow_downward(graph: Graph) -> None:
    upward = []
    for a, b in _edges(graph):
        la, lb = LAYERS.get(_part(a), 99), LAYERS.get(_part(b), 99)
        if _part(b) == "__init__":
            continue  # the package root holds only __version__
        if lb > la:
            upward.append(f"{a} (layer {la}) imports {b} (layer {lb})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_no_import_cycles(graph: Graph) -> None:
    # A package's __init__ re-exporting its modules is not a cycle of logic:
    # drop edges from a package to its own sub-modules.
    g = {a: {b for b in ts if not b.startswith(a + ".")} for a, ts in graph.items()}
    try:
        list(graphlib.TopologicalSorter(g).static_order())
    except graphlib.CycleError as err:
        pytest.fail("import cycle: " + " -> ".join(err.args[1]))


def test_root_package_imports_nothing_heavy() -> None:
    text = (SRC / "__init__.py").read_text(encoding="utf-8")
    tree = ast.parse(text)
    heavy = {"torch", "timm", "sklearn", "pandas", "shap", "lightgbm", "xgboost", "streamlit"}
    found = set()
    for node in tree.body:  # module level only: lazy imports inside functions are fine
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    assert not (found & heavy), f"multibone/__init__ imports {sorted(found & heavy)} at import"


def test_the_checker_sees_a_planted_cycle(tmp_path: Path) -> None:
    """The parser resolves relative and function-level imports (so the test can fail)."""
    src = "def f():\n    from .b import g\n    return g\n"
    p = tmp_path / "multibone" / "x" / "a.py"
    p.parent.mkdir(parents=True)
    p.write_text(src)
    known = {"multibone.x.a", "multibone.x.b"}
    global SRC
    old = SRC
    SRC = tmp_path / "multibone"
    try:
        assert _imports("multibone.x.a", p, known) == {"multibone.x.b"}
    finally:
        SRC = old
