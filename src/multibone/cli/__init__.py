"""The ``multibone`` command line: a thin layer over the pipeline and modules.

Each subcommand lives in its own module here, ``multibone/cli/<name>.py``, with

* ``add_arguments(parser: argparse.ArgumentParser) -> None``
* ``run(args: argparse.Namespace) -> int``  (the exit code)

Modules are imported lazily so ``multibone --help`` stays fast. Errors derived
from :class:`multibone.errors.MultiboneError` become one clear line on stderr
and exit code 2; nothing prints a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from multibone import __version__
from multibone.errors import CohortValidationError, MultiboneError

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole pipeline on a synthetic cohort (CPU, minutes)"),
    "synth": ("synth", "write a synthetic cohort (images + manifest.csv)"),
    "validate": ("validate", "check a cohort manifest against the data contract"),
    "inspect": ("inspect", "load one radiograph and print what multibone sees"),
    "backbones": ("backbones", "list the backbone registry (CAM layer, input size, weights)"),
    "train-images": ("train_images", "train backbones cross-fitted; write patient scores"),
    "train-detector": ("train_detector", "train the lesion detector cross-fitted; write boxes"),
    "detect": ("detect", "lesion boxes with scores on one radiograph (JSON)"),
    "stack": ("stack", "fit and compare stackers on patient scores + clinical data"),
    "predict": ("predict", "score one case (or a CSV of cases) with a model bundle"),
    "recalibrate": ("recalibrate", "refit a bundle's calibration on a local labelled sample"),
    "export-onnx": ("export_onnx", "export a bundle's image models to ONNX (faster CPU scoring)"),
    "explain": ("explain", "SHAP and Score-CAM / Grad-CAM for one case"),
    "evaluate": ("evaluate", "statistics, figures and an HTML report for a run"),
    "compare": ("compare", "head-to-head comparison of two prediction files"),
    "robustness": ("robustness", "AUC and probabilities under random lesion-box perturbation"),
    "readers": ("readers", "compare the model with human readers"),
    "dashboard": ("dashboard", "start the clinician dashboard (Streamlit, localhost)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multibone",
        description=(
            "multibone: primary bone tumour vs bone infection from radiographs and "
            "routine clinical data. Decision support, not a diagnosis."
        ),
        epilog="Run 'multibone COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"multibone {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            mod = importlib.import_module(f"multibone.cli.{module}")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command asked for (fast --help, fast start).
    only = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only) if only else build_parser("__none__")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except CohortValidationError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        n = len(exc.problems)
        print(f"{exc.source}: {n} problem{'s' if n != 1 else ''}; nothing written", file=sys.stderr)
        return 2
    except MultiboneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
