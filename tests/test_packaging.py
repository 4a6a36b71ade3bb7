"""multibone installed like a library: configs, schemas and the dashboard are package data.

The repository's ``configs/`` and ``data_schemas/`` are links into the package (one copy of
each file), and everything is found through :mod:`importlib.resources`, so a non-editable
``pip install .`` runs ``multibone demo`` and ``multibone dashboard`` from any folder.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import pytest

from multibone.cli import dashboard as cli_dashboard

REPO = Path(__file__).resolve().parents[1]
PACKAGE = resources.files("multibone")


@pytest.mark.parametrize(
    "parts",
    [
        ("configs", "demo.yaml"),
        ("configs", "paper.yaml"),
        ("cohort", "schemas", "manifest.schema.json"),
        ("cohort", "schemas", "case.schema.json"),
        ("app", "dashboard.py"),
        ("app", "logic.py"),
        ("app", "model_tab.py"),
    ],
)
def test_package_resources_resolve(parts):
    assert PACKAGE.joinpath(*parts).is_file(), "/".join(parts)


def test_packaged_configs_load():
    from multibone.pipeline import DEMO_CONFIG
    from multibone.runconfig import load_run_config

    assert DEMO_CONFIG == Path(str(PACKAGE.joinpath("configs", "demo.yaml")))
    for name in ("demo.yaml", "paper.yaml"):
        load_run_config(Path(str(PACKAGE.joinpath("configs", name))))


def test_app_path_is_the_packaged_script():
    from multibone.app import app_path

    assert app_path() == Path(str(PACKAGE.joinpath("app", "dashboard.py")))


@pytest.mark.parametrize(
    ("link", "target"),
    [("configs", "src/multibone/configs"), ("data_schemas", "src/multibone/cohort/schemas")],
)
def test_repository_folders_link_into_the_package(link, target):
    """One copy of each file: the repository's folder is a relative link to package data."""
    path = REPO / link
    if not path.exists():
        pytest.skip(f"{link}/ not present (installed tests without the repository)")
    assert path.is_symlink(), f"{link}/ should link to {target}/, not hold copies"
    assert not Path(path.readlink()).is_absolute()
    assert path.resolve() == (REPO / target).resolve()


def test_package_data_globs_cover_every_data_file():
    """pyproject's package-data ships every non-Python file under src/multibone (a wheel,
    unlike an editable install, would lack the rest), matched the way setuptools does: a
    glob relative to the nearest package folder."""
    import glob

    tomllib = pytest.importorskip("tomllib")
    src = REPO / "src" / "multibone"
    if not src.is_dir():
        pytest.skip("no source tree (installed tests)")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    data = pyproject["tool"]["setuptools"]["package-data"]
    data_files = [
        f
        for f in src.rglob("*")
        if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
    ]
    assert any(f.name == "demo.yaml" for f in data_files)
    missing = []
    for f in data_files:
        package_dir = next(d for d in f.parents if (d / "__init__.py").is_file())
        package = ".".join(package_dir.relative_to(src.parent).parts)
        shipped = {
            Path(package_dir, m)
            for pattern in data.get(package, [])
            for m in glob.glob(pattern, root_dir=package_dir)
        }
        if f not in shipped:
            missing.append(str(f.relative_to(src.parent)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_streamlit_options_match_the_repository_config():
    """`multibone dashboard` passes, as flags, exactly the settings of .streamlit/config.toml."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    flat = {f"{section}.{k}": v for section, items in config.items() for k, v in items.items()}
    assert flat == cli_dashboard.STREAMLIT_OPTIONS


def test_streamlit_command(tmp_path):
    cmd = cli_dashboard.streamlit_command(tmp_path / "app.py", 8600, "/b/bundle")
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(tmp_path / "app.py")]
    flags = dict(zip(cmd[5:-3:2], cmd[6:-3:2], strict=True))
    assert flags["--server.port"] == "8600"
    assert flags["--server.address"] == "localhost"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.maxUploadSize"] == "200"
    assert cmd[-3:] == ["--", "--bundle", "/b/bundle"]
    assert "--" not in cli_dashboard.streamlit_command(tmp_path / "app.py", 8600)


def test_dashboard_help_teaches(capsys):
    from multibone.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["dashboard", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("--bundle", "--port", "localhost", 'pip install "multibone[dashboard]"'):
        assert text in out


def test_dashboard_without_streamlit_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    from multibone.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "streamlit" else real(name, *a),
    )
    assert main(["dashboard"]) == 2
    err = capsys.readouterr().err
    assert "Streamlit" in err and 'pip install "multibone[dashboard]"' in err


def test_dashboard_refuses_a_folder_without_bundle(tmp_path, capsys):
    from multibone.cli import main

    assert main(["dashboard", "--bundle", str(tmp_path)]) == 2
    assert "no bundle.json" in capsys.readouterr().err


def test_dashboard_runs_streamlit_on_the_packaged_app(monkeypatch, tmp_path):
    """Without starting a server: the subprocess gets the packaged app and the bundle."""
    from multibone.app import app_path

    (tmp_path / "bundle.json").write_text("{}")
    seen: list[list[str]] = []
    monkeypatch.setattr(cli_dashboard, "_launch", lambda cmd: seen.append(cmd) or 0)
    args = argparse.Namespace(bundle=str(tmp_path), port=8765)
    assert cli_dashboard.run(args) == 0
    assert seen == [cli_dashboard.streamlit_command(app_path(), 8765, str(tmp_path.resolve()))]
