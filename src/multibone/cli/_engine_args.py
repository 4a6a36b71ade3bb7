"""Arguments choosing how images are scored: --engine, --onnx, --threads (predict, explain)."""

from __future__ import annotations

import argparse


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed")
    g.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="how images are scored: onnx = ONNX Runtime on an export made with "
                        "'multibone export-onnx' (starts without torch; same scores to 1e-4); "
                        "torch = PyTorch; auto (default) = onnx when an export of this bundle "
                        "exists and onnxruntime is installed, else torch")
    g.add_argument("--onnx", metavar="DIR", default=None,
                   help="the ONNX export folder (default: BUNDLE-onnx beside the bundle)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for scoring images (default: half the CPUs, at most 8, "
                        "so 1 on a 2-core machine and other jobs keep a core; on an idle machine "
                        "a large --cases worklist may score faster with all cores)")


def apply_engine_arguments(args: argparse.Namespace) -> None:
    """Store the choice where :func:`multibone.case.runtime` reads it."""
    from multibone.case import ENGINE_SETTINGS
    from multibone.errors import InputError

    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be 1 or more, got {args.threads}")
    ENGINE_SETTINGS.update(engine=args.engine, onnx_dir=args.onnx, threads=args.threads)
