"""``multibone dashboard``: start the clinician dashboard (Streamlit) on this machine."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from multibone.errors import InputError

INSTALL_HINT = 'pip install "multibone[dashboard]"'

#: Streamlit settings that keep the dashboard local and private; the same as the
#: repository's .streamlit/config.toml (a test keeps the two equal), passed as flags because
#: Streamlit reads that file only from the folder it is started in.
STREAMLIT_OPTIONS: dict[str, object] = {
    "server.address": "localhost",  # patient images must not be served to the network
    "server.headless": True,
    "server.maxUploadSize": 200,  # megabytes; one DICOM study can be large
    "server.runOnSave": False,
    "browser.gatherUsageStats": False,
    "browser.serverAddress": "localhost",
    "client.toolbarMode": "minimal",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Raw formatting keeps the examples' lines; the description is wrapped here instead.
    p.description = (
        textwrap.fill(
            "Start the clinician dashboard in Streamlit, on this machine only (localhost). "
            "Open the address it prints in a browser, upload a patient's radiographs, mark the "
            "lesion box, type age, sex, site, CRP and ESR, and get a calibrated probability, a "
            "decision at a named operating point, SHAP and Score-CAM explanations and a case "
            "report. The Model tab shows what the bundle was trained on and how well it did. "
            "Stop it with Ctrl+C.",
            width=78,
        )
        + f"\n\nNeeds Streamlit: {INSTALL_HINT}"
    )
    p.epilog = (
        "examples:\n"
        "  multibone demo --out runs/demo        # build a demo bundle first (minutes)\n"
        "  multibone dashboard                   # uses runs/demo/bundle or $MULTIBONE_BUNDLE\n"
        "  multibone dashboard --bundle runs/mine/bundle --port 8502"
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--bundle",
        help="model bundle folder (default: $MULTIBONE_BUNDLE, else runs/demo/bundle); "
        "another one can be typed in the page's sidebar",
    )
    p.add_argument(
        "--port", type=int, default=8501, help="port on localhost to serve on (default 8501)"
    )


def streamlit_command(app: Path, port: int, bundle: str | None = None) -> list[str]:
    """The ``python -m streamlit run`` command line for ``app`` (a list for subprocess)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port)]
    for key, value in STREAMLIT_OPTIONS.items():
        cmd += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    if bundle:
        cmd += ["--", "--bundle", bundle]
    return cmd


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise InputError(f"the dashboard needs Streamlit, which is not installed: {INSTALL_HINT}")
    from multibone.app import app_path

    bundle = None
    if args.bundle:
        path = Path(args.bundle).expanduser().resolve()
        if not (path / "bundle.json").is_file():
            raise InputError(f"{args.bundle}: not a model bundle (no bundle.json)")
        bundle = str(path)
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: must be between 1 and 65535")
    return _launch(streamlit_command(app_path(), args.port, bundle))


def _launch(cmd: list[str]) -> int:
    """Run Streamlit. On POSIX it replaces this process, so a SIGTERM (service manager,
    ``kill``) reaches Streamlit itself and no server is left orphaned; elsewhere, a child."""
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)  # does not return
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:  # Ctrl+C reaches Streamlit too, which stops on its own
        return 0
